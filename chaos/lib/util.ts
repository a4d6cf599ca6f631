/** Small helpers of the chaos suite: time, randomness, percentiles, waiting, logging. */

export { sleep, waitFor, withTimeout } from "../../test/helpers/wait.js";

export const randomBetween = (min: number, max: number): number => min + Math.random() * (max - min);

export function pick<T>(items: readonly T[]): T {
  if (items.length === 0) throw new Error("pick() from an empty list");
  return items[Math.floor(Math.random() * items.length)]!;
}

export function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export const round = (value: number, digits = 1): number => (Number.isFinite(value) ? Number(value.toFixed(digits)) : value);



/** Run `fn` over `items` with at most `concurrency` at once. */
export async function mapLimit<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  });
  await Promise.all(workers);
  return results;
}

/** Progress lines go to stderr, so that stdout carries only the JSON result lines. */
export function log(scenario: string, message: string): void {
  if (process.env.CHAOS_SILENT === "1") return;
  const t = new Date().toISOString().slice(11, 23);
  process.stderr.write(`${t} [chaos ${scenario}] ${message}\n`);
}
