/** Small statistics over millisecond samples. */

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
/** The middle item by `key` (the upper one of an even count). */
export function medianBy<T>(items: readonly T[], key: (item: T) => number): T {
  if (items.length === 0) throw new Error("medianBy: no items");
  return [...items].sort((a, b) => key(a) - key(b))[Math.floor(items.length / 2)]!;
}

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function mean(samples: readonly number[]): number {
  return samples.length === 0 ? NaN : samples.reduce((a, b) => a + b, 0) / samples.length;
}

export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export interface LatencySummary {
  n: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  mean_ms: number;
  max_ms: number;
}

export function summarize(samples: readonly number[]): LatencySummary {
  return {
    n: samples.length,
    p50_ms: round(percentile(samples, 50)),
    p90_ms: round(percentile(samples, 90)),
    p99_ms: round(percentile(samples, 99)),
    mean_ms: round(mean(samples)),
    max_ms: round(samples.length ? Math.max(...samples) : NaN),
  };
}

/** Run `total` jobs with at most `concurrency` at once; job(i) gets its index. */
export async function runPool(total: number, concurrency: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const lane = async () => {
    while (failure === undefined && next < total) {
      const i = next++;
      try {
        await job(i);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(total, concurrency) }, lane));
  if (failure !== undefined) throw failure;
}

export { sleep, withTimeout } from "../../test/helpers/wait.js";

