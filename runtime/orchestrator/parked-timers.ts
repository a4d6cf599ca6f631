/**
 * Timers of finished workflows do not stay parked. A timer message (a sleep, a retry backoff, a
 * deadline, alone or in a batch: timer-batches.ts) waits in WORKFLOW_TIMERS until it fires, NAK'd
 * with a delay; a workflow that ends first no longer needs it. This process remembers the
 * messages it stored and which workflows each still waits for, and deletes a message by its
 * sequence once all of them ended here.
 *
 * By sequence, never by subject: a purge with a subject filter on a work-queue stream with a live
 * consumer made nats-server lose other messages parked in that consumer (seen on 2.9.10: parked
 * timers of other workflows were never delivered again; chaos scenario 8 on 2.15.1 too). Deleting
 * one message by sequence leaves the consumer's other pending messages as they were (checked on
 * 2.9.10, 2.10.27 and 2.15.1).
 *
 * A clean-up hint, not a record: a workflow that ends in another runtime, or a process that dies,
 * leaves its timers to fire, and the orchestrator drops a timer of a finished workflow as it
 * always did. Memory: the unfired timers this process stored, about what is running here.
 */
import type { Topology } from "../nats/topology.js";

/** Entries whose fire time passed this long ago are forgotten (they fired, or will any moment). */
const FORGET_AFTER_MS = 60_000;
const SWEEP_EVERY_MS = 60_000;

export class ParkedTimers {
  private readonly bySeq = new Map<number, { fireAt: number; waiting: Set<string> }>();
  private readonly byWorkflow = new Map<string, Set<number>>();
  private lastSweep = Date.now();

  constructor(private readonly topology: Topology) {}

  /** A timer message is stored at `seq`: it waits for these workflows until `fireAt`. */
  stored(seq: number, fireAt: number, workflowIds: Iterable<string>): void {
    const waiting = new Set(workflowIds);
    this.bySeq.set(seq, { fireAt, waiting });
    for (const id of waiting) {
      let seqs = this.byWorkflow.get(id);
      if (!seqs) this.byWorkflow.set(id, (seqs = new Set()));
      seqs.add(seq);
    }
    if (Date.now() - this.lastSweep > SWEEP_EVERY_MS) this.forgetFired(Date.now());
  }

  /** A workflow ended: every stored message that waits only for finished workflows is deleted. */
  ended(workflowId: string): void {
    const seqs = this.byWorkflow.get(workflowId);
    if (!seqs) return;
    this.byWorkflow.delete(workflowId);
    for (const seq of seqs) {
      const timer = this.bySeq.get(seq);
      if (!timer) continue;
      timer.waiting.delete(workflowId);
      if (timer.waiting.size > 0) continue;
      this.bySeq.delete(seq);
      this.delete(seq);
    }
  }

  /** How many stored timer messages this process still tracks (tests, metrics). */
  get size(): number {
    return this.bySeq.size;
  }

  /** Delete without waiting for the answer: a lost delete only means the timer fires for nothing. */
  private delete(seq: number): void {
    try {
      this.topology.nc.publish(`$JS.API.STREAM.MSG.DELETE.${this.topology.names.timersStream}`, JSON.stringify({ seq, no_erase: true }));
    } catch {
      /* connection closing */
    }
  }

  private forgetFired(now: number): void {
    this.lastSweep = now;
    for (const [seq, timer] of this.bySeq) {
      if (timer.fireAt + FORGET_AFTER_MS > now) continue;
      this.bySeq.delete(seq);
      for (const id of timer.waiting) {
        const seqs = this.byWorkflow.get(id);
        seqs?.delete(seq);
        if (seqs?.size === 0) this.byWorkflow.delete(id);
      }
    }
  }
}

const byTopology = new WeakMap<Topology, ParkedTimers>();

/** This process's record of the timer messages it stored on `topology`. */
export function parkedTimersOf(topology: Topology): ParkedTimers {
  let parked = byTopology.get(topology);
  if (!parked) byTopology.set(topology, (parked = new ParkedTimers(topology)));
  return parked;
}
