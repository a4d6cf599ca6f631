/**
 * What a schedule is: its spec as users write it (`ScheduleOptions`: durations as "10m", times as
 * ISO strings or Dates) and as it is stored (`ScheduleSpec`: milliseconds and ISO strings), and the
 * validation between the two. Cron expressions and time zones are checked by croner, whose reason
 * is quoted in the error. Plain functions over plain data; nothing here touches NATS.
 */
import { Cron } from "croner";
import { parseDuration, type Duration } from "../duration.js";
import { ValidationError } from "../errors.js";
import { validateName } from "../ids.js";

export type OverlapPolicy = "skip" | "buffer-one" | "allow-all" | "cancel-other";
export const OVERLAP_POLICIES: readonly OverlapPolicy[] = ["skip", "buffer-one", "allow-all", "cancel-other"];

/** A tick later than this after its time is skipped, not run (default; `catchupWindow`). */
export const DEFAULT_CATCHUP_WINDOW_MS = 60_000;
export const DEFAULT_OVERLAP: OverlapPolicy = "skip";
/** Schedule ids are one subject token, and leave room in the workflow id for the tick (ids.ts). */
export const MAX_SCHEDULE_ID_LENGTH = 100;
/** `every` below this is refused: each tick is a few NATS writes. */
export const MIN_EVERY_MS = 1_000;

/** A schedule as `client.schedules.create` and `defineSchedule` take it. */
export interface ScheduleOptions<I = unknown> {
  /** Workflow type started on each tick. */
  workflow: string;
  /** Input of each started workflow. */
  input?: I;
  /** A cron expression (5 fields, or 6 with seconds first): "0 9 * * 1-5". Exactly one of cron and every. */
  cron?: string;
  /** A fixed interval ("10m", or milliseconds), aligned on startAt (or the Unix epoch). */
  every?: Duration;
  /** IANA time zone the cron expression is read in (default UTC): "Europe/Paris". */
  timezone?: string;
  /** Delay each tick by up to this much, the same for a given tick every time (default 0). */
  jitter?: Duration;
  /** What a tick does while the previous tick's workflow still runs (default "skip"). */
  overlap?: OverlapPolicy;
  /** A tick missed by more than this (everything was down) is skipped on recovery; within it, it runs late (default 1m). */
  catchupWindow?: Duration;
  /** No tick before this time. */
  startAt?: string | Date;
  /** No tick after this time. */
  endAt?: string | Date;
  /** Created paused: no tick fires until unpaused. */
  paused?: boolean;
  /** Free text shown by `wf schedule describe`. */
  note?: string;
}

/** The stored spec (docs/protocol.md, "Schedules"). */
export interface ScheduleSpec {
  workflow: string;
  input: unknown;
  cron?: string;
  everyMs?: number;
  timezone?: string;
  jitterMs: number;
  overlap: OverlapPolicy;
  catchupWindowMs: number;
  startAt?: string;
  endAt?: string;
  paused: boolean;
  note?: string;
}

export function validateScheduleId(id: unknown): string {
  if (typeof id !== "string" || id.length > MAX_SCHEDULE_ID_LENGTH || !/^[A-Za-z0-9_-]+$/.test(id)) {
    throw new ValidationError("WF_INVALID_SCHEDULE_ID", `schedule id ${JSON.stringify(id)} is not valid: use 1-${MAX_SCHEDULE_ID_LENGTH} characters of A-Z a-z 0-9 _ -`, {
      hint: "Choose an id such as nightly-report; each tick's workflow id is <scheduleId>.<tick time>.",
    });
  }
  return id;
}

