/**
 * `wf dev` end to end (issue 3): the real CLI (dist/cli/wf.js) as a child process in a temporary
 * project, against a real nats-server. NATS found or started; a save of an activity is live; a
 * broken save keeps the old code and shows file:line; a running workflow stays on the code it
 * started on when new workflow code would diverge from its journal; a failing activity fixed by a
 * save succeeds on its next retry. Latency is the bench's business, not asserted here.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  client,
  freePort,
  makeProject,
  portOpen,
  resultOf,
  spawnWf,
  uniqueNamespace,
  tempDir,
  useFixture,
  waitForState,
  wf,
  type Env,
  useSuiteNats,
} from "./fixtures/function-host/harness.js";

const { server, envFor } = useSuiteNats();

/** Alive and not a zombie (an orphan whose reaper is slow is dead for our purposes). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A project with the greeting workflow, v1 of its activity. */
const helloProject = () => makeProject({ "activities/greet.ts": "activities/greet.v1.ts", "workflows/hello.ts": "workflows/hello.ts" });

describe("wf dev: NATS", () => {
  it("starts its own nats-server when nothing answers at NATS_URL, says where, and stops it on Ctrl-C", async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const env: Env = { NATS_URL: url, WF_NAMESPACE: uniqueNamespace("devown") };
    const project = helloProject();
    const dev = spawnWf("wf dev", ["dev"], { cwd: project, env });
    await dev.waitFor("loaded");
    expect(dev.stdout).toContain(`NATS ${url} (started by wf dev`);
    expect(dev.stdout).toMatch(/loaded [0-9a-f]{16}\s+workflows \[hello\], activities \[greet\]/);
    expect(await portOpen(port)).toBe(true);

    // The server it started works: a workflow runs on it, started from "another terminal".
    const started = await wf(["start", "hello", "--input", '{"name":"Ada"}', "--wait"], { cwd: project, env });
    expect(started.code, started.stderr).toBe(0);
    expect(JSON.parse(started.stdout)).toEqual({ greeting: "v1: hello Ada" });

    expect(await dev.stop("SIGINT")).toBe(0);
    expect(await portOpen(port)).toBe(false);
  });

  it("its nats-server does not outlive a SIGKILLed wf dev: the watchdog stops it, the port and the store are free", async () => {
    const port = await freePort();
    const env: Env = { NATS_URL: `nats://127.0.0.1:${port}`, WF_NAMESPACE: uniqueNamespace("devkill") };
    const project = helloProject();
    const dev = spawnWf("wf dev", ["dev"], { cwd: project, env });
    const banner = await dev.waitFor("started by wf dev");
    await dev.waitFor("loaded");
    const pid = Number(/pid (\d+)/.exec(banner)![1]);
    expect(processAlive(pid)).toBe(true);
    expect(await portOpen(port)).toBe(true);

    dev.child.kill("SIGKILL"); // no exit hook, no signal handler runs
    await dev.exited;
    await waitUntil(() => !processAlive(pid), "the nats-server started by wf dev to end");
    await waitUntil(async () => !(await portOpen(port)), "the port to be free");

    // The store is free too: the next wf dev starts its own server on it, and it works.
    const again = spawnWf("wf dev again", ["dev"], { cwd: project, env });
    await again.waitFor("loaded");
    expect(again.stdout).toContain("started by wf dev");
    const started = await wf(["start", "hello", "--input", '{"name":"Ada"}', "--wait"], { cwd: project, env });
    expect(started.code, started.stderr).toBe(0);
    expect(await again.stop("SIGINT")).toBe(0);
  });

  it("fails at once, with the install command, when nothing answers and no nats-server can be started", async () => {
    const port = await freePort();
    const env: Env = { NATS_URL: `nats://127.0.0.1:${port}`, WF_NAMESPACE: uniqueNamespace("devnobin"), NATS_SERVER_BIN: join(tempDir(), "nats-server") };
    const t0 = Date.now();
    const result = await wf(["dev"], { cwd: helloProject(), env, timeoutMs: 15_000 });
    expect(result.code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(result.stderr).toContain(`no NATS server answers at nats://127.0.0.1:${port}`);
    expect(result.stderr).toMatch(/hint: Install it: `[^`]*nats-server[^`]*`/);
  });

  it("reuses a NATS server that answers at NATS_URL, and leaves it running on Ctrl-C", async () => {
    const env = envFor("devreuse");
    const dev = spawnWf("wf dev", ["dev"], { cwd: helloProject(), env });
    await dev.waitFor("loaded");
    expect(dev.stdout).toContain(`NATS ${server().url}`);
    expect(dev.stdout).not.toContain("started by wf dev");
    expect(dev.stderr).not.toContain("started nats-server");
    expect(await dev.stop("SIGINT")).toBe(0);
    expect(await portOpen(server().port)).toBe(true);
  });
});

