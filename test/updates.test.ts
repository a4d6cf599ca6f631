/**
 * Updates (decide.ts decideUpdate): ctx.handleUpdate in workflow code, client.update /
 * updateWithStart / `wf update` from outside. Real nats-server; the runtimes keep no execution
 * cache where it matters, so every decision after an update is taken on a replay of the journal.
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import type { ActivityContext, WorkflowContext } from "../runtime/index.js";
import { CHUNK_MAX_STEPS } from "../runtime/orchestrator/history.js";
import { updateStepName, type WorkflowState } from "../runtime/state.js";
import { encode, type UpdateMessage } from "../runtime/protocol.js";
import { storedJson } from "../runtime/nats/kv-entry.js";
import { connect } from "@nats-io/transport-node";
import { sleep, useEngines, waitFor, waitForEventsApplied, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();
const repoRoot = resolve(import.meta.dirname, "..");

let priced: string[] = [];
const activities = {
  price: async (sku: string, ctx: ActivityContext) => {
    priced.push(`${sku}@${ctx.attempt}`);
    return sku.length * 100;
  },
};

interface Item {
  sku: string;
  qty?: number;
}

/** A cart: addItem prices the item with an activity and sleeps a moment; "checkout" (a signal) ends it. */
async function cart(ctx: WorkflowContext) {
  const items: Array<Item & { price: number }> = [];
  ctx.handleQuery("items", () => items.map((i) => i.sku));
  ctx.handleUpdate(
    "addItem",
    async (item: Item) => {
      const price = (await ctx.activity("price", item.sku)) as number;
      await ctx.sleep("10ms");
      items.push({ ...item, price });
      return { count: items.length, total: items.reduce((sum, i) => sum + i.price * (i.qty ?? 1), 0) };
    },
    {
      validate: (item: Item) => {
        if (!item || typeof item.sku !== "string" || item.sku === "") throw new Error("sku required");
      },
    },
  );
  ctx.handleUpdate("sneaky", async () => "never", { validate: () => void ctx.activity("price", "x") });
  ctx.handleUpdate("boom", async () => {
    throw new Error("handler bug");
  });
  await ctx.waitForSignal("checkout");
  return { items: items.map((i) => i.sku) };
}

/**
 * Counts how often "bump" is applied. Its handler waits for "release", so the update has no
 * outcome yet while "fill" pushes enough steps through the journal (search attribute upserts, one
 * journal entry each, and a sleep for the decision after them) that its `$update-<id>` step moves
 * to a history chunk (history.ts: once the journal holds 2 × CHUNK_MAX_STEPS entries).
 */
async function counter(ctx: WorkflowContext) {
  let applied = 0;
  ctx.handleQuery("applied", () => applied);
  ctx.handleUpdate("bump", async () => {
    applied += 1;
    await ctx.waitForSignal("release");
    return applied;
  });
  await ctx.waitForSignal("fill");
  for (let i = 0; i < 2 * CHUNK_MAX_STEPS + 8; i++) ctx.upsertSearchAttributes({ n: i });
  await ctx.sleep("1ms");
  await ctx.waitForSignal("done");
  return applied;
}

const waiting = (s: { steps: Record<string, { kind: string; status: string }> }) => Object.values(s.steps).some((step) => step.kind === "signal" && step.status === "waiting");

