/**
 * The scheduler: every runtime with the orchestrator role runs one, and they share the durable
 * consumer of WORKFLOW_SCHEDULE_TICKS. Each active schedule has one message there, its next tick,
 * parked with a NAK delay until due (as timers.ts parks a sleep): a waiting schedule costs no
 * runtime anything, and no loop polls it.
 *
 * When a tick is due, the runtime that holds its message:
 * 1. reads the schedule's record and drops the message unless the record names it (store.ts:
 *    the chain and next tick) and the schedule is not paused (a young message whose chain no
 *    record names yet is looked at again: its writer publishes it before writing the record);
 * 2. decides: run it (start its workflow), skip it (overlap policy, or missed by more than the
 *    catch-up window: then every tick too old is skipped at once and the chain resumes at the
 *    first tick within the window), or buffer it (overlap "buffer-one");
 * 3. does the effects, each idempotent: the start (workflow id `<scheduleId>.<tick>`, Nats-Msg-Id
 *    `<id>/start`, and the orchestrator creates a state once per id), the cancel of the previous
 *    run (overlap "cancel-other"), and the publish of the next tick's message (Nats-Msg-Id
 *    `schedule/<id>/<chain>/tick/<ms>`);
 * 4. writes the record by CAS on its revision (next tick, runs, skips), then acks.
 * A runtime killed anywhere in between leaves the message unacked: another runtime redoes the
 * tick, and the effects it repeats are no-ops. Two runtimes on the same tick (a redelivery racing
 * a slow holder) both do the same effects; one CAS wins, the other re-reads, finds the message
 * stale, and acks. So a tick starts its workflow once, however often it is handled.
 *
 * A NATS restart forgets NAK delays: parked ticks are redelivered after the ack wait and parked
 * again. The recovery pass (once per fleet at a time, a fleet lease) re-publishes the message of
 * any schedule whose next tick has none (a record written by another program, a lost stream).
 */
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { WorkflowClient } from "../client/client.js";
import { recordDeadLetter } from "../dead-letters.js";
import { JetflowError, ProtocolError } from "../errors.js";
import type { Logger } from "../logger.js";
import { drainThenStop } from "../nats/drain.js";
import { acquireFleetLease, releaseFleetLease } from "../nats/fleet-lease.js";
import type { Topology } from "../nats/topology.js";
import { parseJson } from "../protocol.js";
import { isTerminal, type WorkflowState } from "../state.js";
import { systemClock, type Clock } from "../timers.js";
import { countTicks, nextTick, ticksBetween, tickWorkflowId } from "./fire-times.js";
import { publishTick, pushRecent, readSchedule, writeSchedule, type ScheduleRecord, type ScheduleRun, type SkippedTicks, type TickMessage } from "./store.js";
import { validateScheduleId } from "./spec.js";

const PULL_EXPIRES_MS = 5_000;
/** A tick parks at most this long at a time (then is parked again): NAK delays stay small numbers. */
const MAX_PARK_MS = 6 * 3_600_000;
/** A run whose state does not exist yet counts as running this long after its start (its start event may still be queued). */
export const START_GRACE_MS = 30_000;
/** A tick handled this much after it was due is recorded as a catch-up run. */
const LATE_MS = 5_000;
/**
 * How often a message that has to wait is looked at again (doubling, up to the max): a buffered
 * tick whose run before it still runs (overlap "buffer-one"), or a tick whose record is not
 * written yet (its writer is between the publish and the write).
 */
const BUFFER_RECHECK_MIN_MS = 500;
const BUFFER_RECHECK_MAX_MS = 10_000;
const CAS_ATTEMPTS = 10;
/** How long after its publish a tick message that no record names is waited for (its writer writes the record next). */
const UNNAMED_TICK_GRACE_MS = 10_000;
/** At most this many looks at such a message (500 ms doubling: about 8 s in all). */
const UNNAMED_TICK_DELIVERIES = 5;
export const SCHEDULES_RECOVERY_LEASE_KEY = "schedules-recovery";
const RECOVERY_LEASE_MS = 5 * 60_000;

export interface SchedulerOptions {
  topology: Topology;
  logger: Logger;
  /** Starts and cancels go through the normal client path. */
  client: WorkflowClient;
  clock?: Clock;
  /** This runtime's name in the recovery lease. */
  holder: string;
  leases: () => Promise<KV>;
  crashPoint?: (name: string) => void;
}

