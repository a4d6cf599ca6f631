/**
 * The visibility index (runtime/visibility/): listing with filters and cursors, counting, search
 * attributes, deleting, and the index's agreement with the states after a writer died between
 * them. Everything against a real nats-server; a "crash" between two writes is made by leaving
 * the second one out, as a runtime SIGKILLed there would (the SIGKILL cases are in
 * visibility-crash.test.ts).
 */
import { describe, expect, it } from "vitest";
import { defineWorkflow, type WorkflowContext, type WorkflowSummary } from "../runtime/index.js";
import { readMatching } from "../runtime/nats/stream-read.js";
import { subjectsOf } from "../runtime/visibility/index-writer.js";
import { readRunningStates } from "../runtime/visibility/query.js";
import { useEngines, waitFor } from "./fixtures/engine/harness.js";

const engine = useEngines();
const signal = () => ({ signal: AbortSignal.timeout(15_000) });

const activities = { echo: async (x: unknown) => x };
const quick = async (ctx: WorkflowContext<typeof activities>, input: { fail?: boolean }) => {
  await ctx.activities.echo(1);
  if (input?.fail) throw new Error("asked to fail");
  return "ok";
};
const waiter = async (ctx: WorkflowContext) => ctx.waitForSignal("go");
const workflows = { quick, waiter };

/**
 * result() hears of an end from the announcement, which the runtime sends before it writes the end
 * entry: a test that then edits the index by hand waits for the runtime's own writes first.
 */
async function indexCaughtUp(client: { count(filter: { status: "completed" | "running" }): Promise<number> }, completed: number): Promise<void> {
  await waitFor("the index to show the ends", async () => (await client.count({ status: "completed" })) === completed && (await client.count({ status: "running" })) === 0);
}

async function all(iterable: AsyncIterable<WorkflowSummary>): Promise<WorkflowSummary[]> {
  const out: WorkflowSummary[] = [];
  for await (const w of iterable) out.push(w);
  return out;
}

describe("listing", () => {
  it("lists running workflows first (newest started first), then finished ones (latest ended first), with filters alone and combined", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    await client.result((await client.start("quick", {}, { id: "q-1", searchAttributes: { customer: "c-1", priority: 1 } })).id, signal());
    await client.waitForEnd((await client.start("quick", { fail: true }, { id: "q-2", searchAttributes: { customer: "c-2", priority: 2 } })).id, signal());
    await client.result((await client.start("quick", {}, { id: "q-3", searchAttributes: { customer: "c-1", priority: 3 } })).id, signal());
    const before = new Date();
    await client.start("waiter", null, { id: "w-1", searchAttributes: { customer: "c-1" } });
    await client.start("waiter", null, { id: "w-2", searchAttributes: { customer: "c-2", vip: true } });
    await waitFor("both waiting", async () => (await client.count({ status: "running" })) === 2);

    expect((await client.listPage()).workflows.map((w) => [w.id, w.status])).toEqual([
      ["w-2", "running"],
      ["w-1", "running"],
      ["q-3", "completed"],
      ["q-2", "failed"],
      ["q-1", "completed"],
    ]);
    const ids = async (filter: Parameters<typeof client.listPage>[0]) => (await client.listPage(filter)).workflows.map((w) => w.id);
    expect(await ids({ status: "completed" })).toEqual(["q-3", "q-1"]);
    expect(await ids({ status: ["failed", "running"] })).toEqual(["w-2", "w-1", "q-2"]);
    expect(await ids({ workflow: "waiter" })).toEqual(["w-2", "w-1"]);
    expect(await ids({ workflow: "quick", status: "failed" })).toEqual(["q-2"]);
    expect(await ids({ createdAfter: before })).toEqual(["w-2", "w-1"]);
    expect(await ids({ createdBefore: before, status: "completed" })).toEqual(["q-3", "q-1"]);
    expect(await ids({ where: { customer: "c-1" } })).toEqual(["w-1", "q-3", "q-1"]);
    expect(await ids({ where: { customer: "c-1", priority: 3 } })).toEqual(["q-3"]);
    expect(await ids({ where: { customer: "c-1" }, status: "running" })).toEqual(["w-1"]);
    expect(await ids({ where: { vip: true }, workflow: "waiter" })).toEqual(["w-2"]);
    expect(await ids({ where: { priority: "3" } })).toEqual([]); // a string is not the number 3
    expect(await ids({ endedAfter: before })).toEqual([]);

    expect(await client.count()).toBe(5);
    expect(await client.count({ status: "completed" })).toBe(2);
    expect(await client.count({ workflow: "quick" })).toBe(3);
    expect(await client.count({ where: { customer: "c-1" } })).toBe(3);
    expect(await client.count({ createdAfter: before })).toBe(2);

    const summary = (await client.listPage({ where: { customer: "c-2" }, status: "failed" })).workflows[0]!;
    expect(summary).toMatchObject({ id: "q-2", workflow: "quick", status: "failed", searchAttributes: { customer: "c-2", priority: 2 } });
    expect(Date.parse(summary.endedAt!)).toBeGreaterThanOrEqual(Date.parse(summary.createdAt));
  });

  it("pages exactly (no duplicate, no gap) while workflows end during the iteration", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    for (let i = 0; i < 12; i++) await client.result((await client.start("quick", {}, { id: `done-${i}` })).id, signal());
    for (let i = 0; i < 18; i++) await client.start("waiter", null, { id: `wait-${String(i).padStart(2, "0")}` });
    await waitFor("all waiting", async () => (await client.count({ status: "running" })) === 18);

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await client.listPage({}, { limit: 4, ...(cursor ? { cursor } : {}) });
      seen.push(...page.workflows.map((w) => w.id));
      cursor = page.cursor;
      pages += 1;
      // Between pages, the waiters not listed yet and some listed already finish; new ones start.
      if (pages === 2) {
        for (const id of ["wait-00", "wait-03", "wait-16", "wait-17"]) await client.signal(id, "go", "now");
        await client.start("waiter", null, { id: "late-1" });
        await waitFor("four ended", async () => (await client.count({ status: "running" })) === 15);
      }
    } while (cursor);
    expect(seen.length).toBe(new Set(seen).size);
    expect(new Set(seen)).toEqual(new Set([...Array.from({ length: 12 }, (_, i) => `done-${i}`), ...Array.from({ length: 18 }, (_, i) => `wait-${String(i).padStart(2, "0")}`)]));
    // The iterator follows the cursors itself; a new listing sees the one started meanwhile.
    expect((await all(client.list({ pageSize: 7 }))).map((w) => w.id)).toContain("late-1");
  });

  it("refuses bad filters and cursors with errors that say what to do", async () => {
    const e = engine();
    const client = await e.client();
    await expect(client.listPage({ status: "done" as never })).rejects.toThrow(/status "done" is not one of running, completed/);
    await expect(client.listPage({ createdAfter: "yesterday" })).rejects.toThrow(/is not a time/);
    await expect(client.listPage({}, { cursor: "nonsense" })).rejects.toThrow(/cursor is not one a listing gave/);
    await expect(client.listPage({}, { limit: 0 })).rejects.toThrow(/page size 0/);
    const page = await client.listPage({}, { limit: 1 });
    expect(page.cursor).toBeUndefined();
  });
});

