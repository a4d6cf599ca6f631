/**
 * The engine's fast paths, each checked for what a user relies on: a runtime with both roles
 * applies its own completions in-process (no completion events), split roles still publish them;
 * result() learns of the end from the orchestrator's announcement, and still finds it when no
 * announcement comes; a workflow dropped from the cache during a long sleep wakes up and replays
 * without running an activity twice; the DAG interpreter schedules every step in the same decision
 * that completed its last dependency.
 */
import { describe, expect, it } from "vitest";
import { headers, type Msg } from "@nats-io/nats-core";
import { DiscardPolicy } from "@nats-io/jetstream";
import { createRuntime, defineDag, defineWorkflow, type ActivityContext, type DagDefinition, type WorkflowClient, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { Engine, resultSignal, sleep, useEngines, waitFor, waitForState } from "./fixtures/engine/harness.js";
import { MAX_SPREAD_MS } from "../runtime/orchestrator/timer-batches.js";
import { REPAIR_HEADER, type CompletionMessage } from "../runtime/protocol.js";
import { pendingEffects } from "../runtime/orchestrator/outbox.js";

const engine = useEngines();

const activities = {
  inc: async (n: number) => n + 1,
};
const chain = async (ctx: WorkflowContext<typeof activities>, input: { n: number }) => {
  const a = await ctx.activities.inc(input.n);
  const b = await ctx.activities.inc(a);
  return await ctx.activities.inc(b);
};

/**
 * Workflow `two`: activity `first`, then `second`, recording each run as `<name>#<attempt>`. The
 * first run of `second` waits for releaseSecond(); `first` can fail its first attempt.
 */
function firstThenSecond(options: { firstFailsOnce?: boolean } = {}) {
  const runs: string[] = [];
  let releaseSecond!: () => void;
  const secondMayEnd = new Promise<void>((resolve) => (releaseSecond = resolve));
  const activities = {
    first: async (_: unknown, ctx: ActivityContext) => {
      runs.push(`first#${ctx.attempt}`);
      if (options.firstFailsOnce && ctx.attempt === 1) throw new Error("first attempt fails");
    },
    second: async (_: unknown, ctx: ActivityContext) => {
      runs.push(`second#${ctx.attempt}`);
      if (runs.filter((r) => r.startsWith("second")).length === 1) await secondMayEnd;
    },
  };
  const two = async (ctx: WorkflowContext<typeof activities>) => {
    await ctx.activities.first(null);
    await ctx.activities.second(null);
    return "done";
  };
  return { runs, releaseSecond, activities, workflows: { two } };
}

/** Workflow `two`: activity `first`, then `second`, recording each run as `<name>#<attempt>`. */
function firstThenSecondRecorded() {
  const runs: string[] = [];
  const acts = {
    first: async (_: unknown, ctx: ActivityContext) => void runs.push(`first#${ctx.attempt}`),
    second: async (_: unknown, ctx: ActivityContext) => void runs.push(`second#${ctx.attempt}`),
  };
  const two = async (ctx: WorkflowContext<typeof acts>) => {
    await ctx.activities.first(null);
    await ctx.activities.second(null);
    return "done";
  };
  return { runs, acts, two };
}

/**
 * Limit the tasks stream to one message (new ones refused) until the returned function puts the
 * limit back: while a task is unacked, publishing the next one fails.
 */
async function roomForOneTask(e: Engine, client: WorkflowClient): Promise<() => Promise<void>> {
  const { jsm } = client.topology;
  const original = (await jsm.streams.info(e.names.tasksStream)).config;
  await jsm.streams.update(e.names.tasksStream, { ...original, max_msgs: 1, discard: DiscardPolicy.New });
  return async () => void (await jsm.streams.update(e.names.tasksStream, { ...original }));
}

/** Every completion event published in the namespace, seen with a plain subscription. */
async function watchCompletions(e: Engine): Promise<{ seen: string[]; stop(): void }> {
  const { nc } = await e.topology();
  const seen: string[] = [];
  const sub = nc.subscribe(e.names.completedSubject(">", "").replace(/\.$/, ""), { callback: (_err: Error | null, msg: Msg) => void seen.push(msg.subject) });
  await nc.flush();
  return { seen, stop: () => sub.unsubscribe() };
}

describe("completions", () => {
  it("a runtime with both roles records its own workers' completions without publishing completion events", async () => {
    const e = engine();
    await e.runtime({ workflows: { chain }, activities });
    const completions = await watchCompletions(e);
    const client = await e.client();
    const results = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await client.start("chain", { n: i }, { id: `local-${i}` })).result(resultSignal())));
    expect(results).toEqual(Array.from({ length: 10 }, (_, i) => i + 3));
    const state = await client.describe("local-0");
    expect(Object.values(state.steps).map((s) => [s.status, s.attempt])).toEqual([
      ["completed", 1],
      ["completed", 1],
      ["completed", 1],
    ]);
    completions.stop();
    expect(completions.seen).toEqual([]);
    // The events stream saw the starts only: one event per workflow instead of one per step.
    const { jsm } = await e.topology();
    expect((await jsm.streams.info(e.names.eventsStream)).state.last_seq).toBe(10);
  });

  it("a worker-only runtime publishes completion events, which an orchestrator-only runtime applies", async () => {
    const e = engine();
    const orchestrator = await createRuntime({ config: e.config(), workflows: { chain }, activities, role: "orchestrator" });
    const worker = await createRuntime({ config: e.config(), workflows: { chain }, activities, role: "worker" });
    try {
      await orchestrator.start();
      await worker.start();
      const completions = await watchCompletions(e);
      const client = await e.client();
      expect(await (await client.start("chain", { n: 1 }, { id: "split-1" })).result(resultSignal())).toBe(4);
      completions.stop();
      expect(completions.seen).toHaveLength(3);
    } finally {
      await worker.stop("test end");
      await orchestrator.stop("test end");
    }
  });
});

