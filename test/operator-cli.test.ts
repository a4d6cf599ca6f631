/**
 * The operator commands through the real CLI against a real nats-server and a runtime:
 * `wf retry <id>`, bulk `wf cancel|terminate|retry --where … [--dry-run] [--yes]` (refused
 * without a terminal and without --yes), and `wf stats`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type WorkflowClient } from "../runtime/client/client.js";
import { loadConfig } from "../runtime/config.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import { NonRetryableError, type WorkflowContext } from "../runtime/workflow-api.js";
import { makeProject, useSuiteNats, wf, type Env } from "./fixtures/function-host/harness.js";
import { waitFor } from "./helpers/wait.js";

const { server, envFor } = useSuiteNats();
const logger = createConsoleLogger({ level: "silent" });
const calls: Record<string, number> = {};
const broken = { now: true };
const activities = {
  prepare: async (n: number) => {
    calls.prepare = (calls.prepare ?? 0) + 1;
    return n * 10;
  },
  deliver: async (n: number) => {
    calls.deliver = (calls.deliver ?? 0) + 1;
    if (broken.now) throw new NonRetryableError("truck broke down");
    return `delivered ${n}`;
  },
  /** Not pulled by the runtime (worker.activities): its tasks wait in the queue. */
  backlog: async (_: null) => "later",
};
type Acts = typeof activities;
const hold = async (ctx: WorkflowContext<Acts>) => ctx.waitForSignal("go");
const flaky = async (ctx: WorkflowContext<Acts>, n: number) => ctx.activities.deliver(await ctx.activities.prepare(n));
const waits = async (ctx: WorkflowContext<Acts>) => ctx.activities.backlog(null);

let env: Env;
let runtime: Runtime;
let client: WorkflowClient;

beforeAll(async () => {
  env = envFor("ops");
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [server().url] }, namespace: env.WF_NAMESPACE, log: { level: "silent" }, worker: { activities: ["prepare", "deliver"] } } });
  runtime = await createRuntime({ config, logger, workflows: { hold, flaky, waits }, activities });
  await runtime.start();
  client = await createClient({ config, logger });
});

afterAll(async () => {
  await client?.close();
  await runtime?.stop("test done");
});

const run = (...args: string[]) => wf(args, { cwd: makeProject({}), env });
const statusOf = async (id: string) => (await client.describe(id)).status;

