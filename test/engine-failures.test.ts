/**
 * Failures against a real nats-server: retries with backoff, exhausted retries, non-retryable
 * errors, activity and workflow timeouts, odd things thrown by activities, and a replay that no
 * longer matches the journal (NonDeterminismError).
 */
import { describe, expect, it } from "vitest";
import {
  defineDag,
  defineWorkflow,
  NonRetryableError,
  WorkflowFailedError,
  type ActivityContext,
  type WorkflowContext,
  type WorkflowState,
} from "../runtime/index.js";
import { renderState } from "../cli/output.js";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { headers } from "@nats-io/nats-core";
import { buildFunctions } from "../runtime/bundle/build.js";
import { deployBundle } from "../runtime/bundle/deploy.js";
import { openDeploymentStore } from "../runtime/bundle/deployments.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { createBlockedResumer, PARKED_SUBJECT_HEADER, parkedWorkflows } from "../runtime/orchestrator/blocked.js";
import { abortableSleep, deferred, Engine, resultSignal, sleep, waitFor, waitForState, useEngines } from "./fixtures/engine/harness.js";

const engine = useEngines();

/** A workflow that runs one activity with the given options and returns its output. */
const single = (type: string, options: Parameters<WorkflowContext["activity"]>[2] = {}) => async (ctx: WorkflowContext, input: unknown) =>
  ctx.activity(type, input, options);

/** Every state the workflow passes through, as seen by a KV watcher (for transient states). */
function recordStates(client: Awaited<ReturnType<Engine["client"]>>, id: string): { seen: WorkflowState[]; done: Promise<void> } {
  const seen: WorkflowState[] = [];
  const done = (async () => {
    for await (const state of client.watch(id, resultSignal())) seen.push(state);
  })().catch(() => undefined);
  return { seen, done };
}

describe("retries", () => {
  it("retries a failing activity with exponential backoff until it succeeds", async () => {
    const e = engine();
    const calledAt: number[] = [];
    await e.runtime({
      workflows: { flaky_wf: single("flaky", { retry: { maxRetries: 3, initialInterval: "200ms", backoffFactor: 2, maxInterval: "5s" } }) },
      activities: {
        flaky: async (_input: unknown, ctx: ActivityContext) => {
          calledAt.push(Date.now());
          if (ctx.attempt < 3) throw new Error(`flaky failure on attempt ${ctx.attempt}`);
          return { attempt: ctx.attempt };
        },
      },
    });
    const client = await e.client();
    const handle = await client.start("flaky_wf", null, { id: "flaky-1" });
    expect(await handle.result(resultSignal())).toEqual({ attempt: 3 });
    const step = (await handle.describe()).steps.flaky!;
    expect(step).toMatchObject({ status: "completed", attempt: 3, maxAttempts: 4 });
    expect(calledAt).toHaveLength(3);
    // Backoff: 200 ms before attempt 2, 400 ms before attempt 3 (measured generously).
    expect(calledAt[1]! - calledAt[0]!).toBeGreaterThanOrEqual(0.8 * 200);
    expect(calledAt[2]! - calledAt[1]!).toBeGreaterThanOrEqual(0.8 * 400);
  });

  it("fails the workflow when retries are exhausted, with the activity's last error", async () => {
    const e = engine();
    let calls = 0;
    await e.runtime({
      workflows: { doomed_wf: single("doomed", { retry: { maxRetries: 2, initialInterval: "100ms" } }) },
      activities: {
        doomed: async (_input: unknown, ctx: ActivityContext) => {
          calls += 1;
          throw new Error(`card declined (attempt ${ctx.attempt})`);
        },
      },
    });
    const client = await e.client();
    const handle = await client.start("doomed_wf", null, { id: "doomed-1" });
    const error = await handle.result(resultSignal()).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).status).toBe("failed");
    expect((error as WorkflowFailedError).message).toContain("card declined (attempt 3)");
    const state = await handle.describe();
    expect(state.status).toBe("failed");
    expect(state.error!.message).toContain("card declined (attempt 3)");
    expect(state.steps.doomed).toMatchObject({ status: "failed", attempt: 3, error: { type: "Error" } });
    expect(state.steps.doomed!.error!.message).toContain("card declined (attempt 3)");
    expect(calls).toBe(3);
  });

  it("does not retry a NonRetryableError, nor an error type listed in nonRetryableErrors", async () => {
    const e = engine();
    class MyError extends Error {
      override name = "MyError";
    }
    const calls = { refuse: 0, mine: 0, other: 0 };
    const retry = { maxRetries: 3, initialInterval: "100ms", nonRetryableErrors: ["MyError"] };
    await e.runtime({
      workflows: { refuse_wf: single("refuse", { retry }), mine_wf: single("mine", { retry }), other_wf: single("other", { retry }) },
      activities: {
        refuse: async () => {
          calls.refuse += 1;
          throw new NonRetryableError("the order is invalid", { type: "InvalidOrder" });
        },
        mine: async () => {
          calls.mine += 1;
          throw new MyError("mine is not retryable");
        },
        // Control: a plain Error with the same policy is retried.
        other: async () => {
          calls.other += 1;
          throw new TypeError("retry me");
        },
      },
    });
    const client = await e.client();
    await Promise.all([client.start("refuse_wf", null, { id: "refuse-1" }), client.start("mine_wf", null, { id: "mine-1" }), client.start("other_wf", null, { id: "other-1" })]);
    const [refuse, mine, other] = await Promise.all(["refuse-1", "mine-1", "other-1"].map((id) => waitForState(client, id)));
    expect(refuse!.status).toBe("failed");
    expect(refuse!.steps.refuse).toMatchObject({ status: "failed", attempt: 1, error: { type: "InvalidOrder", message: "the order is invalid" } });
    expect(refuse!.error!.message).toContain("the order is invalid");
    expect(mine!.status).toBe("failed");
    expect(mine!.steps.mine).toMatchObject({ status: "failed", attempt: 1, error: { type: "MyError", message: "mine is not retryable" } });
    expect(other!.steps.other).toMatchObject({ status: "failed", attempt: 4, error: { type: "TypeError" } });
    expect(calls).toEqual({ refuse: 1, mine: 1, other: 4 });
  });
});

