/**
 * Cancellation the workflow code handles: a cancel request rejects the pending awaits with
 * CancelledError, the code may clean up in ctx.nonCancellable, and the workflow ends when its
 * function settles; ctx.withTimeout; bad input to the scope APIs. One real nats-server for the
 * file, a namespace per test. Runtimes keep no execution cache (orchestrator.cacheSize 0), so every
 * event after the cancel is decided on a replay from the journal, as on another runtime.
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, type ActivityContext, type Runtime, type WorkflowClient, type WorkflowContext } from "../runtime/index.js";
import { CancelledError, ScopeTimeoutError } from "../runtime/workflow-api.js";
import { replayHistory } from "../runtime/testing/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

let nats: TestNats;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

const open: Array<{ runtime: Runtime; client: WorkflowClient }> = [];
afterEach(async () => {
  for (const { runtime, client } of open.splice(0)) {
    await client.close();
    await runtime.stop();
  }
});

/** Activity evidence: calls by type, and the reasons the AbortSignals fired with. */
interface Evidence {
  calls: Record<string, number>;
  aborted: Record<string, string>;
}

/** `hang` runs until its AbortSignal fires; `gate` until the test opens it (not honouring aborts); `cleanup` and `quick` return at once. */
async function setup(namespace: string, workflows: Record<string, (ctx: WorkflowContext, input: unknown) => Promise<unknown>>) {
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "warn" }, orchestrator: { cacheSize: 0 } } });
  const evidence: Evidence = { calls: {}, aborted: {} };
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const count = (type: string) => (evidence.calls[type] = (evidence.calls[type] ?? 0) + 1);
  const runtime = await createRuntime({
    config,
    workflows,
    activities: {
      hang: (_input: unknown, ctx: ActivityContext) =>
        new Promise((_resolve, reject) => {
          count("hang");
          ctx.signal.addEventListener("abort", () => {
            evidence.aborted[ctx.activityId] = (ctx.signal.reason as Error).name;
            reject(ctx.signal.reason);
          });
        }),
      gate: async (_input: unknown, ctx: ActivityContext) => {
        count("gate");
        ctx.signal.addEventListener("abort", () => (evidence.aborted[ctx.activityId] = (ctx.signal.reason as Error).name));
        await gate;
        return "gate passed";
      },
      cleanup: async (input: unknown) => {
        count("cleanup");
        return { cleaned: input };
      },
      quick: async () => {
        count("quick");
        return "quick";
      },
    },
  });
  await runtime.start();
  const client = await createClient({ config });
  open.push({ runtime, client });
  return { runtime, client, evidence, openGate };
}

/** Wait until the workflow has a step `name` in `status`. */
const stepIs = (client: WorkflowClient, id: string, name: string, status: string) =>
  waitFor(`step ${name} of ${id} to be ${status}`, async () => (await client.describe(id)).steps[name]?.status === status, 10_000);

/** The exported history replays on the same code without a divergence: the same decisions. */
async function replaysCleanly(client: WorkflowClient, id: string, workflows: Record<string, unknown>) {
  await expect(replayHistory(await client.history(id), { workflows })).resolves.toMatchObject({ workflowId: id });
}

it("cancel while an activity runs: its AbortSignal fires, the catch runs a cleanup activity in nonCancellable, the workflow ends cancelled", async () => {
  const workflows = {
    cancellable: async (ctx: WorkflowContext) => {
      try {
        await ctx.activity("hang");
      } catch (err) {
        if (!(err instanceof CancelledError)) throw err;
        await ctx.nonCancellable(async () => {
          await ctx.activity("cleanup", { step: 1 });
          await ctx.activity("cleanup", { step: 2 }); // decided on a replay that delivers the cancel again
        });
        // Outside the scope again: a new await rejects at once, and records no step.
        const late = await ctx.sleep("1h").then(
          () => "slept",
          (e: unknown) => (e instanceof CancelledError ? "rejected at once" : String(e)),
        );
        ctx.log.info(late);
        if (late !== "rejected at once") return late;
        throw err;
      }
      return "not cancelled";
    },
  };
  const { client, evidence } = await setup("cs_activity", workflows);
  const handle = await client.start("cancellable", null, { id: "c-act" });
  await waitFor("hang to start", () => evidence.calls.hang === 1);
  await client.cancel("c-act", "customer changed their mind");
  const state = await client.waitForEnd("c-act", { signal: AbortSignal.timeout(10_000) });
  expect(state.status).toBe("cancelled");
  expect(state.error).toEqual({ type: "CancelledError", message: "cancelled: customer changed their mind" });
  expect(state.cancelRequested).toMatchObject({ reason: "customer changed their mind" });
  expect(state.steps.hang!.status).toBe("cancelled");
  expect(state.steps.$cancel).toMatchObject({ kind: "cancel", status: "completed", reason: "customer changed their mind" });
  expect(state.journal).toEqual(["$cancel", "cleanup", "cleanup-2"]);
  expect(Object.keys(state.steps).sort()).toEqual(["$cancel", "cleanup", "cleanup-2", "hang"]); // no sleep step
  expect(evidence.calls).toEqual({ hang: 1, cleanup: 2 });
  await waitFor("hang's AbortSignal to fire", () => evidence.aborted.hang === "CancelledError");
  await expect(handle.result()).rejects.toMatchObject({ code: "WF_WORKFLOW_CANCELLED" });
  // A second cancel changes nothing.
  await client.cancel("c-act");
  expect((await client.describe("c-act")).updatedAt).toBe(state.updatedAt);
  await replaysCleanly(client, "c-act", workflows);
});

