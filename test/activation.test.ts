/**
 * The activation barrier of realms that settle within microtasks (the DAG interpreter): every
 * activation lets the promise chains its action started run for the realm's number of microtask
 * generations before it returns, whatever else activates at the same time (the generations are
 * counted by one hop chain that all waiting activations share: journal/execution.ts).
 */
import { describe, expect, it } from "vitest";
import { activate, hostRealm, WorkflowExecution, type WorkflowRealm } from "../runtime/journal/execution.js";
import { silentLogger } from "../runtime/logger.js";
import { ActivityFailure } from "../runtime/workflow-api.js";

const HOPS = 16;
/** What HOPS hops of an activation's own (`await undefined` each, the barrier before it was shared) settle: a chain one longer. */
const SETTLED = HOPS + 1;
const realm: WorkflowRealm = { ...hostRealm(ActivityFailure), settlesWithinMicrotasks: HOPS };

/** An execution waiting on one activity (so the barrier's macrotask fallback never applies). */
async function waitingExecution(id: string): Promise<WorkflowExecution> {
  const execution = new WorkflowExecution({ workflowId: id, workflow: "w", fn: async (ctx) => ctx.activity("a"), input: null, realm, logger: silentLogger });
  await activate(execution, 0, () => execution.begin());
  expect(execution.awaitingCount).toBe(1);
  return execution;
}

/** A chain of `length` promise reactions, started now; `done()` tells whether its last one ran. */
function chain(length: number): () => boolean {
  let done = false;
  let p: Promise<void> = Promise.resolve();
  for (let i = 1; i < length; i++) p = p.then(() => undefined);
  void p.then(() => (done = true));
  return () => done;
}

describe("activation barrier (settlesWithinMicrotasks)", () => {
  it("an activation alone lets a chain of its realm's hop count settle, not one much longer", async () => {
    const execution = await waitingExecution("alone");
    let short: () => boolean = () => false;
    await activate(execution, 0, () => (short = chain(SETTLED)));
    expect(short()).toBe(true);
    let long: () => boolean = () => true;
    await activate(execution, 0, () => (long = chain(HOPS * 3)));
    expect(long()).toBe(false);
  });

  it("activations that start in different microtask generations while others wait each get their full count", async () => {
    const executions = await Promise.all(Array.from({ length: 40 }, (_, i) => waitingExecution(`w${i}`)));
    const settled = await Promise.all(
      executions.map(async (execution, i) => {
        // Staggered: each starts i generations later, while the earlier ones wait on the shared hops.
        for (let k = 0; k < i; k++) await undefined;
        let done: () => boolean = () => false;
        await activate(execution, 0, () => (done = chain(SETTLED)));
        return done();
      }),
    );
    expect(settled).toEqual(executions.map(() => true));
  });
});
