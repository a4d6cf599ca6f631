/**
 * The same order as a code workflow, with a compensation: when shipping fails for good, the
 * payment is refunded and the workflow fails with the shipping error.
 */
import { ActivityFailure, type WorkflowContext } from "jetflow/workflow";
import type * as activities from "../activities/orders.js";

export async function order_saga(ctx: WorkflowContext<typeof activities>, order: activities.Order) {
  const validation = await ctx.activities.validate_order(order, { retry: { maxRetries: 0 } });
  const charge = await ctx.activities.charge_payment(order, { timeout: "30s", retry: { maxRetries: 3, initialInterval: "200ms" } });
  let shipment;
  try {
    shipment = await ctx.activities.ship_order(order, { retry: { maxRetries: 2, initialInterval: "200ms" } });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const refund = await ctx.activities.refund_payment({ orderId: order.orderId, chargeId: charge.chargeId, amount: charge.amount, reason: err.message });
    ctx.log.warn(`shipping failed, refunded ${refund.refundId}`);
    throw new Error(`order ${order.orderId} could not be shipped and was refunded (${refund.refundId}): ${err.message}`);
  }
  const notification = await ctx.activities.send_notification({ ...order, ship_order: shipment });
  return { orderId: order.orderId, items: validation.itemCount, chargeId: charge.chargeId, trackingNumber: shipment.trackingNumber, notified: notification.to };
}
