/**
 * `client.schedules`: create, list, describe, pause, unpause, update, trigger, backfill, delete.
 * Everything here is a KV read or a CAS write on the schedule's record, and a publish of a tick
 * message before the write that names it (store.ts, "The chain"); runtimes' schedulers do the
 * firing. Cost: one record per call (list: one read per schedule); describe reads its recent runs'
 * states (10 at most); backfill starts one workflow per tick asked for.
 */
import { ValidationError } from "../errors.js";
import type { Topology } from "../nats/topology.js";
import type { WorkflowState, WorkflowStatus } from "../state.js";
import { formatDuration } from "../duration.js";
import { systemClock, type Clock } from "../timers.js";
import { dueAt, nextTick, nextTicks, ticksBetween, tickWorkflowId } from "./fire-times.js";
import { isoTime, toScheduleSpec, validateScheduleId, type ScheduleOptions, type ScheduleSpec } from "./spec.js";
import { deleteTickMessage, newChain, publishTick, pushRecent, readSchedule, writeSchedule, type ScheduleRecord, type ScheduleRun, type StoredSchedule } from "./store.js";

/** Ticks one backfill may start. */
export const MAX_BACKFILL_TICKS = 1_000;
const CAS_ATTEMPTS = 10;

export interface ScheduleRunView extends ScheduleRun {
  /** The run's status now ("not found" once retention removed it, or when its start was refused). */
  status: WorkflowStatus | "not found";
}

export interface ScheduleDescription extends ScheduleRecord {
  /** The next fire times (ISO, jitter included), 5 unless the schedule ends first; none while paused. */
  nextFireTimes: string[];
  /** The last runs, newest last, each with its status read now. */
  recentRuns: ScheduleRunView[];
}

export interface ScheduleSummary {
  id: string;
  workflow: string;
  /** The cron expression (with its zone) or the interval. */
  when: string;
  paused: boolean;
  source: ScheduleRecord["source"];
  nextFireTime: string | null;
  lastRun?: ScheduleRun;
}

export interface ScheduleClient {
  /** Create a schedule; the same spec again is a no-op, another spec for an existing id is refused (use update). */
  create<I = unknown>(id: string, options: ScheduleOptions<I>): Promise<ScheduleDescription>;
  /** Every schedule, by id (one read each). */
  list(): Promise<ScheduleSummary[]>;
  describe(id: string): Promise<ScheduleDescription>;
  pause(id: string, note?: string): Promise<void>;
  unpause(id: string): Promise<void>;
  /** Change some of a schedule's options (the rest are kept); its next tick is recomputed from now. */
  update<I = unknown>(id: string, patch: Partial<ScheduleOptions<I>>): Promise<ScheduleDescription>;
  /** Start the schedule's workflow now, whatever the overlap policy (id `<scheduleId>.<now>`); resolves with the workflow id. */
  trigger(id: string): Promise<string>;
  /**
   * Start the workflows of every tick in [from, to] now, whatever the overlap policy and pause.
   * Tick ids are deterministic: a tick that ran already (and is still retained) is not run again.
   * Resolves with the workflow ids.
   */
  backfill(id: string, range: { from: string | Date; to: string | Date }): Promise<string[]>;
  /** Remove the schedule (its running workflows go on). Resolves false when there was none. */
  delete(id: string): Promise<boolean>;
}

export interface ScheduleClientOptions {
  topology: Topology;
  namespace: string;
  /** The client's start (validation, limits, Nats-Msg-Id `<id>/start`). */
  start(workflow: string, input: unknown, id: string, scheduleId: string): Promise<void>;
  clock?: Clock;
  /** Marks records written for functions/schedules.ts (bundle sync). */
  source?: ScheduleRecord["source"];
}