describe("timeouts", () => {
  it("times out a hung attempt (ActivityTimeoutError, signal fired) and retries it", async () => {
    const e = engine();
    let abortedOnAttempt1: unknown;
    let attempts = 0;
    await e.runtime({
      workflows: { hang_wf: single("hang", { timeout: "500ms", retry: { maxRetries: 2, initialInterval: "100ms" } }) },
      activities: {
        hang: async (_input: unknown, ctx: ActivityContext) => {
          attempts += 1;
          if (ctx.attempt === 1) {
            ctx.signal.addEventListener("abort", () => {
              abortedOnAttempt1 = ctx.signal.reason ?? true;
            });
            return new Promise(() => {}); // never settles
          }
          return { attempt: ctx.attempt };
        },
      },
    });
    const client = await e.client();
    const watched = recordStates(client, "hang-1");
    const handle = await client.start("hang_wf", null, { id: "hang-1" });
    expect(await handle.result(resultSignal())).toEqual({ attempt: 2 });
    await watched.done;
    expect(abortedOnAttempt1, "attempt 1's AbortSignal fired").toBeTruthy();
    expect(attempts).toBe(2);
    const retrying = watched.seen.find((s) => s.steps.hang?.status === "retrying");
    expect(retrying, "a state with the step retrying was observed").toBeDefined();
    expect(retrying!.steps.hang!.lastError).toMatchObject({ type: "ActivityTimeoutError" });
    expect(retrying!.steps.hang!.lastError!.message).toMatch(/timed out after 500ms/);
    expect((await handle.describe()).steps.hang).toMatchObject({ status: "completed", attempt: 2 });
  });

  it("ends a workflow that outlives its timeout with status timed_out (code and DAG)", async () => {
    const e = engine();
    const slow = async (_input: unknown, ctx: ActivityContext) => {
      await abortableSleep(3_000, ctx.signal);
      return "too late";
    };
    await e.runtime({
      workflows: {
        slow_code: defineWorkflow(async (ctx: WorkflowContext) => ctx.activity("slow"), { timeout: "1s" }),
        slow_dag: defineDag({ name: "slow_dag", timeout: "1s", activities: [{ name: "only", type: "slow" }] }),
      },
      activities: { slow },
    });
    const client = await e.client();
    const handles = await Promise.all([client.start("slow_code", null, { id: "slow-code-1" }), client.start("slow_dag", null, { id: "slow-dag-1" })]);
    for (const handle of handles) {
      const error = await handle.result(resultSignal()).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error, handle.id).toBeInstanceOf(WorkflowFailedError);
      expect((error as WorkflowFailedError).status).toBe("timed_out");
      const state = await handle.describe();
      expect(state.status).toBe("timed_out");
      expect(state.error).toMatchObject({ type: "WorkflowTimeoutError" });
      expect(state.error!.message).toMatch(/timed out after 1\.0s/);
      expect(state.timeoutMs).toBe(1_000);
    }
  });

  it("ends an activity that never settles by its timeout", async () => {
    const e = engine();
    await e.runtime({
      workflows: { never_wf: single("never", { timeout: "400ms", retry: { maxRetries: 0 } }) },
      activities: { never: () => new Promise(() => {}) },
    });
    const client = await e.client();
    await client.start("never_wf", null, { id: "never-1" });
    const state = await waitForState(client, "never-1");
    expect(state.status).toBe("failed");
    expect(state.steps.never).toMatchObject({ status: "failed", attempt: 1, error: { type: "ActivityTimeoutError" } });
    expect(state.error!.message).toMatch(/timed out after 400ms/);
  });
});

