/**
 * Replay cost: a code workflow of S sequential activities (bench/fixtures/functions), one at a
 * time on one `wf run` process. From the final state's step records, the time per step is
 * finishedAt(step s) − finishedAt(step s−1); it is averaged over steps 5–24 ("around step 10")
 * and over the last twenty steps ("around step S"), per run; the figure is the median over runs.
 * (Timestamps have millisecond resolution and a step takes about one: windows of twenty steps and
 * nine runs keep that rounding and one-off pauses from deciding the figure.) A flat ratio means no step costs more because
 * more steps came before it (no full replay per event, no quadratic journal work).
 */
import { join } from "node:path";
import type { WorkflowClient, WorkflowState } from "../runtime/index.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor } from "./lib/context.js";
import { REPO_ROOT, spawnRuntime, stopAll, waitUntilPulling, type RuntimeProcess } from "./lib/runtimes.js";
import { mean, percentile, round, withTimeout } from "./lib/stats.js";
import { createWaiter } from "./lib/waiter.js";

export const FIXTURE_FUNCTIONS = join(REPO_ROOT, "bench", "fixtures", "functions");
const RUNS = 9;
const WINDOW = 20;
const KV_CAS_SAMPLES = 200;

/** Per-step durations (ms), index s−1 for step s ≥ 2; NaN for step 1. */
function stepTimes(state: WorkflowState): number[] {
  const finished = Object.values(state.steps)
    .sort((a, b) => a.seq - b.seq)
    .map((s) => Date.parse(s.finishedAt ?? ""));
  return finished.map((t, i) => (i === 0 ? NaN : t - finished[i - 1]!));
}

/** Mean ms of a KV compare-and-set of a value of each size (a scratch key, deleted after). */
async function kvCasCost(client: WorkflowClient, sizes: number[]): Promise<number[]> {
  const kv = client.topology.states;
  const out: number[] = [];
  for (const size of sizes) {
    const key = `bench-kv-cas-${size}`;
    const value = "x".repeat(size);
    let revision = await kv.put(key, value);
    for (let i = 0; i < 20; i++) revision = await kv.update(key, value, revision); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < KV_CAS_SAMPLES; i++) revision = await kv.update(key, value, revision);
    out.push(round((performance.now() - t0) / KV_CAS_SAMPLES, 3));
    await kv.purge(key);
  }
  return out;
}

export async function replay(ctx: BenchContext): Promise<Figure> {
  const steps = ctx.options.replaySteps;
  const namespace = namespaceFor("replay");
  const runtimes: RuntimeProcess[] = [];
  const client = await benchClient(ctx, namespace);
  try {
    runtimes.push(spawnRuntime({ natsUrl: ctx.natsUrl, namespace, functionsDir: FIXTURE_FUNCTIONS, slots: ctx.options.slots, label: "replay-rt1" }));
    await waitUntilPulling(client.topology.jsm, namespace, ["bench_step"], runtimes);
    const waiter = await createWaiter(client, ctx.options.waitMode);
    const early: number[] = [];
    const late: number[] = [];
    const earlyAll: number[] = [];
    const lateAll: number[] = [];
    const durations: number[] = [];
    let stateBytes = 0;
    let storedBytes = 0;
    let earlyStateBytes = 0;
    try {
      // Warm-up run (short), not measured.
      await client.start("bench_sequential", { steps: 20 }, { id: "warm" });
      await withTimeout(waiter.wait("warm"), 60_000, "replay warm-up");
      for (let run = 0; run < RUNS; run++) {
        const id = `seq-${run}`;
        const t0 = performance.now();
        await client.start("bench_sequential", { steps }, { id });
        const state = await withTimeout(waiter.wait(id), 300_000, `workflow ${id} of ${steps} steps`);
        durations.push(performance.now() - t0);
        if (state.status !== "completed") throw new Error(`workflow ${id} ended ${state.status}: ${state.error?.message ?? ""}`);
        const times = stepTimes(state);
        if (times.length !== steps) throw new Error(`workflow ${id} recorded ${times.length} steps, expected ${steps}`);
        const e = times.slice(4, 4 + WINDOW); // steps 5..24
        const l = times.slice(steps - WINDOW); // the last twenty
        early.push(mean(e));
        late.push(mean(l));
        earlyAll.push(...e);
        lateAll.push(...l);
        stateBytes = JSON.stringify(state).length;
        storedBytes = (await client.topology.states.get(id))?.length ?? 0;
        earlyStateBytes = JSON.stringify({ ...state, steps: Object.fromEntries(Object.entries(state.steps).slice(0, 14)), journal: state.journal.slice(0, 14) }).length;
      }
    } finally {
      await waiter.close();
    }
    // Median over the runs of each window's mean: one run hit by a GC pause or a neighbour's load
    // does not decide the figure.
    const earlyMs = percentile(early, 50);
    const lateMs = percentile(late, 50);
    // What NATS alone charges for rewriting a value of the state's size around step 10, of the
    // state as stored at the end (history chunks keep it bounded), and of a state that would hold
    // every step: what a document holding the whole journal would cost per step.
    const kvCas = await kvCasCost(client, [earlyStateBytes, storedBytes, stateBytes]);
    return {
      figure: "replay",
      steps,
      runs: RUNS,
      ms_per_step_at_10: round(earlyMs, 3),
      [`ms_per_step_at_${steps}`]: round(lateMs, 3),
      ms_per_step_late: round(lateMs, 3),
      ratio: round(lateMs / earlyMs, 3),
      ratio_per_run: early.map((e, i) => round(late[i]! / e, 2)),
      step_median_ratio: round(percentile(lateAll, 50) / percentile(earlyAll, 50), 3),
      workflow_ms: durations.map((d) => round(d, 1)),
      final_state_bytes: stateBytes,
      final_stored_state_bytes: storedBytes,
      state_bytes_at_10: earlyStateBytes,
      raw_kv_cas_ms: { [`${earlyStateBytes}_bytes`]: kvCas[0], [`${storedBytes}_bytes`]: kvCas[1], [`${stateBytes}_bytes`]: kvCas[2] },
    };
  } finally {
    await client.close().catch(() => undefined);
    await stopAll(runtimes);
  }
}