export interface Scheduler {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One recovery pass now, if this runtime gets the lease; resolves with the messages re-published. */
  recover(): Promise<number>;
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const { topology, client } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger.child({ component: "schedules" });
  const kv = topology.schedules;
  let messages: ConsumerMessages | undefined;
  let loop: Promise<void> | undefined;
  let recovery: Promise<number> | undefined;

  const iso = (ms: number) => new Date(ms).toISOString();
  const park = (ms: number) => Math.max(1, Math.min(ms, MAX_PARK_MS, clock.maxParkMs ?? Infinity));

  async function isRunning(workflowId: string | undefined, startedAt: string | undefined): Promise<boolean> {
    if (!workflowId) return false;
    const entry = await topology.states.get(workflowId);
    if (entry && entry.operation === "PUT" && entry.length > 0) return !isTerminal(entry.json<WorkflowState>().status);
    // No state: its start may still be queued (running soon), or it was refused or removed long ago.
    return startedAt !== undefined && clock.now() - Date.parse(startedAt) < START_GRACE_MS;
  }

  async function startRun(record: ScheduleRecord, tick: number, trigger: ScheduleRun["trigger"]): Promise<ScheduleRun> {
    const workflowId = tickWorkflowId(record.id, tick);
    await client.start(record.spec.workflow, record.spec.input, { id: workflowId, searchAttributes: { scheduleId: record.id } });
    options.crashPoint?.("schedule-started-before-record");
    return { tick: iso(tick), workflowId, startedAt: iso(clock.now()), trigger };
  }

  /** The record after handling a due tick, or "stale" (drop the message). Effects done before it returns. */
  async function onTick(record: ScheduleRecord, msg: TickMessage, now: number): Promise<ScheduleRecord | "stale" | "wait"> {
    const { spec } = record;
    const state = { ...record.state };
    if (spec.paused || state.nextTick === null) return "stale";
    // Published before the record names it (store.ts, "The chain"): its writer may not have written yet.
    if (msg.tick > Date.parse(state.nextTick)) return "wait";
    if (msg.tick < Date.parse(state.nextTick)) return "stale";
    const skip = (entry: Omit<SkippedTicks, "at">) => {
      state.skipped = pushRecent(state.skipped, { ...entry, at: iso(now) });
      state.skippedCount += entry.count;
    };
    let next: number | undefined;
    if (now - msg.fireAt > spec.catchupWindowMs) {
      // Missed (everything was down): this tick and every other too old for the window are
      // skipped at once; the chain resumes at the first tick that may still be within it.
      const resume = nextTick(spec, Math.max(msg.tick, now - spec.catchupWindowMs - spec.jitterMs - 1));
      const until = resume ?? now;
      const count = countTicks(spec, msg.tick, until - 1);
      const last = lastTickBefore(record, msg.tick, until);
      skip({ tick: iso(msg.tick), ...(count > 1 ? { until: iso(last) } : {}), count, reason: "missed" });
      state.lastTick = iso(last);
      next = resume;
      logger.warn(`schedule ${record.id}: ${count} tick(s) from ${iso(msg.tick)} missed by more than the catch-up window (${spec.catchupWindowMs} ms): skipped`);
    } else {
      next = nextTick(spec, msg.tick);
      state.lastTick = iso(msg.tick);
      const trigger = now - msg.fireAt > LATE_MS ? "catchup" : "schedule";
      const run = async (tick: number, how: ScheduleRun["trigger"]) => {
        let started: ScheduleRun;
        try {
          started = await startRun({ ...record, state }, tick, how);
        } catch (err) {
          // A start the client refuses (an input over limits.maxInputBytes) would be refused on
          // every retry: the tick is recorded as skipped, and the schedule goes on.
          if (!isRefusal(err)) throw err;
          logger.error(`schedule ${record.id}: the start of tick ${iso(tick)} was refused: ${(err as Error).message}`);
          skip({ tick: iso(tick), count: 1, reason: "refused" });
          return;
        }
        state.runs = pushRecent(state.runs, started);
        state.lastWorkflowId = started.workflowId;
        state.lastStartedAt = started.startedAt;
      };
      if (spec.overlap === "allow-all") await run(msg.tick, trigger);
      else if (state.buffered && !(await isRunning(state.lastWorkflowId, state.lastStartedAt))) {
        // buffer-one: the run before the buffered tick ended, and its recheck has not come yet.
        await run(Date.parse(state.buffered.tick), "buffered");
        state.buffered = { tick: iso(msg.tick), after: state.lastWorkflowId! };
        await publishTick(topology, record.id, spec, state.chain, msg.tick, "buffered");
      } else if (!(await isRunning(state.lastWorkflowId, state.lastStartedAt))) {
        await run(msg.tick, trigger);
      } else if (spec.overlap === "skip") {
        skip({ tick: iso(msg.tick), count: 1, reason: "overlap" });
      } else if (spec.overlap === "cancel-other") {
        await client.cancel(state.lastWorkflowId!, `schedule ${record.id}: overlap policy cancel-other, tick ${iso(msg.tick)} replaces it`);
        await run(msg.tick, trigger);
      } else if (state.buffered) {
        skip({ tick: iso(msg.tick), count: 1, reason: "buffer-full" });
      } else {
        state.buffered = { tick: iso(msg.tick), after: state.lastWorkflowId! };
        await publishTick(topology, record.id, spec, state.chain, msg.tick, "buffered");
      }
    }
    // The next tick's message before the record that names it (store.ts, "The chain").
    state.nextTick = next === undefined ? null : iso(next);
    if (next === undefined) delete state.tickSeq;
    else state.tickSeq = await publishTick(topology, record.id, spec, state.chain, next);
    options.crashPoint?.("schedule-next-before-record");
    return { ...record, state };
  }

