/**
 * Continue-as-new at length (issue 13): one workflow that runs one activity, then continues as new,
 * BENCH_CAN_RUNS times (10,000; quick 1,000), through a real runtime in this process
 * (createRuntime + createClient). What a user of a long-lived loop checks:
 * - the state document of key `<id>` stays the same size: the size at the last run over the size at
 *   run 100 (`state_size_ratio`, target ≤ 1.2; the numbers in it only gain digits);
 * - each run costs the same: the mean wall time per run over the last 1,000 runs (a tenth in quick
 *   mode) over the mean of the first 1,000 after a 100-run warm-up (`step_cost_ratio`, target ≤ 1.2).
 * Every earlier run is archived at `<id>/r.<n>` (one put per run) until retention removes the id;
 * the figure also reports how many keys the id holds at the end, to show what is kept.
 */
import { createRuntime, silentLogger, type ActivityContext, type Runtime, type WorkflowContext } from "../runtime/index.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, benchConfig, namespaceFor } from "./lib/context.js";
import { dropNamespace } from "./lib/dataset.js";
import { round, sleep, withTimeout } from "./lib/stats.js";

const WARM_UP_RUNS = 100;

export async function continueAsNew(ctx: BenchContext): Promise<Figure> {
  const runs = ctx.options.canRuns;
  const window = Math.max(10, Math.min(1_000, Math.floor((runs - WARM_UP_RUNS) / 4)));
  const namespace = namespaceFor("can");
  const client = await benchClient(ctx, namespace);
  const reachedAt = new Float64Array(runs + 1);
  const activities = {
    bench_tick: async (n: number, _ctx: ActivityContext) => {
      reachedAt[n] = performance.now();
      return n;
    },
  };
  const workflows = {
    bench_loop: async (wf: WorkflowContext<typeof activities, { n: number }>, input: { n: number }) => {
      const n = await wf.activities.bench_tick(input.n);
      if (n < runs) return wf.continueAsNew({ n: n + 1 });
      return n;
    },
  };
  let runtime: Runtime | undefined;
  try {
    runtime = await createRuntime({ config: benchConfig(ctx, namespace, { defaults: { workflowTimeout: "2h" } }), workflows, activities, logger: silentLogger });
    await runtime.start();
    const { states } = client.topology;
    const stateSize = async () => (await states.get("loop"))?.length ?? 0;
    const handle = await client.start("bench_loop", { n: 1 }, { id: "loop" });
    const t0 = performance.now();
    let sizeEarly = 0;
    await withTimeout(
      (async () => {
        while (reachedAt[WARM_UP_RUNS] === 0) await sleep(20);
        sizeEarly = await stateSize();
      })(),
      120_000,
      `run ${WARM_UP_RUNS}`,
    );
    const last = await handle.result({ signal: AbortSignal.timeout(1_800_000) });
    const totalS = (performance.now() - t0) / 1000;
    const sizeLast = await stateSize();
    // `<id>/r.>` holds the id's archived runs and nothing else (index-keys.ts archivedRuns).
    let keys = 0;
    for await (const _key of await states.keys("loop/r.>")) keys += 1;
    const meanMs = (from: number) => (reachedAt[from + window]! - reachedAt[from]!) / window;
    const early = meanMs(WARM_UP_RUNS);
    const late = meanMs(runs - window);
    return {
      figure: "continue_as_new",
      runs,
      result: last,
      window_runs: window,
      state_bytes_run_100: sizeEarly,
      state_bytes_last_run: sizeLast,
      state_size_ratio: round(sizeLast / sizeEarly, 3),
      early_ms_per_run: round(early, 3),
      late_ms_per_run: round(late, 3),
      step_cost_ratio: round(late / early, 3),
      archived_run_keys: keys,
      total_s: round(totalS, 1),
      notes: `one activity per run; mean ms per run over runs ${WARM_UP_RUNS}..${WARM_UP_RUNS + window} (early) and the last ${window} (late); archived runs stay until retention`,
    };
  } finally {
    await runtime?.stop("bench figure done").catch(() => undefined);
    await dropNamespace(client.topology).catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}
