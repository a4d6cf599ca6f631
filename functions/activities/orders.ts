/**
 * The example application's activities: plain exported async functions, export name = activity
 * type. Failure injection for demos and tests comes through the input:
 *   - an amount over MAX_ORDER_AMOUNT fails validation (not retryable);
 *   - simulateFailures: { "charge_payment": 2 } makes that step fail twice, then succeed
 *     (a count above its retries makes it fail for good);
 *   - simulateDelays: { "ship_order": 60000 } makes that step take 60 s (it stops early if aborted).
 */
import { NonRetryableError, type ActivityContext } from "jetflow/workflow";

export const MAX_ORDER_AMOUNT = 10_000;

export interface OrderItem {
  sku: string;
  qty: number;
}

export interface Order {
  orderId: string;
  amount: number;
  items: OrderItem[];
  email: string;
  /** Step name → how many attempts of it fail before one succeeds. */
  simulateFailures?: Record<string, number>;
  /** Step name → how long it takes, in ms (it stops when its AbortSignal fires). */
  simulateDelays?: Record<string, number>;
}

async function maybeDelay(step: string, input: { simulateDelays?: Record<string, number> }, ctx: ActivityContext): Promise<void> {
  const ms = input.simulateDelays?.[step] ?? 0;
  if (ms <= 0) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(ctx.signal.reason)), { once: true });
  });
}

function maybeFail(step: string, input: { simulateFailures?: Record<string, number> }, ctx: ActivityContext): void {
  const failures = input.simulateFailures?.[step] ?? 0;
  if (ctx.attempt <= failures) {
    throw new Error(`simulated failure of ${step} (attempt ${ctx.attempt} of ${failures} failing)`);
  }
}

export async function validate_order(order: Order, ctx: ActivityContext) {
  maybeFail("validate_order", order, ctx);
  if (typeof order.orderId !== "string" || !order.orderId) throw new NonRetryableError("order has no orderId", { type: "InvalidOrder" });
  if (!Array.isArray(order.items) || order.items.length === 0) throw new NonRetryableError(`order ${order.orderId} has no items`, { type: "InvalidOrder" });
  if (typeof order.amount !== "number" || order.amount <= 0) throw new NonRetryableError(`order ${order.orderId}: amount must be a positive number`, { type: "InvalidOrder" });
  if (order.amount > MAX_ORDER_AMOUNT) {
    throw new NonRetryableError(`order ${order.orderId}: amount ${order.amount} exceeds the limit of ${MAX_ORDER_AMOUNT}`, { type: "InvalidOrder" });
  }
  return { valid: true, itemCount: order.items.reduce((n, item) => n + item.qty, 0) };
}

export async function charge_payment(input: Order, ctx: ActivityContext) {
  maybeFail("charge_payment", input, ctx);
  // A real payment API takes ctx.idempotencyKey so that a retried charge is not charged twice.
  return { chargeId: `ch_${input.orderId}`, amount: input.amount, idempotencyKey: ctx.idempotencyKey };
}

export async function ship_order(input: Order, ctx: ActivityContext) {
  await maybeDelay("ship_order", input, ctx);
  maybeFail("ship_order", input, ctx);
  return { trackingNumber: `TRK-${input.orderId}`, carrier: "jetpost" };
}

export async function send_notification(input: Order & { ship_order?: { trackingNumber: string } }, ctx: ActivityContext) {
  maybeFail("send_notification", input, ctx);
  const tracking = input.ship_order?.trackingNumber;
  return { to: input.email, message: `Order ${input.orderId} is on its way${tracking ? ` (tracking ${tracking})` : ""}` };
}

export async function refund_payment(input: { orderId: string; chargeId: string; amount: number; reason: string }, _ctx: ActivityContext) {
  return { refundId: `re_${input.chargeId}`, amount: input.amount, reason: input.reason };
}

export async function request_review(input: { orderId: string; email: string }, _ctx: ActivityContext) {
  return { to: input.email, message: `How was order ${input.orderId}? Tell us in a review.` };
}
