/**
 * Retention (runtime/visibility/retention.ts): finished workflows are removed after their
 * retention, with their history chunks and index entries, by one runtime of the fleet; running
 * ones never, however long they sleep. And finished workflows leave no timers parked
 * (index-writer.ts, timer-batches.ts). Real nats-server, real runtimes, short durations.
 */
import { describe, expect, it } from "vitest";
import { defineWorkflow, type WorkflowContext } from "../runtime/index.js";
import { readMatching } from "../runtime/nats/stream-read.js";
import { subjectsOf } from "../runtime/visibility/index-writer.js";
import { fleetLeases } from "../runtime/nats/fleet-lease.js";
import { RETENTION_LEASE_KEY } from "../runtime/visibility/retention.js";
import { useEngines, waitFor } from "./fixtures/engine/harness.js";

const engine = useEngines();
const signal = () => ({ signal: AbortSignal.timeout(20_000) });
const activities = { step: async (n: number) => n + 1 };

/** 40 steps one after the other: enough for the oldest to move to history chunks. */
const long = async (ctx: WorkflowContext<typeof activities>) => {
  let n = 0;
  for (let i = 0; i < 40; i++) n = await ctx.activities.step(n);
  return n;
};
const quick = async (ctx: WorkflowContext<typeof activities>) => ctx.activities.step(0);
const keeper = defineWorkflow(async (ctx: WorkflowContext<typeof activities>) => ctx.activities.step(0), { retention: "1h" });
const sleeper = async (ctx: WorkflowContext) => {
  await ctx.sleep("30d");
  return "woke";
};

describe("retention", () => {
  it("removes finished workflows after their retention, with chunks and entries; keeps a 30-day sleeper and a type with a longer retention", async () => {
    const e = engine();
    const config = { retention: "1500ms", orchestrator: { retentionSweepInterval: "1s" } };
    await e.runtime({ workflows: { long, quick, keeper, sleeper }, activities, config });
    const client = await e.client();
    await client.start("sleeper", null, { id: "sleeps-30d" });
    expect(await client.result((await client.start("long", null, { id: "long-1", searchAttributes: { batch: "b-1" } })).id, signal())).toBe(40);
    expect(await client.result((await client.start("quick", null, { id: "quick-1" })).id, signal())).toBe(1);
    expect(await client.result((await client.start("keeper", null, { id: "kept-1" })).id, signal())).toBe(1);
    const longState = await client.describe("long-1");
    expect(longState.history?.chunks).toBeGreaterThan(0);
    expect(longState.retentionMs).toBe(1500);
    expect((await client.describe("kept-1")).retentionMs).toBe(3_600_000);

    await waitFor("the expired ones removed", async () => (await client.count({ status: "completed" })) === 1, 15_000);
    await expect(client.describe("long-1")).rejects.toThrow(/no workflow with id long-1/);
    await expect(client.describe("quick-1")).rejects.toThrow(/no workflow with id quick-1/);
    expect((await client.describe("kept-1")).status).toBe("completed");
    expect((await client.describe("sleeps-30d")).status).toBe("running");
    expect((await client.listPage()).workflows.map((w) => w.id)).toEqual(["sleeps-30d", "kept-1"]);
    // Nothing of the removed ones is left in the bucket: no state, no chunk, no entry.
    const topology = await e.topology();
    const subjects = subjectsOf(topology);
    const left = (await readMatching(topology, subjects.stream, `${subjects.prefix}>`)).map((m) => m.subject.slice(subjects.prefix.length));
    expect(left.filter((key) => key.includes("long-1") || key.includes("quick-1"))).toEqual([]);
    expect(await client.count({ where: { batch: "b-1" } })).toBe(0);
  });

  it("removes entries, states and chunks by sequence: no purge filtered on a subject, whose cost grows with the bucket on nats-server 2.9 and 2.10", async () => {
    const e = engine();
    const config = { retention: "1500ms", orchestrator: { retentionSweepInterval: "1s" } };
    await e.runtime({ workflows: { long, quick }, activities, config });
    const topology = await e.topology();
    const subjects = subjectsOf(topology);
    // Every purge request the states bucket receives (the server's API subject, seen by any subscriber).
    const purges: string[] = [];
    const watch = topology.nc.subscribe(`$JS.API.STREAM.PURGE.${subjects.stream}`, { callback: (_error, msg) => void purges.push(msg.string()) });
    await topology.nc.flush();
    const client = await e.client();
    const ids = [...Array.from({ length: 8 }, (_, i) => `quick-${i}`), "long-1"];
    await Promise.all(ids.map(async (id) => client.result((await client.start(id.startsWith("long") ? "long" : "quick", null, { id, searchAttributes: { batch: "b-2" } })).id, signal())));
    // Each end removed its run entry; listing the running part finds none to repair.
    await waitFor("run entries removed", async () => (await readMatching(topology, subjects.stream, subjects.runFilter())).length === 0, 5_000);
    await waitFor("all removed by retention", async () => (await client.count()) === 0, 15_000);
    const left = (await readMatching(topology, subjects.stream, `${subjects.prefix}>`)).map((m) => m.subject.slice(subjects.prefix.length));
    expect(left.filter((key) => ids.some((id) => key.includes(id)))).toEqual([]);
    expect(await client.count({ where: { batch: "b-2" } })).toBe(0);
    watch.unsubscribe();
    expect(purges).toEqual([]);
  });

  it("one runtime of the fleet sweeps: the lease names one holder", async () => {
    const e = engine();
    const config = { retention: "1s", orchestrator: { retentionSweepInterval: "1s" } };
    await e.runtime({ workflows: { quick }, activities, config: { ...config, worker: { id: "rt-a" } } });
    await e.runtime({ workflows: { quick }, activities, config: { ...config, worker: { id: "rt-b" } } });
    const client = await e.client();
    for (let i = 0; i < 6; i++) await client.result((await client.start("quick", null, { id: `q-${i}` })).id, signal());
    await waitFor("all removed", async () => (await client.count()) === 0, 15_000);
    const topology = await e.topology();
    const lease = await (await fleetLeases(topology, { replicas: 1, storage: "file" })).get(RETENTION_LEASE_KEY);
    const holder = lease!.json<{ holder: string; until: number }>().holder;
    expect(holder).toMatch(/^rt-[ab]\//);
  });

  it("keeps workflows of retention 0 until deleted", async () => {
    const e = engine();
    await e.runtime({ workflows: { quick }, activities, config: { retention: 0, orchestrator: { retentionSweepInterval: "1s" } } });
    const client = await e.client();
    await client.result((await client.start("quick", null, { id: "forever" })).id, signal());
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await client.describe("forever")).status).toBe("completed");
  });
});

