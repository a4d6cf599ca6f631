/**
 * Throughput: N order_processing workflows (the example's 4-step DAG, inputs that trigger no
 * failure), at most `concurrency` in flight, against `runtimes` separate `wf run` processes.
 * The bench process only starts workflows and waits for their results; the engine's work happens
 * in the runtime processes (but on the same cores: the machine is shared by all of them).
 * Each of the five measured runs follows a run of the raw loop (same N, same concurrency, same
 * server); the summary's ratio compares the medians of these interleaved runs. A run of the floor
 * (floor.ts) comes before each too, for the ratio of `wf run` to the floor.
 */
import { join } from "node:path";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor, ORDER_ACTIVITY_TYPES, ORDER_STEPS, orderInput } from "./lib/context.js";
import { cpuMeter } from "./lib/proc.js";
import { spawnRuntime, stopAll, waitUntilPulling, type RuntimeProcess } from "./lib/runtimes.js";
import { medianBy, round, runPool, summarize, withTimeout } from "./lib/stats.js";
import { createWaiter } from "./lib/waiter.js";
import type { Topology } from "../runtime/nats/topology.js";
import { startRawLoop, THROUGHPUT_RUNS, THROUGHPUT_WARM_UP } from "./raw-bound.js";
import { cpuMsPerWorkflow, meteredFloorRun, startFloorLoop } from "./floor.js";