  /** A buffered tick: started once the run it waits for ended; `wait` while it runs. */
  async function onBuffered(record: ScheduleRecord, msg: TickMessage): Promise<ScheduleRecord | "stale" | "wait"> {
    const state = { ...record.state };
    if (record.spec.paused) return "stale";
    if (!state.buffered || state.buffered.tick !== iso(msg.tick)) {
      // The record that names it may not be written yet (it moves lastTick to this tick).
      return !state.lastTick || Date.parse(state.lastTick) < msg.tick ? "wait" : "stale";
    }
    if (await isRunning(state.buffered.after, state.lastStartedAt)) return "wait";
    const started = await startRun(record, msg.tick, "buffered");
    state.runs = pushRecent(state.runs, started);
    state.lastWorkflowId = started.workflowId;
    state.lastStartedAt = started.startedAt;
    delete state.buffered;
    return { ...record, state };
  }

  /** The last tick in [from, before), for the "missed" record. */
  function lastTickBefore(record: ScheduleRecord, from: number, before: number): number {
    const { spec } = record;
    if (spec.everyMs !== undefined) {
      const anchor = spec.startAt ? Date.parse(spec.startAt) : 0;
      return Math.max(from, anchor + Math.floor((before - 1 - anchor) / spec.everyMs) * spec.everyMs);
    }
    const { ticks } = ticksBetween(spec, from, before - 1, 10_000);
    return ticks.at(-1) ?? from;
  }

