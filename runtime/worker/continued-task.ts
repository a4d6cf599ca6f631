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
  readonly data: Uint8Array;
  constructor(
    readonly subject: string,
    readonly task: TaskMessage,
    private readonly lease: TaskDelivery,
    /** The task whose message `lease` is (the first of the chain), as the state records it. */
    readonly leaseRef: LeaseRef,
  ) {
    // Through JSON like a published task: the activity gets its own copy of the input.
    this.data = encode(task);
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

