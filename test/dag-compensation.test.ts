/** DAG compensation: a step's `compensation` activity undoes it when the DAG fails or is cancelled. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createRuntime, defineDag, loadConfig, validateDag, type ActivityContext } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

let nats: TestNats;
let counter = 0;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

/** What ran, in order: `<activity>` or `<activity>:<step it undoes>`. */
let calls: Array<{ name: string; input: unknown }> = [];
const activities = {
  reserve: async (input: { sku: string }) => {
    calls.push({ name: "reserve", input });
    return { reservation: `r-${input.sku}` };
  },
  charge: async () => {
    calls.push({ name: "charge", input: null });
    return { chargeId: "c-1" };
  },
  ship: async () => {
    calls.push({ name: "ship", input: null });
    throw new Error("no courier");
  },
  /** Waits until aborted (a cancel): the step that is running when the DAG is cancelled. */
  wait_for_courier: async (_input: unknown, ctx: ActivityContext) => {
    calls.push({ name: "wait_for_courier", input: null });
    await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
  },
  release: async (input: unknown) => {
    calls.push({ name: "release", input });
  },
  refund: async (input: unknown) => {
    calls.push({ name: "refund", input });
  },
};

const order = (last: "ship" | "wait_for_courier") =>
  defineDag({
    name: last === "ship" ? "order_fails" : "order_waits",
    activities: [
      { name: "reserve", type: "reserve", compensation: "release" },
      { name: "charge", type: "charge", compensation: "refund", dependencies: ["reserve"] },
      { name: "log", type: "charge", dependencies: ["reserve"] }, // completed, nothing to undo
      { name: "deliver", type: last, dependencies: ["charge"], retryPolicy: { maxRetries: 0 } },
    ],
  });

async function setup() {
  calls = [];
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: `dagcomp${++counter}`, log: { level: "error" } } });
  const runtime = await createRuntime({ config, workflows: { order_fails: order("ship"), order_waits: order("wait_for_courier") }, activities });
  await runtime.start();
  const client = await createClient({ config });
  return { client, close: async () => { await client.close(); await runtime.stop(); } };
}

describe("DAG compensation", () => {
  it("a step that fails for good: the completed steps' compensations run once each, in reverse dependency order, with their step's input and output; the DAG ends failed with the step's error", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("order_fails", { sku: "A7" }, { id: "comp-1" });
      await expect(handle.result({ signal: AbortSignal.timeout(10_000) })).rejects.toThrow(/no courier/);
      const state = await handle.describe();
      expect(state.status).toBe("failed");
      const undo = calls.filter((c) => c.name === "release" || c.name === "refund");
      expect(undo).toEqual([
        { name: "refund", input: { input: { sku: "A7", reserve: { reservation: "r-A7" } }, output: { chargeId: "c-1" } } },
        { name: "release", input: { input: { sku: "A7" }, output: { reservation: "r-A7" } } },
      ]);
      expect(state.steps["compensate_charge"]).toMatchObject({ status: "completed", activity: "refund" });
      expect(state.steps["compensate_reserve"]).toMatchObject({ status: "completed", activity: "release" });
      expect(state.steps["compensate_log"]).toBeUndefined();
      expect(state.journal.indexOf("compensate_charge")).toBeLessThan(state.journal.indexOf("compensate_reserve"));
    } finally {
      await env.close();
    }
  });

  it("cancelled while a step runs: that step is aborted, the completed ones are compensated, the DAG ends cancelled", async () => {
    const env = await setup();
    try {
      const handle = await env.client.start("order_waits", { sku: "B2" }, { id: "comp-2" });
      await waitFor("the last step running", () => calls.some((c) => c.name === "wait_for_courier"));
      await env.client.cancel("comp-2", "customer changed their mind");
      await waitFor("the DAG ended", async () => ((await handle.describe()).status === "running" ? undefined : true));
      const state = await handle.describe();
      expect(state.status).toBe("cancelled");
      expect(calls.filter((c) => c.name === "refund" || c.name === "release").map((c) => c.name)).toEqual(["refund", "release"]);
      expect(state.steps["deliver"]?.status).toBe("cancelled");
    } finally {
      await env.close();
    }
  });

  it("refuses a compensation on a child workflow step, and an unknown compensation activity, with coded errors", () => {
    expect(() => validateDag({ name: "d", activities: [{ name: "a", workflow: "other", compensation: "undo" }] })).toThrow(expect.objectContaining({ code: "WF_DAG_INVALID_STEP" }));
    expect(() => validateDag({ name: "d", activities: [{ name: "a", type: "x", compensation: "nope" }] }, { activityTypes: new Set(["x"]) })).toThrow(
      expect.objectContaining({ code: "WF_DAG_UNKNOWN_ACTIVITY", message: expect.stringMatching(/unknown compensation activity type "nope"/) }),
    );
  });
});
