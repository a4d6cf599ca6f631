/**
 * Timers never fire early (docs/guarantees.md), even when the timer service that fired one has a
 * clock running ahead of the orchestrator's. A fired timer whose `fireAt` is still ahead of the
 * orchestrator's `now` is parked again for the difference, measured on the NATS server's clock
 * (the timer service NAKs it for `parkMs`), so a second fast clock cannot fire it early again.
 */
import type { Topology } from "../nats/topology.js";
import type { TimerMessage } from "../protocol.js";
import { publishTimer } from "./outbox.js";

/** How early a fired timer is by `now`, in ms (0: due). */
export function earlyByMs(timer: TimerMessage, now: number): number {
  return Math.max(0, timer.fireAt - now);
}

/**
 * Park `timer` again for `parkMs`. `firedSeq`, the early fired event's stream sequence, makes the
 * new parking's Nats-Msg-Ids unique and stable: a redelivery of the same early event re-parks
 * once (deduplicated), and the next firing is not dropped as a duplicate of the early one.
 */
export async function reparkTimer(topology: Topology, timer: TimerMessage, parkMs: number, firedSeq: number): Promise<void> {
  await publishTimer(topology, { ...timer, repark: firedSeq, parkMs: Math.ceil(parkMs) });
}
