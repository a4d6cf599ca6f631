/**
 * What the two bounds (raw-bound.ts, the hand-written JetStream loop; floor.ts, one durable write
 * per step) measure alike: a warm-up, then THROUGHPUT_RUNS timed runs of n workflows at the
 * throughput concurrency, each metered (this process's and nats-server's CPU), the median run
 * reported; then the 4-step latency one workflow at a time.
 */
import type { BenchContext } from "./context.js";
import { cpuMeter } from "./proc.js";
import { medianBy, round, summarize } from "./stats.js";

/**
 * How throughput is measured, on both sides of every ratio: unmeasured workflows first (JIT,
 * consumers, caches: a runtime is a long-running process), then the median of several runs.
 */
export const THROUGHPUT_WARM_UP = 500;
export const THROUGHPUT_RUNS = 5;

export interface BoundLoop {
  /** n workflows, `concurrency` in flight; resolves with the seconds it took. */
  timedRun(tag: string, n: number, concurrency: number): Promise<number>;
}

export interface MeteredRun {
  seconds: number;
  cpu: Record<string, number>;
}

/** A timed run of a loop, metered: its seconds, and the CPU this process and nats-server spent. */
export async function meteredRun(loop: BoundLoop, ctx: BenchContext, tag: string): Promise<MeteredRun> {
  const meter = cpuMeter({ nats_server: ctx.natsPid });
  const seconds = await loop.timedRun(tag, ctx.options.n, ctx.options.concurrency);
  return { seconds, cpu: meter() };
}

/** The figure fields both bounds report, and the runs (for figures of their own). `sample`: one workflow's latency, in ms. */
export async function measureBound(ctx: BenchContext, loop: BoundLoop, steps: number, sample: (tag: string) => Promise<number>, latencyWarmUp = 0) {
  const { n, concurrency, latencyN } = ctx.options;
  await loop.timedRun("warm", Math.min(THROUGHPUT_WARM_UP, n), concurrency);
  // A run of a loop is short: it is repeated and the median run reported.
  const reps: MeteredRun[] = [];
  for (let rep = 0; rep < THROUGHPUT_RUNS; rep++) reps.push(await meteredRun(loop, ctx, `t${rep}`));
  const { seconds, cpu } = medianBy(reps, (r) => r.seconds);
  for (let i = 0; i < latencyWarmUp; i++) await sample(`lw${i}`);
  const samples: number[] = [];
  for (let i = 0; i < latencyN; i++) samples.push(await sample(`l${i}`));
  const latency = summarize(samples);
  return {
    reps,
    fields: {
      steps_per_s: round((n * steps) / seconds, 1),
      workflows_per_s: round(n / seconds, 1),
      workflows: n,
      steps_per_workflow: steps,
      concurrency,
      seconds: round(seconds, 3),
      repetitions_steps_per_s: reps.map((r) => round((n * steps) / r.seconds, 1)),
      p50_ms: latency.p50_ms,
      p99_ms: latency.p99_ms,
      latency,
      cpu,
    },
  };
}