  async function handle(msg: JsMsg): Promise<void> {
    let tick: TickMessage;
    try {
      tick = parseTickMessage(parseJson(msg.data));
    } catch (err) {
      await recordDeadLetter(topology, logger, { reason: "invalid_message", message: (err as Error).message, subject: msg.subject, data: msg.data });
      msg.ack();
      return;
    }
    const now = clock.now();
    if (tick.fireAt > now) {
      msg.nak(park(tick.fireAt - now));
      return;
    }
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await readSchedule(kv, tick.scheduleId);
      if (!stored || stored.record.state.chain !== tick.chain) {
        // No record names this chain. Its writer may be between the publish and the record's
        // write (a create, update or unpause whose first tick is due at once: acked here, the
        // chain had no message, and the schedule never ticked): looked at again while the message
        // is young. Else the schedule was deleted or moved to a new chain: the message is nobody's.
        if (mayBeNamedSoon(msg)) return msg.nak(park(recheckDelay(msg)));
        return msg.ack();
      }
      const outcome = tick.kind === "tick" ? await onTick(stored.record, tick, now) : await onBuffered(stored.record, tick);
      if (outcome === "stale") return msg.ack();
      if (outcome === "wait") return msg.nak(park(recheckDelay(msg)));
      if (await writeSchedule(kv, outcome, stored.revision)) return msg.ack();
      // Lost the CAS: someone else moved the schedule on (the same tick elsewhere, an update). Re-read.
    }
    msg.nak(1_000);
  }

  async function run(): Promise<void> {
    const consumer = await topology.js.consumers.get(topology.names.scheduleTicksStream, topology.names.schedulerConsumer);
    messages = await consumer.consume({ max_messages: 100, expires: PULL_EXPIRES_MS });
    for await (const msg of messages) {
      handle(msg).catch((err) => {
        logger.warn(`schedule tick on ${msg.subject} could not be handled yet: ${(err as Error)?.message ?? err}`);
        try {
          msg.nak(1_000);
        } catch {
          /* redelivered after the ack wait */
        }
      });
    }
  }

  async function recoverOnce(): Promise<number> {
    const leases = await options.leases();
    const lease = await acquireFleetLease(leases, SCHEDULES_RECOVERY_LEASE_KEY, options.holder, RECOVERY_LEASE_MS, Date.now());
    if (!lease.held) return 0;
    let republished = 0;
    for await (const id of await kv.keys()) {
      const stored = await readSchedule(kv, id).catch(() => undefined);
      if (!stored) continue;
      const { record } = stored;
      if (record.spec.paused || record.state.nextTick === null) continue;
      if (await tickParked(record)) continue;
      const seq = await publishTick(topology, id, record.spec, record.state.chain, Date.parse(record.state.nextTick));
      await writeSchedule(kv, { ...record, state: { ...record.state, tickSeq: seq } }, stored.revision);
      republished += 1;
    }
    if (republished > 0) logger.info(`schedules: re-published the next tick of ${republished} schedule(s) that had none`);
    return republished;
  }

  /** Whether the message of the record's next tick is in the stream (by its recorded sequence). */
  async function tickParked(record: ScheduleRecord): Promise<boolean> {
    if (record.state.tickSeq === undefined) return false;
    try {
      const stored = await topology.jsm.streams.getMessage(topology.names.scheduleTicksStream, { seq: record.state.tickSeq });
      if (!stored) return false;
      const message = stored.json<TickMessage>();
      return message.chain === record.state.chain && iso(message.tick) === record.state.nextTick;
    } catch {
      return false; // no message at that sequence
    }
  }

  return {
    async start() {
      loop = run().catch((err) => logger.error(`schedule loop ended: ${(err as Error)?.stack ?? err}`));
      recovery = recoverOnce().catch((err) => {
        logger.warn(`schedules recovery pass failed (the next runtime start retries): ${(err as Error)?.message ?? err}`);
        return 0;
      });
    },
    async stop() {
      await recovery;
      await drainThenStop(messages);
      await topology.jsm.consumers.info(topology.names.scheduleTicksStream, topology.names.schedulerConsumer).catch(() => undefined);
      await loop;
      await releaseFleetLease(await options.leases(), SCHEDULES_RECOVERY_LEASE_KEY, options.holder).catch(() => undefined);
    },
    recover: () => recoverOnce(),
  };
}

/** The delay before a message that has to wait is looked at again: doubling with its deliveries. */
function recheckDelay(msg: JsMsg): number {
  return Math.min(BUFFER_RECHECK_MIN_MS * 2 ** Math.min(msg.info.deliveryCount - 1, 10), BUFFER_RECHECK_MAX_MS);
}

/**
 * Whether a tick message that no record names may still be named: published less than
 * UNNAMED_TICK_GRACE_MS ago (by the stream's clock, against ours) and seen only a few times, so a
 * stale message is dropped within seconds whatever the clocks say.
 */
function mayBeNamedSoon(msg: JsMsg): boolean {
  const publishedAt = msg.info.timestampNanos / 1e6;
  return Date.now() - publishedAt < UNNAMED_TICK_GRACE_MS && msg.info.deliveryCount <= UNNAMED_TICK_DELIVERIES;
}

function isRefusal(err: unknown): boolean {
  const code = err instanceof JetflowError ? err.code : "";
  return code === "WF_INPUT_TOO_LARGE" || /^WF_INVALID_[A-Z_]+$/.test(code);
}

/** A tick message from the wire; throws a coded ProtocolError (or the id's ValidationError) naming what is wrong. */
export function parseTickMessage(body: unknown): TickMessage {
  const m = body as Partial<TickMessage> | null;
  if (!m || typeof m !== "object" || Array.isArray(m)) throw new ProtocolError("schedule tick: not a JSON object");
  if (typeof m.chain !== "string") throw new ProtocolError("schedule tick: chain must be a string");
  validateScheduleId(m.scheduleId);
  if (m.kind !== "tick" && m.kind !== "buffered") throw new ProtocolError(`schedule tick: kind must be "tick" or "buffered", got ${typeof m.kind === "string" ? JSON.stringify((m.kind as string).slice(0, 40)) : typeof m.kind}`);
  if (!Number.isFinite(m.tick) || !Number.isFinite(m.fireAt)) throw new ProtocolError("schedule tick: tick and fireAt must be epoch milliseconds");
  return m as TickMessage;
}