describe("search attributes", () => {
  it("refuses a bad name or type at start, saying which and why", async () => {
    const e = engine();
    const client = await e.client();
    await expect(client.start("quick", {}, { searchAttributes: { "bad name": 1 } })).rejects.toThrow(/search attribute name "bad name" is not valid/);
    await expect(client.start("quick", {}, { searchAttributes: { tags: ["a"] as never } })).rejects.toThrow(/"tags" has a value of type array/);
    await expect(client.start("quick", {}, { searchAttributes: { n: Number.NaN } })).rejects.toThrow(/not a finite number/);
    await expect(client.listPage({ where: { n: {} as never } })).rejects.toThrow(/has a value of type object/);
  });

  it("keeps typed values (a Date is a time) in the state, shown back as given", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    const due = new Date("2026-12-24T18:00:00.000Z");
    await client.start("waiter", null, { id: "typed", searchAttributes: { due, region: "eu", rush: false } });
    await waitFor("started", async () => (await client.count({ status: "running" })) === 1);
    const state = await client.describe("typed");
    expect(state.searchAttributes).toEqual({ due: { type: "time", value: "2026-12-24T18:00:00.000Z" }, region: { type: "string", value: "eu" }, rush: { type: "boolean", value: false } });
    const [summary] = (await client.listPage({ where: { due } })).workflows;
    expect(summary?.searchAttributes?.due).toEqual(due);
  });
});

describe("deleting", () => {
  it("removes a finished workflow with its history and index entries, refuses a running one", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    await client.result((await client.start("quick", {}, { id: "gone", searchAttributes: { customer: "c-9" } })).id, signal());
    await indexCaughtUp(client, 1);
    await client.start("waiter", null, { id: "stays" });
    await waitFor("started", async () => (await client.count({ status: "running" })) === 1);
    await expect(client.delete("stays")).rejects.toThrow(/workflow stays is running; only a finished workflow can be deleted/);
    expect(await client.delete("gone")).toBe(true);
    await expect(client.describe("gone")).rejects.toThrow(/no workflow with id gone/);
    expect((await client.listPage()).workflows.map((w) => w.id)).toEqual(["stays"]);
    expect(await client.count({ where: { customer: "c-9" } })).toBe(0);
    const topology = await e.topology();
    const subjects = subjectsOf(topology);
    const left = await readMatching(topology, subjects.stream, `${subjects.prefix}>`);
    expect(left.map((m) => m.subject).filter((s) => s.includes("gone"))).toEqual([]);
    expect(await client.delete("gone")).toBe(false); // again: nothing to do
    expect(await client.delete("never-was")).toBe(false);
  });
});

