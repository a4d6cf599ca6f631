/** `wf cancel` / client.cancel: the workflow ends as cancelled and its running activity is aborted. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, WorkflowFailedError, type ActivityContext } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

let nats: TestNats;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

it("cancelling a running workflow marks it cancelled and aborts its activity", async () => {
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: "cancel1", log: { level: "warn" } } });
  let abortedWith: unknown;
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const runtime = await createRuntime({
    config,
    workflows: {
      long: async (ctx: { activity: (t: string) => Promise<unknown> }) => {
        await ctx.activity("wait_forever");
        return "unreachable";
      },
    },
    activities: {
      wait_forever: (_input: unknown, ctx: ActivityContext) =>
        new Promise((_resolve, reject) => {
          started();
          ctx.signal.addEventListener("abort", () => {
            abortedWith = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        }),
    },
  });
  await runtime.start();
  const client = await createClient({ config });
  try {
    const handle = await client.start("long", null, { id: "to-cancel" });
    await running;
    await client.cancel("to-cancel", "customer changed their mind");
    const error = await handle.result({ signal: AbortSignal.timeout(10_000) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const state = await client.describe("to-cancel");
    expect(state.status).toBe("cancelled");
    expect(state.error).toEqual({ type: "CancelledError", message: "cancelled: customer changed their mind" });
    await expect.poll(() => (abortedWith as Error | undefined)?.name, { timeout: 5_000 }).toBe("CancelledError");
    // Cancelling an ended workflow changes nothing.
    await client.cancel("to-cancel");
    expect((await client.describe("to-cancel")).updatedAt).toBe(state.updatedAt);
  } finally {
    await client.close();
    await runtime.stop();
  }
});
