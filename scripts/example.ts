/**
 * `npm run example`: the example application end to end in one process — a runtime hosting
 * functions/, and a client that runs three orders through both workflow kinds and prints each
 * workflow's step timeline. Uses the NATS server at NATS_URL (default localhost:4222) if one
 * answers; else starts nats-server there (store .wf/nats, stopped at the end, as `wf dev` does);
 * else fails at once with the command that installs nats-server.
 */
import { join } from "node:path";
import { createClient, createRuntime, loadConfig, WorkflowFailedError } from "../runtime/index.js";
import { JetflowError } from "../runtime/errors.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { ensureDevNats, type DevNats } from "../runtime/nats/local-server.js";
import { renderState } from "../cli/output.js";

const overrides = { namespace: process.env.WF_NAMESPACE ?? "example", log: { level: process.env.WF_LOG_LEVEL ?? "warn" } };
const initial = loadConfig({ overrides });
let nats: DevNats;
try {
  nats = await ensureDevNats(initial.nats.servers, { storeDir: join(process.cwd(), ".wf", "nats"), logger: createConsoleLogger({ level: "info" }) });
} catch (err) {
  if (!(err instanceof JetflowError)) throw err;
  process.stderr.write(`error: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ""}`);
  process.exit(1);
}
const config = nats.started ? loadConfig({ overrides: { ...overrides, nats: { servers: [nats.url] } } }) : initial;
console.log(`NATS ${nats.url}${nats.started ? ` (started for this example, pid ${nats.pid}, store .wf/nats; stopped at the end)` : ""}`);

const order = { orderId: `o-${Date.now()}`, amount: 42, items: [{ sku: "book", qty: 2 }], email: "ada@example.com" };
const runs = [
  { title: "DAG order_processing, charge_payment failing twice then succeeding", workflow: "order_processing", input: { ...order, simulateFailures: { charge_payment: 2 } } },
  { title: "code workflow order_saga, shipping failing for good: the payment is refunded", workflow: "order_saga", input: { ...order, orderId: `${order.orderId}-saga`, simulateFailures: { ship_order: 5 } } },
  { title: "an order over the limit fails validation at once (not retryable)", workflow: "order_processing", input: { ...order, orderId: `${order.orderId}-big`, amount: 50_000 } },
];

const runtime = await createRuntime({ config });
try {
  await runtime.start();
  const client = await createClient({ config });
  try {
    for (const run of runs) {
      console.log(`\n=== ${run.title}`);
      const handle = await client.start(run.workflow, run.input);
      try {
        await handle.result({ signal: AbortSignal.timeout(60_000) });
      } catch (err) {
        if (!(err instanceof WorkflowFailedError)) throw err;
      }
      console.log(renderState(await handle.describe()));
    }
  } finally {
    await client.close();
  }
} finally {
  await runtime.stop();
  await nats.stop();
}