it("cancel while sleeping: the sleep rejects, its timer becomes a no-op, the workflow ends cancelled", async () => {
  const workflows = {
    sleeper: async (ctx: WorkflowContext) => {
      await ctx.sleep("1h");
      return "woke up";
    },
  };
  const { client } = await setup("cs_sleep", workflows);
  await client.start("sleeper", null, { id: "c-sleep" });
  await stepIs(client, "c-sleep", "sleep", "waiting");
  await client.cancel("c-sleep");
  const state = await client.waitForEnd("c-sleep", { signal: AbortSignal.timeout(10_000) });
  expect(state.status).toBe("cancelled");
  expect(state.error).toEqual({ type: "CancelledError", message: "cancelled" });
  expect(state.steps.sleep!.status).toBe("cancelled");
  await replaysCleanly(client, "c-sleep", workflows);
});

it("cancel while waiting for a signal, caught: the workflow returns a value and ends completed; a signal sent later changes nothing", async () => {
  const workflows = {
    approval: async (ctx: WorkflowContext) => {
      try {
        return { approved: await ctx.waitForSignal("approve") };
      } catch (err) {
        if (err instanceof CancelledError) return { approved: false, why: err.message };
        throw err;
      }
    },
  };
  const { client } = await setup("cs_signal", workflows);
  const handle = await client.start("approval", null, { id: "c-signal" });
  await stepIs(client, "c-signal", "signal_approve", "waiting");
  await client.cancel("c-signal", "nobody answered");
  expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toEqual({ approved: false, why: "cancelled: nobody answered" });
  const state = await client.describe("c-signal");
  expect(state.status).toBe("completed");
  expect(state.steps.signal_approve!.status).toBe("cancelled");
  await client.signal("c-signal", "approve", true);
  expect((await client.describe("c-signal")).updatedAt).toBe(state.updatedAt);
  await replaysCleanly(client, "c-signal", workflows);
});

it("a cancel that arrives inside nonCancellable: the activity there runs to completion unaborted, the next await outside rejects", async () => {
  const workflows = {
    shielded: async (ctx: WorkflowContext) => {
      const inside = await ctx.nonCancellable(() => ctx.activity("gate"));
      await ctx.activity("quick"); // rejects at once: the cancel is delivered here
      return inside;
    },
  };
  const { client, evidence, openGate } = await setup("cs_shield", workflows);
  await client.start("shielded", null, { id: "c-shield" });
  await waitFor("gate to start", () => evidence.calls.gate === 1);
  await client.cancel("c-shield");
  await waitFor("the cancel to be recorded", async () => (await client.describe("c-shield")).cancelRequested !== undefined);
  expect((await client.describe("c-shield")).status).toBe("running"); // the code still runs, inside its scope
  openGate();
  const state = await client.waitForEnd("c-shield", { signal: AbortSignal.timeout(10_000) });
  expect(state.status).toBe("cancelled");
  expect(state.steps.gate).toMatchObject({ status: "completed", output: "gate passed" });
  expect(state.steps.quick).toBeUndefined();
  expect(evidence.calls.quick).toBeUndefined();
  expect(evidence.aborted).toEqual({});
  expect(state.journal).toEqual(["$cancel", "gate"]);
  await replaysCleanly(client, "c-shield", workflows);
});

