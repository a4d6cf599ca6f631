/**
 * ctx.patched / ctx.deprecatePatch (issue 13): a code change behind a patch lets running workflows
 * move to the new code. A new run takes the patched path and records a step of kind "marker"; a
 * run recorded before the patch existed replays on it with patched() false (no divergence) and
 * stays on the old path for the rest of the run; the deploy replay check counts such a change
 * compatible, and still reports an unpatched one. Against a real nats-server.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderState } from "../cli/output.js";
import { buildFunctions } from "../runtime/bundle/build.js";
import { deployBundle } from "../runtime/bundle/deploy.js";
import { openDeploymentStore } from "../runtime/bundle/deployments.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { createRuntime, NonDeterminismError, type WorkflowContext } from "../runtime/index.js";
import { silentLogger } from "../runtime/logger.js";
import { createTestEnv, replayHistory } from "../runtime/testing/index.js";
import { useEngines, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();
const signal = () => ({ signal: AbortSignal.timeout(20_000) });

const activities = {
  step1: async (x: unknown) => `s1:${String(x)}`,
  audit: async (a: unknown) => `audited ${String(a)}`,
  receipt: async (go: unknown) => `receipt ${String(go)}`,
};
type Acts = typeof activities;

/** v1: one activity, then a signal. */
const v1 = async (ctx: WorkflowContext<Acts>, input: string) => {
  const a = await ctx.activities.step1(input);
  const go = await ctx.waitForSignal<string>("go");
  return { a, go };
};

/**
 * v2: an audit behind a patch before the signal (a point running v1 workflows have passed), the
 * same patch asked again after it (memoized), and a receipt behind a second patch after the signal
 * (a point they have not reached yet).
 */
const v2 = async (ctx: WorkflowContext<Acts>, input: string) => {
  const a = await ctx.activities.step1(input);
  const audited = ctx.patched("add-audit") ? await ctx.activities.audit(a) : null;
  const go = await ctx.waitForSignal<string>("go");
  const again = ctx.patched("add-audit");
  const receipt = ctx.patched("add-receipt") ? await ctx.activities.receipt(go) : null;
  return { a, audited, go, again, receipt };
};

/** v2 without the patch: the audit is a plain new call, which running v1 workflows never made. */
const v2Unpatched = async (ctx: WorkflowContext<Acts>, input: string) => {
  const a = await ctx.activities.step1(input);
  const audited = await ctx.activities.audit(a);
  const go = await ctx.waitForSignal<string>("go");
  return { a, audited, go };
};

/** v3, the cleanup once v1 runs are gone: the audit unconditional, the patch deprecated. */
const v3 = async (ctx: WorkflowContext<Acts>, input: string) => {
  const a = await ctx.activities.step1(input);
  ctx.deprecatePatch("add-audit");
  const audited = await ctx.activities.audit(a);
  const go = await ctx.waitForSignal<string>("go");
  return { a, audited, go };
};

const kinds = (steps: Record<string, { seq: number; kind: string; patch?: string }>) =>
  Object.entries(steps)
    .sort(([, x], [, y]) => x.seq - y.seq)
    .map(([name, s]) => (s.kind === "marker" ? `${name}:${s.kind}(${s.patch})` : `${name}:${s.kind}`));

