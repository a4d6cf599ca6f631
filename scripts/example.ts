/**
 * `npm run example`: the example application end to end in one process — a runtime hosting
 * functions/, and a client that runs three orders through both workflow kinds and prints each
 * workflow's step timeline. Needs a NATS server with JetStream at NATS_URL (default localhost:4222).
 */
import { createClient, createRuntime, loadConfig, WorkflowFailedError } from "../runtime/index.js";
import { renderState } from "../cli/output.js";

const config = loadConfig({ overrides: { namespace: process.env.WF_NAMESPACE ?? "example", log: { level: process.env.WF_LOG_LEVEL ?? "warn" } } });
const runtime = await createRuntime({ config });
await runtime.start();
const client = await createClient({ config });

const order = { orderId: `o-${Date.now()}`, amount: 42, items: [{ sku: "book", qty: 2 }], email: "ada@example.com" };
const runs = [
  { title: "DAG order_processing, charge_payment failing twice then succeeding", workflow: "order_processing", input: { ...order, simulateFailures: { charge_payment: 2 } } },
  { title: "code workflow order_saga, shipping failing for good: the payment is refunded", workflow: "order_saga", input: { ...order, orderId: `${order.orderId}-saga`, simulateFailures: { ship_order: 5 } } },
  { title: "an order over the limit fails validation at once (not retryable)", workflow: "order_processing", input: { ...order, orderId: `${order.orderId}-big`, amount: 50_000 } },
];

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
  await runtime.stop();
}
