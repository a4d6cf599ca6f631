/**
 * Durable timers: retry backoffs, sleeps and workflow timeouts. A timer is a message on
 * WORKFLOW_TIMERS (alone, or with others in a batch), written before anything relies on it. Any runtime's timer service pulls it and,
 * until it is due, parks it with a NAK delay; when due, it publishes the "fired" event to the
 * orchestrator and acks. Timers have their own stream and consumer (unlimited ack-pending) because
 * a parked message holds an ack-pending slot: on the events consumer, enough sleeping workflows
 * would stop all event delivery.
 */
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "./logger.js";
import type { Topology } from "./nats/topology.js";
import { encode, MSG_ID, parseJson, parseTimer, parseTimerBatch, type TimerMessage } from "./protocol.js";
import { recordDeadLetter } from "./dead-letters.js";
import { drainThenStop } from "./nats/drain.js";

/** Pull request lifetime of the timer consumer, as for the orchestrator's (see run()). */
const PULL_EXPIRES_MS = 5_000;

export interface TimerService {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface Clock {
  now(): number;
  /**
   * For a clock that jumps ahead (jetflow/testing's time skipping): park a timer at most this
   * long in wall time, then check it against now() again. NATS redelivers a NAK'd message after
   * the wall-time delay it was given, so without a cap a skipped-over timer would still wait.
   */
  maxParkMs?: number;
}

export const systemClock: Clock = { now: () => Date.now() };

export function createTimerService(options: { topology: Topology; logger: Logger; clock?: Clock; crashPoint?: (name: string) => void }): TimerService {
  const { topology } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger.child({ component: "timers" });
  let messages: ConsumerMessages | undefined;
  let loop: Promise<void> | undefined;

  async function handle(msg: JsMsg): Promise<void> {
    // One timer, or a batch of them parked together (orchestrator/timer-batches.ts): fired at once.
    let due: { fireAt: number; timers: TimerMessage[] };
    try {
      const body = parseJson(msg.data);
      if (msg.subject === topology.names.timerBatchSubject) {
        due = parseTimerBatch(body);
      } else {
        const timer = parseTimer(body);
        due = { fireAt: timer.fireAt, timers: [timer] };
      }
    } catch (err) {
      await recordDeadLetter(topology, logger, { reason: "invalid_message", message: (err as Error).message, subject: msg.subject, data: msg.data });
      msg.ack();
      return;
    }
    // A timer the orchestrator re-parked (it fired early by the orchestrator's clock) waits its
    // parkMs on the server's clock once, then fires: this clock may be the one running ahead.
    const parked = due.timers.length === 1 ? due.timers[0]!.parkMs : undefined;
    const wait = parked !== undefined ? (msg.info.deliveryCount === 1 ? parked : 0) : due.fireAt - clock.now();
    // Not before it is due, by this clock (a redelivery a millisecond early is parked again): the
    // orchestrator parks again a timer that arrives early by its own clock, and with one clock on
    // both sides that must not happen.
    if (wait > 0) {
      // A test clock that skips time (jetflow/testing) caps each park, so a skip is seen soon.
      msg.nak(parked !== undefined || clock.maxParkMs === undefined ? wait : Math.min(wait, clock.maxParkMs));
      return;
    }
    await Promise.all(
      due.timers.map((timer) => topology.js.publish(topology.names.timerFiredSubject(timer.workflowId, timer.key), encode(timer), { msgID: MSG_ID.fired(timer.workflowId, timer.key, timer.repark) })),
    );
    options.crashPoint?.("timer-fired-before-ack");
    msg.ack();
  }

  async function run(): Promise<void> {
    const consumer = await topology.js.consumers.get(topology.names.timersStream, topology.names.timersConsumer);
    // A short pull expiry, as for the orchestrator: a lost pull request costs seconds, not 30 s.
    messages = await consumer.consume({ max_messages: 500, expires: PULL_EXPIRES_MS });
    for await (const msg of messages) {
      handle(msg).catch((err) => {
        logger.warn(`timer on ${msg.subject} could not fire yet: ${(err as Error)?.message ?? err}`);
        try {
          msg.nak(1_000);
        } catch {
          /* redelivered after ack wait */
        }
      });
    }
  }

  return {
    async start() {
      loop = run().catch((err) => logger.error(`timer loop ended: ${(err as Error)?.stack ?? err}`));
    },
    async stop() {
      // Drain first, as the orchestrator does: timers already on their way are still parked or
      // fired here instead of waiting out the 30 s ack wait; then the server forgets our request.
      await drainThenStop(messages);
      await topology.jsm.consumers.info(topology.names.timersStream, topology.names.timersConsumer).catch(() => undefined);
      await loop;
    },
  };
}
