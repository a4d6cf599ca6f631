/**
 * The example application (functions/) tested the way a jetflow user tests theirs: with
 * jetflow/testing, against the bundled functions/ folder, on an env of its own per test.
 * - order_processing (DAG): charge_payment fails twice and is retried;
 * - order_saga: shipping fails for good, so the payment is refunded and the workflow fails; a
 *   cancel in the middle refunds too, and the workflow ends cancelled;
 * - order_followup: its 30-day sleep is skipped;
 * - recorded histories of each still replay on the current code (test/fixtures/histories/).
 */
import { afterEach, describe, expect, it } from "vitest";
import { createTestEnv, replayHistories, type TestEnv } from "jetflow/testing";
import { WorkflowFailedError } from "../runtime/index.js";
import type { Order } from "../functions/activities/orders.js";

const HISTORIES_DIR = "test/fixtures/histories";
const order = (orderId: string, extra: Partial<Order> = {}): Order => ({ orderId, amount: 120, items: [{ sku: "mug", qty: 2 }], email: "ada@example.com", ...extra });

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe("order_processing (DAG)", () => {
  it("retries charge_payment after two failures, then ships and notifies", async () => {
    env = await createTestEnv({ functionsDir: "functions", time: "auto" }); // auto: the retry backoffs are skipped
    const handle = await env.client.start("order_processing", order("o-1", { simulateFailures: { charge_payment: 2 } }), { id: "o-1" });
    const result = (await handle.result({ signal: AbortSignal.timeout(10_000) })) as Record<string, unknown>;
    expect(result).toMatchObject({ charge_payment: { chargeId: "ch_o-1" }, ship_order: { trackingNumber: "TRK-o-1" } });
    expect((await env.stepsOf("o-1")).map((s) => [s.name, s.status, s.attempts])).toEqual([
      ["validate_order", "completed", 1],
      ["charge_payment", "completed", 3],
      ["ship_order", "completed", 1],
      ["send_notification", "completed", 1],
    ]);
    expect(env.activityCalls("charge_payment").map((c) => [c.attempt, c.error?.message ?? "ok"])).toEqual([
      [1, "simulated failure of charge_payment (attempt 1 of 2 failing)"],
      [2, "simulated failure of charge_payment (attempt 2 of 2 failing)"],
      [3, "ok"],
    ]);
  });
});