describe("the index and the states agree after a writer died between them", () => {
  it("a run entry left by a workflow that ended (its purge lost) is repaired by the next reader, and counts stop counting it", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    await client.result((await client.start("quick", {}, { id: "ended" })).id, signal());
    await waitFor("its own run entry purged", async () => (await client.count({ status: "running" })) === 0);
    const topology = await e.topology();
    const subjects = subjectsOf(topology);
    // What a runtime SIGKILLed right after the end entry leaves: the run entry is still there.
    await topology.js.publish(subjects.run("quick", "ended"), JSON.stringify({ id: "ended", workflow: "quick", status: "running", createdAt: (await client.describe("ended")).createdAt }));
    expect(await client.count({ status: "running" })).toBe(1); // the count trusts entries…
    expect((await client.listPage({ status: "running" })).workflows).toEqual([]); // …a listing checks the state
    expect((await client.listPage()).workflows.map((w) => [w.id, w.status])).toEqual([["ended", "completed"]]);
    await waitFor("stale run entry purged", async () => (await client.count({ status: "running" })) === 0);
    expect(await readRunningStates(topology)).toEqual([]);
  });

  it("a finished workflow whose end entry was never written is listed, and its entry written by the reader", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    await client.result((await client.start("quick", {}, { id: "no-end-entry" })).id, signal());
    await indexCaughtUp(client, 1);
    const topology = await e.topology();
    const subjects = subjectsOf(topology);
    const state = await client.describe("no-end-entry");
    // Undo the end: the end entry gone, the run entry back (a crash right after the terminal write).
    await topology.jsm.streams.purge(subjects.stream, { filter: subjects.endFilter({}) });
    await topology.js.publish(subjects.run("quick", "no-end-entry"), JSON.stringify({ id: state.id, workflow: "quick", status: "running", createdAt: state.createdAt }));
    expect(await client.count({ status: "completed" })).toBe(0);
    expect((await client.listPage()).workflows.map((w) => [w.id, w.status])).toEqual([["no-end-entry", "completed"]]);
    await waitFor("end entry written, run entry purged", async () => (await client.count({ status: "completed" })) === 1 && (await client.count({ status: "running" })) === 0);
  });

  it("an end entry whose state was removed (a removal that died half way) is dropped by the listing", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    await client.result((await client.start("quick", {}, { id: "half-removed" })).id, signal());
    await indexCaughtUp(client, 1);
    const topology = await e.topology();
    const subjects = subjectsOf(topology);
    await topology.jsm.streams.purge(subjects.stream, { filter: subjects.state("half-removed") });
    expect((await client.listPage()).workflows).toEqual([]);
    await waitFor("end entry purged", async () => (await client.count()) === 0);
  });
});

describe("recovery and deploy checks read running workflows only", () => {
  it("reads the states of the running workflows, not of the finished ones", async () => {
    const e = engine();
    const slow = defineWorkflow(async (ctx: WorkflowContext) => ctx.waitForSignal("go"), {});
    await e.runtime({ workflows: { ...workflows, slow }, activities });
    const client = await e.client();
    for (let i = 0; i < 60; i++) await client.result((await client.start("quick", {}, { id: `f-${i}` })).id, signal());
    for (let i = 0; i < 3; i++) await client.start("slow", null, { id: `r-${i}` });
    await waitFor("running", async () => (await client.count({ status: "running" })) === 3);
    const topology = await e.topology();
    // Count the state reads the pass makes: every KV get is a request on $JS.API.DIRECT.GET (or STREAM.MSG.GET).
    const reads: string[] = [];
    const spy = topology.nc.subscribe("$JS.API.>", { callback: (_err, msg) => void reads.push(msg.subject) });
    await topology.nc.flush();
    const running = await readRunningStates(topology);
    await topology.nc.flush();
    spy.unsubscribe();
    expect(running.map(({ state }) => state.id).sort()).toEqual(["r-0", "r-1", "r-2"]);
    // Reads of the states bucket only (the runtime reads other buckets meanwhile: a lease, say).
    const gets = reads.filter((s) => (s.includes("DIRECT.GET") || s.includes("MSG.GET")) && s.includes(`KV_${topology.names.statesBucket}`));
    expect(gets.length).toBe(3);
  });
});
