/**
 * Deployments through NATS (issue 3), end to end through the real CLI (dist/cli/wf.js) against a
 * real nats-server: `wf deploy` is picked up by running runtimes without a restart, runtimes with
 * no functions/ run the deployed bundle, rollback with `wf deploy --version`, the replay check
 * (`--check`, refusal without `--force`), and a `wf init` project running its example.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { WorkflowClient, WorkflowState } from "../runtime/index.js";
import {
  client,
  makeEmptyDir,
  makeProject,
  resultOf,
  ROOT,
  spawnWf,
  tempDir,
  useFixture,
  waitForState,
  wf,
  type Env,
  type WfProcess,
  useSuiteNats,
} from "./fixtures/function-host/harness.js";

const { server, envFor } = useSuiteNats();
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

interface DeployReport {
  version: string;
  previous?: string;
  promoted: boolean;
  compatible: string[];
  diverging: Array<{ workflowId: string; workflow: string; version: string; message: string }>;
}
interface DeploymentsJson {
  current: { version: string; previous?: string } | null;
  versions: Array<{ version: string; workflows: string[]; activities: string[] }>;
}

async function deploy(project: string, env: Env, ...flags: string[]): Promise<DeployReport> {
  const r = await wf(["deploy", "--json", ...flags], { cwd: project, env });
  expect(r.code, `wf deploy ${flags.join(" ")}: ${r.stdout}\n${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as DeployReport;
}

async function deployments(cwd: string, env: Env): Promise<DeploymentsJson> {
  const r = await wf(["deployments", "--json"], { cwd, env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as DeploymentsJson;
}

/** Start `count` working workflows at once; their results and the workers that ran their steps. */
async function runWorking(c: WorkflowClient, count: number): Promise<{ results: unknown[]; workers: Set<string>; states: WorkflowState[] }> {
  const handles = await Promise.all(range(count).map((n) => c.start("working", { n })));
  const results = await Promise.all(handles.map((h) => resultOf(c, h.id)));
  const states = await Promise.all(handles.map((h) => c.describe(h.id)));
  const workers = new Set(states.flatMap((s) => Object.values(s.steps).map((step) => step.worker ?? "?")));
  return { results, workers, states };
}

const workingProject = () => makeProject({ "activities/work.ts": "activities/work.v1.ts", "workflows/working.ts": "workflows/working.ts" });
const waitForCode = (p: WfProcess, version: string, from = 0) => p.waitFor(new RegExp(`ready: .*code ${version}|switched to code ${version}`), { stream: "stderr", from });

