/**
 * One activity attempt's clock and its escape hatch: the timeout that aborts it (with
 * ActivityTimeoutError as the signal's reason), and the race that lets the worker stop waiting
 * for an activity that ignores its signal (a hung attempt gives its slot back; its late result is
 * dropped).
 */
import { ActivityTimeoutError } from "../errors.js";
import type { TaskMessage } from "../protocol.js";

/** Node's timers take at most 2^31-1 ms (24.8 days); a longer delay fires after 1 ms, or throws past 2^32-1. */
const MAX_TIMER_MS = 2_147_483_647;

/** Abort the attempt when the task's timeout passes, however long it is (Node timers cap at 24.8 days). */
export function armTimeout(attempt: AbortController, task: TaskMessage): { clear(): void } {
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

/** Settle with the promise, or reject with the signal's reason when it fires first (a hung activity). */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