/** A spec from user options, every field checked; throws a coded ValidationError naming the field. */
export function toScheduleSpec(id: string, options: ScheduleOptions): ScheduleSpec {
  const where = `schedule ${id}`;
  if (options === null || typeof options !== "object") {
    throw new ValidationError("WF_INVALID_SCHEDULE", `${where}: expected an object with workflow and cron or every, got ${JSON.stringify(options)}`, {
      hint: 'Pass { workflow: "report", cron: "0 9 * * *" } or { workflow: "report", every: "10m" }.',
    });
  }
  validateName("workflow name", options.workflow);
  const hasCron = options.cron !== undefined && options.cron !== null;
  const hasEvery = options.every !== undefined && options.every !== null;
  if (hasCron === hasEvery) {
    throw new ValidationError("WF_INVALID_SCHEDULE", `${where}: give exactly one of cron and every (got ${hasCron ? "both" : "neither"})`, {
      hint: 'For example --cron "0 9 * * 1-5" (09:00 on weekdays) or --every 10m.',
    });
  }
  const spec: ScheduleSpec = {
    workflow: options.workflow,
    input: options.input === undefined ? null : options.input,
    jitterMs: options.jitter === undefined ? 0 : parseDuration(options.jitter, `${where}: jitter`),
    overlap: options.overlap ?? DEFAULT_OVERLAP,
    catchupWindowMs: options.catchupWindow === undefined ? DEFAULT_CATCHUP_WINDOW_MS : parseDuration(options.catchupWindow, `${where}: catchupWindow`),
    paused: options.paused === true,
  };
  if (!OVERLAP_POLICIES.includes(spec.overlap)) {
    throw new ValidationError("WF_INVALID_SCHEDULE", `${where}: overlap ${JSON.stringify(options.overlap)} is not one of ${OVERLAP_POLICIES.join(", ")}`, {
      hint: '"skip" (the default) drops a tick while the previous run is running; "buffer-one" runs it after; "allow-all" runs it anyway; "cancel-other" cancels the previous run.',
    });
  }
  if (options.timezone !== undefined) spec.timezone = options.timezone;
  if (hasCron) {
    spec.cron = String(options.cron).trim();
    checkCron(id, spec.cron, spec.timezone);
  } else {
    spec.everyMs = parseDuration(options.every!, `${where}: every`);
    if (spec.everyMs < MIN_EVERY_MS) {
      throw new ValidationError("WF_INVALID_SCHEDULE", `${where}: every ${JSON.stringify(options.every)} is below the minimum of 1s`, { hint: "Use --every 1s or more." });
    }
    if (spec.timezone !== undefined) checkCron(id, "* * * * *", spec.timezone); // a fixed interval ignores it, but a typo is still refused
  }
  if (spec.jitterMs > 0 && spec.everyMs !== undefined && spec.jitterMs >= spec.everyMs) {
    throw new ValidationError("WF_INVALID_SCHEDULE", `${where}: jitter (${spec.jitterMs} ms) must be shorter than the interval (${spec.everyMs} ms)`, { hint: "Lower --jitter, or it would push a tick past the next." });
  }
  if (options.startAt !== undefined) spec.startAt = isoTime(options.startAt, `${where}: startAt`);
  if (options.endAt !== undefined) spec.endAt = isoTime(options.endAt, `${where}: endAt`);
  if (spec.startAt && spec.endAt && Date.parse(spec.endAt) <= Date.parse(spec.startAt)) {
    throw new ValidationError("WF_INVALID_SCHEDULE", `${where}: endAt ${spec.endAt} is not after startAt ${spec.startAt}`, { hint: "Swap them, or leave one out." });
  }
  if (options.note !== undefined) spec.note = String(options.note);
  return spec;
}

/** An ISO time from a Date, an ISO string, or anything Date.parse reads; a ValidationError otherwise. */
export function isoTime(value: string | Date | number, what: string): string {
  const ms = value instanceof Date ? value.getTime() : typeof value === "number" ? value : Date.parse(String(value));
  if (!Number.isFinite(ms)) {
    throw new ValidationError("WF_INVALID_TIME", `${what}: ${JSON.stringify(value)} is not a time`, { hint: 'Use an ISO 8601 time such as "2026-03-29T09:00:00Z" or "2026-03-29T09:00:00+02:00".' });
  }
  return new Date(ms).toISOString();
}

const cronCache = new Map<string, Cron>();
const CRON_CACHE_MAX = 1_000;

/** croner's parsed expression (cached: a tick recomputes the next). Throws croner's error as is. */
export function cronOf(expression: string, timezone: string | undefined): Cron {
  const key = `${timezone ?? ""}\0${expression}`;
  let cron = cronCache.get(key);
  if (!cron) {
    // paused: croner must not schedule anything itself; we only ask it for times.
    cron = new Cron(expression, { paused: true, ...(timezone ? { timezone } : { timezone: "UTC" }) });
    if (cronCache.size >= CRON_CACHE_MAX) cronCache.clear();
    cronCache.set(key, cron);
  }
  return cron;
}

function checkCron(id: string, expression: string, timezone: string | undefined): void {
  let cron: Cron;
  try {
    cron = cronOf(expression, undefined);
  } catch (err) {
    throw new ValidationError("WF_INVALID_CRON", `schedule ${id}: cron expression ${JSON.stringify(expression)} is not valid: ${(err as Error).message}`, {
      hint: 'Five fields, minute hour day-of-month month day-of-week (or six, seconds first): "0 9 * * 1-5" is 09:00 Monday to Friday, "*/15 * * * *" every 15 minutes.',
      cause: err,
    });
  }
  if (timezone === undefined) return;
  try {
    cron = cronOf(expression, timezone);
    cron.nextRun(new Date(0)); // croner checks the zone when it converts a time
  } catch (err) {
    cronCache.delete(`${timezone}\0${expression}`);
    throw new ValidationError("WF_INVALID_TIMEZONE", `schedule ${id}: time zone ${JSON.stringify(timezone)} is not valid: ${(err as Error).message}`, {
      hint: 'Use an IANA time zone name such as "Europe/Paris", "America/New_York" or "UTC".',
      cause: err,
    });
  }
}
