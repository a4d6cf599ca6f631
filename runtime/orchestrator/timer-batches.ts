/**
 * Workflow deadlines, parked in batches. A workflow with a timeout needs a durable timer from its
 * start on, although almost none fires (the workflow ends first). One timer message per start cost
 * a publish, a delivery and a parked NAK each: 11 % of a runtime's throughput (bench/RESULTS.md).
 *
 * Group commit: deadlines decided while a batch is being stored go into the next one, so under
 * load one message carries many, and an idle runtime stores a lone deadline at once, as an
 * ordinary timer message. A start is acked only after its deadline is stored, so a runtime that
 * dies with deadlines in memory loses none: the starts are redelivered, and a redelivered start
 * re-publishes what its workflow waits on.
 *
 * A batch fires at the latest of its timers' times; timers more than MAX_SPREAD_MS apart go into
 * separate batches, so a deadline fires at most that much late.
 *
 * A batch whose workflows all ended is deleted before it fires (parked-timers.ts).
 */
import type { Topology } from "../nats/topology.js";
import type { TimerMessage } from "../protocol.js";
import { publishTimer, publishTimerBatch } from "./outbox.js";

export const MAX_SPREAD_MS = 50;
/** Timers per batch message (about 100 bytes each). */
const MAX_BATCH = 500;

interface Parked {
  timer: TimerMessage;
  stored(): void;
  failed(err: unknown): void;
}

export class TimerBatcher {
  private pending: Parked[] = [];
  private flushing = false;

  constructor(private readonly topology: Topology) {}

  /** Resolves once `timer` is stored in WORKFLOW_TIMERS (alone or in a batch); rejects if that failed. */
  park(timer: TimerMessage): Promise<void> {
    return new Promise<void>((stored, failed) => {
      this.pending.push({ timer, stored, failed });
      if (!this.flushing) {
        this.flushing = true;
        // The rest of this event-loop turn's decisions join the first batch.
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const taken = this.pending.splice(0);
      await Promise.all(batchesOf(taken).map((batch) => this.store(batch)));
    }
    this.flushing = false;
  }

  private async store(batch: Parked[]): Promise<void> {
    try {
      if (batch.length === 1) await publishTimer(this.topology, batch[0]!.timer);
      else await publishTimerBatch(this.topology, batch.map((p) => p.timer));
      for (const parked of batch) parked.stored();
    } catch (err) {
      for (const parked of batch) parked.failed(err);
    }
  }
}

/** Timers sorted by time, cut where one is more than MAX_SPREAD_MS after its batch's first or a batch is full. */
function batchesOf(parked: Parked[]): Parked[][] {
  parked.sort((a, b) => a.timer.fireAt - b.timer.fireAt);
  const batches: Parked[][] = [];
  let current: Parked[] = [];
  for (const p of parked) {
    if (current.length > 0 && (p.timer.fireAt - current[0]!.timer.fireAt > MAX_SPREAD_MS || current.length >= MAX_BATCH)) {
      batches.push(current);
      current = [];
    }
    current.push(p);
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