export async function throughput(ctx: BenchContext, runtimeCount: number): Promise<Figure> {
  const { n, concurrency, waitMode, slots, cpuProfDir } = ctx.options;
  const namespace = namespaceFor(`tp${runtimeCount}`);
  const runtimes: RuntimeProcess[] = [];
  const client = await benchClient(ctx, namespace);
  try {
    // One after another: each `wf run` deploys its functions/ at start, and two first deploys at
    // the same instant conflict (WF_DEPLOY_CONFLICT; see bench/RESULTS.md).
    for (let i = 0; i < runtimeCount; i++) {
      runtimes.push(spawnRuntime({ natsUrl: ctx.natsUrl, namespace, slots, label: `tp${runtimeCount}-rt${i + 1}`, ...(cpuProfDir ? { cpuProfDir } : {}) }));
      await waitUntilPulling(client.topology.jsm, namespace, ORDER_ACTIVITY_TYPES, runtimes);
    }
    const waiter = await createWaiter(client, waitMode);
    // The raw loop on the same server, run between our runs: both sides of the ratio then see the
    // same minute of a noisy shared machine (the raw bound figure alone ran a minute earlier).
    const raw = await startRawLoop(ctx.natsUrl);
    const floor = await startFloorLoop(ctx.natsUrl).catch(async (err: unknown) => {
      await raw.close();
      throw err;
    });
    try {
      const one = async (id: string): Promise<number> => {
        const t0 = performance.now();
        await client.start("order_processing", orderInput(0), { id });
        const state = await waiter.wait(id);
        if (state.status !== "completed") throw new Error(`workflow ${id} ended ${state.status}: ${state.error?.message ?? ""}`);
        return performance.now() - t0;
      };
      // Warm-up: JIT, consumers, caches; not measured. A runtime is a long-running process and its
      // steady state is the figure: with 50 warm-up workflows, three runs of 1,000 still sped up
      // from the first to the third (3,082 -> 4,150 steps/s), so the warm-up is half a run.
      await withTimeout(runPool(Math.min(THROUGHPUT_WARM_UP, n), concurrency, async (i) => void (await one(`warm-${i}`))), 120_000, "throughput warm-up");
      await raw.timedRun("warm", Math.min(THROUGHPUT_WARM_UP, n), concurrency);
      await floor.timedRun("warm", Math.min(THROUGHPUT_WARM_UP, n), concurrency);

      // A run of 1,000 workflows takes about a second on this machine: like the raw bound, the
      // figure is the median of a few runs, so one disturbed second does not decide it.
      const reps: Array<{ seconds: number; cpu: Record<string, number>; latencies: number[] }> = [];
      const rawSeconds: number[] = [];
      const floorReps: Array<{ seconds: number; cpu: Record<string, number> }> = [];
      const writesBefore = await storedMessages(client.topology);
      for (let rep = 0; rep < THROUGHPUT_RUNS; rep++) {
        rawSeconds.push(await raw.timedRun(`r${runtimeCount}-${rep}`, n, concurrency));
        floorReps.push(await meteredFloorRun(floor, ctx, `f${runtimeCount}-${rep}`));
        const meter = cpuMeter({ nats_server: ctx.natsPid, ...Object.fromEntries(runtimes.map((r) => [r.label.replace(/-/g, "_"), r.pid])) });
        const latencies: number[] = [];
        const t0 = performance.now();
        await withTimeout(
          runPool(n, concurrency, async (i) => {
            latencies.push(await one(`wf-${rep}-${i}`));
          }),
          600_000,
          `throughput with ${runtimeCount} runtime(s)`,
        );
        reps.push({ seconds: (performance.now() - t0) / 1000, cpu: meter(), latencies });
      }
      const writesAfter = await storedMessages(client.topology);
      const steps = THROUGHPUT_RUNS * n * ORDER_STEPS;
      const writesPerStep = Object.fromEntries(Object.entries(writesAfter).map(([stream, seq]) => [stream, round((seq - (writesBefore[stream] ?? 0)) / steps, 3)]));
      const { seconds, cpu, latencies } = medianBy(reps, (r) => r.seconds);
      const rawMedian = medianBy(rawSeconds, (sec) => sec);
      const runtimeLabels = runtimes.map((r) => r.label.replace(/-/g, "_"));
      const medianCpu = (runs: Array<{ cpu: Record<string, number> }>, processes?: string[]) => medianBy(runs.map((r) => cpuMsPerWorkflow(r.cpu, n, processes)), (x) => x);
      const rss = Object.fromEntries(runtimes.map((r) => [r.label, round(r.rssMb() ?? NaN, 1)]));
      const under = summarize(latencies);
      return {
        figure: "throughput",
        runtimes: runtimeCount,
        workflows_per_s: round(n / seconds, 1),
        steps_per_s: round((n * ORDER_STEPS) / seconds, 1),
        workflows: n,
        steps_per_workflow: ORDER_STEPS,
        concurrency,
        seconds: round(seconds, 3),
        repetitions_steps_per_s: reps.map((r) => round((n * ORDER_STEPS) / r.seconds, 1)),
        raw_interleaved: {
          steps_per_s: round((n * ORDER_STEPS) / rawMedian, 1),
          repetitions_steps_per_s: rawSeconds.map((sec) => round((n * ORDER_STEPS) / sec, 1)),
        },
        floor_interleaved: {
          steps_per_s: round((n * ORDER_STEPS) / medianBy(floorReps, (r) => r.seconds).seconds, 1),
          repetitions_steps_per_s: floorReps.map((r) => round((n * ORDER_STEPS) / r.seconds, 1)),
          cpu_ms_per_workflow: medianCpu(floorReps),
        },
        // The runtimes', the client's (this process) and nats-server's CPU per workflow, median of the runs.
        cpu_ms_per_workflow: medianCpu(reps, [...runtimeLabels, "bench_process", "nats_server"]),
        runtime_cpu_ms_per_workflow: medianCpu(reps, runtimeLabels),
        wait_mode: waiter.mode,
        worker_slots: slots ?? "wf.config.json",
        latency_under_load: { p50_ms: under.p50_ms, p99_ms: under.p99_ms },
        runtime_rss_mb: rss,
        cpu,
        // Messages JetStream stored per step during the timed runs (the raw loop: 3 per step).
        durable_writes_per_step: round(Object.values(writesPerStep).reduce((a, b) => a + b, 0), 3),
        durable_writes_by_stream: writesPerStep,
        ...(cpuProfDir ? { cpu_profiles: runtimes.map((r) => join(cpuProfDir, r.label)) } : {}),
      };
    } finally {
      await waiter.close();
      await raw.close();
      await floor.close();
    }
  } finally {
    await client.close().catch(() => undefined);
    await stopAll(runtimes);
  }
}

/** Messages ever stored in each of the namespace's streams (last sequence): the durable writes so far. */
async function storedMessages(topology: Topology): Promise<Record<string, number>> {
  const { names, jsm } = topology;
  const streams = { events: names.eventsStream, tasks: names.tasksStream, timers: names.timersStream, states: `KV_${names.statesBucket}` };
  const out: Record<string, number> = {};
  for (const [label, stream] of Object.entries(streams)) out[label] = (await jsm.streams.info(stream)).state.last_seq;
  return out;
}