describe("long timeouts", () => {
  it("runs an activity whose timeout exceeds Node's timer range (30 and 60 days) without firing early or crashing", async () => {
    const e = engine();
    await e.runtime({
      workflows: {
        patient: async (ctx: WorkflowContext) => {
          const a = await ctx.activity("wait_a_bit", null, { name: "thirty_days", timeout: "30d", retry: { maxRetries: 0 } });
          const b = await ctx.activity("wait_a_bit", null, { name: "sixty_days", timeout: "60d", retry: { maxRetries: 0 } });
          return [a, b];
        },
      },
      activities: {
        wait_a_bit: async (_input: unknown, ctx: ActivityContext) => {
          await abortableSleep(100, ctx.signal);
          return ctx.activityId;
        },
      },
    });
    const client = await e.client();
    const handle = await client.start("patient", null, { id: "patient-1" });
    expect(await handle.result(resultSignal())).toEqual(["thirty_days", "sixty_days"]);
    const state = await handle.describe();
    expect(state.steps.thirty_days).toMatchObject({ status: "completed", attempt: 1, timeoutMs: 30 * 86_400_000 });
    expect(state.steps.sixty_days).toMatchObject({ status: "completed", attempt: 1, timeoutMs: 60 * 86_400_000 });
  });
});

describe("oversized state", () => {
  it("fails a workflow whose state outgrows NATS max_payload, and keeps the runtime alive", async () => {
    // Three activities at once, each with 400 kB of input: steps still running stay in the state
    // (only delivered ones move to history chunks), so the state document passes the server's
    // 1 MB max_payload. That state cannot be written: the workflow fails with a
    // StateTooLargeError that says what to do, instead of retrying the write forever.
    const e = engine();
    await e.runtime({
      workflows: {
        hoarder: async (ctx: WorkflowContext) => {
          await ctx.activity("blob", 0);
          await Promise.all([1, 2, 3].map((i) => ctx.activity("blob", "x".repeat(400_000) + i)));
          return "done";
        },
        small: single("tiny"),
      },
      activities: { blob: async () => "ok", tiny: async () => "ok" },
      // Without the claim check (payloads over 64 KiB become Object Store references otherwise).
      config: { log: { level: "silent" }, limits: { inlinePayloadBytes: 0 } },
    });
    const client = await e.client();
    await client.start("hoarder", null, { id: "hoarder-1" });
    const state = await waitForState(client, "hoarder-1");
    expect(state.status).toBe("failed");
    expect(state.error?.type).toBe("StateTooLargeError");
    expect(state.error?.message).toMatch(/over the NATS server's max_payload of \d+ bytes/);
    expect(await (await client.start("small", null, { id: "small-1" })).result(resultSignal())).toBe("ok");
  });
});

describe("odd failures", () => {
  it.each([
    ["a string", () => "boom", /boom/],
    ["a number", () => 42, /42/],
    ["undefined", () => undefined, /undefined/],
    ["an object without message", () => ({ code: "E_LIMIT" }), /E_LIMIT/],
  ])("fails the step with a readable message when an activity throws %s", async (_label, value, expected) => {
    const e = engine();
    await e.runtime({
      workflows: { throws_wf: single("throws", { retry: { maxRetries: 0 } }) },
      activities: {
        throws: async () => {
          throw value();
        },
      },
    });
    const client = await e.client();
    await client.start("throws_wf", null, { id: "throws-1" });
    const state = await waitForState(client, "throws-1");
    expect(state.status).toBe("failed");
    const step = state.steps.throws!;
    expect(step.status).toBe("failed");
    expect(typeof step.error!.message).toBe("string");
    expect(step.error!.message).toMatch(expected);
    expect(step.error!.message).not.toContain("[object Object]");
    expect(state.error!.message).toMatch(expected);
  });
});

describe("replay", () => {
  it("fails with NonDeterminismError when a runtime with different code replays a workflow", async () => {
    const e = engine();
    const v1Started = deferred();
    const release = deferred();
    const calls = { v1a: 0, v2a: 0, b: 0, c: 0 };
    const workerConfig = { worker: { shutdownGrace: "100ms", ackWait: "1s" } };
    // v1: a, then b. Activity a blocks until the runtime is stopped.
    const rt1 = await e.runtime({
      workflows: {
        wf: async (ctx: WorkflowContext) => {
          await ctx.activity("a");
          return ctx.activity("b");
        },
      },
      activities: {
        a: async (_input: unknown, ctx: ActivityContext) => {
          calls.v1a += 1;
          v1Started.resolve();
          await Promise.race([release.promise, new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)))]);
          return "v1";
        },
        b: async () => {
          calls.b += 1;
          return "b";
        },
      },
      config: workerConfig,
    });
    const client = await e.client();
    await client.start("wf", null, { id: "diverge-1" });
    try {
      await v1Started.promise;
      await e.stopRuntime(rt1); // a is in flight: released to other runtimes after the grace period
    } finally {
      release.resolve();
    }

    // v2 calls c first. This runtime has no cached execution, so it must replay the journal.
    await e.runtime({
      workflows: {
        wf: async (ctx: WorkflowContext) => {
          await ctx.activity("c");
          await ctx.activity("a");
          return ctx.activity("b");
        },
      },
      activities: {
        a: async () => {
          calls.v2a += 1;
          return "v2";
        },
        b: async () => {
          calls.b += 1;
          return "b";
        },
        c: async () => {
          calls.c += 1;
          return "c";
        },
      },
      config: workerConfig,
    });
    const state = await waitForState(client, "diverge-1", undefined, 20_000);
    expect(state.status).toBe("failed");
    expect(state.error!.type).toBe("NonDeterminismError");
    expect(state.error!.message).toMatch(/activity a \(step "a"\)/);
    expect(state.error!.message).toMatch(/activity c \(step "c"\)/);
    expect(calls.v1a).toBe(1);
    expect(calls.v2a).toBe(1); // the redelivered task ran on the new runtime
    expect(state.steps.a).toMatchObject({ status: "completed", output: "v2" });
    expect(calls.c).toBe(0);
    expect(calls.b).toBe(0);
    const error = await client.result("diverge-1", resultSignal()).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(WorkflowFailedError);
  });

  it("with orchestrator.onNonDeterminism = block, a diverging workflow waits for compatible code instead of failing", async () => {
    const e = engine();
    const release = deferred();
    const started = deferred();
    const v1 = {
      wf: async (ctx: WorkflowContext) => {
        await ctx.activity("a");
        return ctx.activity("b");
      },
    };
    const activities = {
      a: async (_input: unknown, ctx: ActivityContext) => {
        started.resolve();
        await Promise.race([release.promise, new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)))]);
        return "a";
      },
      b: async () => "b",
      c: async () => "c",
    };
    const config = { worker: { shutdownGrace: "100ms", ackWait: "1s" }, orchestrator: { onNonDeterminism: "block", ackWait: "1s" } };
    const rt1 = await e.runtime({ workflows: v1, activities, config });
    const client = await e.client();
    await client.start("wf", null, { id: "blocked-1" });
    await started.promise;
    await e.stopRuntime(rt1);
    release.resolve();
    // Incompatible code: the completion of "a" cannot be applied; the workflow is blocked, not failed.
    const rt2 = await e.runtime({
      workflows: {
        wf: async (ctx: WorkflowContext) => {
          await ctx.activity("c");
          return ctx.activity("b");
        },
      },
      activities,
      config,
    });
    const blocked = await waitForState(client, "blocked-1", (s) => s.blocked !== undefined, 20_000);
    expect(blocked.status).toBe("running");
    expect(blocked.blocked!.message).toMatch(/activity a \(step "a"\)/);
    await e.stopRuntime(rt2);
    // The original code comes back: the retried completion applies and the workflow finishes.
    await e.runtime({ workflows: v1, activities, config });
    const done = await waitForState(client, "blocked-1", undefined, 20_000);
    expect(done.status).toBe("completed");
    expect(done.result).toBe("b");
    expect(done.blocked).toBeUndefined();
  });

  it("blocked workflows park their events outside the events consumer's window: others still run, and fixed code resumes them", async () => {
    const e = engine();
    const window = 3;
    const ids = Array.from({ length: 2 * window }, (_, i) => `parked-${i}`);
    const fresh = async (ctx: WorkflowContext) => ctx.activity("b");
    const v1 = {
      wf: async (ctx: WorkflowContext) => {
        await ctx.activity("a");
        return ctx.activity("b");
      },
      fresh,
    };
    const v2 = {
      wf: async (ctx: WorkflowContext) => {
        await ctx.activity("c");
        return ctx.activity("b");
      },
      fresh,
    };
    const activities = { a: async () => "a", b: async () => "b", c: async () => "c" };
    // A 30 s ack wait: before parking, each blocked event was NAK'd for 30 s and held its slot.
    const config = {
      orchestrator: { onNonDeterminism: "block", maxAckPending: window, ackWait: "30s" },
      defaults: { activityTimeout: "5m" },
    };
    // v1 without a worker for "a": every workflow waits with its task for "a" queued.
    const rt1 = await e.runtime({ workflows: v1, activities: { b: activities.b }, config });
    const client = await e.client();
    for (const id of ids) await client.start("wf", null, { id });
    for (const id of ids) await waitForState(client, id, (s) => s.steps.a?.status === "scheduled");
    await e.stopRuntime(rt1);
    // Incompatible code runs "a": every completion blocks its workflow, twice as many as the window.
    const rt2 = await e.runtime({ workflows: v2, activities, config });
    for (const id of ids) {
      const blocked = await waitForState(client, id, (s) => s.blocked !== undefined, 20_000);
      expect(blocked.status).toBe("running");
      expect(blocked.blocked!.message).toMatch(/activity a \(step "a"\)/);
    }
    // `wf show` says so, and why.
    expect(renderState((await client.describe(ids[0]!)))).toMatch(/blocked since \S+: .*the journal recorded activity a \(step "a"\)/);
    // Every blocked completion is published (the worker publishes it once its own orchestrator
    // declined it): each is still on the events stream (unacked) or parked.
    const topology = await e.topology();
    const { names, jsm } = topology;
    const published = async () => (await jsm.streams.info(names.eventsStream)).state.messages + (await jsm.streams.info(names.parkedStream)).state.messages;
    await waitFor("every blocked completion published", async () => ((await published()) >= ids.length ? true : undefined), 20_000);
    // The window is free: a fresh workflow starts and completes.
    expect(await (await client.start("fresh", null, { id: "fresh-1" })).result(resultSignal())).toBe("b");
    expect((await jsm.consumers.info(names.eventsStream, names.orchestratorConsumer)).num_ack_pending).toBe(0);
    expect([...(await parkedWorkflows(topology)).keys()].sort()).toEqual(ids);
    // A blocked workflow can be cancelled; the write that ends the block releases its parked events.
    const [cancelled, ...rest] = ids as [string, ...string[]];
    await client.cancel(cancelled, "given up");
    expect((await waitForState(client, cancelled)).status).toBe("cancelled");
    await waitFor("the cancelled workflow's parked events released", async () => (!(await parkedWorkflows(topology)).has(cancelled) ? true : undefined));
    await e.stopRuntime(rt2);
    // Fixed code starts: it retries the blocked workflows, whose parked events now apply.
    await e.runtime({ workflows: v1, activities, config });
    for (const id of rest) {
      const done = await waitForState(client, id, undefined, 20_000);
      expect(done.status).toBe("completed");
      expect(done.result).toBe("b");
      expect(done.blocked).toBeUndefined();
    }
    expect((await parkedWorkflows(topology)).size).toBe(0);
  });

  it("a deploy of code that replays a blocked workflow re-publishes its parked events, not those of workflows that still diverge", async () => {
    const e = engine();
    const aThenB = async (ctx: WorkflowContext) => {
      await ctx.activity("a");
      return ctx.activity("b");
    };
    const cThenB = async (ctx: WorkflowContext) => {
      await ctx.activity("c");
      return ctx.activity("b");
    };
    const activities = { a: async () => "a", b: async () => "b", c: async () => "c" };
    const config = { orchestrator: { onNonDeterminism: "block" }, defaults: { activityTimeout: "5m" } };
    const rt1 = await e.runtime({ workflows: { wf: aThenB, other: aThenB }, activities: { b: activities.b }, config });
    const client = await e.client();
    await client.start("wf", null, { id: "fixable-1" });
    await client.start("other", null, { id: "unfixable-1" });
    for (const id of ["fixable-1", "unfixable-1"]) await waitForState(client, id, (s) => s.steps.a?.status === "scheduled");
    await e.stopRuntime(rt1);
    const rt2 = await e.runtime({ workflows: { wf: cThenB, other: cThenB }, activities, config });
    const topology = await e.topology();
    await waitFor("both blocked and parked", async () => ((await parkedWorkflows(topology)).size === 2 ? true : undefined), 20_000);
    await e.stopRuntime(rt2);
    // The fix, deployed as a bundle: "wf" replays again; "other" is not in it, so it still diverges.
    const functions = mkdtempSync(join(tmpdir(), "jetflow-blocked-deploy-"));
    mkdirSync(join(functions, "workflows"));
    mkdirSync(join(functions, "activities"));
    writeFileSync(join(functions, "workflows", "wf.ts"), "export async function wf(ctx: any) {\n  await ctx.activity(\"a\");\n  return ctx.activity(\"b\");\n}\n");
    writeFileSync(join(functions, "activities", "steps.ts"), "export async function a() { return \"a\"; }\nexport async function b() { return \"b\"; }\n");
    const logger = createConsoleLogger({ level: "error" });
    const bundle = await buildFunctions(functions);
    const registry = await loadBundle(bundle, { logger, cacheDir: join(functions, ".build") });
    const store = await openDeploymentStore(topology, { replicas: 1, storage: "file" });
    const report = await deployBundle({ topology, store, bundle, registry, deployedBy: "test", logger, force: true });
    expect(report.compatible).toEqual(["fixable-1"]);
    expect(report.diverging.map((d) => d.workflowId)).toEqual(["unfixable-1"]);
    // The fixable one's completion of "a" is back on the events stream (no runtime runs now).
    expect([...(await parkedWorkflows(topology)).keys()]).toEqual(["unfixable-1"]);
    const back = await topology.jsm.streams.getMessage(topology.names.eventsStream, { last_by_subj: topology.names.completedSubject("fixable-1", "a") });
    expect(JSON.parse(back!.string())).toMatchObject({ workflowId: "fixable-1", step: "a", ok: true, output: "a" });
    expect((await client.describe("fixable-1")).bundle).toBe(bundle.version);
    rmSync(functions, { recursive: true, force: true });
  });

  it("a runtime's sweep re-publishes the parked events of a workflow that is no longer blocked", async () => {
    const e = engine();
    await e.runtime({ workflows: { waiter: async (ctx: WorkflowContext) => ctx.waitForSignal("go") }, activities: {} });
    const client = await e.client();
    await client.start("waiter", null, { id: "unblocked-1" });
    await waitForState(client, "unblocked-1", (s) => Object.values(s.steps).some((step) => step.kind === "signal"));
    const topology = await e.topology();
    const resumer = createBlockedResumer({ topology, logger: createConsoleLogger({ level: "warn" }), sweepMs: 50 });
    await resumer.start();
    try {
      // What a runtime leaves when it dies between a write that cleared `blocked` and releasing
      // the workflow's other parked events: a parked signal of a workflow that is not blocked.
      const h = headers();
      h.set(PARKED_SUBJECT_HEADER, topology.names.signalSubject("unblocked-1", "go"));
      await topology.js.publish(topology.names.parkedSubject("unblocked-1"), JSON.stringify({ workflowId: "unblocked-1", name: "go", payload: 42, signalId: "s-1" }), { headers: h });
      const done = await waitForState(client, "unblocked-1");
      expect(done).toMatchObject({ status: "completed", result: 42 });
      expect((await parkedWorkflows(topology)).size).toBe(0);
    } finally {
      await resumer.stop();
    }
  });
});
