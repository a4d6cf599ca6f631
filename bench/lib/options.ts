/**
 * Bench options from the environment. Every figure has a name; BENCH_SKIP lists names to skip.
 *
 *   BENCH_N             workflows in the throughput figures (default 1000; quick 100)
 *   BENCH_CONCURRENCY   workflows in flight in the throughput figures and the raw bound (200; quick 50)
 *   BENCH_RUNTIMES      `wf run` process counts for the throughput figure, comma list (default "1,2")
 *   BENCH_LATENCY_N     sequential workflows in the latency figures (200; quick 30)
 *   BENCH_REPLAY_STEPS  activities of the replay workflow (200; quick 60)
 *   BENCH_MEMORY_N      sleeping workflows in the memory figure (10000; quick 500)
 *   BENCH_FINISHED_N    finished workflows of the large dataset of list_flat, recovery_flat and retention_flat (100000; quick 10000);
 *                       list_flat's small dataset holds a tenth of it, recovery_flat's none
 *   BENCH_TIMERS_N      workflows with a 10-minute timeout in parked_timers (10000; quick 1000)
 *   BENCH_CAN_RUNS      runs of the loop that continues as new in continue_as_new (10000; quick 1000)
 *   BENCH_SKIP          figures to skip: raw_bound, floor, throughput, in_process, metrics_cost, latency, replay, memory,
 *                       dev_loop, list_flat, recovery_flat, retention_flat, parked_timers, scaleout, continue_as_new, cluster
 *   BENCH_QUICK=1       small numbers for a smoke run (explicit values above still win)
 *   BENCH_WAIT          how the client learns results: result (default: the public client.waitForEnd), watch-all, per-id, poll
 *   BENCH_SLOTS         WF_WORKER_SLOTS for the runtimes (default: the repo's wf.config.json)
 *   BENCH_CPU_PROF=DIR  run the throughput runtimes under `node --cpu-prof` and print their top functions
 *   BENCH_RESULTS       markdown file to append to (default bench/RESULTS.md; "-" for none)
 */
export const FIGURES = ["raw_bound", "floor", "throughput", "in_process", "metrics_cost", "latency", "replay", "memory", "dev_loop", "list_flat", "recovery_flat", "retention_flat", "parked_timers", "scaleout", "continue_as_new", "cluster"] as const;
export type FigureName = (typeof FIGURES)[number];

export type WaitMode = "result" | "watch-all" | "per-id" | "poll";

export interface BenchOptions {
  quick: boolean;
  n: number;
  concurrency: number;
  runtimes: number[];
  latencyN: number;
  replaySteps: number;
  memoryN: number;
  finishedN: number;
  timersN: number;
  canRuns: number;
  skip: Set<string>;
  waitMode: WaitMode;
  slots: number | undefined;
  cpuProfDir: string | undefined;
  resultsFile: string | undefined;
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number ≥ 1, got "${raw}"`);
  return value;
}

export function readOptions(env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const quick = env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
  const runtimes = (env.BENCH_RUNTIMES ?? "1,2")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const v = Number(s);
      if (!Number.isInteger(v) || v < 1 || v > 8) throw new Error(`BENCH_RUNTIMES must list process counts from 1 to 8, got "${env.BENCH_RUNTIMES}"`);
      return v;
    });
  const skip = new Set((env.BENCH_SKIP ?? "").split(",").map((s) => s.trim()).filter(Boolean));
  for (const name of skip) {
    if (!(FIGURES as readonly string[]).includes(name)) throw new Error(`BENCH_SKIP names "${name}"; figures are ${FIGURES.join(", ")}`);
  }
  const waitMode = (env.BENCH_WAIT ?? "result") as WaitMode;
  if (!["result", "watch-all", "per-id", "poll"].includes(waitMode)) throw new Error(`BENCH_WAIT must be result, watch-all, per-id or poll, got "${env.BENCH_WAIT}"`);
  const results = env.BENCH_RESULTS;
  return {
    quick,
    n: positiveInt(env, "BENCH_N", quick ? 100 : 1_000),
    concurrency: positiveInt(env, "BENCH_CONCURRENCY", quick ? 50 : 200),
    runtimes: runtimes.length ? runtimes : [1],
    latencyN: positiveInt(env, "BENCH_LATENCY_N", quick ? 30 : 200),
    replaySteps: Math.max(40, positiveInt(env, "BENCH_REPLAY_STEPS", quick ? 60 : 200)),
    memoryN: positiveInt(env, "BENCH_MEMORY_N", quick ? 500 : 10_000),
    finishedN: Math.max(10, positiveInt(env, "BENCH_FINISHED_N", quick ? 10_000 : 100_000)),
    timersN: positiveInt(env, "BENCH_TIMERS_N", quick ? 1_000 : 10_000),
    // At least 500: the figure compares a warm-up-free window of runs with the last ones.
    canRuns: Math.max(500, positiveInt(env, "BENCH_CAN_RUNS", quick ? 1_000 : 10_000)),
    skip,
    waitMode,
    slots: env.BENCH_SLOTS ? positiveInt(env, "BENCH_SLOTS", 16) : undefined,
    cpuProfDir: env.BENCH_CPU_PROF || undefined,
    resultsFile: results === "-" ? undefined : results || undefined,
  };
}
