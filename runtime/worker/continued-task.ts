/**
 * The message side of a continuation (orchestrator/local-completion.ts Continuation): a next step
 * that runs in this process without a task message of its own, and acts through its lease.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { encode, type TaskMessage } from "../protocol.js";
import type { LeaseRef } from "../state.js";

/** What running a task needs of its message: a JetStream delivery, or a continuation (below). */
export type TaskDelivery = Pick<JsMsg, "data" | "subject" | "redelivered" | "ack" | "nak" | "working"> & { info: { deliveryCount: number } };

/**
 * A next step run in this process without a task message of its own (see Continuation in
 * orchestrator/loop.ts). Its lease is the message of the task that came before it, kept unacked
 * (and kept alive) until the chain ends: if this runtime dies, that message is redelivered, its
 * completion is found recorded, and the runtime that got it re-publishes what the workflow waits
 * on, this step's task included.
 */
export class ContinuedTask implements TaskDelivery {
  readonly redelivered = false;
  readonly info = { deliveryCount: 1 };
  constructor(
    readonly subject: string,
    readonly task: TaskMessage,
    private readonly lease: TaskDelivery,
    /** The task whose message `lease` is (the first of the chain), as the state records it. */
    readonly leaseRef: LeaseRef,
  ) {}
  /** The task as its message would carry it; only read off the hot path (runTask uses ownTask()). */
  get data(): Uint8Array {
    return encode(this.task);
  }
  /**
   * The task to run, with the activity's own copy of its input, through JSON like a published
   * task's: the input is the state's (cached, and written again by the next step), which an
   * activity that changes its input must not touch. The other fields are strings and numbers.
   * (The whole task through bytes and back cost twice the time and allocations.)
   */
  ownTask(): TaskMessage {
    const { input } = this.task;
    return { ...this.task, input: input === undefined ? undefined : (JSON.parse(JSON.stringify(input)) as unknown) };
  }
  ack(): void {
    this.lease.ack();
  }
  nak(millis?: number): void {
    this.lease.nak(millis);
  }
  working(): void {
    this.lease.working();
  }
}

