/**
 * The engine end to end against a real nats-server: happy paths (code workflow, the example DAG,
 * a diamond DAG), idempotency (same id twice, duplicated completion events) and scale-out (two
 * runtimes sharing the work). Failures and retries: engine-failures.test.ts; the wire contract,
 * bad messages and config errors: engine-wire.test.ts.
 */
import { describe, expect, it, vi } from "vitest";
import { defineDag, type ActivityContext, type WorkflowContext } from "../runtime/index.js";
import { encode, type CompletionMessage } from "../runtime/protocol.js";
import { abortableSleep, deferred, Engine, ms, resultSignal, sleep, waitFor, waitForEventsApplied, useEngines } from "./fixtures/engine/harness.js";

// functions/ imports "jetflow/workflow", which resolves through package.json's exports to dist/
// (only there after a build); point it at the source so the suite runs without a build.
vi.mock("jetflow/workflow", () => import("../runtime/workflow-api.js"));
import * as orderActivities from "../functions/activities/orders.js";
import { order_processing } from "../functions/workflows/order_processing.js";

const engine = useEngines();

describe("happy paths", () => {
  it("runs a code workflow: correct result, steps completed in order, journal in order", async () => {
    const e = engine();
    const calls: string[] = [];
    const activities = {
      add: async (input: { x: number; y: number }, ctx: ActivityContext) => {
        calls.push(ctx.activityId);
        return input.x + input.y;
      },
      double: async (n: number, ctx: ActivityContext) => {
        calls.push(ctx.activityId);
        return n * 2;
      },
    };
    const workflow = async (ctx: WorkflowContext<typeof activities>, input: { n: number }) => {
      const sum = await ctx.activity<number>("add", { x: input.n, y: 1 });
      const doubled = await ctx.activities.double(sum);
      const before = ctx.now();
      await ctx.sleep("200ms"); // a durable timer between two steps
      const again = await ctx.activity<number>("add", { x: doubled, y: 100 }, { name: "add_more" });
      return { sum, doubled, again, id: ctx.uuid(), slept: ctx.now() - before };
    };
    await e.runtime({ workflows: { arith: workflow }, activities });
    const client = await e.client();
    const handle = await client.start("arith", { n: 4 }, { id: "arith-1" });
    const result = (await handle.result(resultSignal())) as Record<string, unknown>;
    expect(result).toMatchObject({ sum: 5, doubled: 10, again: 110 });
    expect(result.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(result.slept as number).toBeGreaterThanOrEqual(0.8 * 200);

    const state = await handle.describe();
    expect(state).toMatchObject({ id: "arith-1", workflow: "arith", status: "completed", kind: "code", input: { n: 4 } });
    expect(state.result).toEqual(result);
    expect(calls).toEqual(["add", "double", "add_more"]);
    expect(state.journal).toEqual(["add", "double", "sleep", "add_more"]);
    expect(state.steps.sleep).toMatchObject({ kind: "sleep", status: "completed", seq: 2 });
    expect(ms(state.steps.add_more!.startedAt)).toBeGreaterThanOrEqual(ms(state.steps.double!.finishedAt) + 0.8 * 200);
    const order = ["add", "double", "add_more"];
    order.forEach((name, i) => {
      const step = state.steps[name]!;
      expect(step, name).toMatchObject({ kind: "activity", status: "completed", attempt: 1, seq: i === 2 ? 3 : i });
      expect(ms(step.startedAt, `${name}.startedAt`)).toBeLessThanOrEqual(ms(step.finishedAt, `${name}.finishedAt`));
      if (i > 0) {
        const previous = state.steps[order[i - 1]!]!;
        expect(ms(step.startedAt), `${name} started after ${order[i - 1]} finished`).toBeGreaterThanOrEqual(ms(previous.finishedAt));
      }
    });
    expect(state.steps.add!.output).toBe(5);
    expect(state.steps.double!).toMatchObject({ activity: "double", input: 5, output: 10 });
    expect(state.steps.add_more!).toMatchObject({ activity: "add", input: { x: 10, y: 100 }, output: 110 });
    expect(ms(state.createdAt)).toBeLessThanOrEqual(ms(state.updatedAt));
  });

  it("runs the example order_processing DAG: four outputs, each step after its dependency", async () => {
    const e = engine();
    await e.runtime({ workflows: { order_processing }, activities: { ...orderActivities } });
    const client = await e.client();
    const order = { orderId: "o-17", amount: 120, items: [{ sku: "book", qty: 2 }, { sku: "pen", qty: 3 }], email: "ann@example.com" };
    const handle = await client.start("order_processing", order, { id: "order-17" });
    const result = await handle.result(resultSignal());
    expect(result).toEqual({
      validate_order: { valid: true, itemCount: 5 },
      charge_payment: { chargeId: "ch_o-17", amount: 120, idempotencyKey: "order-17/charge_payment" },
      ship_order: { trackingNumber: "TRK-o-17", carrier: "jetpost" },
      send_notification: { to: "ann@example.com", message: "Order o-17 is on its way (tracking TRK-o-17)" },
    });
    const state = await client.describe("order-17");
    expect(state).toMatchObject({ status: "completed", kind: "dag", workflow: "order_processing" });
    for (const [name, dependency] of [
      ["charge_payment", "validate_order"],
      ["ship_order", "charge_payment"],
      ["send_notification", "ship_order"],
    ] as const) {
      expect(state.steps[name]!.status).toBe("completed");
      expect(ms(state.steps[name]!.startedAt), `${name} started after ${dependency} finished`).toBeGreaterThanOrEqual(ms(state.steps[dependency]!.finishedAt));
    }
    expect(state.journal).toEqual(["validate_order", "charge_payment", "ship_order", "send_notification"]);
    // A step's input is the workflow input plus the outputs of its dependencies, keyed by step name.
    expect(state.steps.ship_order!.input).toEqual({ ...order, charge_payment: result.charge_payment });
  });

  it("runs the independent branches of a diamond DAG in parallel and merges their outputs", async () => {
    const e = engine();
    const inputs: Record<string, unknown> = {};
    const diamond = defineDag({
      name: "diamond",
      activities: [
        { name: "a", type: "nap" },
        { name: "b", type: "nap", dependencies: ["a"] },
        { name: "c", type: "nap", dependencies: ["a"] },
        { name: "d", type: "nap", dependencies: ["b", "c"] },
      ],
    });
    await e.runtime({
      workflows: { diamond },
      activities: {
        nap: async (input: unknown, ctx: ActivityContext) => {
          inputs[ctx.activityId] = input;
          await sleep(300);
          return { step: ctx.activityId, value: ctx.activityId.toUpperCase() };
        },
      },
    });
    const client = await e.client();
    const input = { orderId: "d-1", qty: 3 };
    const result = (await (await client.start("diamond", input, { id: "diamond-1" })).result(resultSignal())) as Record<string, unknown>;
    const out = (step: string) => ({ step, value: step.toUpperCase() });
    expect(result).toEqual({ a: out("a"), b: out("b"), c: out("c"), d: out("d") });

    const state = await client.describe("diamond-1");
    const [a, b, c, d] = ["a", "b", "c", "d"].map((n) => state.steps[n]!);
    // b and c overlap in time ...
    expect(ms(b!.startedAt), "b started before c finished").toBeLessThan(ms(c!.finishedAt));
    expect(ms(c!.startedAt), "c started before b finished").toBeLessThan(ms(b!.finishedAt));
    // ... both after a, and d after both.
    for (const s of [b!, c!]) expect(ms(s.startedAt)).toBeGreaterThanOrEqual(ms(a!.finishedAt));
    expect(ms(d!.startedAt)).toBeGreaterThanOrEqual(Math.max(ms(b!.finishedAt), ms(c!.finishedAt)));
    expect(inputs.a).toEqual(input);
    expect(inputs.b).toEqual({ ...input, a: out("a") });
    expect(inputs.d).toEqual({ ...input, b: out("b"), c: out("c") });
  });
});

describe("idempotency", () => {
  it("starts a workflow once when the same id is started twice, before and after completion", async () => {
    const e = engine();
    let calls = 0;
    const gate = deferred();
    await e.runtime({
      workflows: { once: async (ctx: WorkflowContext, input: { v: number }) => ctx.activity("count", input) },
      activities: {
        count: async (input: { v: number }) => {
          calls += 1;
          await gate.promise;
          return { calls, v: input.v };
        },
      },
    });
    const client = await e.client();
    const topology = client.topology;
    const first = await client.start("once", { v: 1 }, { id: "same-id" });
    const second = await client.start("once", { v: 2 }, { id: "same-id" }); // while the first runs
    await waitFor("the activity to start", () => calls > 0);
    // A start with the same id that JetStream cannot deduplicate (no Nats-Msg-Id): the orchestrator must.
    await topology.js.publish(topology.names.startSubject("once"), encode({ id: "same-id", input: { v: 3 } }));
    await waitForEventsApplied(topology);
    gate.resolve();
    expect(await first.result(resultSignal())).toEqual({ calls: 1, v: 1 });
    expect(await second.result(resultSignal())).toEqual({ calls: 1, v: 1 });

    const before = (await topology.states.get("same-id"))!;
    await client.start("once", { v: 4 }, { id: "same-id" }); // after completion
    await topology.js.publish(topology.names.startSubject("once"), encode({ id: "same-id", input: { v: 5 } }));
    await waitForEventsApplied(topology);
    const after = (await topology.states.get("same-id"))!;
    expect(after.revision).toBe(before.revision);
    expect(calls).toBe(1);
    const state = await client.describe("same-id");
    expect(state).toMatchObject({ status: "completed", input: { v: 1 }, result: { calls: 1, v: 1 } });
    const listed = (await client.listPage({ workflow: "once" })).workflows.filter((s) => s.id === "same-id");
    expect(listed).toHaveLength(1);
  });

  it("ignores a duplicated completion after the workflow completed: no new revision, no new activity", async () => {
    const e = engine();
    const calls: Record<string, number> = {};
    const count = (name: string) => async (input: unknown) => {
      calls[name] = (calls[name] ?? 0) + 1;
      return { name, input };
    };
    await e.runtime({
      workflows: {
        pair: async (ctx: WorkflowContext) => {
          const x = await ctx.activity("first", 1);
          const y = await ctx.activity("second", 2);
          return { x, y };
        },
      },
      activities: { first: count("first"), second: count("second") },
    });
    const client = await e.client();
    const { js, names, states } = client.topology;
    const result = await (await client.start("pair", null, { id: "dup-done" })).result(resultSignal());
    const before = (await states.get("dup-done"))!;
    const stateBefore = await client.describe("dup-done");

    const forged = (step: string, attempt: number, output: unknown): CompletionMessage => ({
      workflowId: "dup-done",
      step,
      attempt,
      startedAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      worker: "forger",
      ok: true,
      output,
    });
    // The same completion again, a later attempt, a failure, and an unknown step: all no-ops.
    await js.publish(names.completedSubject("dup-done", "first"), encode(forged("first", 1, "again")));
    await js.publish(names.completedSubject("dup-done", "second"), encode(forged("second", 2, "later attempt")));
    await js.publish(names.completedSubject("dup-done", "first"), encode({ ...forged("first", 1, null), ok: false, error: { message: "late failure", type: "Error" } }));
    await js.publish(names.completedSubject("dup-done", "nope"), encode(forged("nope", 1, "unknown step")));
    await waitForEventsApplied(client.topology);
    await sleep(1_000);

    const after = (await states.get("dup-done"))!;
    expect(after.revision).toBe(before.revision);
    expect(await client.describe("dup-done")).toEqual(stateBefore);
    expect(await client.result("dup-done", resultSignal())).toEqual(result);
    expect(calls).toEqual({ first: 1, second: 1 });
  });

  it("ignores a duplicated completion of a finished step while the workflow runs: the next step is dispatched once", async () => {
    const e = engine();
    const calls = { first: 0, second: 0, third: 0 };
    const secondRunning = deferred();
    const releaseSecond = deferred();
    await e.runtime({
      workflows: {
        chain: async (ctx: WorkflowContext) => {
          const a = await ctx.activity("first", "a");
          const b = await ctx.activity("second", a);
          return ctx.activity("third", b);
        },
      },
      activities: {
        first: async (x: string) => {
          calls.first += 1;
          return `${x}1`;
        },
        second: async (x: string) => {
          calls.second += 1;
          secondRunning.resolve();
          await releaseSecond.promise;
          return `${x}2`;
        },
        third: async (x: string) => {
          calls.third += 1;
          return `${x}3`;
        },
      },
    });
    const client = await e.client();
    const { js, names, states } = client.topology;
    const handle = await client.start("chain", null, { id: "dup-mid" });
    try {
      await secondRunning.promise;
      const before = (await states.get("dup-mid"))!;
      const original = before.json<{ steps: Record<string, { startedAt: string; finishedAt: string; worker: string }> }>().steps.first!;
      const duplicate: CompletionMessage = {
        workflowId: "dup-mid",
        step: "first",
        attempt: 1,
        startedAt: original.startedAt,
        finishedAt: original.finishedAt,
        worker: original.worker,
        ok: true,
        output: "a1",
      };
      // Twice, without a Nats-Msg-Id (JetStream cannot drop them): the same report again, as a
      // duplicated publish would look (another execution's report would make it repair).
      await js.publish(names.completedSubject("dup-mid", "first"), encode(duplicate));
      await js.publish(names.completedSubject("dup-mid", "first"), encode({ ...duplicate, output: "different" }));
      await waitForEventsApplied(client.topology);
      await sleep(500);
      expect((await states.get("dup-mid"))!.revision).toBe(before.revision);
      expect(calls).toEqual({ first: 1, second: 1, third: 0 });
      const tasks = await client.topology.jsm.streams.info(names.tasksStream);
      expect(tasks.state.messages, "no second task for step second is queued").toBe(1); // the running one, not yet acked
    } finally {
      releaseSecond.resolve();
    }
    expect(await handle.result(resultSignal())).toBe("a123");
    expect(calls).toEqual({ first: 1, second: 1, third: 1 });
  });
});

describe("scale-out", () => {
  it("shares activities between two runtimes on the same NATS", async () => {
    const e = engine();
    const ran: Array<{ workflowId: string; tag: string }> = [];
    const work = (tag: string) => async (input: { i: number }, ctx: ActivityContext) => {
      ran.push({ workflowId: ctx.workflowId, tag });
      await abortableSleep(100, ctx.signal);
      return { i: input.i, tag };
    };
    const workflows = { fanout: async (ctx: WorkflowContext, input: { i: number }) => ctx.activity("work", input) };
    const rtA = await e.runtime({ workflows, activities: { work: work("A") }, config: { worker: { id: `${e.namespace}-A`, slots: 3 } } });
    const rtB = await e.runtime({ workflows, activities: { work: work("B") }, config: { worker: { id: `${e.namespace}-B`, slots: 3 } } });
    expect(rtA.workerId).toBe(`${e.namespace}-A`);
    expect(rtB.workerId).toBe(`${e.namespace}-B`);
    const workerOf: Record<string, string> = { A: rtA.workerId, B: rtB.workerId };

    const client = await e.client();
    const handles = await Promise.all(Array.from({ length: 20 }, (_, i) => client.start("fanout", { i }, { id: `fan-${i}` })));
    const results = (await Promise.all(handles.map((h) => h.result(resultSignal())))) as Array<{ i: number; tag: string }>;
    expect(results.map((r) => r.i)).toEqual(Array.from({ length: 20 }, (_, i) => i));

    const states = await Promise.all(handles.map((h) => h.describe()));
    const workers = new Set(states.map((s) => s.steps.work!.worker));
    expect([...workers].sort()).toEqual([rtA.workerId, rtB.workerId].sort());
    // Each step records the runtime that really ran it.
    for (const [i, s] of states.entries()) expect(s.steps.work!.worker).toBe(workerOf[results[i]!.tag]);
    expect(ran).toHaveLength(20); // each activity ran once
  });

  it("completes multi-step workflows whose events are applied by two runtimes in turn", async () => {
    // Both runtimes host the orchestrator: consecutive events of one workflow land on either, so
    // each runtime must cope with a state another runtime advanced (its cached copy is stale).
    const e = engine();
    const attempts = new Map<string, number>();
    const activities = {
      step: async (input: { i: number; k: number }, ctx: ActivityContext) => {
        const key = `${ctx.workflowId}/${ctx.activityId}`;
        attempts.set(key, (attempts.get(key) ?? 0) + 1);
        // Every workflow's second step fails once, so retries (timers) are in the mix too.
        if (input.k === 1 && ctx.attempt === 1) throw new Error("transient");
        await sleep(5 + ((input.i * 7 + input.k * 3) % 20));
        return input.k + 1;
      },
    };
    const workflows = {
      steps4: async (ctx: WorkflowContext, input: { i: number }) => {
        let k = 0;
        for (let n = 0; n < 4; n++) k = await ctx.activity<number>("step", { i: input.i, k }, { retry: { maxRetries: 2, initialInterval: "50ms" } });
        return { i: input.i, k };
      },
    };
    await e.runtime({ workflows, activities, config: { worker: { slots: 4 } } });
    await e.runtime({ workflows, activities, config: { worker: { slots: 4 } } });
    const client = await e.client();
    const handles = await Promise.all(Array.from({ length: 20 }, (_, i) => client.start("steps4", { i }, { id: `multi-${i}` })));
    const results = await Promise.all(handles.map((h) => h.result(resultSignal(30_000))));
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => ({ i, k: 4 })));
    for (let i = 0; i < 20; i++) {
      expect(attempts.get(`multi-${i}/step`), `multi-${i}/step`).toBe(1);
      expect(attempts.get(`multi-${i}/step-2`), `multi-${i}/step-2`).toBe(2);
    }
  });
});
