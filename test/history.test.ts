/**
 * Long workflows: the stored state keeps only recent steps, the rest move to history chunks
 * (runtime/orchestrator/history.ts), and nothing a user sees changes: results, describe(), `wf
 * list`, replay after the runtime forgot the workflow, divergence found in an early step, and
 * outputs whose sum is larger than one NATS message.
 */
import { describe, expect, it } from "vitest";
import { createRuntime, type ActivityContext, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { RevisionConflictError } from "../runtime/errors.js";
import { CHUNK_MAX_BYTES, CHUNK_MAX_STEPS, historyKey, splitHistory, storeChunk, withHistory, type HistoryChunk } from "../runtime/orchestrator/history.js";
import type { StepState } from "../runtime/state.js";
import { resultSignal, useEngines, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();

const activities = {
  inc: async (n: number) => n + 1,
};

/** n sequential activities, with a pair run in parallel every tenth step (results delivered out of seq order). */
const long = async (ctx: WorkflowContext<typeof activities>, input: { steps: number }) => {
  let n = 0;
  for (let i = 0; i < input.steps; i++) {
    if (i % 10 === 5) {
      const [a, b] = await Promise.all([ctx.activities.inc(n), ctx.activities.inc(n + 100)]);
      n = a + b - (n + 101);
    } else {
      n = await ctx.activities.inc(n);
    }
  }
  return n;
};

/** The state document as stored in KV (not describe(), which puts the history back). */
async function stored(client: { topology: { states: { get(key: string): Promise<{ json<T>(): T } | null> } } }, id: string): Promise<WorkflowState> {
  const entry = await client.topology.states.get(id);
  if (!entry) throw new Error(`no state for ${id}`);
  return entry.json<WorkflowState>();
}

describe("history chunks", () => {
  it("a 100-step workflow keeps its stored state bounded, and describe() gives every step back in order", async () => {
    const e = engine();
    await e.runtime({ workflows: { long }, activities });
    const client = await e.client();
    const steps = 100;
    expect(await (await client.start("long", { steps }, { id: "long-1" })).result(resultSignal())).toBe(steps);

    const head = await stored(client, "long-1");
    expect(head.history!.chunks).toBeGreaterThanOrEqual(4);
    expect(head.journal.length).toBeLessThan(2 * CHUNK_MAX_STEPS);
    expect(Object.keys(head.steps).length + head.history!.steps).toBe(steps + steps / 10);

    const whole = await client.describe("long-1");
    const records = Object.values(whole.steps).sort((a, b) => a.seq - b.seq);
    expect(records.map((s) => s.seq)).toEqual(Array.from({ length: steps + steps / 10 }, (_, i) => i));
    expect(records.every((s) => s.status === "completed" && s.attempt === 1)).toBe(true);
    expect(whole.journal).toHaveLength(records.length);
    expect(new Set(whole.journal).size).toBe(records.length);
    // Each chunk holds the journal entries right after the previous one's.
    const chunks: HistoryChunk[] = [];
    for (let n = 0; n < head.history!.chunks; n++) chunks.push((await client.topology.states.get(historyKey("long-1", n)))!.json<HistoryChunk>());
    expect([...chunks.flatMap((c) => c.journal), ...head.journal]).toEqual(whole.journal);
    expect(await client.waitForEnd("long-1", resultSignal())).toEqual(whole);
    const watched: WorkflowState[] = [];
    for await (const state of client.watch("long-1", resultSignal())) watched.push(state);
    expect(watched.at(-1)).toEqual(whole);
    // Chunks are not workflows.
    expect((await client.listPage()).workflows.map((w) => w.id)).toEqual(["long-1"]);
  });

  it("a long workflow the runtime forgot while it slept replays through its chunks and runs no activity twice", async () => {
    const e = engine();
    const runs = new Map<string, number>();
    const acts = {
      note: async (label: string, ctx: ActivityContext) => {
        runs.set(`${label}#${ctx.attempt}`, (runs.get(`${label}#${ctx.attempt}`) ?? 0) + 1);
        return label;
      },
    };
    const sleeper = async (ctx: WorkflowContext<typeof acts>) => {
      const seen: string[] = [];
      for (let i = 0; i < 40; i++) seen.push(await ctx.activities.note(`a${i}`));
      await ctx.sleep("300ms"); // longer than cacheDistantWaits below: the runtime forgets it meanwhile
      for (let i = 0; i < 5; i++) seen.push(await ctx.activities.note(`b${i}`));
      return seen;
    };
    await e.runtime({ workflows: { sleeper }, activities: acts, config: { orchestrator: { cacheDistantWaits: "100ms" } } });
    const client = await e.client();
    const result = await (await client.start("sleeper", null, { id: "forgot-1" })).result(resultSignal());
    expect(result).toEqual([...Array.from({ length: 40 }, (_, i) => `a${i}`), ...Array.from({ length: 5 }, (_, i) => `b${i}`)]);
    expect([...runs.values()].every((count) => count === 1)).toBe(true);
    expect(runs.size).toBe(45);
    expect((await stored(client, "forgot-1")).history!.chunks).toBeGreaterThanOrEqual(1);
  });

  it("code that diverges in a step that moved to a chunk fails the workflow with NonDeterminismError naming that step", async () => {
    const e = engine();
    const v1 = async (ctx: WorkflowContext<typeof activities>) => {
      let n = 0;
      for (let i = 0; i < 40; i++) n = await ctx.activities.inc(n);
      await ctx.sleep("1500ms");
      return n;
    };
    const rt1 = await createRuntime({ config: e.config(), workflows: { wf: v1 }, activities });
    await rt1.start();
    const client = await e.client();
    await client.start("wf", null, { id: "diverge-early" });
    try {
      const sleeping = await waitForState(client, "diverge-early", (s) => Object.values(s.steps).some((step) => step.kind === "sleep" && step.status === "waiting"));
      expect(sleeping.steps["inc-3"]).toMatchObject({ status: "completed", seq: 2 });
      expect((await stored(client, "diverge-early")).steps["inc-3"]).toBeUndefined(); // it is in chunk 0
    } finally {
      await rt1.stop("test");
    }
    // v2 calls another activity third: only the chunk knows what the third command was.
    const v2 = async (ctx: WorkflowContext<typeof activities & { dec: (n: number) => Promise<number> }>) => {
      let n = 0;
      for (let i = 0; i < 40; i++) n = i === 2 ? await ctx.activities.dec(n) : await ctx.activities.inc(n);
      await ctx.sleep("1500ms");
      return n;
    };
    await e.runtime({ workflows: { wf: v2 }, activities: { ...activities, dec: async (n: number) => n - 1 } });
    const state = await waitForState(client, "diverge-early", undefined, 20_000);
    expect(state.status).toBe("failed");
    expect(state.error).toMatchObject({ type: "NonDeterminismError" });
    expect(state.error!.message).toMatch(/activity inc \(step "inc-3"\)/);
    expect(state.error!.message).toMatch(/activity dec/);
  });

  it("outputs that add up to more than one NATS message: the workflow completes, its chunks hold them", async () => {
    const e = engine();
    const acts = { blob: async (i: number) => `${i}:`.padEnd(40_000, "x") };
    const blobs = async (ctx: WorkflowContext<typeof acts>) => {
      let total = 0;
      for (let i = 0; i < 40; i++) total += (await ctx.activities.blob(i)).length;
      return total;
    };
    await e.runtime({ workflows: { blobs }, activities: acts });
    const client = await e.client();
    const { nc } = await e.topology();
    expect(40 * 40_000).toBeGreaterThan(nc.info!.max_payload);
    expect(await (await client.start("blobs", null, { id: "blobs-1" })).result(resultSignal())).toBe(40 * 40_000);
    const head = await stored(client, "blobs-1");
    expect(JSON.stringify(head).length).toBeLessThan(4 * CHUNK_MAX_BYTES);
    const whole = await client.describe("blobs-1");
    expect(Object.values(whole.steps).map((s) => (s.output as string).slice(0, 3))).toEqual(Array.from({ length: 40 }, (_, i) => `${i}:`.padEnd(3, "x")));
  });

  it("describe() of a workflow whose chunk was deleted by hand says which key is missing", async () => {
    const e = engine();
    await e.runtime({ workflows: { long }, activities });
    const client = await e.client();
    await (await client.start("long", { steps: 40 }, { id: "lost-chunk" })).result(resultSignal());
    await client.topology.states.purge(historyKey("lost-chunk", 0));
    const error = (await client.describe("lost-chunk").catch((err: unknown) => err)) as { code?: string; message?: string };
    expect(error.code).toBe("WF_HISTORY_MISSING");
    expect(error.message).toContain("lost-chunk/0");
  });

  it("a chunk is stored once: the same chunk again is accepted, a different one decided on the same or a later revision is a conflict", async () => {
    const e = engine();
    const { states } = await e.topology();
    const step = (seq: number): StepState => ({ seq, kind: "activity", activity: "inc", status: "completed", attempt: 1, output: seq, scheduledAt: "2026-01-01T00:00:00.000Z" });
    const chunk: HistoryChunk = { v: 1, id: "c-1", chunk: 0, journal: ["inc", "inc-2"], steps: { inc: step(0), "inc-2": step(1) }, base: 50 };
    await storeChunk(states, chunk);
    await storeChunk(states, chunk); // a retry after a lost CAS
    const other = { ...chunk, journal: ["inc", "inc-3"], steps: { inc: step(0), "inc-3": step(2) } };
    // Decided on the same revision (a racer), or on an older one (this decision is stale): the chunk may be named by the winner.
    await expect(storeChunk(states, other)).rejects.toBeInstanceOf(RevisionConflictError);
    await expect(storeChunk(states, { ...other, base: 49 })).rejects.toBeInstanceOf(RevisionConflictError);
    expect((await states.get(historyKey("c-1", 0)))!.json<HistoryChunk>().journal).toEqual(["inc", "inc-2"]);
    // Decided on a later revision: the stored one's decision lost its CAS (the state moved on without naming it), so it is replaced.
    await storeChunk(states, { ...other, base: 51 });
    expect((await states.get(historyKey("c-1", 0)))!.json<HistoryChunk>()).toMatchObject({ journal: ["inc", "inc-3"], base: 51 });
    // A chunk from before `base` existed: its own KV revision bounds the revision it was decided on.
    const old = await states.create(historyKey("c-2", 0), JSON.stringify({ v: 1, id: "c-2", chunk: 0, journal: ["x"], steps: { x: step(0) } }));
    await expect(storeChunk(states, { ...chunk, id: "c-2", base: old })).rejects.toBeInstanceOf(RevisionConflictError);
    await storeChunk(states, { ...chunk, id: "c-2", base: old + 1 });
    expect((await states.get(historyKey("c-2", 0)))!.json<HistoryChunk>().journal).toEqual(["inc", "inc-2"]);
  });

  it("a decision whose CAS lost leaves a chunk of committed entries only, and the next split at that position replaces it", async () => {
    const e = engine();
    const { states } = await e.topology();
    const at = "2026-01-01T00:00:00.000Z";
    const step = (seq: number, bytes = 10): StepState => ({ seq, kind: "activity", activity: "a", status: "completed", attempt: 1, output: "x".repeat(bytes), scheduledAt: at });
    const state = (journal: string[], steps: Record<string, StepState>): WorkflowState => ({ v: 2, id: "race", workflow: "wf", status: "running", input: null, createdAt: at, updatedAt: at, bundle: "x", kind: "code", steps, journal });
    const committed = state(["s0", "s1"], { s0: step(0), s1: step(1) });
    const r1 = await states.create("race", JSON.stringify(committed));
    // Runtime A decides on r1: two new results, the second one large enough for a split.
    const a = state([...committed.journal, "a2", "a3"], { ...committed.steps, a2: step(2), a3: step(3, 3 * CHUNK_MAX_BYTES) });
    const splitA = splitHistory(a, JSON.stringify(a).length, { state: committed, revision: r1 })!;
    expect(splitA.chunk.journal).toEqual(["s0"]); // a2 is not the workflow's until A's CAS wins
    await storeChunk(states, splitA.chunk);
    // Runtime B, also on r1, wins the CAS with another result; A's CAS loses.
    const b = state([...committed.journal, "b2"], { ...committed.steps, b2: step(2) });
    const r2 = await states.update("race", JSON.stringify(b), r1);
    await expect(states.update("race", JSON.stringify(splitA.head), r1)).rejects.toThrow();
    // The next split, decided on r2, cuts position 0 differently: it must store and commit (before: a conflict on every try, forever).
    const c = state([...b.journal, "c3"], { ...b.steps, c3: step(3, 3 * CHUNK_MAX_BYTES) });
    const splitC = splitHistory(c, JSON.stringify(c).length, { state: b, revision: r2 })!;
    expect(splitC.chunk.journal).toEqual(["s0", "s1"]);
    await storeChunk(states, splitC.chunk);
    await states.update("race", JSON.stringify(splitC.head), r2);
    const head = (await states.get("race"))!.json<WorkflowState>();
    expect((await withHistory(states, head)).journal).toEqual(["s0", "s1", "b2", "c3"]);
  });

  it("a leftover chunk at the next position (a lost CAS) does not stop the workflow", async () => {
    const e = engine();
    await e.runtime({ workflows: { long }, activities });
    const client = await e.client();
    const step: StepState = { seq: 0, kind: "activity", activity: "inc", status: "completed", attempt: 1, output: 7, scheduledAt: "2026-01-01T00:00:00.000Z" };
    // As today's code could leave it: entries that were never committed, no base.
    await client.topology.states.create(historyKey("leftover", 0), JSON.stringify({ v: 1, id: "leftover", chunk: 0, journal: ["inc", "never"], steps: { inc: step, never: { ...step, seq: 1 } } }));
    expect(await (await client.start("long", { steps: 40 }, { id: "leftover" })).result(resultSignal())).toBe(40);
    const whole = await client.describe("leftover");
    expect(whole.journal).not.toContain("never");
    expect(Object.keys(whole.steps)).toHaveLength(44);
  });
});

describe("splitHistory", () => {
  const base = (journal: string[], outputs: (i: number) => unknown = (i) => i): WorkflowState => ({
    v: 2,
    id: "w",
    workflow: "wf",
    status: "running",
    input: null,
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:00.000Z",
    bundle: "x",
    kind: "code",
    steps: Object.fromEntries(
      [...journal, "pending"].map((name, seq) => [name, { seq, kind: "activity", activity: "a", status: name === "pending" ? "scheduled" : "completed", attempt: 1, output: outputs(seq), scheduledAt: "2026-01-01T00:00:00.000Z" } satisfies StepState]),
    ),
    journal,
  });
  const names = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`);
  const split = (state: WorkflowState) => splitHistory(state, JSON.stringify(state).length, { state, revision: 1 });

  it("moves nothing until the state holds twice a chunk of delivered steps, then the oldest chunk, never a pending step", () => {
    expect(split(base(names(2 * CHUNK_MAX_STEPS - 1)))).toBeUndefined();
    const first = split(base(names(2 * CHUNK_MAX_STEPS)))!;
    expect(first.chunk.journal).toEqual(names(CHUNK_MAX_STEPS));
    expect(Object.keys(first.chunk.steps)).toEqual(names(CHUNK_MAX_STEPS));
    expect(first.head.journal).toEqual(names(2 * CHUNK_MAX_STEPS).slice(CHUNK_MAX_STEPS));
    expect(first.head.steps.pending!.status).toBe("scheduled");
    expect(first.head.history).toEqual({ chunks: 1, steps: CHUNK_MAX_STEPS });
    const next = split({ ...first.head, steps: { ...first.head.steps, ...base(names(3 * CHUNK_MAX_STEPS)).steps }, journal: names(3 * CHUNK_MAX_STEPS).slice(CHUNK_MAX_STEPS) })!;
    expect(next.chunk.chunk).toBe(1);
    expect(next.head.history).toEqual({ chunks: 2, steps: 2 * CHUNK_MAX_STEPS });
  });

  it("large outputs: moves by bytes, a chunk of at most CHUNK_MAX_BYTES (one step at least), and keeps the last delivered step", () => {
    const big = (i: number) => "x".repeat(i === 3 ? 3 * CHUNK_MAX_BYTES : CHUNK_MAX_BYTES / 3);
    expect(split(base(names(5), big))!.chunk.journal).toEqual(["s0", "s1"]); // a third step would pass CHUNK_MAX_BYTES
    const huge = split(base(["s0", "s1"], (i) => "x".repeat(i === 0 ? 3 * CHUNK_MAX_BYTES : 10)))!;
    expect(huge.chunk.journal).toEqual(["s0"]);
    expect(huge.head.journal).toEqual(["s1"]);
    expect(split(base(["s0"], () => "x".repeat(3 * CHUNK_MAX_BYTES)))).toBeUndefined();
  });

  it("a large state whose bulk is not delivered steps (a large input) moves nothing", () => {
    const state = { ...base(names(4)), input: "x".repeat(3 * CHUNK_MAX_BYTES) };
    expect(split(state)).toBeUndefined();
  });
});
