/**
 * What Prometheus metrics cost: the throughput of one `wf run` with metrics off, and of one with
 * metrics on (WF_METRICS_PORT) scraped during every timed run, in the same bench run, the runs of
 * the two alternating (off, on, off, on …) so both see the same minutes of a shared machine. The
 * figure is the ratio of the medians, on over off (target ≥ 0.97: metrics cost under 3 %).
 */
import { join } from "node:path";
import { freePort } from "../test/helpers/ports.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor, ORDER_ACTIVITY_TYPES, ORDER_STEPS, orderInput } from "./lib/context.js";
import { cpuMeter } from "./lib/proc.js";
import { spawnRuntime, stopAll, waitUntilPulling, type RuntimeProcess } from "./lib/runtimes.js";
import { medianBy, round, runPool, withTimeout } from "./lib/stats.js";
import { createWaiter } from "./lib/waiter.js";
import { THROUGHPUT_RUNS, THROUGHPUT_WARM_UP } from "./raw-bound.js";

export async function metricsCost(ctx: BenchContext): Promise<Figure> {
  const { n, concurrency, waitMode, slots, cpuProfDir } = ctx.options;
  const port = await freePort();
  const sides = [
    { label: "off", namespace: namespaceFor("mcoff"), env: {} as Record<string, string> },
    { label: "on", namespace: namespaceFor("mcon"), env: { WF_METRICS_PORT: String(port) } },
  ];
  const runtimes: RuntimeProcess[] = [];
  const clients: Array<Awaited<ReturnType<typeof benchClient>>> = [];
  try {
    const setups = [];
    for (const side of sides) {
      const client = await benchClient(ctx, side.namespace);
      clients.push(client);
      runtimes.push(spawnRuntime({ natsUrl: ctx.natsUrl, namespace: side.namespace, slots, label: `metrics-${side.label}`, env: side.env, ...(cpuProfDir ? { cpuProfDir } : {}) }));
      await waitUntilPulling(client.topology.jsm, side.namespace, ORDER_ACTIVITY_TYPES, runtimes.slice(-1));
      const waiter = await createWaiter(client, waitMode);
      const one = async (id: string) => {
        await client.start("order_processing", orderInput(0), { id });
        const state = await waiter.wait(id);
        if (state.status !== "completed") throw new Error(`workflow ${id} ended ${state.status}: ${state.error?.message ?? ""}`);
      };
      setups.push({ ...side, waiter, one });
    }
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
      return res.text();
    };
    for (const s of setups) await withTimeout(runPool(Math.min(THROUGHPUT_WARM_UP, n), concurrency, (i) => s.one(`warm-${i}`)), 120_000, `metrics_cost warm-up (${s.label})`);
    const seconds: Record<string, number[]> = { off: [], on: [] };
    const cpuMs: Record<string, number[]> = { off: [], on: [] };
    let scrapes = 0;
    let scrapeBytes = 0;
    for (let rep = 0; rep < THROUGHPUT_RUNS; rep++) {
      // Each side goes first every other time: a run right after the other side's is not always the same side's.
      for (const s of rep % 2 === 0 ? setups : [...setups].reverse()) {
        const process = runtimes[setups.indexOf(s)]!;
        const meter = cpuMeter({ runtime: process.pid });
        const t0 = performance.now();
        // A scrape during the run, as Prometheus would (every 15 s; a run lasts a few seconds).
        const scraping = s.label === "on" ? new Promise((r) => setTimeout(r, 200)).then(scrape) : undefined;
        await withTimeout(runPool(n, concurrency, (i) => s.one(`wf-${rep}-${i}`)), 600_000, `metrics_cost (${s.label})`);
        seconds[s.label]!.push((performance.now() - t0) / 1000);
        cpuMs[s.label]!.push((meter().runtime_cpu_s ?? NaN) * 1000);
        if (scraping) {
          scrapeBytes = (await scraping).length;
          scrapes += 1;
        }
      }
    }
    const text = await scrape();
    const completed = /^jetflow_workflows_ended_total\{workflow="order_processing",status="completed"\} (\d+)/m.exec(text);
    const stepsPerS = (label: string) => round((n * ORDER_STEPS) / medianBy(seconds[label]!, (x) => x), 1);
    const off = stepsPerS("off");
    const on = stepsPerS("on");
    for (const s of setups) await s.waiter.close();
    return {
      figure: "metrics_cost",
      workflows: n,
      concurrency,
      steps_per_s_metrics_off: off,
      steps_per_s_metrics_on: on,
      repetitions_off: seconds.off!.map((sec) => round((n * ORDER_STEPS) / sec, 1)),
      repetitions_on: seconds.on!.map((sec) => round((n * ORDER_STEPS) / sec, 1)),
      ratio: round(on / off, 3),
      // The runtime's CPU per 1,000 steps: less sensitive than wall time to what else the shared machine runs.
      runtime_cpu_ms_per_1k_steps_off: round(medianBy(cpuMs.off!, (x) => x) / ((n * ORDER_STEPS) / 1000), 1),
      runtime_cpu_ms_per_1k_steps_on: round(medianBy(cpuMs.on!, (x) => x) / ((n * ORDER_STEPS) / 1000), 1),
      cpu_ratio: round(medianBy(cpuMs.on!, (x) => x) / medianBy(cpuMs.off!, (x) => x), 3),
      scrapes,
      scrape_bytes: scrapeBytes,
      // What the scrape says ran: the warm-up and the timed runs of the "on" runtime.
      scraped_completed: completed ? Number(completed[1]) : null,
      // BENCH_CPU_PROF: each side's profile, written when its runtime exits (bench/profile-summary.ts reads them).
      ...(cpuProfDir ? { cpu_profiles: runtimes.map((r) => join(cpuProfDir, r.label)) } : {}),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await stopAll(runtimes);
  }
}
