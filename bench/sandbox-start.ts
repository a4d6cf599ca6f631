/**
 * By hand: `node --import tsx bench/sandbox-start.ts [n]`. Time to start n code workflow
 * executions (bind, construct, first activation) of the example bundle in functions/, without
 * NATS: what a per-execution module instance costs on the start path (issue 11, item 12).
 */
import { join } from "node:path";
import { tmpdir } from "node:os";
import { buildFunctions } from "../runtime/bundle/build.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { bindWorkflow } from "../runtime/definitions.js";
import { activate, WorkflowExecution } from "../runtime/journal/execution.js";
import { silentLogger } from "../runtime/logger.js";

const n = Number(process.argv[2] ?? 1000);
const bundle = await buildFunctions(join(process.cwd(), "functions"));
const registry = await loadBundle(bundle, { logger: silentLogger, cacheDir: join(tmpdir(), "jetflow-sandbox-start") });
const definition = registry.workflows.get("order_saga")!;
const order = { orderId: "o-1", customerEmail: "a@example.com", items: [{ sku: "A", quantity: 1, priceCents: 100 }] };

async function startMany(count: number, prefix: string): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const id = `${prefix}-${i}`;
    const execution = new WorkflowExecution({ workflowId: id, workflow: definition.name, ...bindWorkflow(definition, id), input: order, logger: silentLogger });
    await activate(execution, 1_700_000_000_000, () => execution.begin());
    if (execution.takeIssued().length !== 1) throw new Error("expected one command");
  }
  return performance.now() - t0;
}

await startMany(200, "warm");
const runs: number[] = [];
for (let r = 0; r < 5; r++) runs.push(await startMany(n, `run${r}`));
runs.sort((a, b) => a - b);
console.log(`${n} starts: median ${runs[2]!.toFixed(1)} ms (${((runs[2]! * 1000) / n).toFixed(1)} µs each), min ${runs[0]!.toFixed(1)} ms, max ${runs[4]!.toFixed(1)} ms`);
