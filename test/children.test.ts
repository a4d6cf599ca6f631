/** Child workflows: ctx.executeChild / ctx.startChild, DAG child steps, parent close policies, bad input. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChildWorkflowFailure, createClient, createRuntime, defineDag, loadConfig, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

let nats: TestNats;
let counter = 0;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

const activities = {
  double: async (n: number) => n * 2,
  explode: async (message: string) => {
    throw Object.assign(new Error(message), { name: "ExplodeError" });
  },
};

export async function doubler(ctx: WorkflowContext, input: { n: number }): Promise<{ doubled: number }> {
  return { doubled: await ctx.activity<number>("double", input.n) };
}

const workflows = {
  doubler,
  async failing(ctx: WorkflowContext, input: { message: string }) {
    await ctx.activity("explode", input.message, { retry: { maxRetries: 0 } });
    return "never";
  },
  async sleeper(ctx: WorkflowContext, input: { ms: number }) {
    await ctx.sleep(input.ms);
    return "woke";
  },
  async parent(ctx: WorkflowContext, input: { n: number }) {
    const out = await ctx.executeChild<typeof doubler>("doubler", { n: input.n });
    return { child: out.doubled };
  },
  async catches(ctx: WorkflowContext) {
    try {
      await ctx.executeChild("failing", { message: "boom" });
      return "no error";
    } catch (err) {
      if (!(err instanceof ChildWorkflowFailure)) return `not a ChildWorkflowFailure: ${String(err)}`;
      return { workflowId: err.workflowId, workflowType: err.workflowType, status: err.status, type: err.type, message: err.message };
    }
  },
  async starter(ctx: WorkflowContext) {
    const handle = await ctx.startChild<typeof doubler>("doubler", { n: 5 });
    const before = await ctx.activity<number>("double", 1);
    const out = await handle.result();
    return { id: handle.workflowId, before, after: out.doubled };
  },
  async fanout(ctx: WorkflowContext, input: { n: number }) {
    const outs = await Promise.all(Array.from({ length: input.n }, (_, i) => ctx.executeChild<typeof doubler>("doubler", { n: i })));
    return outs.map((o) => o.doubled);
  },
  async unknownChild(ctx: WorkflowContext) {
    try {
      await ctx.executeChild("no_such_workflow", {});
      return "started";
    } catch (err) {
      return { code: (err as { code?: string }).code, hint: (err as { hint?: string }).hint };
    }
  },
  async badOptions(ctx: WorkflowContext) {
    const codes: string[] = [];
    for (const options of [{ parentClosePolicy: "explode" }, { id: "has space" }, { timeout: "soon" }, { retries: 3 }]) {
      try {
        await ctx.executeChild("doubler", { n: 1 }, options as never);
      } catch (err) {
        codes.push((err as { code: string }).code);
      }
    }
    return codes;
  },
  async takenId(ctx: WorkflowContext, input: { id: string }) {
    try {
      await ctx.executeChild("doubler", { n: 1 }, { id: input.id });
      return "started";
    } catch (err) {
      const failure = err as ChildWorkflowFailure;
      return { instance: err instanceof ChildWorkflowFailure, code: failure.code, status: failure.status, hint: failure.hint };
    }
  },
  async closing(ctx: WorkflowContext, input: { policy: "terminate" | "cancel" | "abandon"; fail: boolean }) {
    await ctx.startChild("sleeper", { ms: 3_000 }, { parentClosePolicy: input.policy });
    if (input.fail) await ctx.activity("explode", "parent gives up", { retry: { maxRetries: 0 } });
    await ctx.sleep("1m");
    return "done";
  },
  /** Run 1 starts a sleeping child and continues as new; run 2 runs a child of the same step name to its end. */
  async looping(ctx: WorkflowContext, input: { run: number }) {
    if (input.run === 1) {
      await ctx.startChild("sleeper", { ms: 60_000 });
      return ctx.continueAsNew({ run: 2 });
    }
    const handle = await ctx.startChild<typeof workflows.sleeper>("sleeper", { ms: 10 });
    return { id: handle.workflowId, out: await handle.result() };
  },
  dagWithChild: defineDag({
    name: "dagWithChild",
    activities: [
      { name: "first", type: "double" },
      { name: "kid", workflow: "doubler", dependencies: ["first"] },
    ],
  }),
};

