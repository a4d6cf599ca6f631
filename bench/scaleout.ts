/**
 * Scale-out: CPU per workflow with 4 `wf run` processes against 1, on a workload where every
 * workflow runs a step, sleeps, receives a signal and runs a step (bench_sleep_signal), so that
 * timers and signals, not only a runtime's own worker's completions, reach the orchestrators.
 * An event that lands on a runtime which does not hold the workflow costs a read of its state and
 * a replay (a state cache miss), and two runtimes applying events of one workflow race on its
 * state (a lost CAS, then a retry): both grow with the number of runtimes until each workflow has
 * one owner (issue 18). The figure: the runtimes' CPU per workflow (all processes summed), the
 * ratio 4 ÷ 1 (target ≤ 1.1), and each side's state cache hit ratio from the runtimes' /metrics
 * (target ≥ 99 % with 4).
 *
 * Each side runs its own namespace and processes; the sides alternate (1, 4, 1, 4 …) so that
 * both see the same minutes of a shared machine, and the figure is the median of the runs.
 */
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor } from "./lib/context.js";
import { cpuSeconds } from "./lib/proc.js";
import { spawnRuntime, stopAll, waitUntilPulling, type RuntimeProcess } from "./lib/runtimes.js";
import { medianBy, round, runPool, withTimeout } from "./lib/stats.js";
import { createWaiter } from "./lib/waiter.js";
import { FIXTURE_FUNCTIONS } from "./replay.js";
import { freePort } from "../test/helpers/ports.js";

const RUNS = 3;
const SLEEP_MS = 200;
const SIDES = [1, 4] as const;

/** Sums a counter's samples per label value over the runtimes' /metrics texts. */
function counterBy(texts: string[], metric: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const line = new RegExp(`^${metric}\\{[^}]*${label}="([^"]+)"[^}]*\\} ([0-9.e+]+)$`, "gm");
  for (const text of texts) for (const m of text.matchAll(line)) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}

export async function scaleout(ctx: BenchContext): Promise<Figure> {
  const n = Math.max(100, Math.round(ctx.options.n / 2));
  const { concurrency, waitMode, slots } = ctx.options;
  const all: RuntimeProcess[] = [];
  const clients: Array<Awaited<ReturnType<typeof benchClient>>> = [];
  try {
    const sides = [];
    for (const count of SIDES) {
      const namespace = namespaceFor(`so${count}`);
      const client = await benchClient(ctx, namespace);
      clients.push(client);
      const runtimes: Array<RuntimeProcess & { metricsPort: number }> = [];
      for (let i = 0; i < count; i++) {
        const metricsPort = await freePort();
        const rt = spawnRuntime({ natsUrl: ctx.natsUrl, namespace, functionsDir: FIXTURE_FUNCTIONS, slots, label: `so${count}-rt${i + 1}`, env: { WF_METRICS_PORT: String(metricsPort) } });
        all.push(rt);
        runtimes.push(Object.assign(rt, { metricsPort }));
        // One after another: two first deploys at the same instant conflict (bench/RESULTS.md).
        await waitUntilPulling(client.topology.jsm, namespace, ["bench_step"], runtimes);
      }
      const waiter = await createWaiter(client, waitMode);
      const one = async (id: string, i: number) => {
        await client.start("bench_sleep_signal", { i, sleepMs: SLEEP_MS }, { id });
        // Sent at once: the signal waits in the state while the workflow sleeps (a signal event to apply, then a timer).
        await client.signal(id, "go", { i });
        const state = await waiter.wait(id);
        if (state.status !== "completed") throw new Error(`workflow ${id} ended ${state.status}: ${state.error?.message ?? ""}`);
      };
      const scrape = () => Promise.all(runtimes.map(async (rt) => (await fetch(`http://127.0.0.1:${rt.metricsPort}/metrics`)).text()));
      sides.push({ count, runtimes, waiter, one, scrape });
    }
    for (const side of sides) await withTimeout(runPool(Math.min(200, n), concurrency, (i) => side.one(`warm-${i}`, i)), 180_000, `scaleout warm-up (${side.count} runtimes)`);
    const before = await Promise.all(sides.map((s) => s.scrape()));
    const reps: Record<number, Array<{ seconds: number; cpuMsPerWf: number }>> = { 1: [], 4: [] };
    for (let rep = 0; rep < RUNS; rep++) {
      for (const side of rep % 2 === 0 ? sides : [...sides].reverse()) {
        // Unrounded, summed over the processes (cpuMeter rounds each to 10 ms).
        const cpuOf = () => side.runtimes.reduce((sum, r) => sum + (cpuSeconds(r.pid) ?? NaN), 0);
        const cpu0 = cpuOf();
        const t0 = performance.now();
        await withTimeout(runPool(n, concurrency, (i) => side.one(`wf-${rep}-${i}`, i)), 600_000, `scaleout (${side.count} runtimes)`);
        const seconds = (performance.now() - t0) / 1000;
        const cpuS = cpuOf() - cpu0;
        reps[side.count]!.push({ seconds, cpuMsPerWf: (cpuS * 1000) / n });
      }
    }
    const after = await Promise.all(sides.map((s) => s.scrape()));
    const perSide = sides.map((side, i) => {
      const lookups = (texts: string[]) => counterBy(texts, "jetflow_state_cache_lookups_total", "result");
      const [b, a] = [lookups(before[i]!), lookups(after[i]!)];
      const hits = (a.hit ?? 0) - (b.hit ?? 0);
      const misses = (a.miss ?? 0) - (b.miss ?? 0);
      const median = medianBy(reps[side.count]!, (r) => r.cpuMsPerWf);
      return {
        runtimes: side.count,
        cpu_ms_per_workflow: round(median.cpuMsPerWf, 3),
        workflows_per_s: round(n / medianBy(reps[side.count]!, (r) => r.seconds).seconds, 1),
        repetitions_cpu_ms_per_workflow: reps[side.count]!.map((r) => round(r.cpuMsPerWf, 3)),
        cache_hit_ratio: hits + misses === 0 ? null : round(hits / (hits + misses), 4),
        cache_lookups: { hits, misses },
      };
    });
    for (const side of sides) await side.waiter.close();
    const [one, four] = perSide as [(typeof perSide)[0], (typeof perSide)[0]];
    return {
      figure: "scaleout",
      workflows: n,
      concurrency,
      sleep_ms: SLEEP_MS,
      runs: RUNS,
      sides: perSide,
      scaleout_cpu_ratio: round(four.cpu_ms_per_workflow / one.cpu_ms_per_workflow, 3),
      cache_hit_ratio_4rt: four.cache_hit_ratio,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await stopAll(all);
  }
}
