/**
 * Releases are not crashes. worker.maxDeliveries counts the deliveries of a task that ended with
 * no completion (its runtime died or hung). JetStream's delivery count also counts every NAK, and
 * a worker NAKs a task it could not record (a KV hiccup: a leader election of a few seconds), is
 * shutting down, or has no code for: five such releases in a row would fail a healthy step with
 * ActivityCrashLoopError.
 *
 * So a worker does not NAK a task it releases: it re-publishes the task (same subject and body)
 * with the header `Jetflow-Crashes: <crashes so far>` and then acks the delivery. The copy starts
 * at delivery 1; its crashes are the header's plus its own deliveries that ended without an ack.
 * The copy also says `Jetflow-Released: 1`, so it is treated as a redelivery (the worker that gets
 * it checks whether the attempt is recorded already, as it would after a NAK).
 *
 * Failure windows: a runtime that dies while it holds a release (its delay) never acks: the
 * delivery comes back after the ack wait and counts as the crash it is. A copy published whose
 * original's ack was lost: both run (at-least-once; the orchestrator records the first completion
 * of an attempt), and a second release of the same delivery has the same Nats-Msg-Id. If the copy
 * cannot be published (NATS down), the delivery is NAK'd as before: it is counted, rarely.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { setTimeout as sleep } from "node:timers/promises";
import type { Topology } from "../nats/topology.js";

/** Deliveries of a task (and of the copies it was released as) that ended without a completion. */
export const CRASHES_HEADER = "Jetflow-Crashes";
/** Present on a released copy: its task was delivered before. */
export const RELEASED_HEADER = "Jetflow-Released";

/** What the worker pool needs of a task's message (a subset of JsMsg). */
export interface ReleasableDelivery {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Delivered before: by JetStream, or as an earlier copy of this task. */
  readonly redelivered: boolean;
  /** Crashes so far plus this delivery: what worker.maxDeliveries is checked against. */
  readonly info: { deliveryCount: number };
  ack(): void;
  /** Release the task (after `delayMs`): re-published, not counted as a delivery. */
  nak(delayMs?: number): void;
  /**
   * Give this very message back (a plain NAK, counted as a delivery): for a message that may be a
   * continued step's lease, which its holder acks by this message (worker/leases.ts). A copy would
   * leave the holder's chain without a lease.
   */
  keep(delayMs?: number): void;
  working(): void;
}

export interface TaskReleaser {
  wrap(msg: JsMsg): ReleasableDelivery;
  /** Resolves when every release in flight is published (stop() waits for it). */
  settled(): Promise<void>;
}

/**
 * `stopping`: once it fires, a release waits no longer for its delay (the task goes to another
 * runtime now). `ackWaitMs`: a release that waits keeps its delivery alive meanwhile.
 */
export function createTaskReleaser(options: { topology: Topology; ackWaitMs: number; stopping: AbortSignal }): TaskReleaser {
  const { topology } = options;
  const inFlight = new Set<Promise<void>>();

  async function release(msg: JsMsg, crashes: number, delayMs: number | undefined): Promise<void> {
    try {
      if (delayMs && delayMs > 0 && !options.stopping.aborted) {
        const keepAlive = setInterval(() => msg.working(), Math.max(100, Math.floor(options.ackWaitMs / 3)));
        try {
          msg.working();
          await sleep(delayMs, undefined, { signal: options.stopping }).catch(() => undefined);
        } finally {
          clearInterval(keepAlive);
        }
      }
      const h = headers();
      h.set(CRASHES_HEADER, String(crashes));
      h.set(RELEASED_HEADER, "1");
      await topology.js.publish(msg.subject, msg.data, { headers: h, msgID: `release/${msg.seq}` });
      msg.ack();
    } catch {
      try {
        msg.nak(delayMs);
      } catch {
        /* connection gone: redelivered after the ack wait */
      }
    }
  }

  return {
    wrap(msg) {
      const before = Number(msg.headers?.get(CRASHES_HEADER) || 0) || 0;
      // This delivery's predecessors of the same message ended without an ack: crashes.
      const crashes = before + msg.info.deliveryCount - 1;
      let settled = false;
      return {
        subject: msg.subject,
        data: msg.data,
        redelivered: msg.redelivered || msg.headers?.get(RELEASED_HEADER) === "1",
        info: { deliveryCount: crashes + 1 },
        ack() {
          if (settled) return;
          settled = true;
          msg.ack();
        },
        nak(delayMs) {
          if (settled) return;
          settled = true;
          const p = release(msg, crashes, delayMs);
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        },
        keep(delayMs) {
          if (settled) return;
          settled = true;
          try {
            msg.nak(delayMs);
          } catch {
            /* connection gone: redelivered after the ack wait */
          }
        },
        working() {
          if (!settled) msg.working();
        },
      };
    },
    async settled() {
      await Promise.allSettled([...inFlight]);
    },
  };
}
