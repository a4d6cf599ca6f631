/**
 * Probe for the memory figure (not a bench figure): where a `wf run` process's memory is right
 * after N workflows started and parked (the figure's 3 s reading) and 30 s later. The runtime
 * serves /metrics; Node's heap (used, total), external and array-buffer bytes, and RSS are
 * printed at each reading.
 *   NATS_SERVER_BIN=… node --import tsx bench/probes/memory-burst.mts   (after npm run build)
 * RUNTIME_NODE_OPTIONS: Node options of the runtime (e.g. --max-semi-space-size=64).
 * SNAPSHOT_DIR=<dir>: also take a heap snapshot (which runs a full GC first) right after the 3 s
 * reading, and read again.
 * Measured 2026-12-03 (2.10.27, 10,000 sleepers): idle RSS 72-76 MB, heap used 16-17 MB; 3 s after
 * all waiting RSS 161-169 MB, heap used 44-82 MB (old space 39-67 MB); after a full GC heap used
 * 19.0 MB (the 10,000 sleepers hold about 3 MB); without one, V8 collects by itself about 30 s
 * later (RSS 79.9 MB, heap used 18.3 MB at 33 s). So the memory figure's 3 s reading is garbage of
 * the start burst that V8 has not collected yet, not what the waiting workflows hold. With
 * --max-semi-space-size=64 (README's CPU tuning) the 3 s reading is 239 MB: a larger young
 * generation, and no smaller old one.
 */
import type { WorkflowState } from "../../runtime/index.js";
import { startNatsServer } from "../../test/helpers/nats-server.js";
import { freePort } from "../../test/helpers/ports.js";
import { benchClient, namespaceFor, type BenchContext } from "../lib/context.js";
import { spawnRuntime, stopAll, waitUntilPulling } from "../lib/runtimes.js";
import { runPool, sleep } from "../lib/stats.js";
import { createWaiter } from "../lib/waiter.js";
import { FIXTURE_FUNCTIONS } from "../replay.js";

const N = Number(process.env.N ?? 10_000);
const server = await startNatsServer();
const ctx = { natsUrl: server.url } as BenchContext;
const namespace = namespaceFor("memprobe");
const client = await benchClient(ctx, namespace);
const port = await freePort();
const rt = spawnRuntime({ natsUrl: server.url, namespace, functionsDir: FIXTURE_FUNCTIONS, label: "mem", env: { WF_METRICS_PORT: String(port), NODE_OPTIONS: [process.env.RUNTIME_NODE_OPTIONS ?? "", process.env.SNAPSHOT_DIR ? `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${process.env.SNAPSHOT_DIR}` : ""].join(" ").trim() } });
await waitUntilPulling(client.topology.jsm, namespace, ["bench_step"], [rt]);
const reading = async (label: string) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, "m").exec(text)?.[1] ?? NaN) / 1048576;
  const spaces = [...text.matchAll(/^nodejs_heap_space_size_used_bytes\{space="([^"]+)"\} ([0-9.e+]+)$/gm)].map((m) => `${m[1]} ${(Number(m[2]) / 1048576).toFixed(1)}`);
  console.log(`${label}: rss ${rt.rssMb()?.toFixed(1)} MB, heap used ${metric("nodejs_heap_size_used_bytes").toFixed(1)} of ${metric("nodejs_heap_size_total_bytes").toFixed(1)}, external ${metric("nodejs_external_memory_bytes").toFixed(1)}; spaces used: ${spaces.join(", ")}`);
};
await reading("idle");
const waiting = new Set<string>();
let all: () => void = () => undefined;
const reached = new Promise<void>((r) => (all = r));
const watch = await createWaiter(client, "watch-all", {
  onState: (s: WorkflowState) => {
    if (s.workflow === "bench_sleeper" && Object.values(s.steps).some((x) => x.kind === "sleep" && x.status === "waiting") && !waiting.has(s.id)) {
      waiting.add(s.id);
      if (waiting.size >= N) all();
    }
  },
});
await runPool(N, 256, async (i) => void (await client.start("bench_sleeper", { n: i }, { id: `sleeper-${i}` })));
await reached;
await watch.close();
await sleep(3_000);
await reading("3 s after all waiting");
if (process.env.SNAPSHOT_DIR) {
  // A heap snapshot collects the garbage first: what is left is what the runtime holds.
  process.kill(rt.pid, "SIGUSR2");
  await sleep(8_000);
  await reading("after a heap snapshot (a full GC)");
}
await sleep(10_000);
await reading("13 s");
await sleep(20_000);
await reading("33 s");
await client.close();
await stopAll([rt]);
await server.stop();
