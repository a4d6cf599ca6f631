/**
 * When a schedule fires: pure functions of its spec and a time, so every runtime computes the
 * same ticks, a re-fired tick picks the same jittered time, and tests need no clock at all.
 *
 * A tick is the nominal time of a firing (epoch ms): for `every`, startAt (or the Unix epoch) plus
 * a whole number of intervals; for `cron`, what croner gives for the expression in the schedule's
 * time zone, DST included (a local time skipped by a spring-forward fires at the first instant
 * after it; one that happens twice at a fall-back fires once, at its first occurrence; a
 * "every 30 minutes" expression keeps firing every 30 real minutes through both).
 * A tick is due at tick + jitter, where jitter is derived from the schedule id and the tick.
 */
import { createHash } from "node:crypto";
import { cronOf, type ScheduleSpec } from "./spec.js";

/** The first tick strictly after `afterMs`, within startAt..endAt; undefined when the schedule has ended. */
export function nextTick(spec: ScheduleSpec, afterMs: number): number | undefined {
  const startMs = spec.startAt ? Date.parse(spec.startAt) : undefined;
  const endMs = spec.endAt ? Date.parse(spec.endAt) : undefined;
  const from = startMs !== undefined && startMs - 1 > afterMs ? startMs - 1 : afterMs;
  let tick: number | undefined;
  if (spec.everyMs !== undefined) {
    const anchor = startMs ?? 0;
    tick = from < anchor ? anchor : anchor + (Math.floor((from - anchor) / spec.everyMs) + 1) * spec.everyMs;
  } else if (spec.cron !== undefined) {
    tick = cronOf(spec.cron, spec.timezone).nextRun(new Date(from))?.getTime();
  }
  if (tick === undefined || (endMs !== undefined && tick > endMs)) return undefined;
  return tick;
}

/** The next `count` ticks after `afterMs` (fewer if the schedule ends). */
export function nextTicks(spec: ScheduleSpec, afterMs: number, count: number): number[] {
  const ticks: number[] = [];
  for (let t = nextTick(spec, afterMs); t !== undefined && ticks.length < count; t = nextTick(spec, t)) ticks.push(t);
  return ticks;
}

/** Ticks in [fromMs, toMs], at most `limit` of them (`truncated` says there were more). */
export function ticksBetween(spec: ScheduleSpec, fromMs: number, toMs: number, limit: number): { ticks: number[]; truncated: boolean } {
  const ticks: number[] = [];
  for (let t = nextTick(spec, fromMs - 1); t !== undefined && t <= toMs; t = nextTick(spec, t)) {
    if (ticks.length >= limit) return { ticks, truncated: true };
    ticks.push(t);
  }
  return { ticks, truncated: false };
}

/** How many ticks lie in [fromMs, toMs] (counted up to `cap` for a cron; exact for an interval). */
export function countTicks(spec: ScheduleSpec, fromMs: number, toMs: number, cap = 10_000): number {
  if (toMs < fromMs) return 0;
  if (spec.everyMs !== undefined && spec.endAt === undefined) {
    const first = nextTick(spec, fromMs - 1);
    return first === undefined || first > toMs ? 0 : Math.floor((toMs - first) / spec.everyMs) + 1;
  }
  return ticksBetween(spec, fromMs, toMs, cap).ticks.length;
}

/** The tick's delay, in [0, jitterMs): the same for a schedule id and tick on every runtime, every time. */
export function jitterOf(scheduleId: string, tickMs: number, jitterMs: number): number {
  if (jitterMs <= 0) return 0;
  const digest = createHash("sha256").update(`${scheduleId}/${tickMs}`).digest();
  return Math.floor((digest.readUIntBE(0, 6) / 2 ** 48) * jitterMs);
}

/** When the tick fires: its time plus its jitter. */
export function dueAt(scheduleId: string, spec: ScheduleSpec, tickMs: number): number {
  return tickMs + jitterOf(scheduleId, tickMs, spec.jitterMs);
}

/**
 * The workflow id of a tick: `<scheduleId>.<tick in ISO 8601 basic format, UTC>`, e.g.
 * `nightly-report.20260329T090000Z` (`.123` before the Z when the tick has milliseconds). The
 * extended format's ":" is not allowed in workflow ids (ids.ts), "/" is a separator in
 * Nats-Msg-Ids; the basic format is ISO 8601 too, sorts by time, and is fixed per tick.
 */
export function tickWorkflowId(scheduleId: string, tickMs: number): string {
  return `${scheduleId}.${basicIso(tickMs)}`;
}

export function basicIso(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-03-29T09:00:00.000Z
  const millis = iso.slice(20, 23);
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}${millis === "000" ? "" : `.${millis}`}Z`;
}
