/**
 * After an order is delivered, wait until its return window has closed (30 days unless the input
 * says otherwise), then ask the customer for a review. The sleep is a durable timer: the workflow
 * survives restarts of every runtime while it waits. Its test (test/example-app.test.ts) skips the
 * 30 days with jetflow/testing.
 */
import type { WorkflowContext } from "jetflow/workflow";
import type * as activities from "../activities/orders.js";

export async function order_followup(ctx: WorkflowContext<typeof activities>, input: { orderId: string; email: string; returnWindow?: string }) {
  const deliveredAt = ctx.now();
  await ctx.sleep(input.returnWindow ?? "30d");
  const review = await ctx.activities.request_review({ orderId: input.orderId, email: input.email });
  return { orderId: input.orderId, reviewRequestedTo: review.to, waitedMs: ctx.now() - deliveredAt };
}
