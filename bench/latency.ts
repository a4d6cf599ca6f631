/**
 * Latency: order_processing workflows one after another against one `wf run` process, from
 * client.start() to the terminal state seen by the client. Measured with the bench's waiter
 * (BENCH_WAIT) and, for comparison, with the public `handle.result()`.
 *
 * Each jetflow sample is taken right after a sample of the raw loop (four steps in sequence, as
 * in the raw bound figure) on the same server, so both see the same moment of a noisy shared
 * machine; the summary's p50 ratio compares these interleaved samples (the raw bound figure's
 * own latency, taken a minute earlier, moved by 30 % between runs).
 */
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor, ORDER_ACTIVITY_TYPES, orderInput } from "./lib/context.js";
import { spawnRuntime, stopAll, waitUntilPulling, type RuntimeProcess } from "./lib/runtimes.js";
import { summarize, withTimeout } from "./lib/stats.js";
import { startRawLoop } from "./raw-bound.js";
import { createWaiter } from "./lib/waiter.js";

const RESULT_API_SAMPLES = 50;

export async function latency(ctx: BenchContext): Promise<Figure> {
  const { latencyN, waitMode, slots } = ctx.options;
  const namespace = namespaceFor("lat");
  const runtimes: RuntimeProcess[] = [];
  const client = await benchClient(ctx, namespace);
  try {
    runtimes.push(spawnRuntime({ natsUrl: ctx.natsUrl, namespace, slots, label: "lat-rt1" }));
    await waitUntilPulling(client.topology.jsm, namespace, ORDER_ACTIVITY_TYPES, runtimes);
    const waiter = await createWaiter(client, waitMode);
    const raw = await startRawLoop(ctx.natsUrl);
    const samples: number[] = [];
    const rawSamples: number[] = [];
    try {
      const one = async (id: string) => {
        const t0 = performance.now();
        await client.start("order_processing", orderInput(1), { id });
        const state = await withTimeout(waiter.wait(id), 30_000, `workflow ${id}`);
        if (state.status !== "completed") throw new Error(`workflow ${id} ended ${state.status}: ${state.error?.message ?? ""}`);
        return performance.now() - t0;
      };
      for (let i = 0; i < 20; i++) {
        await raw.sample(`warm-${i}`);
        await one(`warm-${i}`);
      }
      for (let i = 0; i < latencyN; i++) {
        rawSamples.push(await raw.sample(`seq-${i}`));
        samples.push(await one(`seq-${i}`));
      }
    } finally {
      await waiter.close();
      await raw.close();
    }
    const api: number[] = [];
    for (let i = 0; i < Math.min(RESULT_API_SAMPLES, latencyN); i++) {
      const t0 = performance.now();
      const handle = await client.start("order_processing", orderInput(2), { id: `api-${i}` });
      await withTimeout(handle.result(), 30_000, `workflow api-${i}`);
      api.push(performance.now() - t0);
    }
    const s = summarize(samples);
    const r = summarize(rawSamples);
    const a = summarize(api);
    return {
      figure: "latency",
      workflow: "order_processing",
      steps_per_workflow: 4,
      p50_ms: s.p50_ms,
      p99_ms: s.p99_ms,
      latency: s,
      wait_mode: waitMode,
      raw_interleaved: { p50_ms: r.p50_ms, p99_ms: r.p99_ms, latency: r },
      result_api: { n: a.n, p50_ms: a.p50_ms, p99_ms: a.p99_ms },
    };
  } finally {
    await client.close().catch(() => undefined);
    await stopAll(runtimes);
  }
}
