/** The seed's split: an orchestrator-only process and worker-only processes, including dedicated pools per activity type. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, type ActivityContext, type WorkflowContext } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

let nats: TestNats;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats.stop());

it("an orchestrator-only runtime and two dedicated worker pools run a workflow together", async () => {
  const base = { nats: { servers: [nats.url] }, namespace: "roles", log: { level: "warn" } };
  const config = (worker: object) => loadConfig({ env: {}, overrides: { ...base, worker } });
  const pipeline = { pipeline: async (ctx: WorkflowContext, n: number) => ctx.activity<number>("resize", await ctx.activity<number>("fetch_image", n)) };
  const ran: Array<[string, string]> = [];
  const activities = (id: string) => ({
    fetch_image: async (n: number, ctx: ActivityContext) => (ran.push([ctx.activityType, id]), n + 1),
    resize: async (n: number, ctx: ActivityContext) => (ran.push([ctx.activityType, id]), n * 10),
  });
  // The orchestrator has the workflow code but no activities: it pulls no tasks.
  const orchestrator = await createRuntime({ config: config({ id: "engine" }), role: "orchestrator", workflows: pipeline });
  const fetchPool = await createRuntime({ config: config({ id: "fetch-pool", activities: ["fetch_image"] }), role: "worker", workflows: pipeline, activities: activities("fetch-pool") });
  const resizePool = await createRuntime({ config: config({ id: "resize-pool", activities: ["resize"] }), role: "worker", workflows: pipeline, activities: activities("resize-pool") });
  const client = await createClient({ config: config({}) });
  try {
    for (const runtime of [orchestrator, fetchPool, resizePool]) await runtime.start();
    const results = await Promise.all([1, 2, 3, 4, 5].map(async (n) => (await client.start("pipeline", n)).result({ signal: AbortSignal.timeout(15_000) })));
    expect(results).toEqual([20, 30, 40, 50, 60]);
    expect(new Set(ran.filter(([type]) => type === "fetch_image").map(([, id]) => id))).toEqual(new Set(["fetch-pool"]));
    expect(new Set(ran.filter(([type]) => type === "resize").map(([, id]) => id))).toEqual(new Set(["resize-pool"]));
  } finally {
    await client.close();
    for (const runtime of [resizePool, fetchPool, orchestrator]) await runtime.stop();
  }
});
