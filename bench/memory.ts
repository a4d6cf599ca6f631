/**
 * Memory: one `wf run` process holding N workflows that each sleep for an hour
 * (bench_sleeper in bench/fixtures/functions). Start them all, wait until every state records its
 * sleep as waiting (seen through a KV watch), let the runtime settle, then read its VmRSS.
 */
import type { WorkflowState } from "../runtime/index.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor } from "./lib/context.js";
import { spawnRuntime, stopAll, waitUntilPulling, type RuntimeProcess } from "./lib/runtimes.js";
import { round, runPool, sleep, withTimeout } from "./lib/stats.js";
import { createWaiter } from "./lib/waiter.js";
import { FIXTURE_FUNCTIONS } from "./replay.js";

const START_CONCURRENCY = 256;
const SETTLE_MS = 3_000;
/** More idle time before the second reading (rss_mb_settled). */
const SETTLED_MS = 30_000;

export async function memory(ctx: BenchContext): Promise<Figure> {
  const n = ctx.options.memoryN;
  const namespace = namespaceFor("mem");
  const runtimes: RuntimeProcess[] = [];
  const client = await benchClient(ctx, namespace);
  try {
    const rt = spawnRuntime({ natsUrl: ctx.natsUrl, namespace, functionsDir: FIXTURE_FUNCTIONS, slots: ctx.options.slots, label: "mem-rt1" });
    runtimes.push(rt);
    await waitUntilPulling(client.topology.jsm, namespace, ["bench_step"], runtimes);
    await sleep(500);
    const idleRss = rt.rssMb();

    const waitingIds = new Set<string>();
    let allWaiting: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => (allWaiting = resolve));
    const onState = (state: WorkflowState) => {
      if (state.workflow !== "bench_sleeper" || waitingIds.has(state.id)) return;
      if (Object.values(state.steps).some((s) => s.kind === "sleep" && s.status === "waiting")) {
        waitingIds.add(state.id);
        if (waitingIds.size >= n) allWaiting();
      }
    };
    const watch = await createWaiter(client, "watch-all", { onState });
    let startSeconds: number;
    let recordedSeconds: number;
    try {
      const t0 = performance.now();
      await withTimeout(
        runPool(n, START_CONCURRENCY, async (i) => void (await client.start("bench_sleeper", { n: i }, { id: `sleeper-${i}` }))),
        300_000,
        `starting ${n} workflows`,
      );
      startSeconds = (performance.now() - t0) / 1000;
      await withTimeout(reached, 600_000, `${n} workflows recorded as waiting (${waitingIds.size} so far)`).catch((err: Error) => {
        throw new Error(`${err.message}; runtime output:\n${rt.output()}`);
      });
      recordedSeconds = (performance.now() - t0) / 1000;
    } finally {
      await watch.close();
    }
    await sleep(SETTLE_MS);
    const rss = rt.rssMb();
    const hwm = rt.hwmMb();
    if (rss === undefined) throw new Error(`cannot read /proc/${rt.pid}/status (runtime exited?):\n${rt.output()}`);
    // The figure above still holds the garbage of starting n workflows in a few seconds; once the
    // runtime has been idle a while, V8 gives it back: what holding them costs for the next hour.
    await sleep(SETTLED_MS);
    const settled = rt.rssMb();
    return {
      figure: "memory",
      waiting_workflows: n,
      rss_mb: round(rss, 1),
      peak_rss_mb: round(hwm ?? NaN, 1),
      idle_rss_mb: round(idleRss ?? NaN, 1),
      rss_mb_settled: round(settled ?? NaN, 1),
      settled_after_s: (SETTLE_MS + SETTLED_MS) / 1000,
      kb_per_waiting_workflow: round(((rss - (idleRss ?? 0)) * 1024) / n, 2),
      start_publish_s: round(startSeconds, 2),
      all_waiting_after_s: round(recordedSeconds, 2),
      workflows_per_s_to_waiting: round(n / recordedSeconds, 1),
    };
  } finally {
    await client.close().catch(() => undefined);
    await stopAll(runtimes);
  }
}
