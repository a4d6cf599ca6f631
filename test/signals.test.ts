/** Signals: ctx.waitForSignal receives what client.signal / `wf signal` sends, exactly once, in order, durably. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, type WorkflowContext } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

let nats: TestNats;
let counter = 0;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

const approval = async (ctx: WorkflowContext, input: { order: string }) => {
  const prepared = await ctx.activity<string>("prepare", input.order);
  const first = await ctx.waitForSignal<{ by: string }>("approve");
  const second = await ctx.waitForSignal<{ by: string }>("approve");
  const note = await ctx.waitForSignal<string>("note");
  return { prepared, approvers: [first.by, second.by], note };
};

async function setup() {
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: `sig${++counter}`, log: { level: "warn" } } });
  const runtime = await createRuntime({ config, workflows: { approval }, activities: { prepare: async (order: string) => `prepared ${order}` } });
  await runtime.start();
  const client = await createClient({ config });
  return { config, runtime, client };
}


describe("signals", () => {
  it("delivers signals in order, keeps early ones, and records each once", async () => {
    const { runtime, client } = await setup();
    try {
      const handle = await client.start("approval", { order: "o-1" }, { id: "sig-1" });
      // "note" arrives before the workflow waits for it (even before its start is applied): it is kept.
      await handle.signal("note", "rush");
      await waitFor("the signal wait", async () => ((await handle.describe().catch(() => undefined))?.steps["signal_approve"]?.status === "waiting" ? true : undefined));
      await handle.signal("approve", { by: "ada" });
      await handle.signal("approve", { by: "grace" });
      expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toEqual({ prepared: "prepared o-1", approvers: ["ada", "grace"], note: "rush" });
      const state = await handle.describe();
      expect(state.journal).toEqual(["prepare", "signal_approve", "signal_approve-2", "signal_note"]);
      // Consumed signals leave the inbox (their payloads are the steps' outputs); their ids stay for dedupe.
      expect(state.signals).toBeUndefined();
      expect(state.seenSignals).toHaveLength(3);
      expect(state.steps["signal_note"]?.output).toBe("rush");
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("a republished signal message is applied once; a workflow replayed by another runtime sees the same signals", async () => {
    const first = await setup();
    const handle = await first.client.start("approval", { order: "o-2" }, { id: "sig-2" });
    await waitFor("the signal wait", async () => ((await handle.describe().catch(() => undefined))?.steps["signal_approve"]?.status === "waiting" ? true : undefined));
    // The same signal twice (same signalId, as a retrying publisher would send it).
    const message = { workflowId: "sig-2", name: "approve", payload: { by: "ada" }, signalId: "approval-from-ada" };
    const subject = first.client.topology.names.signalSubject("sig-2", "approve");
    await first.client.topology.js.publish(subject, JSON.stringify(message));
    await first.client.topology.js.publish(subject, JSON.stringify(message));
    await waitFor("the signal wait", async () => ((await handle.describe()).steps["signal_approve-2"]?.status === "waiting" ? true : undefined));
    await first.runtime.stop();
    // A fresh runtime has no cached execution: it replays the journal, signals included.
    const second = await createRuntime({ config: first.config, workflows: { approval }, activities: { prepare: async (order: string) => `prepared ${order}` } });
    await second.start();
    try {
      await handle.signal("approve", { by: "grace" });
      await handle.signal("note", "ok");
      expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toEqual({ prepared: "prepared o-2", approvers: ["ada", "grace"], note: "ok" });
      expect((await handle.describe()).seenSignals).toHaveLength(3);
    } finally {
      await first.client.close();
      await second.stop();
    }
  });

  it("a long-lived signal-driven workflow keeps neither consumed signals nor unbounded ids in its state", async () => {
    const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: `sig${++counter}`, log: { level: "warn" } } });
    const COUNT = 300;
    const counter_ = async (ctx: WorkflowContext) => {
      let total = 0;
      for (let i = 0; i < COUNT; i++) total += (await ctx.waitForSignal<{ n: number; pad: string }>("add")).n;
      return total;
    };
    const runtime = await createRuntime({ config, workflows: { counter_ }, activities: {} });
    await runtime.start();
    const client = await createClient({ config });
    try {
      const handle = await client.start("counter_", null, { id: "sig-long" });
      const pad = "x".repeat(1_000);
      let sizeAfter50 = 0;
      for (let i = 1; i <= COUNT; i++) {
        await waitFor(`wait ${i}`, async () => (Object.values((await handle.describe()).steps).filter((s) => s.status === "waiting").length === 1 ? true : undefined));
        await handle.signal("add", { n: i, pad });
        if (i === 50) {
          await waitFor("signal 50 consumed", async () => ((await handle.describe()).journal.length === 50 ? true : undefined));
          sizeAfter50 = JSON.stringify(await handle.describe()).length;
        }
      }
      expect(await handle.result({ signal: AbortSignal.timeout(20_000) })).toBe((COUNT * (COUNT + 1)) / 2);
      const state = await handle.describe();
      expect(state.signals ?? []).toEqual([]);
      expect(state.seenSignals).toHaveLength(256);
      // Each consumed payload is recorded once, as its step's output, not again in the inbox.
      expect(sizeAfter50).toBeLessThan(50 * 1_000 * 1.5);
    } finally {
      await client.close();
      await runtime.stop();
    }
  }, 120_000);

  it("a start reads nothing from the pending-signals bucket: the runtime's watch of it says when there is something", async () => {
    const { runtime, client } = await setup();
    try {
      const bucket = `KV_${client.topology.names.pendingSignalsBucket}`;
      const reads: string[] = [];
      const spy = client.topology.nc.subscribe("$JS.API.>", { callback: (_err, msg) => void (msg.subject.includes(bucket) && reads.push(msg.subject)) });
      await client.topology.nc.flush();
      const handles = await Promise.all(Array.from({ length: 20 }, (_, i) => client.start("approval", { order: `o-${i}` }, { id: `no-early-${i}` })));
      await waitFor("all started", async () => ((await Promise.all(handles.map((h) => h.describe().catch(() => undefined)))).every((s) => s?.steps["signal_approve"]?.status === "waiting") ? true : undefined));
      spy.unsubscribe();
      expect(reads).toEqual([]);
      // And a signal held for an id that starts a moment later still arrives: the watch releases it.
      await client.signal("late-start", "note", "kept");
      await client.signal("late-start", "approve", { by: "ada" });
      await client.signal("late-start", "approve", { by: "grace" });
      const handle = await client.start("approval", { order: "o-late" }, { id: "late-start" });
      expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toEqual({ prepared: "prepared o-late", approvers: ["ada", "grace"], note: "kept" });
    } finally {
      await runtime.stop();
      await client.close();
    }
  });

  it("a signal sent before its workflow starts is kept, durably, and received once it starts", async () => {
    const { runtime, client } = await setup();
    try {
      // Sent to an id that has no workflow yet (a start that comes later, delayed).
      await client.signal("sig-early", "approve", { by: "ada" });
      await client.signal("sig-early", "approve", { by: "grace" });
      await client.signal("sig-early", "note", "held");
      // Every event was applied (acked): the signals are held in NATS, not in a redelivery loop.
      await waitFor("the signals applied", async () => {
        const { jsm, names } = client.topology;
        const consumer = await jsm.consumers.info(names.eventsStream, names.orchestratorConsumer);
        return consumer.num_pending === 0 && consumer.num_ack_pending === 0 ? true : undefined;
      });
      const pending = await client.topology.pendingSignals.get("sig-early");
      expect(pending?.json<{ signals: unknown[] }>().signals).toHaveLength(3);
      // A restart in between: the held signals live in NATS, not in the runtime.
      await runtime.stop();
      const again = await createRuntime({ config: runtime.config, workflows: { approval }, activities: { prepare: async (order: string) => `prepared ${order}` } });
      await again.start();
      try {
        const handle = await client.start("approval", { order: "o-3" }, { id: "sig-early" });
        expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toEqual({ prepared: "prepared o-3", approvers: ["ada", "grace"], note: "held" });
        // Released: nothing stays behind for the id.
        const left = await client.topology.pendingSignals.get("sig-early");
        expect(left === null || left.operation !== "PUT").toBe(true);
      } finally {
        await again.stop();
      }
    } finally {
      await client.close();
    }
  }, 30_000);
});