it("terminate a workflow that is cleaning up after a cancel: it stops at once, no more code runs", async () => {
  let after = false;
  const workflows = {
    slow_cleanup: async (ctx: WorkflowContext) => {
      try {
        await ctx.activity("hang");
      } finally {
        await ctx.nonCancellable(() => ctx.activity("gate"));
        after = true;
      }
    },
  };
  const { client, evidence } = await setup("cs_term", workflows);
  await client.start("slow_cleanup", null, { id: "c-term" });
  await waitFor("hang to start", () => evidence.calls.hang === 1);
  await client.cancel("c-term");
  await waitFor("the cleanup to start", () => evidence.calls.gate === 1);
  await client.terminate("c-term", "enough");
  const state = await client.waitForEnd("c-term", { signal: AbortSignal.timeout(10_000) });
  expect(state.status).toBe("terminated");
  expect(state.error).toEqual({ type: "TerminatedError", message: "terminated: enough" });
  await waitFor("the cleanup activity to be aborted", () => evidence.aborted.gate === "CancelledError");
  expect(after).toBe(false);
});

it("withTimeout that fires: the pending activity is aborted and cancelled, withTimeout rejects with ScopeTimeoutError, the workflow goes on", async () => {
  const workflows = {
    bounded: async (ctx: WorkflowContext) => {
      let caught: string;
      try {
        await ctx.withTimeout("1s", async () => {
          await ctx.activity("hang");
        });
        caught = "no timeout";
      } catch (err) {
        caught = err instanceof ScopeTimeoutError ? `${err.name} after ${err.timeoutMs}ms` : String(err);
      }
      return { caught, then: await ctx.activity("quick") };
    },
  };
  const { client, evidence } = await setup("cs_timeout", workflows);
  const handle = await client.start("bounded", null, { id: "c-timeout" });
  expect(await handle.result({ signal: AbortSignal.timeout(15_000) })).toEqual({ caught: "ScopeTimeoutError after 1000ms", then: "quick" });
  const state = await client.describe("c-timeout");
  expect(state.steps.timeout).toMatchObject({ kind: "sleep", status: "completed" });
  expect(state.steps.hang!.status).toBe("cancelled");
  expect(state.journal).toEqual(["timeout", "quick"]);
  await waitFor("hang's AbortSignal to fire", () => evidence.aborted.hang === "CancelledError");
  await replaysCleanly(client, "c-timeout", workflows);
});

it("withTimeout that does not fire: it resolves with the function's value and its timer step is cancelled", async () => {
  const workflows = {
    in_time: async (ctx: WorkflowContext) => ctx.withTimeout("1h", () => ctx.activity("quick")),
  };
  const { client } = await setup("cs_intime", workflows);
  const handle = await client.start("in_time", null, { id: "c-intime" });
  expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toBe("quick");
  const state = await client.describe("c-intime");
  expect(state.steps.timeout).toMatchObject({ kind: "sleep", status: "cancelled" });
  expect(state.journal).toEqual(["quick"]);
  await replaysCleanly(client, "c-intime", workflows);
});

it("bad input: withTimeout with a bad duration or no function, saga.add with a non-function, are coded ValidationErrors with a hint", async () => {
  const describeError = (err: unknown) => ({ name: (err as Error).name, code: (err as { code?: string }).code, message: (err as Error).message, hint: (err as { hint?: string }).hint });
  const workflows = {
    misuse: async (ctx: WorkflowContext) => {
      const badDuration = await ctx.withTimeout("soon", async () => "never runs").catch(describeError);
      const noFunction = await ctx.withTimeout("1s", "not a function" as unknown as () => Promise<string>).catch(describeError);
      let badAdd: unknown;
      try {
        ctx.saga().add(ctx.activity("quick") as unknown as () => Promise<unknown>);
      } catch (err) {
        badAdd = describeError(err);
      }
      return { badDuration, noFunction, badAdd };
    },
  };
  const { client } = await setup("cs_bad", workflows);
  const result = (await (await client.start("misuse", null, { id: "c-bad" })).result({ signal: AbortSignal.timeout(10_000) })) as Record<string, { name: string; code: string; message: string; hint: string }>;
  expect(result.badDuration).toMatchObject({ name: "ValidationError", code: "WF_INVALID_DURATION", message: 'ctx.withTimeout(): "soon" is not a duration' });
  expect(result.badDuration!.hint).toMatch(/30s/);
  expect(result.noFunction).toMatchObject({ name: "ValidationError", code: "WF_INVALID_SCOPE_FUNCTION" });
  expect(result.noFunction!.hint).toMatch(/ctx\.withTimeout\(async \(\) =>/);
  expect(result.badAdd).toMatchObject({ name: "ValidationError", code: "WF_INVALID_COMPENSATION", message: "saga.add() takes a function that calls activities, got a promise (the call already ran)" });
  expect(result.badAdd!.hint).toMatch(/saga\.add\(\(\) => ctx\.activities/);
  await replaysCleanly(client, "c-bad", workflows);
});
