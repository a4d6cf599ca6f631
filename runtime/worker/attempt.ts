/**
 * One activity attempt: its abort state (aborted with the reason: its timeout, the workflow's
 * cancellation, the end of the shutdown grace period), its clock (the timeout that aborts it with
 * ActivityTimeoutError), and its escape hatch (the race that lets the worker stop waiting for an
 * activity that ignores its signal: a hung attempt gives its slot back; its late result is dropped).
 */
import { ActivityTimeoutError } from "../errors.js";
import type { TaskMessage } from "../protocol.js";

/** Node's timers take at most 2^31-1 ms (24.8 days); a longer delay fires after 1 ms, or throws past 2^32-1. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The AbortSignal the activity sees (ctx.signal) is made when it is first read, already aborted
 * if the attempt is: most activities never read it, and an AbortController (an EventTarget) per
 * attempt and a listener added and removed on it cost about 4 µs on every step of every workflow.
 */
export class Attempt {
  aborted = false;
  reason: unknown;
  private controller: AbortController | undefined;
  private rejectRace: ((reason: unknown) => void) | undefined;

  constructor(
    readonly workflowId: string,
    readonly step: string,
    readonly runId: string | undefined,
  ) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** The first abort wins; the activity's own listeners run first, then the race rejects. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    this.rejectRace?.(reason);
  }

  /** Settle with the promise, or reject with the reason when the attempt is aborted first (a hung activity). */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.aborted) return Promise.reject(this.reason);
    return new Promise<T>((resolve, reject) => {
      this.rejectRace = reject;
      promise.then(
        (value) => {
          this.rejectRace = undefined;
          resolve(value);
        },
        (err: unknown) => {
          this.rejectRace = undefined;
          reject(err);
        },
      );
    });
  }
}

/** Abort the attempt when the task's timeout passes, however long it is (Node timers cap at 24.8 days). */
export function armTimeout(attempt: Pick<Attempt, "abort">, task: TaskMessage): { clear(): void } {
  const deadline = Date.now() + task.timeoutMs;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    const left = deadline - Date.now();
    if (left <= 0) attempt.abort(new ActivityTimeoutError(task.timeoutMs));
    else timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
  };
  timer = setTimeout(arm, Math.max(1, Math.min(Math.round(task.timeoutMs), MAX_TIMER_MS)));
  return { clear: () => clearTimeout(timer) };
}