describe("wf deploy", () => {
  it("is picked up by two running runtimes without restart; neither has a functions/ folder", async () => {
    const env = envFor("dep2");
    const project = workingProject();
    const bare = makeEmptyDir();
    // One runtime told to run from NATS, one that falls back to it because there is no functions/.
    const a = spawnWf("runtime A (--from-nats)", ["run", "--from-nats", "--slots", "2"], { cwd: bare, env: { ...env, WORKER_ID: "runtime-a" } });
    const b = spawnWf("runtime B (no functions/)", ["run", "--slots", "2"], { cwd: bare, env: { ...env, WORKER_ID: "runtime-b" } });
    await Promise.all([a, b].map((p) => p.waitFor("waiting for `wf deploy`", { stream: "stderr" })));

    const first = await deploy(project, env);
    expect(first.promoted).toBe(true);
    await Promise.all([a, b].map((p) => waitForCode(p, first.version)));

    const c = await client(env);
    const v1 = await runWorking(c, 10);
    expect(v1.results).toEqual(range(10).map((n) => ({ n, code: "work-v1" })));
    expect([...v1.workers].sort()).toEqual(["runtime-a", "runtime-b"]);
    expect(new Set(v1.states.map((s) => s.bundle))).toEqual(new Set([first.version]));

    // A change, deployed again: both switch, without a restart.
    useFixture(project, "activities/work.ts", "activities/work.v2.ts");
    const [fromA, fromB] = [a.mark("stderr"), b.mark("stderr")];
    const second = await deploy(project, env);
    expect(second.version).not.toBe(first.version);
    expect(second.previous).toBe(first.version);
    await Promise.all([a.waitFor(`switched to code ${second.version}`, { stream: "stderr", from: fromA }), b.waitFor(`switched to code ${second.version}`, { stream: "stderr", from: fromB })]);

    const v2 = await runWorking(c, 10);
    expect(v2.results).toEqual(range(10).map((n) => ({ n, code: "work-v2" })));
    expect([...v2.workers].sort()).toEqual(["runtime-a", "runtime-b"]);
    expect(new Set(v2.states.map((s) => s.bundle))).toEqual(new Set([second.version]));

    // They ran from NATS only: still no functions/ where they run, and both still up.
    expect(existsSync(join(bare, "functions"))).toBe(false);
    expect(a.alive && b.alive).toBe(true);
  });

  it("rolls back: `wf deployments` lists both versions, `wf deploy --version <first>` makes it current again", async () => {
    const env = envFor("deproll");
    const project = workingProject();
    const first = await deploy(project, env);
    const runtime = spawnWf("runtime", ["run", "--from-nats"], { cwd: makeEmptyDir(), env: { ...env, WORKER_ID: "runtime-r" } });
    await waitForCode(runtime, first.version);

    useFixture(project, "activities/work.ts", "activities/work.v2.ts");
    let from = runtime.mark("stderr");
    const second = await deploy(project, env);
    await runtime.waitFor(`switched to code ${second.version}`, { stream: "stderr", from });
    const c = await client(env);
    expect((await runWorking(c, 1)).results).toEqual([{ n: 0, code: "work-v2" }]);

    const listed = await deployments(project, env);
    expect(listed.current?.version).toBe(second.version);
    expect(listed.versions.map((v) => v.version).sort()).toEqual([first.version, second.version].sort());
    for (const v of listed.versions) expect(v).toMatchObject({ workflows: ["working"], activities: ["work"] });
    const text = await wf(["deployments"], { cwd: project, env });
    expect(text.stdout).toMatch(new RegExp(`^\\* ${second.version}`, "m"));
    expect(text.stdout).toMatch(new RegExp(`^  ${first.version}`, "m"));

    from = runtime.mark("stderr");
    const rollback = await deploy(project, env, "--version", first.version);
    expect(rollback).toMatchObject({ version: first.version, previous: second.version, promoted: true });
    await runtime.waitFor(`switched to code ${first.version}`, { stream: "stderr", from });
    const after = await deployments(project, env);
    expect(after.current).toMatchObject({ version: first.version, previous: second.version });
    expect(after.versions).toHaveLength(2);

    const rolledBack = await runWorking(c, 2);
    expect(rolledBack.results).toEqual([{ n: 0, code: "work-v1" }, { n: 1, code: "work-v1" }]);
    expect(rolledBack.states.map((s) => s.bundle)).toEqual([first.version, first.version]);
  });

  it("replay check: a reorder of a running workflow's activities is reported by --check, refused without --force; forced, the running one finishes on its version", async () => {
    const env = envFor("depcheck");
    const project = makeProject({ "activities/steps.ts": "activities/steps.ts", "workflows/gated.ts": "workflows/gated.v1.ts" });
    const first = await deploy(project, env);
    const runtime = spawnWf("runtime", ["run", "--from-nats"], { cwd: makeEmptyDir(), env: { ...env, WORKER_ID: "runtime-r" } });
    await waitForCode(runtime, first.version);
    const c = await client(env);
    const gates = tempDir("jetflow-fh-gates-");

    // Running, between its two steps: first done, held at the gate.
    const old = await c.start("gated", { tag: "old", gate: join(gates, "old") });
    await waitForState(c, old.id, (s) => s.steps.first?.status === "completed" && s.steps.gate?.status === "scheduled", "first done, waiting at the gate");

    useFixture(project, "workflows/gated.ts", "workflows/gated.v2.ts"); // second and first swapped
    const divergence = /journal recorded activity first \(step "first"\), but the code now issues activity second \(step "second"\)/;

    const check = await wf(["deploy", "--check"], { cwd: project, env });
    expect(check.code, check.stdout + check.stderr).toBe(3);
    expect(check.stdout).toContain("1 diverge");
    const line = check.stdout.split("\n").find((l) => l.includes(old.id));
    expect(line, check.stdout).toBeDefined();
    expect(line).toContain(`(gated, on ${first.version})`);
    expect(line).toMatch(divergence);
    expect((await deployments(project, env)).current?.version).toBe(first.version);

    const refused = await wf(["deploy"], { cwd: project, env });
    expect(refused.code, refused.stdout + refused.stderr).not.toBe(0);
    expect(refused.stdout).toContain("refused");
    expect(refused.stdout).toContain(old.id);
    expect((await deployments(project, env)).current?.version).toBe(first.version);

    const from = runtime.mark("stderr");
    const forced = await deploy(project, env, "--force");
    expect(forced.promoted).toBe(true);
    expect(forced.version).not.toBe(first.version);
    expect(forced.diverging).toHaveLength(1);
    expect(forced.diverging[0]).toMatchObject({ workflowId: old.id, workflow: "gated", version: first.version });
    expect(forced.diverging[0]!.message).toMatch(divergence);
    expect((await deployments(project, env)).current?.version).toBe(forced.version);
    await runtime.waitFor(`switched to code ${forced.version}`, { stream: "stderr", from });

    // Open the gates: the running one finishes on the old code, a new one runs the new code.
    const fresh = await c.start("gated", { tag: "new", gate: join(gates, "new") });
    writeFileSync(join(gates, "old"), "");
    writeFileSync(join(gates, "new"), "");
    expect(await resultOf(c, old.id)).toEqual({ order: ["first(old)", "second(old)"], code: "v1" });
    expect(await resultOf(c, fresh.id)).toEqual({ order: ["second(new)", "first(new)"], code: "v2" });
    expect((await c.describe(old.id)).bundle).toBe(first.version);
    expect((await c.describe(fresh.id)).bundle).toBe(forced.version);
  });
});

describe("wf init", () => {
  it("scaffolds a project whose example workflow runs end to end", async () => {
    const env = envFor("init");
    const dir = join(tempDir("jetflow-fh-init-"), "my-app");
    const jetflow = `file:${ROOT.replace(/\/$/, "")}`;
    const init = await wf(["init", dir, "--jetflow", jetflow], { cwd: tempDir(), env });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain("functions/workflows/hello.ts");
    expect(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).dependencies.jetflow).toBe(jetflow);
    expect(existsSync(join(dir, "node_modules"))).toBe(false); // no npm install: the bundler resolves jetflow/workflow

    const runtime = spawnWf("wf run (init project)", ["run"], { cwd: dir, env: { ...env, WORKER_ID: "init-runtime" } });
    await runtime.waitFor(/ready: .*\[hello\]/, { stream: "stderr" });
    const started = await wf(["start", "hello", "--input", '{"name":"Ada"}', "--wait"], { cwd: dir, env });
    expect(started.code, started.stdout + started.stderr).toBe(0);
    const result = JSON.parse(started.stdout) as { greeting: string; at: string };
    expect(result.greeting).toBe("Hello, Ada!");
    expect(Number.isNaN(Date.parse(result.at))).toBe(false);
  });
});
