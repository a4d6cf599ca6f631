/** The workflows a scenario starts, and starting them at a steady rate through any fault. */
import type { WorkflowClient } from "../../runtime/index.js";
import type { Order } from "../../functions/activities/orders.js";
import type { ChaosKnobs } from "../../test/fixtures/crash-functions.js";
import { sleep } from "./util.js";
import type { Expectation } from "./verify.js";

export interface WorkItem {
  id: string;
  workflow: string;
  input: unknown;
  expectation: Expectation;
  /** Started by this parent workflow (as its child), not by the workload. */
  startedBy?: string;
  /** Cancelled (`client.cancel`) by the workload once its start is acknowledged (after the update "note", sent twice with one id, and a query of it). */
  cancel?: boolean;
}

export interface OrderMix {
  /** Share of order_saga among the orders (the rest: order_processing). */
  sagaShare?: number;
  /** Share of orders whose charge_payment fails once, then succeeds after a durable retry backoff. */
  retryShare?: number;
  /** Each activity first waits this long (random in the range), so faults land mid-activity. */
  delayMs?: [number, number];
}

export function orders(prefix: string, n: number, mix: OrderMix = {}): WorkItem[] {
  const items: WorkItem[] = [];
  for (let i = 0; i < n; i++) {
    const workflow = Math.random() < (mix.sagaShare ?? 0) ? "order_saga" : "order_processing";
    const failures = Math.random() < (mix.retryShare ?? 0) ? { charge_payment: 1 } : undefined;
    const id = `${prefix}-${i}`;
    const input: Order & { chaos?: ChaosKnobs } = {
      orderId: id,
      amount: 10 + (i % 500),
      items: [{ sku: `sku-${i % 17}`, qty: 1 + (i % 3) }],
      email: `customer-${i}@example.com`,
      ...(failures ? { simulateFailures: failures } : {}),
      ...(mix.delayMs ? { chaos: { delayMs: mix.delayMs } } : {}),
    };
    items.push({ id, workflow, input, expectation: { workflow, status: "completed", ...(failures ? { failures } : {}) } });
  }
  return items;
}

/**
 * The primitives of issue 13 in the workload, `n` items in turns: a parent of two order_saga
 * children (three expected workflows), a loop that continues as new twice (it must end in run 3),
 * and an order that the workload cancels while it sleeps (it must end cancelled, its refund run).
 * Ids start with `<prefix>-`, as the orders' do.
 */
export function primitives(prefix: string, n: number, mix: Pick<OrderMix, "delayMs"> = {}): WorkItem[] {
  const items: WorkItem[] = [];
  const order = (id: string, i: number) => ({
    orderId: id,
    amount: 10 + (i % 500),
    items: [{ sku: `sku-${i % 17}`, qty: 1 }],
    email: `customer-${i}@example.com`,
    ...(mix.delayMs ? { chaos: { delayMs: mix.delayMs } } : {}),
  });
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`;
    if (i % 3 === 0) {
      const children = [`${id}-a`, `${id}-b`].map((childId, c) => ({ id: childId, workflow: "order_saga", input: order(childId, i * 2 + c), expectation: { workflow: "order_saga", status: "completed" as const }, startedBy: id }));
      items.push({ id, workflow: "order_batch", input: { orders: children.map((c) => c.input) }, expectation: { workflow: "order_batch", status: "completed" } }, ...children);
    } else if (i % 3 === 1) {
      items.push({ id, workflow: "order_loop", input: { order: order(id, i), left: 3 }, expectation: { workflow: "order_loop", status: "completed", runs: 3 } });
    } else {
      items.push({ id, workflow: "cancellable_order", input: order(id, i), expectation: { workflow: "cancellable_order", status: "cancelled", cleanupStep: "refund_payment", update: `${id}-note` }, cancel: true });
    }
  }
  return items;
}

/**
 * Start every item, `ratePerSec` per second (Infinity: all at once, 200 in flight). A start that
 * fails (NATS down, a node lost) is retried with the same id, which JetStream deduplicates.
 * Resolves when every start was acknowledged; throws when one cannot be within `giveUpMs`.
 */
export async function startAll(
  client: WorkflowClient,
  items: WorkItem[],
  ratePerSec = Infinity,
  options: { giveUpMs?: number; stop?: () => boolean } = {},
): Promise<{ retries: number; ms: number; ackedAt: Map<string, number> }> {
  const t0 = Date.now();
  const giveUpMs = options.giveUpMs ?? 120_000;
  let retries = 0;
  const ackedAt = new Map<string, number>();
  const startOne = async (item: WorkItem) => {
    const deadline = Date.now() + giveUpMs;
    for (;;) {
      try {
        await client.start(item.workflow, item.input, { id: item.id });
        ackedAt.set(item.id, Date.now());
        if (item.cancel) await cancelOne(item, deadline);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`could not start ${item.id} within ${giveUpMs} ms: ${(err as Error).message}`);
        retries += 1;
        await sleep(250);
      }
    }
  };
  // A cancel right after the start: it reaches the workflow wherever it is (its first activity, or the sleep after).
  const cancelOne = async (item: WorkItem, deadline: number) => {
    await sleep(100 + Math.random() * 400);
    // The update, then its retry with the same id (through faults: each attempt is retried until the deadline): applied once, answered 1 both times.
    for (let sent = 0; sent < 2; ) {
      try {
        const count = await client.update(item.id, "note", "chaos", { updateId: `${item.id}-note`, timeout: "20s" });
        if (count !== 1) throw new Error(`update "note" of ${item.id} answered ${JSON.stringify(count)}, expected 1 (applied once)`);
        sent += 1;
      } catch (err) {
        if ((err as Error).message.includes("applied once")) throw err;
        if (Date.now() > deadline) throw new Error(`could not update ${item.id}: ${(err as Error).message}`);
        await sleep(250);
      }
    }
    // A query sees what the update changed.
    for (;;) {
      try {
        const notes = await client.query(item.id, "notes", undefined, { timeout: "5s" });
        if (JSON.stringify(notes) !== JSON.stringify(["chaos"])) throw new Error(`query "notes" of ${item.id} answered ${JSON.stringify(notes)}, expected ["chaos"]`);
        break;
      } catch (err) {
        if ((err as Error).message.includes("expected [")) throw err;
        if (Date.now() > deadline) throw new Error(`could not query ${item.id}: ${(err as Error).message}`);
        await sleep(250);
      }
    }
    for (;;) {
      try {
        await client.cancel(item.id, "chaos workload");
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`could not cancel ${item.id}: ${(err as Error).message}`);
        await sleep(250);
      }
    }
  };
  const inFlight = new Set<Promise<void>>();
  const errors: unknown[] = [];
  for (let i = 0; i < items.length; i++) {
    if (options.stop?.()) break;
    if (items[i]!.startedBy) continue;
    if (Number.isFinite(ratePerSec)) {
      const due = t0 + (i / ratePerSec) * 1000;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
    }
    while (inFlight.size >= 200) await Promise.race(inFlight);
    const p: Promise<void> = startOne(items[i]!)
      .catch((err) => {
        errors.push(err);
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  if (errors.length) throw errors[0];
  return { retries, ms: Date.now() - t0, ackedAt };
}

export const expectationsOf = (items: WorkItem[]): Map<string, Expectation> => new Map(items.map((i) => [i.id, i.expectation]));
