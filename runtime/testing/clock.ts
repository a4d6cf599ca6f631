/**
 * The engine's time in a test environment: the wall clock plus an offset that only grows.
 * Time keeps flowing (a 200 ms retry backoff still fires by itself); skipping adds to the offset,
 * so the orchestrator's decisions (ctx.now(), sleep and backoff due times, deadlines) and the
 * timer service's "is it due?" jump together.
 */
import type { Clock } from "../timers.js";

/**
 * Wall-time cap of a timer's park while the clock can jump (timers.ts Clock.maxParkMs): a timer
 * skipped over fires within about this long. Lower costs a redelivery per parked timer this often.
 */
export const DEFAULT_TEST_MAX_PARK_MS = 25;

export interface TestClock extends Clock {
  now(): number;
  /** Milliseconds skipped so far. */
  readonly skippedMs: number;
  /** Move time forward by `ms` (never back). */
  advance(ms: number): void;
  /** Move time forward to `time` (epoch ms); no-op if it is past already. */
  advanceTo(time: number): void;
}

export function createTestClock(options: { maxParkMs?: number } = {}): TestClock {
  let offset = 0;
  const clock: TestClock = {
    maxParkMs: options.maxParkMs ?? DEFAULT_TEST_MAX_PARK_MS,
    now: () => Date.now() + offset,
    get skippedMs() {
      return offset;
    },
    advance(ms) {
      if (ms > 0) offset += ms;
    },
    advanceTo(time) {
      clock.advance(time - clock.now());
    },
  };
  return clock;
}