describe("operator commands", () => {
  it("wf retry <id> re-runs a failed workflow from its failed step; a completed one is refused", async () => {
    broken.now = true;
    await expect((await client.start("flaky", 1, { id: "flaky-1" })).result()).rejects.toThrow(/truck broke down/);
    const before = { ...calls };
    broken.now = false;
    const retried = await run("retry", "flaky-1");
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toContain("retry of flaky-1 (run 1, failed) started as run 2");
    expect(await client.result("flaky-1")).toBe("delivered 10");
    expect(calls.prepare).toBe(before.prepare); // reused, not run again
    expect(calls.deliver).toBe(before.deliver! + 1);

    const again = await run("retry", "flaky-1");
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("error: workflow flaky-1 completed; there is no failed step to retry from");
    expect(again.stderr).toContain("hint:");
    expect((await run("retry")).code).toBe(64);
  });

  it("wf cancel --where lists the matches (--dry-run), refuses without a terminal or --yes, and cancels them with --yes; wf terminate --where too", async () => {
    for (const [id, team] of [["h-a1", "a"], ["h-a2", "a"], ["h-a3", "a"], ["h-b1", "b"]] as const) await client.start("hold", null, { id, searchAttributes: { team } });
    await waitFor("all four listed running", async () => (await client.count({ workflow: "hold", status: "running" })) === 4);

    const dry = await run("cancel", "--where", "workflow=hold", "--where", "team=a", "--dry-run");
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain("would cancel 3 workflows:");
    for (const id of ["h-a1", "h-a2", "h-a3"]) expect(dry.stdout).toContain(id);
    expect(dry.stdout).not.toContain("h-b1");
    expect(await statusOf("h-a1")).toBe("running");

    const refused = await run("cancel", "--where", "workflow=hold", "--where", "team=a");
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain("refusing to cancel 3 workflow(s) without a confirmation, and there is no terminal to ask on");
    expect(refused.stderr).toContain("--yes");
    expect(await statusOf("h-a1")).toBe("running");

    const done = await run("cancel", "--where", "workflow=hold", "--where", "team=a", "--where", "status=running", "--yes", "--reason", "cleanup");
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toContain("cancel requested for 3 of 3 workflow(s)");
    await waitFor("the three cancelled", async () => (await Promise.all(["h-a1", "h-a2", "h-a3"].map(statusOf))).every((s) => s === "cancelled"));
    expect(await statusOf("h-b1")).toBe("running");

    const terminated = await run("terminate", "--where", "workflow=hold", "--yes");
    expect(terminated.stdout).toContain("terminate requested for 1 of 1 workflow(s)");
    await waitFor("h-b1 terminated", async () => (await statusOf("h-b1")) === "terminated");
    expect((await run("cancel", "--where", "workflow=hold", "--yes")).stdout).toContain("no workflows match; nothing to cancel");
    expect((await run("cancel", "h-b1", "--where", "workflow=hold")).code).toBe(64);
    const badStatus = await run("cancel", "--where", "status=sleeping");
    expect(badStatus.code).toBe(64);
    expect(badStatus.stderr).toContain('"sleeping" is not a status');
  });

  it("wf retry --where retries every failed match", async () => {
    broken.now = true;
    for (const id of ["bulk-1", "bulk-2"]) await expect((await client.start("flaky", 2, { id })).result()).rejects.toThrow();
    broken.now = false;
    await waitFor("both listed failed", async () => (await client.count({ workflow: "flaky", status: "failed" })) === 2);
    const res = await run("retry", "--where", "workflow=flaky", "--yes");
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain("will retry 2 workflows:");
    expect(res.stdout).toContain("retry started for 2 of 2 workflow(s)");
    expect(await Promise.all(["bulk-1", "bulk-2"].map((id) => client.result(id)))).toEqual(["delivered 20", "delivered 20"]);
  });

  it("wf stats shows per workflow type running / completed / failed in the last hour, and per activity type the queue", async () => {
    await client.start("waits", null, { id: "waits-1" });
    await waitFor("its task queued", async () => Object.keys((await client.describe("waits-1")).steps).length > 0);
    const res = await run("stats", "--json");
    expect(res.code, res.stderr).toBe(0);
    const stats = JSON.parse(res.stdout) as { workflows: Array<Record<string, unknown>>; activities: Array<Record<string, unknown>> };
    const byType = Object.fromEntries(stats.workflows.map((w) => [w.workflow, w]));
    expect(byType.hold).toEqual({ workflow: "hold", running: 0, completed: 0, failed: 0, cancelled: 4 });
    expect(byType.flaky).toEqual({ workflow: "flaky", running: 0, completed: 3, failed: 0, cancelled: 0 });
    expect(byType.waits).toEqual({ workflow: "waits", running: 1, completed: 0, failed: 0, cancelled: 0 });
    const queues = Object.fromEntries(stats.activities.map((a) => [a.activity, a]));
    expect(queues.backlog).toEqual({ activity: "backlog", queued: 1, running: 0 });
    expect(queues.deliver).toEqual({ activity: "deliver", queued: 0, running: 0 });

    const text = await run("stats");
    expect(text.stdout).toMatch(/workflows \(ended since 1h ago\)/);
    expect(text.stdout).toMatch(/^\s+waits\s+1\s+0\s+0\s+0$/m);
    expect(text.stdout).toMatch(/^\s+backlog\s+1\s+0$/m);
    expect((await run("stats", "--workflow", "hold", "--json")).stdout).toContain('"cancelled": 4');
  });
});
