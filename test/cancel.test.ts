/** `wf cancel` / client.cancel: the workflow ends as cancelled and its running activity is aborted; `wf terminate`: the hard stop. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, WorkflowFailedError, type ActivityContext } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

let nats: TestNats;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

/**
 * A runtime whose workflow `long` awaits one activity that runs until its AbortSignal fires;
 * `abortedWith` is that signal's reason. `afterActivity` runs in the workflow code once the
 * activity's await settles (a finally block), if it ever does.
 */
async function blockedOnActivity(namespace: string, afterActivity: () => void = () => undefined) {
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "warn" } } });
  const seen: { abortedWith?: unknown } = {};
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const runtime = await createRuntime({
    config,
    workflows: {
      long: async (ctx: { activity: (t: string) => Promise<unknown> }) => {
        try {
          await ctx.activity("wait_forever");
        } finally {
          afterActivity();
        }
        return "unreachable";
      },
    },
    activities: {
      wait_forever: (_input: unknown, ctx: ActivityContext) =>
        new Promise((_resolve, reject) => {
          started();
          ctx.signal.addEventListener("abort", () => {
            seen.abortedWith = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        }),
    },
  });
  await runtime.start();
  const client = await createClient({ config });
  return { runtime, client, running, seen };
}

it("cancelling a running workflow marks it cancelled and aborts its activity", async () => {
  const { runtime, client, running, seen } = await blockedOnActivity("cancel1");
  try {
    const handle = await client.start("long", null, { id: "to-cancel" });
    await running;
    await client.cancel("to-cancel", "customer changed their mind");
    const error = await handle.result({ signal: AbortSignal.timeout(10_000) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const state = await client.describe("to-cancel");
    expect(state.status).toBe("cancelled");
    expect(state.error).toEqual({ type: "CancelledError", message: "cancelled: customer changed their mind" });
    await expect.poll(() => (seen.abortedWith as Error | undefined)?.name, { timeout: 5_000 }).toBe("CancelledError");
    // Cancelling an ended workflow changes nothing.
    await client.cancel("to-cancel");
    expect((await client.describe("to-cancel")).updatedAt).toBe(state.updatedAt);
  } finally {
    await client.close();
    await runtime.stop();
  }
});

it("a terminate the workers saw but JetStream did not store strands no step: the task comes back and the workflow completes", async () => {
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: "cancel2", log: { level: "warn" } } });
  let runs = 0;
  const runtime = await createRuntime({
    config,
    workflows: {
      once: async (ctx: { activity: (t: string) => Promise<unknown> }) => ctx.activity("stoppable"),
    },
    activities: {
      // The first run waits to be aborted; a second one completes.
      stoppable: (_input: unknown, ctx: ActivityContext) =>
        new Promise((resolve, reject) => {
          runs += 1;
          if (runs > 1) return resolve("ran again");
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason));
        }),
    },
  });
  await runtime.start();
  const client = await createClient({ config });
  const { jsm, names, nc } = client.topology;
  const events = (await jsm.streams.info(names.eventsStream)).config;
  try {
    const handle = await client.start("once", null, { id: "unstored-cancel" });
    await expect.poll(() => runs, { timeout: 10_000 }).toBe(1);
    // The events stream stops capturing cancels for a moment: the workers see this terminate on
    // core NATS and abort at once, the orchestrator never does (as when JetStream failed to store it).
    const cancelSubjects = events.subjects.filter((s) => s.includes(".cancel."));
    expect(cancelSubjects.length).toBe(1);
    await jsm.streams.update(names.eventsStream, { ...events, subjects: events.subjects.filter((s) => !cancelSubjects.includes(s)) });
    nc.publish(names.cancelSubject("unstored-cancel"), JSON.stringify({ workflowId: "unstored-cancel", reason: "lost on the way", terminate: true }));
    await nc.flush();
    await jsm.streams.update(names.eventsStream, events);
    expect(await handle.result({ signal: AbortSignal.timeout(15_000) })).toBe("ran again");
    expect(runs).toBe(2);
  } finally {
    await jsm.streams.update(names.eventsStream, events).catch(() => undefined);
    await client.close();
    await runtime.stop();
  }
});

it("terminating a running workflow ends it terminated at once (no workflow code runs) and aborts its activity", async () => {
  let codeRanAfter = false;
  const { runtime, client, running, seen } = await blockedOnActivity("terminate1", () => (codeRanAfter = true)); // a terminate runs no workflow code: never reached
  try {
    const handle = await client.start("long", null, { id: "to-terminate" });
    await running;
    await client.terminate("to-terminate", "operator said so");
    const error = await handle.result({ signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).code).toBe("WF_WORKFLOW_TERMINATED");
    const state = await handle.describe();
    expect(state.status).toBe("terminated");
    expect(state.error).toEqual({ message: "terminated: operator said so", type: "TerminatedError" });
    await expect.poll(() => seen.abortedWith !== undefined, { timeout: 5_000 }).toBe(true);
    expect(codeRanAfter).toBe(false);
    await expect.poll(async () => (await client.listPage({ status: "terminated" })).workflows.map((w) => w.id), { timeout: 5_000 }).toEqual(["to-terminate"]);
    await client.terminate("to-terminate"); // ended: a no-op
    expect((await handle.describe()).status).toBe("terminated");
  } finally {
    await runtime.stop();
    await client.close();
  }
});
