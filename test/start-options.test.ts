/**
 * Starting: signal-with-start (one message: start if absent, deliver the signal either way), and
 * the per-start options `timeout` (this run's execution timeout) and `memo`. Real nats-server.
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import { defineWorkflow, type WorkflowContext, type WorkflowHandle } from "../runtime/index.js";
import { useEngines, waitFor } from "./fixtures/engine/harness.js";

const engine = useEngines();
const signal = () => ({ signal: AbortSignal.timeout(15_000) });

/** Collects `item` signals until a `checkout`; returns what it got. */
async function cart(ctx: WorkflowContext, input: { owner: string }) {
  const items: string[] = [];
  for (;;) {
    const item = await ctx.waitForSignal<string>("item");
    if (item === "checkout") return { owner: input.owner, items };
    items.push(item);
  }
}
const patient = defineWorkflow(async (ctx: WorkflowContext) => ctx.waitForSignal("never"), { timeout: "10d" });

describe("signal-with-start", () => {
  it("starts the workflow when the id is free and delivers the signal; to a running one, delivers it only", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart } });
    const client = await e.client();
    const first = await client.signalWithStart<typeof cart>("cart", { id: "cart-1", input: { owner: "ada" }, signal: "item", payload: "apple" });
    expectTypeOf(first).toEqualTypeOf<WorkflowHandle<{ owner: string; items: string[] }>>();
    await waitFor("waiting for the next item", async () => (await client.describe("cart-1").catch(() => undefined))?.steps["signal_item-2"]?.status === "waiting");
    // The id exists now: the input is ignored, the signal delivered.
    await client.signalWithStart("cart", { id: "cart-1", input: { owner: "someone else" }, signal: "item", payload: "pear" });
    await client.signalWithStart("cart", { id: "cart-1", signal: "item", payload: "checkout" });
    expect(await first.result(signal())).toEqual({ owner: "ada", items: ["apple", "pear"] });
    // One workflow: counted once the index has caught up with its end (its run entry is purged just after).
    await waitFor("one cart counted", async () => (await client.count({ workflow: "cart" })) === 1);
    expect((await client.listPage({ workflow: "cart" })).workflows.map((w) => w.id)).toEqual(["cart-1"]);
  });

  it("two at once on a free id: one workflow, both signals", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart } });
    const client = await e.client();
    await Promise.all(["a", "b"].map((payload) => client.signalWithStart("cart", { id: "cart-2", input: { owner: "grace" }, signal: "item", payload })));
    await waitFor("both items in", async () => (await client.describe("cart-2").catch(() => undefined))?.steps["signal_item-3"]?.status === "waiting");
    await client.signal("cart-2", "item", "checkout");
    const result = (await client.result("cart-2", signal())) as { items: string[] };
    expect(result.items.sort()).toEqual(["a", "b"]);
  });

  it("refuses a call without an id or with a bad signal name, saying what to pass", async () => {
    const e = engine();
    const client = await e.client();
    await expect(client.signalWithStart("cart", { id: undefined as unknown as string, signal: "item" })).rejects.toThrow(/signalWithStart needs an id/);
    await expect(client.signalWithStart("cart", { id: "x", signal: "no spaces" })).rejects.toThrow(/signal name "no spaces" is not valid/);
  });
});

describe("per-start options", () => {
  it("timeout: this run's execution timeout wins over the type's", async () => {
    const e = engine();
    await e.runtime({ workflows: { patient } });
    const client = await e.client();
    const handle = await client.start("patient", null, { id: "short-run", timeout: "400ms" });
    const end = await client.waitForEnd(handle.id, signal());
    expect(end.status).toBe("timed_out");
    expect(end.timeoutMs).toBe(400);
    const other = await client.start("patient", null, { id: "type-timeout" });
    await waitFor("started", async () => (await client.describe(other.id).catch(() => undefined))?.status === "running");
    expect((await client.describe(other.id)).timeoutMs).toBe(10 * 86_400_000);
    await expect(client.start("patient", null, { timeout: "soon" })).rejects.toThrow(/timeout/);
  });

  it("memo: kept in the state as given", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart } });
    const client = await e.client();
    await client.start("cart", { owner: "ada" }, { id: "with-memo", memo: { ticket: "T-42", notes: ["vip"] } });
    await waitFor("started", async () => (await client.describe("with-memo").catch(() => undefined))?.status === "running");
    expect((await client.describe("with-memo")).memo).toEqual({ ticket: "T-42", notes: ["vip"] });
  });
});