describe("timers of finished workflows", () => {
  it("a workflow that ends before its deadline leaves no timer parked, alone or in a batch with others", async () => {
    const e = engine();
    const timed = defineWorkflow(async (ctx: WorkflowContext<typeof activities>) => ctx.activities.step(0), { timeout: "10m" });
    await e.runtime({ workflows: { timed }, activities });
    const client = await e.client();
    // One alone, then 40 at once (their deadlines are parked together, timer-batches.ts).
    await client.result((await client.start("timed", null, { id: "alone" })).id, signal());
    const handles = await Promise.all(Array.from({ length: 40 }, (_, i) => client.start("timed", null, { id: `t-${i}` })));
    await Promise.all(handles.map((h) => client.result(h.id, signal())));
    const topology = await e.topology();
    const { names } = topology;
    expect((await topology.jsm.streams.info(names.timersStream)).state.last_seq).toBeGreaterThan(0);
    await waitFor("no timer left", async () => (await topology.jsm.streams.info(names.timersStream)).state.messages === 0, 10_000);
    expect((await topology.jsm.consumers.info(names.timersStream, names.timersConsumer)).num_ack_pending).toBe(0);
  });

  it("workflows that end leave the timers of the others parked: those still fire", async () => {
    const e = engine();
    const nap = async (ctx: WorkflowContext) => {
      await ctx.sleep("1500ms");
      return "rested";
    };
    await e.runtime({ workflows: { sleeper, nap }, activities });
    const client = await e.client();
    const naps = await Promise.all(Array.from({ length: 5 }, (_, i) => client.start("nap", null, { id: `nap-${i}` })));
    // Others end while the naps are parked, some of them sleeping too (their timers are deleted).
    const ended = await Promise.all(Array.from({ length: 5 }, (_, i) => client.start("sleeper", null, { id: `ends-${i}` })));
    await waitFor("all sleeping", async () => (await client.count({ status: "running" })) === 10);
    await Promise.all(ended.map((h) => h.cancel("test")));
    for (const handle of naps) expect(await client.result(handle.id, signal())).toBe("rested");
  });

  it("a workflow cancelled while it sleeps leaves no timer parked", async () => {
    const e = engine();
    await e.runtime({ workflows: { sleeper }, activities });
    const client = await e.client();
    const handle = await client.start("sleeper", null, { id: "cancelled-sleeper" });
    await waitFor("sleeping", async () => (await client.describe("cancelled-sleeper")).steps.sleep?.status === "waiting");
    const topology = await e.topology();
    // The sleep's timer is published right after the state that records the sleep.
    await waitFor("its timer stored", async () => (await topology.jsm.streams.info(topology.names.timersStream)).state.messages === 1);
    await handle.cancel("test");
    expect((await client.waitForEnd(handle.id, signal())).status).toBe("cancelled");
    await waitFor("no timer left", async () => (await topology.jsm.streams.info(topology.names.timersStream)).state.messages === 0, 10_000);
  });
});
