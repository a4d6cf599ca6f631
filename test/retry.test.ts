/**
 * Retry (runtime/orchestrator/retry.ts, client.retry): a new run of a failed, cancelled or timed
 * out workflow that reuses the results of the steps completed before its failed step. What a user
 * checks: which activities ran again (counted), the result, `describe` of both runs.
 */
import { describe, expect, it } from "vitest";
import { defineDag, NonRetryableError, type ActivityContext, type WorkflowContext } from "../runtime/index.js";
import { WorkflowFailedError } from "../runtime/errors.js";
import { resultSignal, useEngines, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();

function orderActivities() {
  const calls: Record<string, number> = {};
  const state = { broken: true };
  const count = (name: string) => (calls[name] = (calls[name] ?? 0) + 1);
  const activities = {
    charge: async (cents: number) => {
      count("charge");
      return { chargeId: `ch-${cents}` };
    },
    ship: async (chargeId: string) => {
      count("ship");
      if (state.broken) throw new NonRetryableError("carrier down");
      return `shipped ${chargeId}`;
    },
    notify: async (text: string) => {
      count("notify");
      return `told: ${text}`;
    },
    nap: async (input: unknown, ctx: ActivityContext) => {
      count(ctx.activityId);
      if (ctx.activityId === "b" && state.broken) throw new NonRetryableError("b broke");
      return ctx.activityId.toUpperCase();
    },
  };
  return { calls, state, activities };
}
type Acts = ReturnType<typeof orderActivities>["activities"];

async function order(ctx: WorkflowContext<Acts>, cents: number) {
  const { chargeId } = await ctx.activities.charge(cents);
  const rand = ctx.uuid(); // the retry keeps the run's random seed: the same value on its replay
  const shipped = await ctx.activities.ship(chargeId);
  return { shipped, note: await ctx.activities.notify(shipped), rand };
}

describe("retry", () => {
  it("re-runs a failed code workflow from its failed step, reusing the completed ones; the new run is run 2", async () => {
    const e = engine();
    const { calls, state, activities } = orderActivities();
    await e.runtime({ workflows: { order }, activities });
    const client = await e.client();
    await expect((await client.start("order", 500, { id: "o-1" })).result(resultSignal())).rejects.toThrow(WorkflowFailedError);
    const failed = await client.describe("o-1");
    expect(failed.status).toBe("failed");
    expect(calls).toEqual({ charge: 1, ship: 1 });

    state.broken = false;
    const handle = await client.retry("o-1");
    const result = (await handle.result(resultSignal())) as { shipped: string; note: string; rand: string };
    expect(result).toMatchObject({ shipped: "shipped ch-500", note: "told: shipped ch-500" });
    expect(calls).toEqual({ charge: 1, ship: 2, notify: 1 }); // charge was not run again

    const run2 = await client.describe("o-1");
    expect(run2).toMatchObject({ status: "completed", run: 2, previousRunId: failed.runId, retryOf: { run: 1, runId: failed.runId, from: "ship", reused: 1 }, input: 500 });
    expect(run2.steps.charge).toEqual(failed.steps.charge); // the record of run 1's result, reused
    expect(run2.journal).toEqual(["charge", "ship", "notify"]);
    expect((await client.describe("o-1", { run: 1 })).status).toBe("failed");

    // A completed workflow has nothing to retry from; a running one is refused too.
    await expect(client.retry("o-1")).rejects.toMatchObject({ code: "WF_RETRY_COMPLETED" });
    await expect(client.retry("nope")).rejects.toMatchObject({ code: "WF_WORKFLOW_NOT_FOUND" });
  });

  it("refuses a running workflow with WF_RETRY_RUNNING", async () => {
    const e = engine();
    const wait = async (ctx: WorkflowContext) => ctx.waitForSignal("go");
    await e.runtime({ workflows: { wait }, activities: {} });
    const client = await e.client();
    await client.start("wait", null, { id: "w-1" });
    await waitForState(client, "w-1", (s) => Object.keys(s.steps).length > 0);
    await expect(client.retry("w-1")).rejects.toMatchObject({ code: "WF_RETRY_RUNNING" });
  });

  it("re-runs a DAG from its failed node: the completed nodes are reused", async () => {
    const e = engine();
    const { calls, state, activities } = orderActivities();
    const chain = defineDag({
      name: "chain",
      activities: [
        { name: "a", type: "nap" },
        { name: "b", type: "nap", dependencies: ["a"] },
        { name: "c", type: "nap", dependencies: ["b"] },
      ],
    });
    await e.runtime({ workflows: { chain }, activities });
    const client = await e.client();
    await expect((await client.start("chain", { x: 1 }, { id: "dag-1" })).result(resultSignal())).rejects.toThrow(/b broke/);
    state.broken = false;
    const result = await (await client.retry("dag-1")).result(resultSignal());
    expect(result).toEqual({ a: "A", b: "B", c: "C" });
    expect(calls).toEqual({ a: 1, b: 2, c: 1 });
  });

  it("retries a cancelled workflow: the steps before the cancel are reused, a signal consumed after it is delivered again", async () => {
    const e = engine();
    const { calls, activities } = orderActivities();
    const approval = async (ctx: WorkflowContext<Acts>, cents: number) => {
      const { chargeId } = await ctx.activities.charge(cents);
      await ctx.waitForSignal("approve");
      return ctx.activities.notify(chargeId);
    };
    await e.runtime({ workflows: { approval }, activities });
    const client = await e.client();
    await client.start("approval", 7, { id: "ap-1" });
    await waitForState(client, "ap-1", (s) => s.steps.charge?.status === "completed");
    await client.cancel("ap-1", "by mistake");
    await waitForState(client, "ap-1", (s) => s.status === "cancelled");
    const handle = await client.retry("ap-1");
    await waitForState(client, "ap-1", (s) => s.run === 2 && Object.values(s.steps).some((step) => step.kind === "signal" && step.status === "waiting"));
    await client.signal("ap-1", "approve");
    expect(await handle.result(resultSignal())).toBe("told: ch-7");
    expect(calls).toEqual({ charge: 1, notify: 1 });
  });

  it("fails the new run with RetryDivergedError when the code no longer replays the reused steps", async () => {
    const e = engine();
    const { calls, state, activities } = orderActivities();
    // The first step's input depends on the time the run started: a retry's replay cannot match it.
    const clocked = async (ctx: WorkflowContext<Acts>) => {
      const { chargeId } = await ctx.activities.charge(ctx.now());
      return ctx.activities.ship(chargeId);
    };
    await e.runtime({ workflows: { clocked }, activities });
    const client = await e.client();
    await expect((await client.start("clocked", null, { id: "c-1" })).result(resultSignal())).rejects.toThrow(/carrier down/);
    state.broken = false;
    await new Promise((r) => setTimeout(r, 5)); // the new run starts at a later millisecond
    const err = await (await client.retry("c-1")).result(resultSignal()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const run2 = await client.describe("c-1");
    expect(run2).toMatchObject({ status: "failed", run: 2, error: { type: "RetryDivergedError" } });
    expect(run2.error!.message).toMatch(/cannot reuse its completed steps/);
    expect(calls).toEqual({ charge: 1, ship: 1 }); // nothing ran twice
  });
});