describe("waiting for the end", () => {
  it("result() and waitForEnd() return as soon as the workflow ends, with the stored state", async () => {
    const e = engine();
    await e.runtime({ workflows: { chain }, activities });
    const client = await e.client();
    const handle = await client.start("chain", { n: 10 }, { id: "ends-1" });
    const [result, end] = await Promise.all([handle.result(resultSignal()), client.waitForEnd("ends-1", resultSignal())]);
    expect(result).toBe(13);
    expect(end).toEqual(await client.describe("ends-1"));
  });

  it("waitForEnd() finds an end that was never announced by re-reading the state", async () => {
    const e = engine();
    const client = await e.client();
    const waiting = client.waitForEnd("written-by-hand", resultSignal(10_000));
    await sleep(200);
    // A terminal state written by another program, without the orchestrator's announcement.
    const now = new Date().toISOString();
    const state: WorkflowState = { v: 1, id: "written-by-hand", workflow: "chain", status: "completed", input: null, result: 42, createdAt: now, updatedAt: now, completedAt: now, bundle: "x", kind: "code", steps: {}, journal: [] };
    await client.topology.states.put("written-by-hand", JSON.stringify(state));
    const t0 = Date.now();
    expect(await waiting).toMatchObject({ status: "completed", result: 42 });
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it("waitForEnd() stops waiting when its signal aborts", async () => {
    const e = engine();
    const client = await e.client();
    await expect(client.waitForEnd("never-started", { signal: AbortSignal.timeout(300) })).rejects.toMatchObject({ code: "WF_ABORTED" });
  });
});

describe("cache", () => {
  it("a workflow dropped from the cache while it sleeps wakes up, replays, and runs no activity twice", async () => {
    const e = engine();
    const runs: string[] = [];
    const acts = {
      note: async (label: string, ctx: ActivityContext) => {
        runs.push(`${label}#${ctx.attempt}`);
        return label;
      },
    };
    const sleeper = async (ctx: WorkflowContext<typeof acts>) => {
      const id = ctx.uuid();
      const before = await ctx.activities.note("before");
      await ctx.sleep("400ms"); // longer than cacheDistantWaits below: the runtime forgets it meanwhile
      const after = await ctx.activities.note("after");
      return { id, before, after, again: ctx.uuid() };
    };
    await e.runtime({ workflows: { sleeper }, activities: acts, config: { orchestrator: { cacheDistantWaits: "100ms" } } });
    const client = await e.client();
    const result = (await (await client.start("sleeper", null, { id: "evicted-1" })).result(resultSignal())) as { id: string; again: string; before: string; after: string };
    expect(result).toMatchObject({ before: "before", after: "after" });
    expect(result.id).not.toBe(result.again);
    expect(runs).toEqual(["before#1", "after#1"]);
    const state = await client.describe("evicted-1");
    expect(state.journal).toEqual(["note", "sleep", "note-2"]);
    expect(Object.values(state.steps).every((s) => s.status === "completed")).toBe(true);
  });
});

describe("DAG activations", () => {
  it("a wide and deep DAG: every step is scheduled by the decision that completed its last dependency", async () => {
    const e = engine();
    const fan = Array.from({ length: 6 }, (_, i) => ({ name: `fan${i}`, type: "echo", dependencies: ["root"] }));
    const chain = Array.from({ length: 5 }, (_, i) => ({ name: `chain${i}`, type: "echo", dependencies: [i === 0 ? "join" : `chain${i - 1}`] }));
    const wide: DagDefinition = defineDag({
      name: "wide",
      activities: [
        { name: "root", type: "echo" },
        ...fan,
        { name: "join", type: "echo", dependencies: fan.map((f) => f.name) },
        ...chain,
        { name: "side", type: "echo" },
        { name: "last", type: "echo", dependencies: ["chain4", "side", "fan2"] },
      ],
    });
    await e.runtime({ workflows: { wide }, activities: { echo: async (input: Record<string, unknown>, ctx: ActivityContext) => ({ step: ctx.activityId, saw: Object.keys(input).filter((k) => k !== "seed").sort() }) } });
    const client = await e.client();
    for (let run = 0; run < 3; run++) {
      const id = `wide-${run}`;
      const result = (await (await client.start("wide", { seed: run }, { id })).result(resultSignal())) as Record<string, { step: string; saw: string[] }>;
      expect(Object.keys(result).sort()).toEqual(wide.activities.map((a) => a.name).sort());
      expect(result.join!.saw).toEqual(fan.map((f) => f.name).sort());
      expect(result.last!.saw).toEqual(["chain4", "fan2", "side"]);
      const state = await client.describe(id);
      for (const activity of wide.activities) {
        const deps = activity.dependencies ?? [];
        const step = state.steps[activity.name]!;
        expect(step.status).toBe("completed");
        if (deps.length === 0) {
          expect(step.scheduledAt, activity.name).toBe(state.createdAt);
          continue;
        }
        const lastResolved = Math.max(...deps.map((d) => state.steps[d]!.resolvedAt!));
        expect(step.scheduledAt, `${activity.name} scheduled when its last dependency resolved`).toBe(new Date(lastResolved).toISOString());
      }
    }
  });
});

describe("recording a completion that fails part way", () => {
  it("the completion is published as an event marked for repair, whose delivery publishes the next task the state already recorded", async () => {
    const e = engine();
    const { runs, acts, two } = firstThenSecondRecorded();
    // Continuations off: `second` goes through the tasks stream (the continuation path has a test below).
    await e.runtime({ workflows: { two }, activities: acts, config: { worker: { continuations: false } } });
    const client = await e.client();
    // While `first`'s task is unacked (it is, until its completion is recorded), the stream takes
    // no second message: the state CAS succeeds, the publish of `second`'s task fails.
    const roomAgain = await roomForOneTask(e, client);
    const completions = await watchCompletions(e);
    const handle = await client.start("two", null, { id: "part-way-1" });
    // Once the event is published, `first`'s task is acked: there is room for `second`'s again.
    expect(await handle.result(resultSignal())).toBe("done");
    await roomAgain();
    // `first` was not run again: its completion event found it recorded and published `second`.
    expect(runs).toEqual(["first#1", "second#1"]);
    expect(completions.seen.filter((subject) => subject.endsWith(".first"))).toHaveLength(1);
    completions.stop();
    const state = await client.describe("part-way-1");
    expect(state.steps.first).toMatchObject({ status: "completed", attempt: 1 });
    expect(state.journal).toEqual(["first", "second"]);
  });
});

describe("recording a completion that fails before its write", () => {
  it("keeps the activity's result: the completion goes out as an event, and the step does not run again", async () => {
    const e = engine();
    const { runs, acts, two } = firstThenSecondRecorded();
    // The first state write of a completion fails (as a KV write does while NATS elects a leader).
    let failures = 0;
    const crashPoint = (name: string) => {
      if (name === "before-state-write" && failures === 0) {
        failures += 1;
        throw new Error("injected: the state write did not happen");
      }
    };
    const runtime = await createRuntime({ config: e.config(), workflows: { two }, activities: acts, crashPoint });
    await runtime.start();
    const client = await e.client();
    try {
      const handle = await client.start("two", null, { id: "write-failed" });
      expect(await handle.result(resultSignal())).toBe("done");
      expect(failures).toBe(1);
      expect(runs).toEqual(["first#1", "second#1"]);
    } finally {
      await runtime.stop("test end");
    }
  });
});

describe("workflow deadlines", () => {
  it("starts at once park their deadlines together, and every workflow still times out on time", async () => {
    const e = engine();
    const waits = defineWorkflow(async (ctx: WorkflowContext) => ctx.waitForSignal("never"), { timeout: "1s" });
    await e.runtime({ workflows: { waits } });
    const client = await e.client();
    const n = 40;
    const handles = await Promise.all(Array.from({ length: n }, (_, i) => client.start("waits", null, { id: `deadline-${i}` })));
    const ends = await Promise.all(handles.map((h) => client.waitForEnd(h.id, resultSignal())));
    for (const state of ends) {
      expect(state.status).toBe("timed_out");
      expect(state.error).toMatchObject({ type: "WorkflowTimeoutError" });
      const late = Date.parse(state.completedAt!) - Date.parse(state.deadline!);
      expect(late).toBeGreaterThanOrEqual(-5); // timers may fire 5 ms early (clock tolerance), never more
      expect(late).toBeLessThan(MAX_SPREAD_MS + 2_000); // the batch's spread, plus delivery on a loaded machine
    }
    // Fewer timer messages than workflows: deadlines decided together were stored together.
    const { jsm } = await e.topology();
    expect((await jsm.streams.info(e.names.timersStream)).state.last_seq).toBeLessThan(n);
  });
});

describe("continuations", () => {
  it("a runtime with both roles runs a workflow's next steps itself: one task message per workflow, not one per step", async () => {
    const e = engine();
    await e.runtime({ workflows: { chain }, activities });
    const client = await e.client();
    // One at a time, so a slot is always free for the next step (under load, a step that finds no
    // free slot has its task published as usual).
    const results: number[] = [];
    for (let i = 0; i < 10; i++) results.push((await (await client.start("chain", { n: i }, { id: `cont-${i}` })).result(resultSignal())) as number);
    expect(results).toEqual(Array.from({ length: 10 }, (_, i) => i + 3));
    const { jsm } = await e.topology();
    expect((await jsm.streams.info(e.names.tasksStream)).state.last_seq).toBe(10);
    const state = await client.describe("cont-0");
    expect(state.journal).toEqual(["inc", "inc-2", "inc-3"]);
    expect(Object.values(state.steps).map((s) => [s.status, s.attempt])).toEqual([
      ["completed", 1],
      ["completed", 1],
      ["completed", 1],
    ]);
  });

  it("a continued step's activity that changes its input changes nothing the workflow recorded", async () => {
    const e = engine();
    const acts = {
      first: async () => "ok",
      grab: async (input: { list: number[]; extra?: boolean }) => {
        input.list.push(99);
        input.extra = true;
        return input.list.length;
      },
      last: async (n: number) => n,
    };
    const greedy = async (ctx: WorkflowContext<typeof acts>) => {
      await ctx.activities.first(null);
      const n = await ctx.activities.grab({ list: [1, 2] });
      return await ctx.activities.last(n);
    };
    await e.runtime({ workflows: { greedy }, activities: acts });
    const client = await e.client();
    expect(await (await client.start("greedy", null, { id: "greedy-1" })).result(resultSignal())).toBe(3);
    const { jsm } = await e.topology();
    expect((await jsm.streams.info(e.names.tasksStream)).state.last_seq).toBe(1); // grab and last ran as continuations
    // Written again by the step after it, the step's input is still what the workflow passed.
    expect((await client.describe("greedy-1")).steps.grab!.input).toEqual({ list: [1, 2] });
  });

  it("a stale completion of an earlier attempt changes nothing and does not restart a continued step", async () => {
    const e = engine();
    const { runs, releaseSecond, activities: acts, workflows } = firstThenSecond({ firstFailsOnce: true });
    await e.runtime({ workflows, activities: acts });
    const client = await e.client();
    const handle = await client.start("two", null, { id: "stale-report" });
    const running = await waitForState(client, "stale-report", (s) => s.steps.second?.continued !== undefined);
    expect(running.steps.first).toMatchObject({ status: "completed", attempt: 2 });
    // Attempt 1's report again, as a late duplicate from the runtime that ran it.
    const { js, names } = client.topology;
    const stale: CompletionMessage = { workflowId: "stale-report", step: "first", attempt: 1, startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), worker: "elsewhere", ok: false, error: { message: "first attempt fails", type: "Error" } };
    await js.publish(names.completedSubject("stale-report", "first"), new TextEncoder().encode(JSON.stringify(stale)));
    await sleep(500);
    releaseSecond();
    expect(await handle.result(resultSignal())).toBe("done");
    expect(runs).toEqual(["first#1", "first#2", "second#1"]);
  });

  it("with worker.continuations off, every step's task goes through the tasks stream", async () => {
    const e = engine();
    await e.runtime({ workflows: { chain }, activities, config: { worker: { continuations: false } } });
    const client = await e.client();
    await Promise.all(Array.from({ length: 10 }, async (_, i) => (await client.start("chain", { n: i }, { id: `nocont-${i}` })).result(resultSignal())));
    const { jsm } = await e.topology();
    expect((await jsm.streams.info(e.names.tasksStream)).state.last_seq).toBe(30);
  });

  it("a fan-out whose other task cannot be published: nothing runs twice, and the workflow completes once NATS takes it", async () => {
    const e = engine();
    const runs: string[] = [];
    const acts = {
      first: async (_: unknown, ctx: ActivityContext) => void runs.push(`first#${ctx.attempt}`),
      left: async (_: unknown, ctx: ActivityContext) => void runs.push(`left#${ctx.attempt}`),
      right: async (_: unknown, ctx: ActivityContext) => void runs.push(`right#${ctx.attempt}`),
    };
    const fan = async (ctx: WorkflowContext<typeof acts>) => {
      await ctx.activities.first(null);
      await Promise.all([ctx.activities.left(null), ctx.activities.right(null)]);
      return "done";
    };
    await e.runtime({ workflows: { fan }, activities: acts });
    const client = await e.client();
    // `first`'s task stays in the stream while unacked: with room for one message, the decision
    // that records `first` would run `left` here but cannot publish `right`. `left` is not
    // started; `first`'s completion goes out as an event marked for repair, whose delivery
    // re-publishes both (one at a time, as room frees up).
    const roomAgain = await roomForOneTask(e, client);
    const completions = await watchCompletions(e);
    const handle = await client.start("fan", null, { id: "fan-part-way" });
    expect(await handle.result(resultSignal())).toBe("done");
    await roomAgain();
    expect(completions.seen.filter((subject) => subject.endsWith(".first"))).toHaveLength(1); // the part-way path was taken
    completions.stop();
    expect([...runs].sort()).toEqual(["first#1", "left#1", "right#1"]);
  });
});

describe("continuations when NATS loses writes", () => {
  it("a continued step whose state went back (the write that scheduled it lost) releases its lease: the previous step runs again, the workflow completes", async () => {
    const e = engine();
    const { runs, releaseSecond, activities: acts, workflows } = firstThenSecond();
    await e.runtime({ workflows, activities: acts });
    const client = await e.client();
    const { states } = client.topology;
    await client.start("two", null, { id: "went-back" });
    for (let i = 0; i < 100 && runs.length < 2; i++) await sleep(20);
    expect(runs).toEqual(["first#1", "second#1"]);
    const now = await client.describe("went-back");
    expect(now.steps.second?.continued).toBeDefined(); // second runs as a continuation
    // NATS "loses" the write that recorded `first` and scheduled `second`: the state is again
    // what the start wrote, `first` scheduled.
    const { output: _output, startedAt: _startedAt, finishedAt: _finishedAt, worker: _worker, resolvedAt: _resolvedAt, ...firstScheduled } = now.steps.first!;
    await states.put("went-back", JSON.stringify({ ...now, steps: { first: { ...firstScheduled, status: "scheduled" } }, journal: [] }));
    releaseSecond();
    expect(await (await client.getHandle("went-back")).result(resultSignal())).toBe("done");
    expect(runs).toEqual(["first#1", "second#1", "first#1", "second#1"]);
    const state = await client.describe("went-back");
    expect(state.journal).toEqual(["first", "second"]);
    expect(state.steps.second?.continued).toBeUndefined();
  });

  for (const where of ["another runtime", "the same runtime"] as const) {
    it(`a second execution of a continued step's lease on ${where} leaves the running step alone: no step runs twice`, async () => {
      // A restarted nats-server that forgot a delivery, or a copy of the task published again,
      // hands the lease's task out while its holder still runs the chain. The repair of that
      // second execution must not publish the continued step: it would run twice, and every later
      // step with it (chaos scenario 2 saw it: the same step on one pid 2 ms apart).
      const e = engine();
      const { runs, releaseSecond, activities: acts, workflows } = firstThenSecond();
      // One slot on the holder when another runtime must take the copy: `second` fills it.
      await e.runtime({ workflows, activities: acts, config: { worker: { slots: where === "another runtime" ? 1 : 4 } } });
      const client = await e.client();
      const handle = await client.start("two", null, { id: `shadow-${where.split(" ")[0]}` });
      const running = await waitForState(client, handle.id, (s) => s.steps.second?.continued !== undefined);
      expect(running.steps.second?.lease).toEqual({ step: "first", attempt: 1 });
      for (let i = 0; i < 100 && runs.length < 2; i++) await sleep(20);
      if (where === "another runtime") await e.runtime({ workflows, activities: acts });
      const { jsm, js, names } = client.topology;
      const lease = await jsm.streams.getMessage(names.tasksStream, { seq: 1 });
      await js.publish(lease!.subject, lease!.data);
      for (let i = 0; i < 150 && runs.length < 3; i++) await sleep(20);
      expect(runs).toEqual(["first#1", "second#1", "first#1"]);
      await sleep(700); // a re-published `second` would have started by now
      expect(runs).toEqual(["first#1", "second#1", "first#1"]);
      releaseSecond();
      expect(await handle.result(resultSignal())).toBe("done");
      expect(runs.filter((r) => r.startsWith("second"))).toEqual(["second#1"]);
    });
  }

  it("a holder asked about its continued step while the write that continues it is in flight answers \"held\": the step runs once", async () => {
    // Between the state write that marks `second` continued and the step's start, a repair
    // elsewhere (the lease's task redelivered by a restarted nats-server, or a part-way event) can
    // read that write and ask the holder. Told "free", it published `second`, and the step ran on
    // two runtimes (chaos scenario 2: ship_order on two pids 7 ms apart after a NATS restart).
    const e = engine();
    const { runs, releaseSecond, activities: acts, workflows } = firstThenSecond();
    const client = await e.client();
    const { nc, names } = client.topology;
    let writes = 0;
    let continuedBy: string | undefined;
    let answer: string | undefined;
    await e.runtime({
      workflows,
      activities: acts,
      crashPoint: (name) => {
        // The start's write is the first; the one that records `first` and continues `second`, the second.
        if (name !== "after-state-write-before-dispatch" || ++writes !== 2) return;
        return (async () => {
          continuedBy = (await client.describe("held-early")).steps.second?.continued;
          const query = JSON.stringify({ workflowId: "held-early", step: "second" });
          answer = new TextDecoder().decode((await nc.request(names.leaseSubject(continuedBy!), query, { timeout: 2_000 })).data);
        })();
      },
    });
    const handle = await client.start("two", null, { id: "held-early" });
    await waitForState(client, "held-early", () => runs.includes("second#1"));
    expect(continuedBy).toBeDefined(); // the write did continue `second` here
    expect(answer).toBe("held");
    releaseSecond();
    expect(await handle.result(resultSignal())).toBe("done");
    expect(runs).toEqual(["first#1", "second#1"]);
  });

  it("a part-way completion whose continued step's holder does not answer is asked about again, not acked: the step runs once the holder is gone", async () => {
    // A part-way event (its worker's in-process recording failed) repairs a continued step whose
    // lease is the completed task, acked already: acked while the holder's answer is unknown, the
    // step was left to nobody when that holder had died.
    const e = engine();
    const { runs, releaseSecond, activities: acts, workflows } = firstThenSecond();
    await e.runtime({ workflows, activities: acts, config: { defaults: { activityTimeout: "1m" } } });
    const client = await e.client();
    const { nc, js, states, names } = client.topology;
    const handle = await client.start("two", null, { id: "ghost-holder" });
    const running = await waitForState(client, "ghost-holder", (s) => s.steps.second?.continued !== undefined && runs.includes("second#1"));
    // The state now says a runtime that never answers holds `second` (a holder too busy, or cut off).
    await states.put("ghost-holder", JSON.stringify({ ...running, steps: { ...running.steps, second: { ...running.steps.second!, continued: "ghost-0000" } } }));
    let asked = 0;
    const ghost = nc.subscribe(names.leaseSubject("ghost-0000"), { callback: () => void (asked += 1) });
    await nc.flush();
    const first = running.steps.first!;
    const completion: CompletionMessage = { workflowId: "ghost-holder", step: "first", attempt: 1, startedAt: first.startedAt!, finishedAt: first.finishedAt!, worker: "elsewhere", ok: true, output: first.output ?? null };
    const h = headers();
    h.set(REPAIR_HEADER, "1");
    await js.publish(names.completedSubject("ghost-holder", "first"), new TextEncoder().encode(JSON.stringify(completion)), { headers: h });
    await waitFor("the repair to ask the holder", () => (asked >= 1 ? true : undefined), 10_000, 20);
    ghost.unsubscribe(); // the holder is gone: asked again, no one answers, and the step is published
    await waitFor("`second` to run again from its task", () => (runs.filter((r) => r === "second#1").length === 2 ? true : undefined), 20_000, 50);
    releaseSecond();
    expect(await handle.result(resultSignal())).toBe("done");
  });

  it("a continued step of a long workflow (with history chunks) whose scheduling write was lost releases its lease: the workflow completes", async () => {
    const e = engine();
    const runs: string[] = [];
    let releaseLast!: () => void;
    const lastMayEnd = new Promise<void>((resolve) => (releaseLast = resolve));
    const acts = {
      step: async (_: unknown, ctx: ActivityContext) => void runs.push(`step#${ctx.attempt}`),
      last: async (_: unknown, ctx: ActivityContext) => {
        runs.push(`last#${ctx.attempt}`);
        if (runs.filter((r) => r.startsWith("last")).length === 1) await lastMayEnd;
      },
    };
    const long = async (ctx: WorkflowContext<typeof acts>) => {
      for (let i = 0; i < 40; i++) await ctx.activities.step(null);
      await ctx.activities.last(null);
      return "done";
    };
    await e.runtime({ workflows: { long }, activities: acts });
    const client = await e.client();
    const { states } = client.topology;
    const handle = await client.start("long", null, { id: "long-went-back" });
    await waitForState(client, "long-went-back", (s) => s.steps.last?.continued !== undefined);
    // The state as stored (describe() puts the chunks' steps back in front).
    const now = (await states.get("long-went-back"))!.json<WorkflowState>();
    expect(now.history).toBeDefined(); // older steps moved to chunks
    // NATS "loses" the write that recorded the 40th `step` and scheduled `last`.
    const previous = now.journal[now.journal.length - 1]!;
    const { output: _o, startedAt: _s, finishedAt: _f, worker: _w, resolvedAt: _r, ...scheduled } = now.steps[previous]!;
    const { last: _last, ...steps } = now.steps;
    await states.put("long-went-back", JSON.stringify({ ...now, steps: { ...steps, [previous]: { ...scheduled, status: "scheduled" } }, journal: now.journal.slice(0, -1) }));
    releaseLast();
    expect(await handle.result(resultSignal())).toBe("done");
    expect(runs.filter((r) => r.startsWith("last"))).toEqual(["last#1", "last#1"]);
    expect(runs.filter((r) => r.startsWith("step")).length).toBe(41); // the 40th ran again, nothing else
  });

  it("recovery after a reconnect leaves continued steps to their runtime; a redelivery's repair publishes them", () => {
    const at = (ms: number) => new Date(ms).toISOString();
    const state: WorkflowState = {
      v: 2, id: "w", workflow: "wf", status: "running", input: null, createdAt: at(0), updatedAt: at(0), bundle: "x", kind: "code", journal: [],
      steps: {
        published: { seq: 0, kind: "activity", activity: "a", status: "scheduled", attempt: 1, scheduledAt: at(1_000) },
        before: { seq: 1, kind: "activity", activity: "a", status: "scheduled", attempt: 1, scheduledAt: at(1_000), continued: "rt-1" },
        after: { seq: 2, kind: "activity", activity: "a", status: "scheduled", attempt: 1, scheduledAt: at(5_000), continued: "rt-1" },
      },
    };
    const tasks = (skipContinued: boolean) => pendingEffects(state, { skipContinued }).map((e) => (e.kind === "task" ? e.step : e.kind));
    expect(tasks(true)).toEqual(["published"]);
    expect(tasks(false)).toEqual(["published", "before", "after"]);
  });
});
