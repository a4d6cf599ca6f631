/**
 * Probe for the 4 s ack waits (not a bench figure): does a loaded runtime get its own messages
 * redelivered? One runtime and a client in this process (the repo's functions/, order_processing)
 * run N workflows with C in flight, more than the machine keeps up with; then the events
 * consumer's and every activity consumer's `num_redelivered`, and the runtime's warnings of a
 * blocked event loop, are printed. With a live runtime and the keep-alive, both should be 0.
 *   NATS_SERVER_BIN=… node --import tsx bench/probes/redeliveries-under-load.mts
 * Env: N (default 5000), C (default 600).
 * Measured 2026-12-03 (2.10.27, 2 shared cores): 5,000 workflows with 600 in flight (2,496 steps/s)
 * and 20,000 with 5,000 in flight (2,755 steps/s): num_redelivered 0 on every consumer, no warning.
 */
import { join } from "node:path";
import { createClient, createRuntime, loadConfig, type Logger } from "../../runtime/index.js";
import { startNatsServer } from "../../test/helpers/nats-server.js";
import { orderInput } from "../lib/context.js";
import { REPO_ROOT } from "../lib/runtimes.js";
import { runPool } from "../lib/stats.js";

const N = Number(process.env.N ?? 5000);
const C = Number(process.env.C ?? 600);
const warnings: string[] = [];
const logger: Logger = { debug() {}, info() {}, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(`error: ${m}`), child: () => logger };

const server = await startNatsServer();
const config = loadConfig({ env: {}, cwd: REPO_ROOT, overrides: { nats: { servers: [server.url] }, namespace: "load", log: { level: "warn" }, functions: { dir: join(REPO_ROOT, "functions") } } });
const runtime = await createRuntime({ config, code: "local", logger });
await runtime.start();
const client = await createClient({ config, logger });
const t0 = performance.now();
await runPool(N, C, async (i) => {
  await client.start("order_processing", orderInput(i), { id: `load-${i}` });
  const state = await client.result(`load-${i}`).catch((err: Error) => err);
  if (state instanceof Error) throw state;
});
const seconds = (performance.now() - t0) / 1000;
const { jsm, names } = client.topology;
const consumers = [
  [names.eventsStream, names.orchestratorConsumer],
  ...(await jsm.consumers.list(names.tasksStream).next()).map((c) => [names.tasksStream, c.name]),
] as const;
console.log(`${N} workflows, ${C} in flight, ${seconds.toFixed(1)} s (${Math.round((N * 4) / seconds)} steps/s), nats-server ${server.version}`);
for (const [stream, name] of consumers) {
  const info = await jsm.consumers.info(stream, name);
  console.log(`  ${name}: num_redelivered ${info.num_redelivered}, ack pending ${info.num_ack_pending}, ack wait ${(info.config.ack_wait ?? 0) / 1e6} ms`);
}
console.log(`  warnings: ${warnings.filter((w) => /blocked/.test(w)).length} of a blocked event loop, ${warnings.length} in all${warnings.length ? `; first: ${warnings[0]!.slice(0, 200)}` : ""}`);
await client.close();
await runtime.stop("probe");
await server.stop();
