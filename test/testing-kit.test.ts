/**
 * jetflow/testing itself: test environments on their own nats-server, time skipping (sleeps, a
 * 1-hour retry backoff, a 10-day workflow timeout, auto mode), activity mocks and call records,
 * step timelines, and replay tests from exported histories. Every env here is real: a nats-server,
 * a runtime, a client.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { defineWorkflow, type ActivityContext, type WorkflowContext } from "../runtime/index.js";
import { createTestEnv, NonDeterminismError, replayHistories, replayHistory, type TestEnv, type TestEnvOptions } from "../runtime/testing/index.js";

const DAY_MS = 86_400_000;
const envs: TestEnv[] = [];
async function env(options: TestEnvOptions): Promise<TestEnv> {
  const e = await createTestEnv(options);
  envs.push(e);
  return e;
}
afterEach(async () => {
  await Promise.all(envs.splice(0).map((e) => e.close()));
});

const activities = {
  greet: async (name: string) => `hello ${name}`,
  flaky: async (input: { failures: number }, ctx: ActivityContext) => {
    if (ctx.attempt <= input.failures) throw new Error(`flaky attempt ${ctx.attempt} fails`);
    return { attempt: ctx.attempt };
  },
};

async function sleeper(ctx: WorkflowContext<typeof activities>, input: { sleep: string }) {
  const before = ctx.now();
  const greeting = await ctx.activities.greet("before");
  await ctx.sleep(input.sleep);
  const after = await ctx.activities.greet("after");
  return { greeting, after, sleptMs: ctx.now() - before };
}

describe("time skipping", () => {
  it("skips a 30-day sleep in well under a second of wall time; ctx.now() advances by 30 days", async () => {
    const e = await env({ workflows: { sleeper }, activities });
    const handle = await e.client.start<typeof sleeper>("sleeper", { sleep: "30d" }, { id: "sleep-30d" });
    const wallStart = Date.now();
    await e.skipTime("30d"); // right after start: waits until the workflow sleeps, then skips
    const result = await handle.result({ signal: AbortSignal.timeout(5_000) });
    expect(Date.now() - wallStart).toBeLessThan(1_000);
    expect(result).toMatchObject({ greeting: "hello before", after: "hello after" });
    expect(result.sleptMs).toBeGreaterThanOrEqual(30 * DAY_MS);
    expect(result.sleptMs).toBeLessThan(30 * DAY_MS + 60_000);
    expect(e.clock.skippedMs).toBeGreaterThanOrEqual(30 * DAY_MS - 60_000);
  });

  it("fires timers in order, each one's consequences settled before the next (sleep, work, sleep)", async () => {
    const twoSleeps = async (ctx: WorkflowContext<typeof activities>) => {
      const t0 = ctx.now();
      await ctx.sleep("1d");
      const t1 = ctx.now();
      await ctx.activities.greet("middle");
      await ctx.sleep("2d");
      return { first: t1 - t0, total: ctx.now() - t0 };
    };
    const e = await env({ workflows: { twoSleeps }, activities });
    const handle = await e.client.start<typeof twoSleeps>("twoSleeps", undefined, { id: "two-sleeps" });
    await e.skipTime("3d1h");
    const state = await handle.describe();
    expect(state.status).toBe("completed");
    const result = state.result as { first: number; total: number };
    expect(result.first).toBeGreaterThanOrEqual(DAY_MS);
    expect(result.first).toBeLessThan(DAY_MS + 60_000);
    expect(result.total).toBeGreaterThanOrEqual(3 * DAY_MS);
    expect(result.total).toBeLessThan(3 * DAY_MS + 60_000);
  });

  it("skipping less than the sleep leaves the workflow sleeping", async () => {
    const e = await env({ workflows: { sleeper }, activities });
    const handle = await e.client.start<typeof sleeper>("sleeper", { sleep: "30d" }, { id: "sleep-short-skip" });
    await e.skipTime("29d");
    expect((await handle.describe()).status).toBe("running");
    expect((await e.stepsOf("sleep-short-skip")).map((s) => [s.name, s.status])).toEqual([
      ["greet", "completed"],
      ["sleep", "waiting"],
    ]);
    await e.skipTime("1d");
    expect((await handle.describe()).status).toBe("completed");
  });

  it("skips a retry backoff of 1 hour", async () => {
    const retrying = async (ctx: WorkflowContext<typeof activities>) => ctx.activities.flaky({ failures: 1 }, { retry: { maxRetries: 3, initialInterval: "1h", maxInterval: "1h" } });
    const e = await env({ workflows: { retrying }, activities });
    const handle = await e.client.start<typeof retrying>("retrying", undefined, { id: "retry-1h" });
    await e.waitIdle();
    const waiting = await handle.describe();
    expect(waiting.steps.flaky).toMatchObject({ status: "retrying", attempt: 1 });
    expect(Date.parse(waiting.steps.flaky!.nextAttemptAt!) - e.now()).toBeGreaterThan(59 * 60_000);
    await e.skipTime("1h");
    expect(await handle.result({ signal: AbortSignal.timeout(5_000) })).toEqual({ attempt: 2 });
    expect(e.activityCalls("flaky").map((c) => [c.attempt, c.error?.message ?? "ok"])).toEqual([
      [1, "flaky attempt 1 fails"],
      [2, "ok"],
    ]);
  });

  it("skips to a workflow timeout of 10 days", async () => {
    const patient = defineWorkflow(async (ctx: WorkflowContext) => ctx.waitForSignal("approved"), { timeout: "10d" });
    const e = await env({ workflows: { patient }, activities: {} });
    const handle = await e.client.start("patient", undefined, { id: "timeout-10d" });
    await e.skipTime("9d");
    expect((await handle.describe()).status).toBe("running");
    await e.skipTime("1d");
    const state = await handle.describe();
    expect(state.status).toBe("timed_out");
    expect(state.error?.message).toMatch(/timed out after 240h/);
  });

  it("auto mode skips whenever every workflow waits on a timer only", async () => {
    const e = await env({ workflows: { sleeper }, activities, time: "auto" });
    const wallStart = Date.now();
    const result = await (await e.client.start<typeof sleeper>("sleeper", { sleep: "30d" }, { id: "auto-30d" })).result({ signal: AbortSignal.timeout(5_000) });
    expect(Date.now() - wallStart).toBeLessThan(2_000);
    expect(result.sleptMs).toBeGreaterThanOrEqual(30 * DAY_MS);
  });

  it("auto mode does not skip past a workflow waiting on a signal", async () => {
    const waiter = defineWorkflow(async (ctx: WorkflowContext) => {
      const t0 = ctx.now();
      const payload = await ctx.waitForSignal<string>("go");
      return { payload, waitedMs: ctx.now() - t0 };
    }, { timeout: "1h" });
    const e = await env({ workflows: { waiter }, activities: {}, time: "auto" });
    const handle = await e.client.start("waiter", undefined, { id: "auto-signal" });
    await e.waitIdle();
    await new Promise((r) => setTimeout(r, 200)); // several auto-mode passes
    expect(e.clock.skippedMs).toBe(0);
    await handle.signal("go", "now");
    expect(await handle.result({ signal: AbortSignal.timeout(5_000) })).toMatchObject({ payload: "now" });
  });
});

describe("waiting for idle", () => {
  it("skipTime fails after idleTimeout while an activity still runs, naming the step", async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const slow = { hang: async () => released.then(() => "done") };
    const stuck = async (ctx: WorkflowContext<typeof slow>) => {
      const out = await ctx.activity<string>("hang");
      await ctx.sleep("1d");
      return out;
    };
    const e = await env({ workflows: { stuck }, activities: slow, idleTimeout: "300ms" });
    const handle = await e.client.start("stuck", undefined, { id: "stuck-1" });
    await expect(e.skipTime("1d")).rejects.toMatchObject({
      code: "WF_TEST_NOT_IDLE",
      message: expect.stringMatching(/within 300 ms: workflow stuck-1: step "hang" \(hang, attempt 1\) is scheduled or running/),
    });
    release();
    await e.skipTime("1d");
    expect(await handle.result({ signal: AbortSignal.timeout(5_000) })).toBe("done");
  });
});

describe("activity mocks and records", () => {
  it("replaces one activity for this env and records every call", async () => {
    const e = await env({ workflows: { sleeper }, activities });
    e.mockActivity("greet", async (name: string) => `mocked ${name}`);
    const handle = await e.client.start<typeof sleeper>("sleeper", { sleep: "1s" }, { id: "mocked" });
    await e.skipTime("1s");
    expect(await handle.result({ signal: AbortSignal.timeout(5_000) })).toMatchObject({ greeting: "mocked before", after: "mocked after" });
    expect(e.activityCalls("greet")).toEqual([
      { workflowId: "mocked", step: "greet", attempt: 1, input: "before", output: "mocked before", mocked: true },
      { workflowId: "mocked", step: "greet-2", attempt: 1, input: "after", output: "mocked after", mocked: true },
    ]);
  });

  it("a mock is per env: another env runs the real activity", async () => {
    const [a, b] = await Promise.all([env({ workflows: { sleeper }, activities }), env({ workflows: { sleeper }, activities })]);
    a!.mockActivity("greet", async () => "from the mock");
    const [ra, rb] = await Promise.all(
      [a!, b!].map(async (e) => {
        const h = await e.client.start<typeof sleeper>("sleeper", { sleep: "1ms" }, { id: "same-id" });
        return h.result({ signal: AbortSignal.timeout(5_000) });
      }),
    );
    expect(ra!.greeting).toBe("from the mock");
    expect(rb!.greeting).toBe("hello before");
    expect(b!.activityCalls("greet").every((c) => !c.mocked)).toBe(true);
  });

  it("refuses to mock an activity the code does not have, naming those it has", async () => {
    const e = await env({ workflows: { sleeper }, activities });
    expect(() => e.mockActivity("charge", async () => 1)).toThrow(/no activity "charge" \(it has: greet, flaky\)/);
  });
});

describe("step timeline", () => {
  it("stepsOf lists the steps in issue order with attempts and outcome", async () => {
    const mixed = async (ctx: WorkflowContext<typeof activities>) => {
      await ctx.activities.greet("x");
      await ctx.activities.flaky({ failures: 2 }, { retry: { maxRetries: 3, initialInterval: "1m" } });
      await ctx.sleep("1h");
    };
    const e = await env({ workflows: { mixed }, activities });
    await e.client.start("mixed", undefined, { id: "timeline" });
    await e.skipTime("2h");
    const steps = await e.stepsOf("timeline");
    expect(steps.map(({ name, kind, activity, status, attempts }) => ({ name, kind, activity, status, attempts }))).toEqual([
      { name: "greet", kind: "activity", activity: "greet", status: "completed", attempts: 1 },
      { name: "flaky", kind: "activity", activity: "flaky", status: "completed", attempts: 3 },
      { name: "sleep", kind: "sleep", activity: undefined, status: "completed", attempts: 0 },
    ]);
    expect(steps[1]!.error?.message).toBe("flaky attempt 2 fails");
  });
});

describe("replay tests", () => {
  const v1 = async (ctx: WorkflowContext<typeof activities>, input: { sleep: string }) => {
    await ctx.activities.greet("a");
    await ctx.sleep(input.sleep);
    return ctx.activities.greet("b");
  };
  // v2 inserts a step between the two recorded ones: not compatible with runs recorded on v1.
  const v2 = async (ctx: WorkflowContext<typeof activities>, input: { sleep: string }) => {
    await ctx.activities.greet("a");
    await ctx.activities.flaky({ failures: 0 });
    await ctx.sleep(input.sleep);
    return ctx.activities.greet("b");
  };

  it("a history replays on the code that recorded it and fails, naming the step and both commands, after a step is inserted", async () => {
    const e = await env({ workflows: { order: v1 }, activities });
    await e.client.start("order", { sleep: "1d" }, { id: "order-1" });
    await e.skipTime("1d");
    const history = await e.client.history("order-1");
    expect(history).toMatchObject({ format: "jetflow-history", version: 1, state: { id: "order-1", workflow: "order", status: "completed" } });
    expect(history.state.journal).toEqual(["greet", "sleep", "greet-2"]);
    const roundTripped = JSON.parse(JSON.stringify(history));

    await expect(replayHistory(roundTripped, { workflows: { order: v1 } })).resolves.toEqual({ workflowId: "order-1", workflow: "order" });
    const failure = await replayHistory(roundTripped, { workflows: { order: v2 } }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(NonDeterminismError);
    expect((failure as Error).message).toBe(
      'workflow order (id order-1) diverged at step "sleep" (command #2): the journal recorded sleep (step "sleep"), but the code now issues activity flaky (step "flaky")',
    );
  });

  it("replayHistories runs a folder of histories and names each diverging file", async () => {
    const e = await env({ workflows: { order: v1 }, activities });
    const dir = mkdtempSync(join(tmpdir(), "jetflow-histories-"));
    for (const id of ["order-a", "order-b"]) {
      await e.client.start("order", { sleep: "1h" }, { id });
      await e.skipTime("1h");
      writeFileSync(join(dir, `${id}.json`), JSON.stringify(await e.client.history(id), null, 2));
    }
    expect((await replayHistories(dir, { workflows: { order: v1 } })).map((r) => r.workflowId)).toEqual(["order-a", "order-b"]);
    const failure = (await replayHistories(dir, { workflows: { order: v2 } }).catch((err: unknown) => err)) as Error;
    expect(failure).toBeInstanceOf(NonDeterminismError);
    expect(failure.message).toMatch(/^2 of 2 histories diverge/);
    expect(failure.message).toContain(`${join(dir, "order-a.json")}: workflow order (id order-a) diverged at step "sleep"`);
    expect(failure.message).toContain(`${join(dir, "order-b.json")}: workflow order (id order-b) diverged at step "sleep"`);
  });

  it("refuses a file that is not a history, saying how to export one", async () => {
    const error = await replayHistory({ id: "x" } as never, { workflows: { order: v1 } }).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: "WF_HISTORY_INVALID", message: expect.stringMatching(/not a jetflow workflow history: "format" is undefined/) });
    expect((error as { hint: string }).hint).toMatch(/wf show <id> --history/);
  });
});

describe("the test env's server", () => {
  it("says how to install nats-server when none is found", async () => {
    const saved = process.env.NATS_SERVER_BIN;
    process.env.NATS_SERVER_BIN = "/nonexistent/nats-server";
    try {
      await expect(createTestEnv({ workflows: { sleeper }, activities })).rejects.toMatchObject({
        code: "WF_NATS_SERVER_MISSING",
        message: expect.stringMatching(/NATS_SERVER_BIN=\/nonexistent\/nats-server is not an executable file\. Install nats-server/),
      });
    } finally {
      if (saved === undefined) delete process.env.NATS_SERVER_BIN;
      else process.env.NATS_SERVER_BIN = saved;
    }
  });

  it("close() stops the server", async () => {
    const e = await createTestEnv({ workflows: { sleeper }, activities });
    const url = e.natsUrl;
    await e.close();
    const { connect } = await import("@nats-io/transport-node");
    await expect(connect({ servers: url, reconnect: false, timeout: 1_000 })).rejects.toThrow();
  });
});
