/**
 * The schedules bucket (WORKFLOW_SCHEDULES, key `<scheduleId>`) and the tick messages of
 * WORKFLOW_SCHEDULE_TICKS: the records other programs read and write (docs/protocol.md,
 * "Schedules"). One KV value per schedule holds both its spec and its progress, so one CAS on its
 * revision decides a tick, an update or a pause against each other.
 *
 * The chain: a schedule's next tick is one message on the tick stream, parked until due
 * (scheduler.ts). The record names it (`state.chain`, `state.nextTick`); a message that is not the
 * one the record names is stale and dropped. Whoever moves a schedule on publishes the message of
 * its new next tick first and then writes the record, so the tick the record names always has a
 * message. A write that loses its CAS leaves a message nobody names: dropped when due.
 */
import { randomUUID } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { isWrongLastSequence } from "../orchestrator/state-store.js";
import { encode } from "../protocol.js";
import type { Topology } from "../nats/topology.js";
import { dueAt } from "./fire-times.js";
import type { ScheduleSpec } from "./spec.js";

/** Runs and skipped ticks kept in a record (the most recent). */
export const RECENT_KEPT = 10;

export type RunTrigger = "schedule" | "catchup" | "buffered" | "trigger" | "backfill";

export interface ScheduleRun {
  /** The tick (ISO), or the time of a manual trigger. */
  tick: string;
  workflowId: string;
  /** When it was started (ISO). */
  startedAt: string;
  trigger: RunTrigger;
}

export interface SkippedTicks {
  /** The first skipped tick (ISO); with `count` > 1, the last is `until`. */
  tick: string;
  until?: string;
  count: number;
  /** "refused": the client refused the start (an input over limits.maxInputBytes). */
  reason: "overlap" | "missed" | "buffer-full" | "refused";
  /** When it was decided (ISO). */
  at: string;
}

export interface ScheduleProgress {
  /** Names the current chain of tick messages; a new one on create, update and unpause. */
  chain: string;
  /** The next tick (ISO) whose message is parked, or null when the schedule ended (endAt). */
  nextTick: string | null;
  /** Stream sequence of that message (for deleting it early, and the recovery pass's check). */
  tickSeq?: number;
  /** The last tick handled (ran, skipped or buffered). */
  lastTick?: string;
  /** The workflow started last (any trigger), for the overlap policy. */
  lastWorkflowId?: string;
  lastStartedAt?: string;
  /** overlap "buffer-one": a tick waiting for `after` to end. */
  buffered?: { tick: string; after: string };
  runs: ScheduleRun[];
  skipped: SkippedTicks[];
  /** Ticks skipped since the schedule was created. */
  skippedCount: number;
}

export interface ScheduleRecord {
  id: string;
  spec: ScheduleSpec;
  /** "code": declared in functions/schedules.ts and kept in line by deploys; "api": created by a client or `wf schedule`. */
  source: "api" | "code";
  createdAt: string;
  updatedAt: string;
  state: ScheduleProgress;
}

/** On the tick stream, subject `workflow.schedule.<scheduleId>`. */
export interface TickMessage {
  scheduleId: string;
  chain: string;
  kind: "tick" | "buffered";
  /** The tick (epoch ms). */
  tick: number;
  /** When it is due (epoch ms): tick + jitter. */
  fireAt: number;
}

export const TICK_MSG_ID = (m: Pick<TickMessage, "scheduleId" | "chain" | "kind" | "tick">) => `schedule/${m.scheduleId}/${m.chain}/${m.kind}/${m.tick}`;

export const newChain = (): string => randomUUID().slice(0, 8);

export interface StoredSchedule {
  record: ScheduleRecord;
  revision: number;
}

export async function readSchedule(kv: KV, id: string): Promise<StoredSchedule | undefined> {
  const entry = await kv.get(id);
  if (!entry || entry.operation !== "PUT" || entry.length === 0) return undefined;
  return { record: entry.json<ScheduleRecord>(), revision: entry.revision };
}

/** Write by CAS on `revision` (0: create). Resolves false when another writer came first. */
export async function writeSchedule(kv: KV, record: ScheduleRecord, revision: number): Promise<boolean> {
  try {
    if (revision === 0) await kv.create(record.id, JSON.stringify(record));
    else await kv.update(record.id, JSON.stringify(record), revision);
    return true;
  } catch (err) {
    if (isWrongLastSequence(err) || /exists/i.test((err as Error).message)) return false;
    throw err;
  }
}

/** Park the message of a tick; resolves with its stream sequence (the original's, for a duplicate). */
export async function publishTick(topology: Topology, scheduleId: string, spec: ScheduleSpec, chain: string, tick: number, kind: TickMessage["kind"] = "tick"): Promise<number> {
  const message: TickMessage = { scheduleId, chain, kind, tick, fireAt: kind === "tick" ? dueAt(scheduleId, spec, tick) : tick };
  const ack = await topology.js.publish(topology.names.scheduleTickSubject(scheduleId), encode(message), { msgID: TICK_MSG_ID(message) });
  return ack.seq;
}

/** Delete a parked tick message by its sequence (never by subject: see orchestrator/parked-timers.ts). Best effort. */
export function deleteTickMessage(topology: Topology, seq: number | undefined): void {
  if (seq === undefined) return;
  try {
    topology.nc.publish(`$JS.API.STREAM.MSG.DELETE.${topology.names.scheduleTicksStream}`, JSON.stringify({ seq, no_erase: true }));
  } catch {
    /* connection closing: the message is dropped as stale when due */
  }
}

/** Keep the most recent RECENT_KEPT. */
export function pushRecent<T>(list: T[], item: T): T[] {
  return [...list, item].slice(-RECENT_KEPT);
}
