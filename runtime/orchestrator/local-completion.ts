/**
 * Completions from this runtime's own worker, applied by its orchestrator in-process (no round
 * trip through WORKFLOW_EVENTS: the state CAS that records one is its durable record), and what
 * the worker is told to do with the task's message afterwards. A LocalCompletion stands in for an
 * event message in apply(): its ack/nak/... only record the outcome the worker acts on.
 */
import type { JsMsg } from "@nats-io/jetstream";
import type { LeaseRef } from "../state.js";
import type { TaskMessage } from "../protocol.js";

/** Where a completion handed to applyLocalCompletion comes from. */
export interface LocalSource {
  /** The task had been delivered before. */
  redelivered: boolean;
  /** The task was a continuation: its message is the previous step's, held as its lease. */
  leased: boolean;
  /** The task whose message the worker holds: its own, or (leased) the first of its chain. */
  lease: LeaseRef;
  /** The offer to run the next step here, if the worker makes one. */
  continuation?: Continuation | undefined;
}

/**
 * The worker's offer to run the next step of the workflow whose completion it hands over, in this
 * process, without publishing its task (it waits for a free slot there, holding the lease).
 */
export interface Continuation {
  /** The runtime instance that would hold the step (its `continued`; worker/leases.ts). */
  holder: string;
  /** The task whose message would be the step's lease. */
  lease: LeaseRef;
  /** This runtime's worker runs that activity type, and is not stopping. */
  hosts(activityType: string): boolean;
  /**
   * Hold `step` of `workflowId` from now on, before the write that marks it continued: a repair
   * that reads that write and asks the holder (worker/leases.ts) must be told "held" even while
   * the step has not started yet (told "free", it published the step, and the step ran twice).
   * The reservation then starts the step, or is cancelled when the write fails or does not
   * continue it.
   */
  reserve(workflowId: string, step: string): ContinuationReservation;
}

/** A continued step held by its runtime from the decision on; start() or cancel() settles it (once). */
export interface ContinuationReservation {
  start(task: TaskMessage): void;
  cancel(): void;
}

/**
 * applied: the state records the completion and its effects are published: ack the task.
 * continued: the same, except one next task, which the Continuation started instead of it being
 *   published: the task's message is now that step's lease (docs/protocol.md, "Continuations"):
 *   the continuation acks it (or releases it) when it ends.
 * declined: nothing was written (stopping, unknown workflow, blocked, CAS conflicts): publish the
 *   completion as an event, the ordinary path.
 * released: (a continuation) the state no longer knows the step: it went back, a NATS crash lost
 *   the write that scheduled it. The lease must not be acked: released, it brings the previous
 *   step back.
 * held: the state already records it, and a continued step whose lease is the worker's message
 *   still runs on its holder (worker/leases.ts): the message may be that lease, so it must not be
 *   acked; the worker releases it with a delay, and the holder acks it when the chain ends.
 * retry: it failed part way; the state may record it while its effects are not published (NATS
 *   went away between the two), or may not record it at all. The worker publishes the completion
 *   as an event marked with REPAIR_HEADER: applied if it was not recorded, and if it was, its
 *   delivery re-publishes every pending effect. The activity's result is kept either way (releasing
 *   the task instead ran it again when the write had not happened). (A continuation keeps trying
 *   in-process instead: see keepRecording in worker/pool.ts.)
 */
export type LocalOutcome = "applied" | "continued" | "declined" | "retry" | "released" | "held";

/** What apply() needs of an event: a JetStream message, or a completion from this runtime's worker. */
export type EventMessage = Pick<JsMsg, "subject" | "redelivered" | "ack" | "nak"> & { info: { deliveryCount: number } };

/**
 * A completion handed over in-process by this runtime's worker. ack() means the state now records
 * it (or already did); nak() means "not here": the worker publishes it as an event instead.
 */
export class LocalCompletion implements EventMessage {
  outcome: "pending" | "applied" | "continued" | "declined" | "released" | "held" = "pending";
  readonly info: { deliveryCount: number };
  readonly redelivered: boolean;
  readonly leased: boolean;
  readonly lease: LeaseRef;
  readonly continuation: Continuation | undefined;
  constructor(
    readonly subject: string,
    source: LocalSource,
  ) {
    this.redelivered = source.redelivered;
    this.leased = source.leased;
    this.lease = source.lease;
    this.continuation = source.continuation;
    this.info = { deliveryCount: source.redelivered ? 2 : 1 };
  }
  /** Not recorded, and the lease must not be acked: the worker releases it (see LocalOutcome "released"). */
  release(): void {
    if (this.outcome === "pending") this.outcome = "released";
  }
  ack(): void {
    if (this.outcome === "pending") this.outcome = "applied";
  }
  /** Recorded already, and the worker's message may be a live continuation's lease (see LocalOutcome "held"). */
  held(): void {
    if (this.outcome === "pending") this.outcome = "held";
  }
  /** Recorded, and a next step runs here holding the task's message (see Continuation). */
  continued(): void {
    if (this.outcome === "pending") this.outcome = "continued";
  }
  nak(): void {
    if (this.outcome === "pending") this.outcome = "declined";
  }
}

export function isJsMsg(msg: EventMessage): msg is JsMsg {
  return !(msg instanceof LocalCompletion);
}