describe("ctx.patched", () => {
  it("a new run takes the patched path: one marker per patch id, at the point of the first call; wf show prints it", async () => {
    const e = engine();
    await e.runtime({ workflows: { order: v2 }, activities });
    const client = await e.client();
    await client.start("order", "o-1", { id: "p-new-1" });
    const waiting = await waitForState(client, "p-new-1", (s) => s.steps.signal_go !== undefined);
    expect(waiting.steps["patch_add-audit"]).toMatchObject({ seq: 1, kind: "marker", patch: "add-audit", status: "completed", attempt: 0 });
    expect(waiting.journal).toEqual(["step1", "patch_add-audit", "audit"]);
    expect(renderState(waiting)).toMatch(/patch_add-audit\s+completed\s+-\s+\S+\s+patched add-audit/);

    await client.signal("p-new-1", "go", "now");
    const done = await client.waitForEnd("p-new-1", signal());
    expect(done.status).toBe("completed");
    expect(done.result).toEqual({ a: "s1:o-1", audited: "audited s1:o-1", go: "now", again: true, receipt: "receipt now" });
    // The second patched("add-audit") answered from memory and recorded nothing.
    expect(kinds(done.steps)).toEqual([
      "step1:activity",
      "patch_add-audit:marker(add-audit)",
      "audit:activity",
      "signal_go:signal",
      "patch_add-receipt:marker(add-receipt)",
      "receipt:activity",
    ]);
    // Its history replays on the same code (patched() true where the marker is).
    await expect(replayHistory(await client.history("p-new-1"), { workflows: { order: v2 } })).resolves.toMatchObject({ workflowId: "p-new-1" });
  });

  it("a run recorded on the old code replays on the patched code (false where it passed the patch point, and for the rest of the run) and finishes on it", async () => {
    const e = engine();
    const old = await e.runtime({ workflows: { order: v1 }, activities });
    const client = await e.client();
    await client.start("order", "o-2", { id: "p-old-1" });
    await waitForState(client, "p-old-1", (s) => s.steps.signal_go !== undefined);
    const history = await client.history("p-old-1");
    // What the deploy check does, without a deploy: the patched change replays; the unpatched one does not.
    await expect(replayHistory(history, { workflows: { order: v2 } })).resolves.toMatchObject({ workflowId: "p-old-1" });
    const unpatched = replayHistory(history, { workflows: { order: v2Unpatched } });
    await expect(unpatched).rejects.toBeInstanceOf(NonDeterminismError);
    await expect(unpatched).rejects.toThrow(/diverged at step "signal_go" \(command #2\): the journal recorded wait for signal go .*but the code now issues activity audit/);

    // A runtime with the new code, which does not hold the execution: it replays, then goes on live.
    await e.stopRuntime(old);
    await e.runtime({ workflows: { order: v2 }, activities });
    await client.signal("p-old-1", "go", "later");
    const done = await client.waitForEnd("p-old-1", signal());
    expect(done.status).toBe("completed");
    // No audit (it passed that point on v1), still no audit after the signal (memoized false), but
    // the receipt, whose point it reached on v2 only.
    expect(done.result).toEqual({ a: "s1:o-2", audited: null, go: "later", again: false, receipt: "receipt later" });
    expect(kinds(done.steps)).toEqual(["step1:activity", "signal_go:signal", "patch_add-receipt:marker(add-receipt)", "receipt:activity"]);
  });

  it("a recorded marker the code no longer asks for is a divergence", async () => {
    const e = engine();
    await e.runtime({ workflows: { order: v2 }, activities });
    const client = await e.client();
    await client.start("order", "o-3", { id: "p-back-1" });
    await waitForState(client, "p-back-1", (s) => s.steps.signal_go !== undefined);
    // Going back to v1 would strand a run that took the patched path.
    await expect(replayHistory(await client.history("p-back-1"), { workflows: { order: v1 } })).rejects.toThrow(
      /diverged at step "patch_add-audit" \(command #2\): the journal recorded patch marker "add-audit" \(step "patch_add-audit"\), but the code now issues wait for signal go/,
    );
  });

  it("a bad patch id throws a ValidationError (WF_INVALID_PATCH_ID) at the call, which the code may catch", async () => {
    const e = engine();
    const caught = async (ctx: WorkflowContext) => {
      const out: string[] = [];
      for (const id of ["", "has space", "x".repeat(101), 7 as unknown as string]) {
        try {
          ctx.patched(id);
          out.push("no error");
        } catch (err) {
          out.push(`${(err as Error).name} ${(err as { code?: string }).code}: ${(err as Error).message}`);
        }
      }
      try {
        ctx.deprecatePatch("a/b");
      } catch (err) {
        out.push(`${(err as { code?: string }).code}`);
      }
      return out;
    };
    const uncaught = async (ctx: WorkflowContext) => (ctx.patched("no.dots") ? 1 : 2);
    await e.runtime({ workflows: { caught, uncaught }, activities: {} });
    const client = await e.client();
    const c = await client.waitForEnd((await client.start("caught", null, { id: "p-bad-1" })).id, signal());
    expect(c.status).toBe("completed");
    expect(c.result).toEqual([
      'ValidationError WF_INVALID_PATCH_ID: ctx.patched(): patch id "" is not valid: use 1-100 characters of A-Z a-z 0-9 _ -',
      'ValidationError WF_INVALID_PATCH_ID: ctx.patched(): patch id "has space" is not valid: use 1-100 characters of A-Z a-z 0-9 _ -',
      expect.stringMatching(/^ValidationError WF_INVALID_PATCH_ID: ctx.patched\(\): patch id "x{101}" is not valid/),
      "ValidationError WF_INVALID_PATCH_ID: ctx.patched(): patch id 7 is not valid: use 1-100 characters of A-Z a-z 0-9 _ -",
      "WF_INVALID_PATCH_ID",
    ]);
    expect(c.steps).toEqual({}); // nothing recorded
    const u = await client.waitForEnd((await client.start("uncaught", null, { id: "p-bad-2" })).id, signal());
    expect(u.status).toBe("failed");
    expect(u.error).toEqual({ type: "ValidationError", message: expect.stringContaining('ctx.patched(): patch id "no.dots" is not valid') });
  });
});

describe("ctx.deprecatePatch", () => {
  it("accepts the marker of a run that took the patched path, records none in a new run, and does not branch", async () => {
    const e = engine();
    const before = await e.runtime({ workflows: { order: v2 }, activities });
    const client = await e.client();
    await client.start("order", "o-4", { id: "p-dep-1" });
    await waitForState(client, "p-dep-1", (s) => s.steps.signal_go !== undefined);
    await e.stopRuntime(before);

    await e.runtime({ workflows: { order: v3 }, activities });
    await client.start("order", "o-5", { id: "p-dep-2" });
    const fresh = await waitForState(client, "p-dep-2", (s) => s.steps.signal_go !== undefined);
    expect(kinds(fresh.steps)).toEqual(["step1:activity", "audit:activity", "signal_go:signal"]);
    for (const id of ["p-dep-1", "p-dep-2"]) await client.signal(id, "go", id);
    const patchedRun = await client.waitForEnd("p-dep-1", signal());
    expect(patchedRun.status).toBe("completed");
    expect(patchedRun.result).toEqual({ a: "s1:o-4", audited: "audited s1:o-4", go: "p-dep-1" });
    expect(kinds(patchedRun.steps)).toEqual(["step1:activity", "patch_add-audit:marker(add-audit)", "audit:activity", "signal_go:signal"]);
    const freshRun = await client.waitForEnd("p-dep-2", signal());
    expect(freshRun.result).toEqual({ a: "s1:o-5", audited: "audited s1:o-5", go: "p-dep-2" });
    // Runs without a marker replay on code with the call removed altogether.
    const v4 = async (ctx: WorkflowContext<Acts>, input: string) => {
      const a = await ctx.activities.step1(input);
      const audited = await ctx.activities.audit(a);
      const go = await ctx.waitForSignal<string>("go");
      return { a, audited, go };
    };
    await expect(replayHistory(await client.history("p-dep-2"), { workflows: { order: v4 } })).resolves.toMatchObject({ workflowId: "p-dep-2" });
  });
});

describe("patched code through the deploy replay check", () => {
  const root = mkdtempSync(join(tmpdir(), "jetflow-patch-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const ACTIVITIES = [
    "export async function step1(x: string) { return `s1:${x}`; }",
    "export async function audit(a: string) { return `audited ${a}`; }",
    "export async function receipt(go: string) { return `receipt ${go}`; }",
  ].join("\n");
  const CODE = {
    v1: `export async function order(ctx: any, input: string) {
  const a = await ctx.activities.step1(input);
  const go = await ctx.waitForSignal("go");
  return { a, go };
}`,
    v2: `export async function order(ctx: any, input: string) {
  const a = await ctx.activities.step1(input);
  const audited = ctx.patched("add-audit") ? await ctx.activities.audit(a) : null;
  const go = await ctx.waitForSignal("go");
  const receipt = ctx.patched("add-receipt") ? await ctx.activities.receipt(go) : null;
  return { a, audited, go, receipt };
}`,
    unpatched: `export async function order(ctx: any, input: string) {
  const a = await ctx.activities.step1(input);
  const audited = await ctx.activities.audit(a);
  const go = await ctx.waitForSignal("go");
  return { a, audited, go };
}`,
  };
  async function bundleOf(version: keyof typeof CODE) {
    const dir = join(root, version, "functions");
    mkdirSync(join(dir, "workflows"), { recursive: true });
    mkdirSync(join(dir, "activities"), { recursive: true });
    writeFileSync(join(dir, "activities", "steps.ts"), ACTIVITIES);
    writeFileSync(join(dir, "workflows", "order.ts"), CODE[version]);
    const bundle = await buildFunctions(dir);
    return { bundle, registry: await loadBundle(bundle, { logger: silentLogger, cacheDir: join(root, version, ".build") }) };
  }

  it("counts a running v1 workflow compatible with the patched v2, moves it, and it finishes on v2; a new run on v2 takes the audit; an unpatched v2 is reported diverging", async () => {
    const e = engine();
    const topology = await e.topology();
    const store = await openDeploymentStore(topology, { replicas: 1, storage: "file" });
    const deploy = async (version: keyof typeof CODE, options: { checkOnly?: boolean } = {}) => {
      const { bundle, registry } = await bundleOf(version);
      return deployBundle({ topology, store, bundle, registry, deployedBy: "test", logger: silentLogger, ...options });
    };
    const first = await deploy("v1");
    expect(first.promoted).toBe(true);
    // A runtime without functions/ runs the current deployment, and follows it.
    const rt = await createRuntime({ config: e.config(), logger: silentLogger });
    await rt.start();
    try {
      const client = await e.client();
      await client.start("order", "o-9", { id: "p-deploy-old" });
      const waiting = await waitForState(client, "p-deploy-old", (s) => s.steps.signal_go !== undefined);
      expect(waiting.bundle).toBe(first.version);

      // The unpatched change is reported: the running workflow passed the point where it adds a call.
      const bad = await deploy("unpatched", { checkOnly: true });
      expect(bad.compatible).toEqual([]);
      expect(bad.diverging).toEqual([
        expect.objectContaining({ workflowId: "p-deploy-old", version: first.version, message: expect.stringMatching(/diverged at step "signal_go".*activity audit/) }),
      ]);

      const check = await deploy("v2", { checkOnly: true });
      expect(check).toMatchObject({ promoted: false, compatible: ["p-deploy-old"], diverging: [] });
      const second = await deploy("v2");
      expect(second).toMatchObject({ promoted: true, compatible: ["p-deploy-old"], diverging: [] });
      expect((await client.describe("p-deploy-old")).bundle).toBe(second.version);

      await client.signal("p-deploy-old", "go", "shipped");
      const old = await client.waitForEnd("p-deploy-old", signal());
      expect(old.status).toBe("completed");
      expect(old.result).toEqual({ a: "s1:o-9", audited: null, go: "shipped", receipt: "receipt shipped" });
      expect(kinds(old.steps)).toEqual(["step1:activity", "signal_go:signal", "patch_add-receipt:marker(add-receipt)", "receipt:activity"]);

      await client.start("order", "o-10", { id: "p-deploy-new" });
      const fresh = await waitForState(client, "p-deploy-new", (s) => s.steps.signal_go !== undefined);
      expect(fresh.bundle).toBe(second.version);
      expect(kinds(fresh.steps)).toEqual(["step1:activity", "patch_add-audit:marker(add-audit)", "audit:activity", "signal_go:signal"]);
      // Going back to v1 would strand it: the check says so.
      const back = await deploy("v1", { checkOnly: true });
      expect(back.diverging).toEqual([expect.objectContaining({ workflowId: "p-deploy-new", message: expect.stringContaining('patch marker "add-audit"') })]);
      await client.signal("p-deploy-new", "go", "now");
      expect((await client.waitForEnd("p-deploy-new", signal())).result).toEqual({ a: "s1:o-10", audited: "audited s1:o-10", go: "now", receipt: "receipt now" });
    } finally {
      await rt.stop("test end");
    }
  });
});

describe("env.stepsOf", () => {
  it("lists a marker step with its patch id", async () => {
    const env = await createTestEnv({ workflows: { order: v2 }, activities });
    try {
      await env.client.start("order", "o-11", { id: "p-env-1" });
      await env.client.signal("p-env-1", "go", "x");
      await env.client.waitForEnd("p-env-1", signal());
      const steps = await env.stepsOf("p-env-1");
      expect(steps.map(({ name, kind, patch, status, attempts }) => ({ name, kind, patch, status, attempts })).slice(0, 2)).toEqual([
        { name: "step1", kind: "activity", patch: undefined, status: "completed", attempts: 1 },
        { name: "patch_add-audit", kind: "marker", patch: "add-audit", status: "completed", attempts: 0 },
      ]);
    } finally {
      await env.close();
    }
  });
});