export function createScheduleClient(options: ScheduleClientOptions): ScheduleClient & { apply(id: string, spec: ScheduleSpec, source: ScheduleRecord["source"]): Promise<"created" | "updated" | "unchanged"> } {
  const { topology } = options;
  const kv = topology.schedules;
  const clock = options.clock ?? systemClock;
  const iso = (ms: number) => new Date(ms).toISOString();

  async function load(id: string): Promise<StoredSchedule> {
    validateScheduleId(id);
    const stored = await readSchedule(kv, id);
    if (!stored) {
      throw new ValidationError("WF_SCHEDULE_NOT_FOUND", `no schedule with id ${id}${options.namespace ? ` in namespace "${options.namespace}"` : ""}`, {
        hint: "`wf schedule list` shows the schedules; check NATS_URL / namespace.",
      });
    }
    return stored;
  }

  /** Re-read and apply `change` until its CAS wins; `change` returns undefined for "nothing to do". */
  async function modify(id: string, change: (record: ScheduleRecord) => Promise<ScheduleRecord | undefined>): Promise<ScheduleRecord> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await load(id);
      const next = await change(stored.record);
      if (!next) return stored.record;
      if (await writeSchedule(kv, next, stored.revision)) return next;
    }
    throw new ValidationError("WF_SCHEDULE_BUSY", `schedule ${id} kept changing while it was being written (${CAS_ATTEMPTS} attempts)`, { hint: "Retry; something else is updating it in a loop." });
  }

  /** A new chain from now: its first tick's message is published before the record naming it. */
  async function newChainFrom(id: string, spec: ScheduleSpec, state: ScheduleRecord["state"]): Promise<ScheduleRecord["state"]> {
    const chain = newChain();
    const after = Math.max(clock.now(), state.lastTick ? Date.parse(state.lastTick) : -Infinity);
    const next = spec.paused ? undefined : nextTick(spec, after);
    const fresh: ScheduleRecord["state"] = { ...state, chain, nextTick: next === undefined ? null : iso(next) };
    delete fresh.tickSeq;
    delete fresh.buffered;
    if (next !== undefined) fresh.tickSeq = await publishTick(topology, id, spec, chain, next);
    return fresh;
  }

  async function describeRecord(record: ScheduleRecord): Promise<ScheduleDescription> {
    const now = clock.now();
    const nextFireTimes = record.spec.paused ? [] : nextTicks(record.spec, record.state.nextTick ? Math.min(now, Date.parse(record.state.nextTick) - 1) : now, 5).map((t) => iso(dueAt(record.id, record.spec, t)));
    const recentRuns = await Promise.all(
      record.state.runs.map(async (run): Promise<ScheduleRunView> => {
        const entry = await topology.states.get(run.workflowId).catch(() => null);
        const status = entry && entry.operation === "PUT" && entry.length > 0 ? entry.json<WorkflowState>().status : "not found";
        return { ...run, status };
      }),
    );
    return { ...record, nextFireTimes, recentRuns };
  }

  async function recordRuns(id: string, runs: ScheduleRun[]): Promise<void> {
    await modify(id, async (record) => {
      let state = { ...record.state };
      for (const run of runs) state = { ...state, runs: pushRecent(state.runs, run) };
      const last = runs.at(-1);
      if (last && last.trigger === "trigger") {
        state.lastWorkflowId = last.workflowId; // the next tick's overlap policy sees it
        state.lastStartedAt = last.startedAt;
      }
      return { ...record, state };
    });
  }

  async function apply(id: string, spec: ScheduleSpec, source: ScheduleRecord["source"]): Promise<"created" | "updated" | "unchanged"> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await readSchedule(kv, id);
      const now = iso(clock.now());
      if (!stored) {
        const state = await newChainFrom(id, spec, { chain: "", nextTick: null, runs: [], skipped: [], skippedCount: 0 });
        if (await writeSchedule(kv, { id, spec, source, createdAt: now, updatedAt: now, state }, 0)) return "created";
        continue;
      }
      if (sameSpec(stored.record.spec, spec) && stored.record.source === source) return "unchanged";
      const state = await newChainFrom(id, spec, stored.record.state);
      if (await writeSchedule(kv, { ...stored.record, spec, source, updatedAt: now, state }, stored.revision)) {
        deleteTickMessage(topology, stored.record.state.tickSeq);
        return "updated";
      }
    }
    throw new ValidationError("WF_SCHEDULE_BUSY", `schedule ${id} kept changing while it was being written`, { hint: "Retry." });
  }

  return {
    apply,
    async create(id, scheduleOptions) {
      validateScheduleId(id);
      const spec = toScheduleSpec(id, scheduleOptions as ScheduleOptions);
      const existing = await readSchedule(kv, id);
      if (existing && !sameSpec(existing.record.spec, spec)) {
        throw new ValidationError("WF_SCHEDULE_EXISTS", `schedule ${id} exists with another spec (${describeWhen(existing.record.spec)}, workflow ${existing.record.spec.workflow})`, {
          hint: `Change it with \`wf schedule update ${id} …\` (client.schedules.update), or delete it first.`,
        });
      }
      if (!existing) await apply(id, spec, options.source ?? "api");
      return describeRecord((await load(id)).record);
    },
    async list() {
      const out: ScheduleSummary[] = [];
      const ids: string[] = [];
      for await (const key of await kv.keys()) ids.push(key);
      for (const id of ids.sort()) {
        const stored = await readSchedule(kv, id).catch(() => undefined);
        if (!stored) continue;
        const { record } = stored;
        const next = record.spec.paused || !record.state.nextTick ? null : iso(dueAt(id, record.spec, Date.parse(record.state.nextTick)));
        out.push({ id, workflow: record.spec.workflow, when: describeWhen(record.spec), paused: record.spec.paused, source: record.source, nextFireTime: next, ...(record.state.runs.length ? { lastRun: record.state.runs.at(-1)! } : {}) });
      }
      return out;
    },
    async describe(id) {
      return describeRecord((await load(id)).record);
    },
    async pause(id, note) {
      const record = await modify(id, async (r) => (r.spec.paused && note === undefined ? undefined : { ...r, spec: { ...r.spec, paused: true, ...(note !== undefined ? { note } : {}) }, updatedAt: iso(clock.now()) }));
      // Nothing parked while paused: the message would only be dropped when due.
      deleteTickMessage(topology, record.state.tickSeq);
    },
    async unpause(id) {
      let replaced: number | undefined;
      await modify(id, async (r) => {
        if (!r.spec.paused) return undefined;
        const spec = { ...r.spec, paused: false };
        replaced = r.state.tickSeq;
        return { ...r, spec, updatedAt: iso(clock.now()), state: await newChainFrom(id, spec, r.state) };
      });
      deleteTickMessage(topology, replaced);
    },
    async update(id, patch) {
      const { record } = await load(id);
      const merged: ScheduleOptions = { ...toOptions(record.spec), ...(patch as Partial<ScheduleOptions>) };
      if (patch.cron !== undefined) delete merged.every;
      if (patch.every !== undefined) delete merged.cron;
      const spec = toScheduleSpec(id, merged);
      await apply(id, spec, record.source);
      return describeRecord((await load(id)).record);
    },
    async trigger(id) {
      const { record } = await load(id);
      const now = clock.now();
      const workflowId = tickWorkflowId(id, now);
      await options.start(record.spec.workflow, record.spec.input, workflowId, id);
      await recordRuns(id, [{ tick: iso(now), workflowId, startedAt: iso(now), trigger: "trigger" }]);
      return workflowId;
    },
    async backfill(id, range) {
      const { record } = await load(id);
      const from = Date.parse(isoTime(range.from, `backfill of ${id}: from`));
      const to = Date.parse(isoTime(range.to, `backfill of ${id}: to`));
      if (to < from) throw new ValidationError("WF_INVALID_TIME", `backfill of ${id}: to (${iso(to)}) is before from (${iso(from)})`, { hint: "Swap --from and --to." });
      const { ticks, truncated } = ticksBetween(record.spec, from, to, MAX_BACKFILL_TICKS);
      if (truncated) {
        throw new ValidationError("WF_SCHEDULE_BACKFILL_TOO_LARGE", `backfill of ${id} from ${iso(from)} to ${iso(to)} has more than ${MAX_BACKFILL_TICKS} ticks`, {
          hint: "Backfill a shorter range at a time; tick ids are deterministic, so overlapping ranges do not run a tick twice.",
        });
      }
      const runs: ScheduleRun[] = [];
      for (const tick of ticks) {
        const workflowId = tickWorkflowId(id, tick);
        await options.start(record.spec.workflow, record.spec.input, workflowId, id);
        runs.push({ tick: iso(tick), workflowId, startedAt: iso(clock.now()), trigger: "backfill" });
      }
      if (runs.length) await recordRuns(id, runs.slice(-10));
      return runs.map((r) => r.workflowId);
    },
    async delete(id) {
      validateScheduleId(id);
      const stored = await readSchedule(kv, id);
      if (!stored) return false;
      await kv.delete(id);
      deleteTickMessage(topology, stored.record.state.tickSeq);
      return true;
    },
  };
}

/** The user options a stored spec stands for (for update's merge). */
export function toOptions(spec: ScheduleSpec): ScheduleOptions {
  const o: ScheduleOptions = { workflow: spec.workflow, input: spec.input, jitter: spec.jitterMs, overlap: spec.overlap, catchupWindow: spec.catchupWindowMs, paused: spec.paused };
  if (spec.cron !== undefined) o.cron = spec.cron;
  if (spec.everyMs !== undefined) o.every = spec.everyMs;
  if (spec.timezone !== undefined) o.timezone = spec.timezone;
  if (spec.startAt !== undefined) o.startAt = spec.startAt;
  if (spec.endAt !== undefined) o.endAt = spec.endAt;
  if (spec.note !== undefined) o.note = spec.note;
  return o;
}

export function sameSpec(a: ScheduleSpec, b: ScheduleSpec): boolean {
  return stableJson(a) === stableJson(b);
}

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : 1))) : v));
}

export function describeWhen(spec: ScheduleSpec): string {
  if (spec.cron !== undefined) return `cron "${spec.cron}"${spec.timezone ? ` ${spec.timezone}` : " UTC"}`;
  return `every ${formatDuration(spec.everyMs ?? 0)}`;
}

