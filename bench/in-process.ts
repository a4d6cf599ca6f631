/**
 * jetflow in one process, against the floor (floor.ts): a runtime (`createRuntime`, the repo's
 * functions/ bundled and loaded as `wf run` loads them, with its wf.config.json) and a client
 * (`createClient`) in the bench process, running order_processing (the example's 4-step DAG, the
 * same activities the floor calls in place).
 *
 * Each of the five timed runs follows a run of the floor (same N, same concurrency, same server,
 * same process), and each latency sample a floor sample, so both sides of every ratio see the
 * same moment of a noisy shared machine. CPU per workflow is this process's (runtime, client and
 * floor are in it, taking turns) plus nats-server's, over the timed run.
 */
import type { BenchContext, Figure } from "./lib/context.js";
import { namespaceFor, ORDER_STEPS } from "./lib/context.js";
import { cpuMeter } from "./lib/proc.js";
import { startRepoEngine, type RepoEngine } from "./lib/repo-engine.js";
import { medianBy, round, runPool, summarize, withTimeout } from "./lib/stats.js";
import { cpuMsPerWorkflow, meteredFloorRun, startFloorLoop } from "./floor.js";
import { THROUGHPUT_RUNS, THROUGHPUT_WARM_UP } from "./raw-bound.js";

export async function inProcess(ctx: BenchContext): Promise<Figure> {
  const { n, concurrency, latencyN, waitMode, slots } = ctx.options;
  let engine: RepoEngine | undefined;
  const floor = await startFloorLoop(ctx.natsUrl);
  try {
    engine = await startRepoEngine({ servers: [ctx.natsUrl], namespace: namespaceFor("inproc"), waitMode, slots });
    const { one } = engine;
    const jetflowRun = async (tag: string): Promise<number> => {
      const t0 = performance.now();
      await withTimeout(runPool(n, concurrency, async (i) => void (await one(`${tag}-${i}`))), 600_000, "in-process run");
      return (performance.now() - t0) / 1000;
    };
    await withTimeout(runPool(Math.min(THROUGHPUT_WARM_UP, n), concurrency, async (i) => void (await one(`warm-${i}`))), 120_000, "in-process warm-up");
    await floor.timedRun("warm", Math.min(THROUGHPUT_WARM_UP, n), concurrency);

    const reps: Array<{ seconds: number; cpu: Record<string, number> }> = [];
    const floorReps: Array<{ seconds: number; cpu: Record<string, number> }> = [];
    for (let rep = 0; rep < THROUGHPUT_RUNS; rep++) {
      floorReps.push(await meteredFloorRun(floor, ctx, `f${rep}`));
      const meter = cpuMeter({ nats_server: ctx.natsPid });
      const seconds = await jetflowRun(`wf-${rep}`);
      reps.push({ seconds, cpu: meter() });
    }

    const samples: number[] = [];
    const floorSamples: number[] = [];
    for (let i = 0; i < 20; i++) {
      await floor.run(`lw-${i}`);
      await one(`lw-${i}`);
    }
    for (let i = 0; i < latencyN; i++) {
      floorSamples.push(await floor.run(`l-${i}`));
      samples.push(await one(`l-${i}`));
    }

    const stepsPerS = (seconds: number) => round((n * ORDER_STEPS) / seconds, 1);
    const medianCpu = (runs: typeof reps, processes?: string[]) => medianBy(runs.map((r) => cpuMsPerWorkflow(r.cpu, n, processes)), (x) => x);
    const s = summarize(samples);
    const f = summarize(floorSamples);
    return {
      figure: "in_process",
      workflow: "order_processing",
      steps_per_s: stepsPerS(medianBy(reps, (r) => r.seconds).seconds),
      workflows_per_s: round(n / medianBy(reps, (r) => r.seconds).seconds, 1),
      workflows: n,
      steps_per_workflow: ORDER_STEPS,
      concurrency,
      repetitions_steps_per_s: reps.map((r) => stepsPerS(r.seconds)),
      p50_ms: s.p50_ms,
      p99_ms: s.p99_ms,
      latency: s,
      cpu_ms_per_workflow: medianCpu(reps),
      process_cpu_ms_per_workflow: medianCpu(reps, ["bench_process"]),
      nats_server_cpu_ms_per_workflow: medianCpu(reps, ["nats_server"]),
      wait_mode: waitMode,
      floor_interleaved: {
        steps_per_s: stepsPerS(medianBy(floorReps, (r) => r.seconds).seconds),
        repetitions_steps_per_s: floorReps.map((r) => stepsPerS(r.seconds)),
        p50_ms: f.p50_ms,
        p99_ms: f.p99_ms,
        cpu_ms_per_workflow: medianCpu(floorReps),
        process_cpu_ms_per_workflow: medianCpu(floorReps, ["bench_process"]),
        nats_server_cpu_ms_per_workflow: medianCpu(floorReps, ["nats_server"]),
      },
    };
  } finally {
    await engine?.close();
    await floor.close();
  }
}