describe("wf dev: hot reload", () => {
  it("a save of an activity is live: the next workflow runs the new code", async () => {
    const env = envFor("devsave");
    const project = helloProject();
    const dev = spawnWf("wf dev", ["dev"], { cwd: project, env });
    await dev.waitFor("loaded");
    const c = await client(env);
    const before = await c.start("hello", { name: "Ada" });
    expect(await resultOf(c, before.id)).toEqual({ greeting: "v1: hello Ada" });

    const from = dev.mark();
    useFixture(project, "activities/greet.ts", "activities/greet.v2.ts");
    await dev.waitFor(/↻ reloaded [0-9a-f]{16}/, { from });

    // Through the CLI, as a user in another terminal would.
    const after = await wf(["start", "hello", "--input", '{"name":"Ada"}', "--wait"], { cwd: project, env });
    expect(after.code, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout)).toEqual({ greeting: "v2: good day Ada" });
    // The live log showed both runs.
    await dev.waitFor(/✔ hello \S+ completed/, { from });
  });

  it("a broken save shows file:line and keeps the old code running; the next good save recovers", async () => {
    const env = envFor("devbroken");
    const project = helloProject();
    const dev = spawnWf("wf dev", ["dev"], { cwd: project, env });
    const loaded = await dev.waitFor("loaded");
    const c = await client(env);

    let from = dev.mark();
    useFixture(project, "activities/greet.ts", "activities/greet.broken.ts.txt");
    const error = await dev.waitFor(/functions\/activities\/greet\.ts:\d+:\d+/, { from });
    expect(error).toMatch(/functions\/activities\/greet\.ts:3:\d+: /);
    expect(dev.stdout.slice(from)).toContain("✖ cannot bundle activities");
    expect(dev.stdout.slice(from)).not.toContain("reloaded");

    const during = await c.start("hello", { name: "Bob" });
    expect(await resultOf(c, during.id)).toEqual({ greeting: "v1: hello Bob" });
    expect((await c.describe(during.id)).bundle).toBe(/loaded ([0-9a-f]{16})/.exec(loaded)![1]);

    from = dev.mark();
    useFixture(project, "activities/greet.ts", "activities/greet.v3.ts");
    await dev.waitFor("reloaded", { from });
    const after = await c.start("hello", { name: "Bob" });
    expect(await resultOf(c, after.id)).toEqual({ greeting: "v3: welcome back Bob" });
    expect(dev.alive).toBe(true);
  });

  it("a workflow started before a change of its workflow code finishes on the old code; a new one runs the new code", async () => {
    const env = envFor("devpin");
    const project = makeProject({ "activities/steps.ts": "activities/steps.ts", "workflows/sleepy.ts": "workflows/sleepy.v1.ts" });
    const dev = spawnWf("wf dev", ["dev"], { cwd: project, env });
    await dev.waitFor("loaded");
    const c = await client(env);

    const old = await c.start("sleepy", { tag: "old" });
    await waitForState(c, old.id, (s) => s.steps.first?.status === "completed" && s.steps.sleep?.status === "waiting", "first done, sleeping");

    const from = dev.mark();
    useFixture(project, "workflows/sleepy.ts", "workflows/sleepy.v2.ts");
    await dev.waitFor("reloaded", { from });
    // The replay check found that the running one would diverge: it stays on its version.
    const stays = await dev.waitFor(`${old.id} (sleepy) stays on`, { from });
    expect(stays).toContain('"first"');
    expect(stays).toContain("activity second");
    expect((await c.describe(old.id)).status).toBe("running"); // the report came while it slept

    const fresh = await c.start("sleepy", { tag: "new" });
    const [oldResult, newResult] = await Promise.all([resultOf(c, old.id), resultOf(c, fresh.id)]);
    expect(oldResult).toEqual({ order: ["first(old)", "second(old)"], code: "v1" });
    expect(newResult).toEqual({ order: ["second(new)", "first(new)"], code: "v2" });

    const [oldState, newState] = await Promise.all([c.describe(old.id), c.describe(fresh.id)]);
    expect(oldState.bundle).not.toBe(newState.bundle);
    expect(dev.stdout).toContain(`loaded ${oldState.bundle}`);
    expect(dev.stdout).toContain(`reloaded ${newState.bundle}`);
  });

  it("a failing activity fixed by a save succeeds on its next retry", async () => {
    const env = envFor("devfix");
    const project = makeProject({ "activities/flaky.ts": "activities/flaky.bug.ts", "workflows/retrying.ts": "workflows/retrying.ts" });
    const dev = spawnWf("wf dev", ["dev"], { cwd: project, env });
    await dev.waitFor("loaded");
    const c = await client(env);

    const handle = await c.start("retrying", { n: 7 });
    const retrying = await waitForState(c, handle.id, (s) => s.steps.flaky?.status === "retrying", "flaky retrying");
    expect(retrying.steps.flaky!.lastError?.message).toBe("bug");
    // Source maps: the stack points at the user's file and line, not at the bundle.
    expect(retrying.steps.flaky!.lastError?.stack).toMatch(/functions\/activities\/flaky\.ts:3:\d+/);
    await dev.waitFor(/flaky failed: bug .*next retry in/);

    const from = dev.mark();
    useFixture(project, "activities/flaky.ts", "activities/flaky.fixed.ts");
    await dev.waitFor("reloaded", { from });
    const savedBeforeNextAttempt = Date.now() < Date.parse(retrying.steps.flaky!.nextAttemptAt!);

    expect(await resultOf(c, handle.id)).toEqual({ out: "fixed 7" });
    const done = await c.describe(handle.id);
    // The same step, a later attempt (no new start); the very next one when the save came in time.
    expect(done.steps.flaky!.attempt).toBeGreaterThan(retrying.steps.flaky!.attempt);
    if (savedBeforeNextAttempt) expect(done.steps.flaky!.attempt).toBe(retrying.steps.flaky!.attempt + 1);
    expect(done.steps.flaky!.lastError?.message).toBe("bug"); // kept after the successful retry
    await dev.waitFor(/✔ retrying \S+ completed/, { from });
  });
});