describe("updates", () => {
  it("an accepted update runs its handler (an activity and a sleep inside) and returns its value; a retry with the same id applies it once; the journal replays", async () => {
    priced = [];
    const e = engine();
    await e.runtime({ workflows: { cart }, activities, config: { orchestrator: { cacheSize: 0 } } });
    const client = await e.client();
    await client.start("cart", null, { id: "cart-1" });
    await waitForState(client, "cart-1", waiting);
    expect(await client.update("cart-1", "addItem", { sku: "A7", qty: 2 }, { updateId: "u-1" })).toEqual({ count: 1, total: 400 });
    // The caller retries (it did not see the answer): the same update id is not applied again.
    expect(await client.update("cart-1", "addItem", { sku: "A7", qty: 2 }, { updateId: "u-1" })).toEqual({ count: 1, total: 400 });
    expect(await client.update("cart-1", "addItem", { sku: "B12" })).toEqual({ count: 2, total: 700 });
    expect(priced).toEqual(["A7@1", "B12@1"]);
    expect(await client.query("cart-1", "items")).toEqual(["A7", "B12"]);
    const state = await client.describe("cart-1");
    expect(state.journal.filter((n) => n.startsWith("$update-"))).toHaveLength(2);
    expect(state.steps["$update-u-1"]).toMatchObject({ kind: "update", status: "completed", input: { sku: "A7", qty: 2 }, update: { id: "u-1", name: "addItem" } });
    await client.signal("cart-1", "checkout");
    expect((await waitForState(client, "cart-1")).result).toEqual({ items: ["A7", "B12"] });
  });

  it("a rejected update leaves no trace in the journal and the caller gets the validator's error; an effect in a validator, an unknown name and a throwing handler are coded errors", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart }, activities });
    const client = await e.client();
    await client.start("cart", null, { id: "cart-2" });
    const before = await waitForState(client, "cart-2", waiting);
    await expect(client.update("cart-2", "addItem", { sku: "" })).rejects.toMatchObject({ code: "WF_UPDATE_REJECTED", message: expect.stringMatching(/sku required/) });
    await expect(client.update("cart-2", "sneaky")).rejects.toMatchObject({ code: "WF_QUERY_EFFECT" });
    // The refusal names what was running: the update's validator, not a query.
    const sneaky = (await client.update("cart-2", "sneaky").catch((err: unknown) => err)) as { message: string; hint?: string };
    expect(sneaky.message).toMatch(/the validator of update "sneaky" of workflow cart \(cart-2\) tried to call an activity: an update validator can only read/);
    expect(sneaky.message).not.toMatch(/query/);
    expect(sneaky.hint).toMatch(/act in the update's handler/);
    await expect(client.update("cart-2", "nope")).rejects.toMatchObject({ code: "WF_UNKNOWN_UPDATE", message: expect.stringMatching(/known: addItem, boom, sneaky/) });
    const after = await client.describe("cart-2");
    expect(after.journal).toEqual(before.journal);
    expect(Object.keys(after.steps).sort()).toEqual(Object.keys(before.steps).sort());
    await expect(client.update("cart-2", "boom")).rejects.toMatchObject({ code: "WF_UPDATE_FAILED", message: expect.stringMatching(/handler bug/) });
    // The workflow goes on.
    expect(await client.update("cart-2", "addItem", { sku: "C" })).toEqual({ count: 1, total: 100 });
  });

  it("updateWithStart starts the cart if needed, then adds the item; an ended workflow refuses updates", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart }, activities });
    const client = await e.client();
    expect(await client.updateWithStart("cart", { id: "cart-3", update: "addItem", args: { sku: "D1" } })).toEqual({ count: 1, total: 200 });
    expect(await client.updateWithStart("cart", { id: "cart-3", update: "addItem", args: { sku: "E" } })).toEqual({ count: 2, total: 300 });
    await client.signal("cart-3", "checkout");
    await waitForState(client, "cart-3");
    await expect(client.update("cart-3", "addItem", { sku: "F" })).rejects.toMatchObject({ code: "WF_WORKFLOW_NOT_RUNNING" });
  });

  it("an update retried after its step moved to a history chunk (and after JetStream's duplicate window) is not applied again", async () => {
    const e = engine();
    await e.runtime({ workflows: { counter }, config: { orchestrator: { cacheSize: 0 } } });
    const client = await e.client();
    const topology = await e.topology();
    await client.start("counter", null, { id: "counter-1" });
    await waitForState(client, "counter-1", (s) => s.steps.signal_fill?.status === "waiting");
    // The caller waits for the outcome all along; the handler settles only at "release".
    const outcome = client.update<number>("counter-1", "bump", undefined, { updateId: "u-1", timeout: "30s" });
    await waitForState(client, "counter-1", (s) => s.steps[updateStepName("u-1")] !== undefined);
    await client.signal("counter-1", "fill");
    const head = await waitFor("the update's step to move to a history chunk", async () => {
      const state = storedJson<WorkflowState>(await topology.states.get("counter-1"));
      return state && (state.history?.chunks ?? 0) > 0 && state.steps[updateStepName("u-1")] === undefined ? state : undefined;
    });
    expect(head.updates ?? []).toEqual([]); // no outcome yet: only the record of seen ids knows u-1
    // The same update again, as a caller's retry after the duplicate window would send it: another Nats-Msg-Id.
    const retry: UpdateMessage = { workflowId: "counter-1", name: "bump", updateId: "u-1" };
    await topology.js.publish(topology.names.updateSubject("counter-1"), encode(retry), { msgID: "counter-1/update/u-1/after-the-window" });
    await waitForEventsApplied(topology);
    expect(await client.query("counter-1", "applied")).toBe(1);
    await client.signal("counter-1", "release");
    expect(await outcome).toBe(1);
    await client.signal("counter-1", "done");
    expect((await waitForState(client, "counter-1")).result).toBe(1);
  });

  it("an update that reaches an ended workflow writes nothing to its state, and its caller hears that the workflow ended", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart, counter }, activities });
    const client = await e.client();
    const topology = await e.topology();
    await client.start("cart", null, { id: "cart-ended" });
    await waitForState(client, "cart-ended", waiting);
    await client.signal("cart-ended", "checkout");
    await waitForState(client, "cart-ended");
    const before = (await topology.states.get("cart-ended"))!;
    // Sent by a program that did not look at the state first.
    const late: UpdateMessage = { workflowId: "cart-ended", name: "addItem", updateId: "late-1", args: { sku: "Z" } };
    await topology.js.publish(topology.names.updateSubject("cart-ended"), encode(late), { msgID: "cart-ended/update/late-1" });
    await waitForEventsApplied(topology);
    const after = (await topology.states.get("cart-ended"))!;
    expect(after.revision).toBe(before.revision);
    expect(after.json<WorkflowState>().updates).toBeUndefined();
    await expect(client.update("cart-ended", "addItem", { sku: "Z" }, { updateId: "late-1" })).rejects.toMatchObject({
      code: "WF_WORKFLOW_NOT_RUNNING",
      message: 'workflow cart-ended is completed: the update "addItem" was not applied',
    });

    // Applied, and the workflow ended before its handler returned: the caller is told so, not left waiting.
    await client.start("counter", null, { id: "counter-ends" });
    await waitForState(client, "counter-ends", (s) => s.steps.signal_fill?.status === "waiting");
    const outcome = client.update("counter-ends", "bump", undefined, { updateId: "u-9", timeout: "30s" }).catch((err: unknown) => err);
    await waitForState(client, "counter-ends", (s) => s.steps[updateStepName("u-9")] !== undefined);
    await client.signal("counter-ends", "fill");
    await client.signal("counter-ends", "done");
    expect(await outcome).toMatchObject({ code: "WF_WORKFLOW_NOT_RUNNING", message: expect.stringMatching(/ended \(completed\) before the handler of update "bump" \(u-9\) returned: the update was applied/) });
  });

  it("a caller waiting for an outcome follows the state's writes (a KV watch) instead of re-reading it, and its timeout still holds", async () => {
    const e = engine();
    await e.runtime({ workflows: { counter } });
    const client = await e.client();
    await client.start("counter", null, { id: "counter-w" });
    await waitForState(client, "counter-w", (s) => s.steps.signal_fill?.status === "waiting");
    // Every read of the state is a JetStream (direct) get request: a plain subscriber sees them,
    // and tells the client's from the runtime's by their reply subject (each connection has its own inbox).
    const observer = await connect({ servers: e.url });
    const probe = `probe.${e.namespace}`;
    let clientInbox = "";
    observer.subscribe(probe, {
      callback: (_err, msg) => {
        clientInbox = msg.reply!.slice(0, msg.reply!.lastIndexOf(".") + 1);
        msg.respond("");
      },
    });
    await observer.flush();
    await client.topology.nc.request(probe, "");
    expect(clientInbox).not.toBe("");
    let reads = 0;
    for (const subject of ["$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"]) {
      observer.subscribe(subject, { callback: (_err, msg) => void (msg.reply?.startsWith(clientInbox) && (msg.subject.includes("counter-w") || msg.string().includes("counter-w")) ? (reads += 1) : undefined) });
    }
    await observer.flush();
    const outcome = client.update<number>("counter-w", "bump", undefined, { updateId: "w-1", timeout: "30s" });
    outcome.catch(() => undefined); // awaited below; a failed assertion before that must not leave it unhandled
    try {
      await waitForState(client, "counter-w", (s) => s.steps[updateStepName("w-1")] !== undefined);
      // The observer sees a request on its own connection, possibly after the client got its answer:
      // a flush (its PONG comes after every message routed to it before) counts waitForState's last read first.
      await observer.flush();
      reads = 0;
      await sleep(1_500); // the handler waits for "release": re-reading the state would show here (every 250 ms before)
      expect(reads).toBe(0);
      await client.signal("counter-w", "release");
      expect(await outcome).toBe(1);
    } finally {
      await observer.close();
    }
    const started = Date.now();
    await expect(client.update("counter-w", "bump", undefined, { updateId: "w-2", timeout: "300ms" })).rejects.toMatchObject({ code: "WF_UPDATE_TIMEOUT", message: expect.stringMatching(/within 300 ms/) });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("a run that continues as new carries its update outcomes and seen ids: a retry after the switch gets the outcome and is not applied again", async () => {
    let applied = 0;
    const looping = async (ctx: WorkflowContext, input: { run: number }) => {
      ctx.handleUpdate("mark", async (tag: string) => {
        applied += 1;
        return `${tag}@run${input.run}`;
      });
      await ctx.waitForSignal("next");
      if (input.run < 2) return ctx.continueAsNew({ run: input.run + 1 });
      return "done";
    };
    const e = engine();
    await e.runtime({ workflows: { looping } });
    const client = await e.client();
    await client.start("looping", { run: 1 }, { id: "carry-1" });
    await waitForState(client, "carry-1", (s) => s.steps.signal_next !== undefined);
    expect(await client.update("carry-1", "mark", "a", { updateId: "m-1" })).toBe("a@run1");
    await client.signal("carry-1", "next", null);
    const second = await waitForState(client, "carry-1", (s) => (s.run ?? 1) === 2);
    expect(second.seenUpdates).toContain("m-1");
    // The same update id again, now that run 2 holds the id: the outcome of run 1, not a second application.
    expect(await client.update("carry-1", "mark", "a", { updateId: "m-1" })).toBe("a@run1");
    expect(applied).toBe(1);
    expect(await client.update("carry-1", "mark", "b", { updateId: "m-2" })).toBe("b@run2");
    await client.signal("carry-1", "next", null);
    expect(await client.result("carry-1", { signal: AbortSignal.timeout(15_000) })).toBe("done");
  });

  it("wf update prints the handler's value", async () => {
    const e = engine();
    await e.runtime({ workflows: { cart }, activities });
    const client = await e.client();
    await client.start("cart", null, { id: "cart-cli" });
    await waitForState(client, "cart-cli", waiting);
    // Not spawnSync: the runtime that applies it runs in this process.
    const out = await new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, [resolve(repoRoot, "dist/cli/wf.js"), "update", "cart-cli", "addItem", "--payload", '{"sku":"GG"}', "--nats", e.url, "--namespace", e.namespace], { cwd: repoRoot, encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) =>
        done({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(out.status, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ count: 1, total: 200 });
  });
});