async function setup() {
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: `child${++counter}`, log: { level: "warn" } } });
  const runtime = await createRuntime({ config, workflows, activities });
  await runtime.start();
  const client = await createClient({ config });
  return { config, runtime, client, close: async () => { await client.close(); await runtime.stop(); } };
}

const result = <T>(promise: Promise<T>) => promise;

describe("child workflows", () => {
  it("a parent that continues as new closes its run's children by their policy; the new run's children have ids of their own", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("looping", { run: 1 }, { id: "loop-1" });
      const out = (await handle.result({ signal: AbortSignal.timeout(10_000) })) as { id: string; out: string };
      // Run 2's child of the same step is another workflow: it did not take run 1's (still sleeping) child's place.
      expect(out).toEqual({ id: "loop-1-r2-child_sleeper", out: "woke" });
      expect(await env.client.describe("loop-1-r2-child_sleeper")).toMatchObject({ status: "completed", parent: { id: "loop-1", step: "child_sleeper" } });
      // Run 1's child, sleeping a minute, was terminated when its parent's run ended (policy "terminate").
      await waitFor("run 1's child terminated", async () => (await env.client.describe("loop-1-child_sleeper")).status === "terminated");
      const first = await env.client.describe("loop-1-child_sleeper");
      expect(first.error?.message ?? "").toMatch(/continued as new/);
      const parent = await env.client.describe("loop-1");
      expect(parent).toMatchObject({ status: "completed", run: 2 });
    } finally {
      await env.close();
    }
  });

  it("executeChild resolves with the child's result; both states link to each other", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("parent", { n: 21 }, { id: "p-1" });
      expect(await result(handle.result({ signal: AbortSignal.timeout(10_000) }))).toEqual({ child: 42 });
      const parent = await handle.describe();
      expect(parent.steps["child_doubler"]).toMatchObject({ kind: "child", status: "completed", output: { doubled: 42 }, child: { id: "p-1-child_doubler", workflow: "doubler", status: "completed" } });
      const child = await env.client.describe("p-1-child_doubler");
      expect(child).toMatchObject({ status: "completed", workflow: "doubler", input: { n: 21 }, parent: { id: "p-1", step: "child_doubler", workflow: "parent" } });
      // The child is a workflow like any other: listable.
      const listed = await env.client.listPage({ workflow: "doubler" });
      expect(listed.workflows.map((w) => w.id)).toContain("p-1-child_doubler");
    } finally {
      await env.close();
    }
  });

  it("a failing child rejects the parent's await with ChildWorkflowFailure", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("catches", null, { id: "p-2" });
      const out = await handle.result({ signal: AbortSignal.timeout(10_000) });
      expect(out).toMatchObject({ workflowId: "p-2-child_failing", workflowType: "failing", status: "failed", type: "ExplodeError" });
      expect((out as { message: string }).message).toContain("boom");
      expect((await handle.describe()).steps["child_failing"]).toMatchObject({ status: "failed", child: { status: "failed" } });
    } finally {
      await env.close();
    }
  });

  it("startChild resolves once the child started; handle.result() waits for its end", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("starter", null, { id: "p-3" });
      expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toEqual({ id: "p-3-child_doubler", before: 2, after: 10 });
      const state = await handle.describe();
      expect(state.steps["child_doubler"]).toMatchObject({ kind: "child", status: "completed", output: { workflowId: "p-3-child_doubler" } });
      expect(state.steps["child_doubler_result"]).toMatchObject({ kind: "child_result", status: "completed", output: { doubled: 10 } });
    } finally {
      await env.close();
    }
  });

  it("runs several children in parallel (Promise.all), each once", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("fanout", { n: 6 }, { id: "p-4" });
      expect(await handle.result({ signal: AbortSignal.timeout(15_000) })).toEqual([0, 2, 4, 6, 8, 10]);
      const state = await handle.describe();
      const children = Object.values(state.steps).filter((s) => s.kind === "child");
      expect(children.map((s) => s.child!.id).sort()).toEqual(["p-4-child_doubler", ...[2, 3, 4, 5, 6].map((n) => `p-4-child_doubler-${n}`)].sort());
    } finally {
      await env.close();
    }
  });

  it("a DAG step may be a child workflow: its input is built like an activity's, its result is the step's output", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("dagWithChild", 4, { id: "p-5" });
      // first: double(input) where the DAG passes { input: 4 } as the activity input.
      const out = (await handle.result({ signal: AbortSignal.timeout(10_000) })) as { first: unknown; kid: unknown };
      const child = await env.client.describe("p-5-kid");
      expect(child.input).toEqual({ input: 4, first: out.first });
      expect(child.parent).toMatchObject({ id: "p-5", step: "kid" });
      expect(out.kid).toEqual(child.result);
    } finally {
      await env.close();
    }
  });

  it("refuses bad input with coded errors: unknown child type, bad options, a taken id", async () => {
    const env = await setup();
    try {
      const unknown = await env.client.start("unknownChild", null, { id: "p-6" });
      expect(await unknown.result({ signal: AbortSignal.timeout(10_000) })).toMatchObject({ code: "WF_UNKNOWN_CHILD_WORKFLOW", hint: expect.stringContaining("functions/workflows") });
      const bad = await env.client.start("badOptions", null, { id: "p-7" });
      expect(await bad.result({ signal: AbortSignal.timeout(10_000) })).toEqual(["WF_INVALID_CHILD_OPTIONS", "WF_INVALID_CHILD_OPTIONS", "WF_INVALID_CHILD_OPTIONS", "WF_INVALID_CHILD_OPTIONS"]);
      // An id that is another workflow's (not this parent's child).
      await (await env.client.start("doubler", { n: 3 }, { id: "someone-else" })).result({ signal: AbortSignal.timeout(10_000) });
      const taken = await env.client.start("takenId", { id: "someone-else" }, { id: "p-8" });
      expect(await taken.result({ signal: AbortSignal.timeout(10_000) })).toMatchObject({ instance: true, code: "WF_CHILD_ID_TAKEN", status: "rejected", hint: expect.stringContaining("options.id") });
      // The other workflow is untouched.
      expect((await env.client.describe("someone-else")).parent).toBeUndefined();
    } finally {
      await env.close();
    }
  });

  async function closeCase(id: string, policy: "terminate" | "cancel" | "abandon", end: "fail" | "cancel" | "terminate") {
    const env = await setup();
    try {
      const handle = await env.client.start("closing", { policy, fail: end === "fail" }, { id });
      const childId = `${id}-child_sleeper`;
      // (A failing parent may end, and close the child, before the first look.)
      await waitFor("the child to start", async () => (await env.client.describe(childId)).status !== undefined);
      if (end === "cancel") await handle.cancel("stop");
      if (end === "terminate") await env.client.terminate(id, "stop");
      const parent = await waitFor("the parent to end", async () => {
        const s = await handle.describe();
        return s.status !== "running" ? s : undefined;
      });
      return { env, parent, childId };
    } catch (err) {
      await env.close();
      throw err;
    }
  }

  it("parentClosePolicy terminate (default) stops a sleeping child when the parent fails", async () => {
    const { env, parent, childId } = await closeCase("p-9", "terminate", "fail");
    try {
      expect(parent.status).toBe("failed");
      const child = await waitFor("the child to be terminated", async () => {
        const s = await env.client.describe(childId);
        return s.status !== "running" ? s : undefined;
      });
      expect(child.status).toBe("terminated");
      expect(child.error?.message).toContain("parent workflow p-9 failed");
    } finally {
      await env.close();
    }
  });

  it("parentClosePolicy cancel publishes a cancel to the child when the parent is terminated", async () => {
    const { env, childId } = await closeCase("p-10", "cancel", "terminate");
    try {
      const child = await waitFor("the child to be cancelled", async () => {
        const s = await env.client.describe(childId);
        return s.status !== "running" ? s : undefined;
      });
      // A plain cancel (not a terminate): the child's own cancellation handling decides what it becomes.
      expect(child.error?.type).not.toBe("TerminatedError");
      expect(child.error?.message).toContain("parent workflow p-10 terminated");
    } finally {
      await env.close();
    }
  });

  it("parentClosePolicy abandon lets the child run on after the parent is cancelled", async () => {
    const { env, parent, childId } = await closeCase("p-11", "abandon", "cancel");
    try {
      expect(parent.status).toBe("cancelled");
      const child = await waitFor("the child to finish by itself", async () => {
        const s: WorkflowState = await env.client.describe(childId);
        return s.status !== "running" ? s : undefined;
      });
      expect(child).toMatchObject({ status: "completed", result: "woke" });
    } finally {
      await env.close();
    }
  });
});