describe("order_saga", () => {
  it("refunds the payment when shipping fails for good", async () => {
    env = await createTestEnv({ functionsDir: "functions", time: "auto" });
    env.mockActivity("ship_order", async () => {
      throw new Error("carrier jetpost is down");
    });
    const handle = await env.client.start("order_saga", order("o-2"), { id: "o-2" });
    const failure = await handle.result({ signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).failure).toEqual({ type: "Error", message: "activity ship_order (ship_order) failed after 3 attempts: carrier jetpost is down" }); // type: the activity's error
    expect(env.activityCalls("ship_order").map((c) => c.attempt)).toEqual([1, 2, 3]); // maxRetries: 2
    expect(env.activityCalls("refund_payment")).toMatchObject([{ input: { orderId: "o-2", chargeId: "ch_o-2", amount: 120, reason: "activity ship_order (ship_order) failed after 3 attempts: carrier jetpost is down" }, output: { refundId: "re_ch_o-2" } }]);
    expect(env.activityCalls("send_notification")).toEqual([]);
  });

  it("the refund path with the real activities: ship_order fails for good (simulateFailures), refund_payment runs exactly once, the workflow fails with the shipping error", async () => {
    env = await createTestEnv({ functionsDir: "functions", time: "auto" });
    const handle = await env.client.start("order_saga", order("o-5", { simulateFailures: { ship_order: 99 } }), { id: "o-5" });
    const failure = await handle.result({ signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).code).toBe("WF_WORKFLOW_FAILED");
    const shipError = "activity ship_order (ship_order) failed after 3 attempts: simulated failure of ship_order (attempt 3 of 99 failing)";
    expect((failure as WorkflowFailedError).failure).toEqual({ type: "Error", message: shipError });
    expect(env.activityCalls("ship_order").map((c) => c.error?.message)).toEqual([1, 2, 3].map((n) => `simulated failure of ship_order (attempt ${n} of 99 failing)`));
    expect(env.activityCalls("refund_payment")).toMatchObject([{ attempt: 1, input: { orderId: "o-5", chargeId: "ch_o-5", amount: 120, reason: shipError }, output: { refundId: "re_ch_o-5" } }]);
    expect(env.activityCalls("send_notification")).toEqual([]);
    expect((await env.stepsOf("o-5")).map((s) => [s.name, s.status])).toEqual([
      ["validate_order", "completed"],
      ["charge_payment", "completed"],
      ["ship_order", "failed"],
      ["refund_payment", "completed"],
    ]);
  });

  it("cancelled while shipping: the shipping attempt is aborted, the payment refunded once, the workflow ends cancelled", async () => {
    env = await createTestEnv({ functionsDir: "functions" });
    const handle = await env.client.start("order_saga", order("o-6", { simulateDelays: { ship_order: 60_000 } }), { id: "o-6" });
    await expect.poll(async () => (await env!.client.describe("o-6")).steps.ship_order?.status, { timeout: 10_000 }).toBe("scheduled");
    await env.client.cancel("o-6", "customer changed their mind");
    const failure = await handle.result({ signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => err);
    expect((failure as WorkflowFailedError).code).toBe("WF_WORKFLOW_CANCELLED");
    const state = await env.client.describe("o-6");
    expect(state.status).toBe("cancelled");
    expect(state.error).toEqual({ type: "CancelledError", message: "cancelled: customer changed their mind" });
    expect(state.steps.ship_order!.status).toBe("cancelled");
    expect(env.activityCalls("refund_payment")).toMatchObject([{ input: { orderId: "o-6", chargeId: "ch_o-6", reason: "cancelled: customer changed their mind" }, output: { refundId: "re_ch_o-6" } }]);
    expect(env.activityCalls("send_notification")).toEqual([]);
    expect(state.journal).toEqual(["validate_order", "charge_payment", "$cancel", "refund_payment"]);
  });

  it("completes when shipping works", async () => {
    env = await createTestEnv({ functionsDir: "functions" });
    const result = await (await env.client.start("order_saga", order("o-3"), { id: "o-3" })).result({ signal: AbortSignal.timeout(10_000) });
    expect(result).toEqual({ orderId: "o-3", items: 2, chargeId: "ch_o-3", trackingNumber: "TRK-o-3", notified: "ada@example.com" });
    expect(env.activityCalls("refund_payment")).toEqual([]);
  });
});

describe("order_followup", () => {
  it("asks for a review once the 30-day return window has passed", async () => {
    env = await createTestEnv({ functionsDir: "functions" });
    const handle = await env.client.start("order_followup", { orderId: "o-4", email: "ada@example.com" }, { id: "o-4" });
    await env.skipTime("29d");
    expect(env.activityCalls("request_review")).toEqual([]);
    await env.skipTime("1d");
    const result = (await handle.result({ signal: AbortSignal.timeout(10_000) })) as { reviewRequestedTo: string; waitedMs: number };
    expect(result.reviewRequestedTo).toBe("ada@example.com");
    expect(result.waitedMs).toBeGreaterThanOrEqual(30 * 86_400_000);
  });
});

describe("recorded histories", () => {
  it("every history in test/fixtures/histories replays on the current functions/", async () => {
    const replayed = await replayHistories(HISTORIES_DIR, { functionsDir: "functions" });
    expect(replayed.map((r) => r.workflow).sort()).toEqual(["order_followup", "order_processing", "order_saga", "order_saga"]);
  });
});
