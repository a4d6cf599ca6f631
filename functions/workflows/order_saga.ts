/**
 * The same order as a code workflow, as a saga: once the payment is charged, its refund is the
 * compensation. When shipping fails for good, or the order is cancelled (`wf cancel`), the
 * compensations run (the refund, once) and the workflow ends with the shipping error, or cancelled.
 */
import { type WorkflowContext } from "jetflow/workflow";
import type * as activities from "../activities/orders.js";

export async function order_saga(ctx: WorkflowContext<typeof activities>, order: activities.Order) {
  const saga = ctx.saga();
  let reason = "order cancelled";
  try {
    const validation = await ctx.activities.validate_order(order, { retry: { maxRetries: 0 } });
    const charge = await ctx.activities.charge_payment(order, { timeout: "30s", retry: { maxRetries: 3, initialInterval: "200ms" } });
    saga.add(() => ctx.activities.refund_payment({ orderId: order.orderId, chargeId: charge.chargeId, amount: charge.amount, reason }));
    const shipment = await ctx.activities.ship_order(order, { retry: { maxRetries: 2, initialInterval: "200ms" } });
    const notification = await ctx.activities.send_notification({ ...order, ship_order: shipment });
    return { orderId: order.orderId, items: validation.itemCount, chargeId: charge.chargeId, trackingNumber: shipment.trackingNumber, notified: notification.to };
  } catch (err) {
    // A failure (after its retries) or a cancellation (CancelledError): undo what was done, then end with it.
    reason = err instanceof Error ? err.message : String(err);
    await saga.compensate();
    throw err;
  }
}
