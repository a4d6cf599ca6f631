/**
 * Releases are not crashes (worker/release.ts): a worker that gives a task back (its completion
 * was not recorded, it stops, it has no code for it) releases it, and worker.maxDeliveries must
 * count only the deliveries that ended without any answer. The release is injected at the pool's
 * real boundary: its applyCompletion answers "released" (what the orchestrator answers when the
 * state no longer knows the step).
 */
import { describe, expect, it } from "vitest";
import { createRegistry } from "../runtime/definitions.js";
import { hostRealm } from "../runtime/journal/execution.js";
import { createConsoleLogger } from "../runtime/logger.js";
import type { LocalOutcome } from "../runtime/orchestrator/loop.js";
import { encode, type CompletionMessage, type TaskMessage } from "../runtime/protocol.js";
import { createWorkerPool } from "../runtime/worker/pool.js";
import { ActivityFailure } from "../runtime/workflow-api.js";
import { ensureActivityConsumer } from "../runtime/nats/topology.js";
import { createLeases } from "../runtime/worker/leases.js";
import { useEngines, waitFor } from "./fixtures/engine/harness.js";
import type { Runtime } from "../runtime/index.js";
import type { WorkflowContext } from "../runtime/workflow-api.js";

const engine = useEngines();

describe("worker releases", () => {
  it("a task released more than worker.maxDeliveries times because its completion could not be recorded still completes", async () => {
    const e = engine();
    const maxDeliveries = 2;
    const hiccups = maxDeliveries + 2; // more releases in a row than the crash-loop limit
    const config = e.config({ worker: { maxDeliveries } });
    const topology = await e.topology();
    let runs = 0;
    const registry = createRegistry({
      version: "test",
      workflows: {},
      activities: {
        work: async () => {
          runs += 1;
          return "done";
        },
      },
      realm: hostRealm(ActivityFailure),
    });
    const received: CompletionMessage[] = [];
    const pool = createWorkerPool({
      topology,
      config,
      logger: createConsoleLogger({ level: "warn" }),
      registry: () => registry,
      leases: createLeases(topology, "test"),
      applyCompletion: async (completion): Promise<LocalOutcome> => {
        received.push(completion);
        return received.length <= hiccups ? "released" : "applied";
      },
    });
    await pool.start();
    try {
      const task: TaskMessage = { workflowId: "rel-1", workflow: "wf", step: "work", activity: "work", attempt: 1, input: null, timeoutMs: 5_000, scheduledAt: new Date().toISOString() };
      await topology.js.publish(topology.names.taskSubject("work"), encode(task), { msgID: "rel-1/work/1" });
      await waitFor("the completion recorded", async () => (received.length > hiccups ? true : undefined), 30_000);
      expect(received.map((c) => (c.ok ? "ok" : c.error.type))).toEqual(Array(hiccups + 1).fill("ok"));
      expect(runs).toBe(hiccups + 1);
      // Acked: nothing left for the type's consumer.
      await waitFor("the task acked", async () => ((await topology.jsm.streams.info(topology.names.tasksStream)).state.messages === 0 ? true : undefined));
    } finally {
      await pool.stop("test end");
    }
  });

  it("still counts crashes: a delivery that ended without an answer", async () => {
    const e = engine();
    const config = e.config({ worker: { maxDeliveries: 1, ackWait: "1s" } });
    const topology = await e.topology();
    const { names, js } = topology;
    let runs = 0;
    const registry = createRegistry({ version: "test", workflows: {}, activities: { work: async () => (runs += 1) }, realm: hostRealm(ActivityFailure) });
    const task = (workflowId: string): TaskMessage => ({ workflowId, workflow: "wf", step: "work", activity: "work", attempt: 1, input: null, timeoutMs: 5_000, scheduledAt: new Date().toISOString() });
    // A runtime that died running it: pulled through the shared consumer and never answered.
    await ensureActivityConsumer(topology, "work", config.worker.ackWaitMs);
    await js.publish(names.taskSubject("work"), encode(task("crashed-1")), { msgID: "crashed-1/work/1" });
    const consumer = await js.consumers.get(names.tasksStream, names.activityConsumer("work"));
    const dropped = await consumer.next({ expires: 5_000 });
    expect(dropped?.info.deliveryCount).toBe(1);
    const received: CompletionMessage[] = [];
    const pool = createWorkerPool({
      topology,
      config,
      logger: createConsoleLogger({ level: "error" }),
      registry: () => registry,
      leases: createLeases(topology, "test"),
      applyCompletion: async (completion): Promise<LocalOutcome> => {
        received.push(completion);
        return "applied";
      },
    });
    await pool.start();
    try {
      await waitFor("the completion", async () => (received.length >= 1 ? true : undefined), 20_000);
      for (const completion of received) {
        expect(completion.ok ? "ok" : completion.error.type).toBe("ActivityCrashLoopError");
        expect(completion.ok ? "" : completion.error.message).toMatch(/crashed or lost its runtime 1 times \(worker.maxDeliveries=1\)/);
      }
      expect(received.map((c) => c.workflowId)).toEqual(["crashed-1"]);
      expect(runs).toBe(0);
    } finally {
      await pool.stop("test end");
    }
  });

  it("a runtime that stops while the state write offering it the next step is in flight releases that step's lease: another runtime runs it", async () => {
    // The pool stops (its pulling aborted) between choosing to continue the next step here and
    // starting it: the start must release the lease (the task message of the step before), not
    // throw half way through recording the completion, which acked that message with the next
    // step marked as continued here: nobody ever ran it again.
    const e = engine();
    const workflows = {
      two_steps: async (ctx: WorkflowContext) => (await ctx.activity<number>("first")) + (await ctx.activity<number>("second")),
    };
    const activities = { first: async () => 1, second: async () => 2 };
    let stopping: Promise<void> | undefined;
    const first: Runtime = await e.runtime({
      workflows,
      activities,
      crashPoint: (name) => {
        // The completion of "first" is about to be written, with "second" continued here.
        if (name === "before-state-write" && !stopping) stopping = e.stopRuntime(first);
      },
    });
    const client = await e.client();
    const handle = await client.start("two_steps", null, { id: "stop-mid-write" });
    await waitFor("the first runtime stopping", async () => (stopping ? true : undefined));
    await stopping;
    const continued = (await client.describe("stop-mid-write")).steps.second;
    expect(continued?.status).toBe("scheduled");
    expect(continued?.continued).toBeDefined(); // the write did mark it as continued by the runtime that stopped
    await e.runtime({ workflows, activities });
    expect(await handle.result({ signal: AbortSignal.timeout(15_000) })).toBe(3);
  });
});

