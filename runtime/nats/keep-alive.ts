/**
 * Messages in hand, kept alive. JetStream redelivers a message once its consumer's ack wait has
 * passed since delivery (or since the last in-progress ack), unless it was acked. The ack waits
 * are short (4 s by default) so that the work of a runtime that died is taken over within seconds
 * (failover, docs/ARCHITECTURE.md); what a live runtime holds longer (an activity running, a
 * continuation's lease, an event queued behind others of its workflow) is kept alive here: one
 * timer per holder sends an in-progress ack to each message held longer than one beat.
 *
 * The beat is a quarter of the ack wait and at most 1 s; a message gets its in-progress ack at
 * the first beat after it has been held half a beat, so the acks of one message are at most 1.5
 * beats apart. The consumer is shared and the last runtime to start sets its ack wait, so the
 * holder also tells the keep-alive the ack wait the consumer reports (observeAckWait): a shorter
 * one than this runtime's setting tightens the beat. Cost: one timer per holder; one small message
 * per beat per message held longer than half a beat, none for the many settled sooner.
 *
 * The same timer notices a blocked event loop (a CPU-bound activity or a long synchronous call):
 * when it fires more than half an ack wait late, no in-progress ack went out meanwhile, so what
 * this process held may have been redelivered to another runtime and run there too. It says so,
 * and what to do about it, at most once a minute.
 */
import type { Logger } from "../logger.js";

/** Anything with JetStream's in-progress ack: a JsMsg, or a delivery wrapping one. */
export interface Workable {
  working(): void;
}

const MAX_BEAT_MS = 1_000;
const MIN_BEAT_MS = 50;
const LAG_WARNING_EVERY_MS = 60_000;

/** The beat for an ack wait: a quarter of it, at most 1 s (and at least 50 ms). */
export function beatOf(ackWaitMs: number): number {
  return Math.max(MIN_BEAT_MS, Math.min(MAX_BEAT_MS, Math.floor(ackWaitMs / 4)));
}

export class KeepAlive<M extends Workable = Workable> {
  /** Message → when it was taken in hand or last sent an in-progress ack (ms). */
  private readonly held = new Map<M, number>();
  private timer: ReturnType<typeof setInterval> | undefined;
  /** The shortest ack wait known for these messages: the runtime's setting, or what a consumer reports. */
  private ackWaitMs: number;
  private lastBeatAt = 0;
  private lastLagWarningAt = -Infinity;

  /**
   * `what`: what the messages are, for the warning ("activity tasks"); `setting`: the config key
   * of their ack wait, named in it.
   */
  constructor(private readonly options: { ackWaitMs: number; logger: Logger; what: string; setting: string }) {
    this.ackWaitMs = options.ackWaitMs;
  }

  private get beatMs(): number {
    return beatOf(this.ackWaitMs);
  }

  /** Keep `msg` alive until `release` (call it once the message is acked, NAKed or given up). */
  hold(msg: M): void {
    this.held.set(msg, Date.now());
  }

  release(msg: M): void {
    this.held.delete(msg);
  }

  start(): void {
    if (this.timer) return;
    this.lastBeatAt = Date.now();
    this.timer = setInterval(() => this.beat(), this.beatMs);
    this.timer.unref();
  }

  /**
   * The ack wait in force on the consumer (from its info): a shorter one than the runtime's own
   * setting (another runtime set it) tightens the beat, so that this runtime's messages stay alive.
   */
  observeAckWait(ackWaitMs: number): void {
    if (ackWaitMs >= this.ackWaitMs) return;
    const beatBefore = this.beatMs;
    this.ackWaitMs = ackWaitMs;
    if (this.timer && this.beatMs !== beatBefore) {
      this.stop();
      this.start();
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One beat: in-progress acks for what has been held half a beat or longer. */
  private beat(): void {
    const now = Date.now();
    const late = now - this.lastBeatAt - this.beatMs;
    this.lastBeatAt = now;
    if (late > this.ackWaitMs / 2 && this.held.size > 0) this.warnLag(late);
    for (const [msg, since] of this.held) {
      if (now - since < this.beatMs / 2) continue;
      try {
        msg.working();
      } catch {
        /* connection closing: redelivered after the ack wait, as for a dead runtime */
      }
      this.held.set(msg, now);
    }
  }

  private warnLag(lateMs: number): void {
    const now = Date.now();
    if (now - this.lastLagWarningAt < LAG_WARNING_EVERY_MS) return;
    this.lastLagWarningAt = now;
    this.options.logger.warn(
      `the event loop was blocked for ${(lateMs / 1000).toFixed(1)} s while this runtime held ${this.held.size} ${this.options.what}; ` +
        `past ${this.options.setting} (${this.ackWaitMs} ms) JetStream gives them to another runtime, which may run them too. ` +
        `Move CPU-bound work off the event loop (a worker thread or a child process), or raise ${this.options.setting}.`,
    );
  }
}
