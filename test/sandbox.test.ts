/** Workflow code is bundled with esbuild and runs in a deterministic node:vm sandbox. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildFunctions } from "../runtime/bundle/build.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { bindWorkflow } from "../runtime/definitions.js";
import { activate, inputHash, WorkflowExecution } from "../runtime/journal/execution.js";
import { replayWorkflow } from "../runtime/journal/replay.js";
import { BundleError, DeterminismViolationError, NonDeterminismError } from "../runtime/errors.js";
import type { WorkflowState } from "../runtime/state.js";
import { silentLogger } from "../runtime/logger.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function functionsDir(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "jetflow-sandbox-"));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, "functions", path, ".."), { recursive: true });
    writeFileSync(join(root, "functions", path), text);
  }
  return join(root, "functions");
}

async function load(files: Record<string, string>) {
  const dir = functionsDir(files);
  const bundle = await buildFunctions(dir);
  return loadBundle(bundle, { logger: silentLogger, cacheDir: join(dir, "..", ".wf") });
}

async function runOnce(registry: Awaited<ReturnType<typeof load>>, workflow: string, at: number, id = "wf-1") {
  const def = registry.workflows.get(workflow)!;
  const execution = new WorkflowExecution({ workflowId: id, workflow, ...bindWorkflow(def, id), input: null, logger: silentLogger });
  await activate(execution, at, () => execution.begin());
  return execution;
}

const ACTIVITY = `export async function noop() { return 1; }\n`;

describe("workflow bundle", () => {
  it("refuses Node's I/O modules in workflow code, naming the file and line", async () => {
    const dir = functionsDir({
      "activities/a.ts": ACTIVITY,
      "workflows/bad.ts": `import { readFileSync } from "node:fs";\nexport async function bad() { return readFileSync("/etc/hostname", "utf8"); }\n`,
    });
    const error = await buildFunctions(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BundleError);
    expect((error as BundleError).message).toMatch(/workflows\/bad\.ts:1:\d+/);
    expect((error as BundleError).message).toContain('cannot import "node:fs"');
    expect((error as BundleError).message).toContain("activity");
  });

  it("reports a syntax error with file and line", async () => {
    const dir = functionsDir({ "activities/a.ts": ACTIVITY, "workflows/broken.ts": `export async function broken() {\n  return (1 + ;\n}\n` });
    const error = (await buildFunctions(dir).catch((e: unknown) => e)) as BundleError;
    expect(error).toBeInstanceOf(BundleError);
    expect(error.message).toMatch(/workflows\/broken\.ts:2:\d+/);
  });

  it("lets activities use Node's modules", async () => {
    const registry = await load({
      "activities/io.ts": `import { hostname } from "node:os";\nexport async function host() { return hostname(); }\n`,
      "workflows/w.ts": `export async function w(ctx: any) { return ctx.activity("host"); }\n`,
    });
    expect([...registry.activities.keys()]).toEqual(["host"]);
    expect(typeof (await registry.activities.get("host")!(null, {} as never))).toBe("string");
  });
});

describe("deterministic sandbox", () => {
  const files = {
    "activities/a.ts": ACTIVITY,
    "workflows/clock.ts": [
      `export async function clock() { return { now: Date.now(), date: new Date().getTime(), random: Math.random(), again: Math.random() }; }`,
      `export async function timers() { setTimeout(() => {}, 10); return "unreachable"; }`,
      `export async function fetcher() { return await fetch("http://127.0.0.1:1/"); }`,
    ].join("\n"),
  };

  it("Date and Math.random answer for the activation and repeat on replay", async () => {
    const registry = await load(files);
    const first = await runOnce(registry, "clock", 1_700_000_000_000);
    const second = await runOnce(registry, "clock", 1_700_000_000_000);
    expect(first.outcome).toMatchObject({ ok: true });
    const value = (first.outcome as { value: { now: number; date: number; random: number; again: number } }).value;
    expect(value.now).toBe(1_700_000_000_000);
    expect(value.date).toBe(1_700_000_000_000);
    expect(value.random).not.toBe(value.again);
    expect(second.outcome).toEqual(first.outcome);
    const other = await runOnce(registry, "clock", 1_700_000_000_000, "wf-2");
    expect((other.outcome as { value: { random: number } }).value.random).not.toBe(value.random);
  });

  it("timers and fetch fail the workflow with a message that says what to use instead", async () => {
    const registry = await load(files);
    const timers = await runOnce(registry, "timers", 1);
    expect(timers.outcome).toMatchObject({ ok: false, error: { message: expect.stringContaining("setTimeout() is not allowed in workflow code") } });
    expect((timers.outcome as { error: { message: string } }).error.message).toContain("ctx.sleep");
    const fetcher = await runOnce(registry, "fetcher", 1);
    expect((fetcher.outcome as { error: { message: string } }).error.message).toContain("fetch() is not allowed");
  });
});

describe("module state and the clock outside an activation", () => {
  const files = {
    "activities/a.ts": ACTIVITY,
    "workflows/state.ts": [
      `let counter = 0;`,
      `const loadedAt = Date.now();`,
      `const seed = Math.random();`,
      `export async function count() { counter += 1; return counter; }`,
      `export async function stamp() { return { loadedAt, seed }; }`,
      `export async function year() {`,
      `  const format = new Intl.DateTimeFormat("en-US", { timeZone: "UTC", year: "numeric" });`,
      `  return { format: format.format(), parts: format.formatToParts().find((p) => p.type === "year")!.value, given: format.format(Date.UTC(2001, 5)) };`,
      `}`,
      `export async function clock() { return Date.now(); }`,
      `export async function dice() { return Math.random(); }`,
      `export async function call(ctx: any, input: unknown) { return ctx.activity("noop", input); }`,
    ].join("\n"),
  };

  it("each execution has its own module-level variables: the same id runs the same way twice, another id does not see it", async () => {
    const registry = await load(files);
    const runs = [await runOnce(registry, "count", 1, "same"), await runOnce(registry, "count", 1, "same"), await runOnce(registry, "count", 1, "other")];
    expect(runs.map((r) => r.outcome)).toEqual([{ ok: true, value: 1 }, { ok: true, value: 1 }, { ok: true, value: 1 }]);
  });

  it("top-level Date.now() and Math.random() read the execution's first activation, live and on replay alike", async () => {
    const registry = await load(files);
    const live = await runOnce(registry, "stamp", 1_600_000_000_000, "s-1");
    const replayed = await runOnce(registry, "stamp", 1_600_000_000_000, "s-1");
    expect((live.outcome as { value: { loadedAt: number } }).value.loadedAt).toBe(1_600_000_000_000);
    expect(replayed.outcome).toEqual(live.outcome);
  });

  it("Intl.DateTimeFormat#format() and formatToParts() without a date use the activation's time", async () => {
    const registry = await load(files);
    const run = await runOnce(registry, "year", Date.UTC(1999, 0, 2), "y-1");
    expect(run.outcome).toEqual({ ok: true, value: { format: "1999", parts: "1999", given: "2001" } });
  });

  it("Date.now() and Math.random() outside an activation are refused with WF_SANDBOX_CLOCK", async () => {
    const registry = await load(files);
    for (const name of ["clock", "dice"]) {
      const error = await (registry.workflows.get(name)!.fn as () => Promise<unknown>)().catch((err: unknown) => err);
      expect(error).toBeInstanceOf(DeterminismViolationError);
      expect(error).toMatchObject({ code: "WF_SANDBOX_CLOCK", message: expect.stringContaining("outside a workflow activation") });
    }
  });

  it("an activity called with another input on replay is a NonDeterminismError naming the step; a step recorded without a hash still replays", async () => {
    const registry = await load(files);
    const def = registry.workflows.get("call")!;
    const live = new WorkflowExecution({ workflowId: "c-1", workflow: "call", ...bindWorkflow(def, "c-1"), input: { n: 1 }, logger: silentLogger });
    await activate(live, 1, () => live.begin());
    const [command] = live.takeIssued();
    expect(command).toMatchObject({ kind: "activity", name: "noop", inputHash: inputHash(JSON.stringify({ n: 1 })) });
    const at = "2026-01-01T00:00:00.000Z";
    const state = (input: unknown, hash: string | undefined): WorkflowState => ({
      v: 2, id: "c-1", workflow: "call", status: "running", input, createdAt: at, updatedAt: at, bundle: registry.version, kind: "code", journal: [],
      steps: { noop: { seq: 0, kind: "activity", activity: "noop", status: "scheduled", attempt: 1, input: { n: 1 }, ...(hash ? { inputHash: hash } : {}), scheduledAt: at } },
    });
    const options = { ...bindWorkflow(def, "c-1"), logger: silentLogger };
    await replayWorkflow(state({ n: 1 }, command!.kind === "activity" ? command!.inputHash : undefined), options);
    const error = await replayWorkflow(state({ n: 2 }, (command as { inputHash: string }).inputHash), options).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect((error as Error).message).toMatch(/step "noop".*input \{"n":1\}.*input \{"n":2\}/);
    await replayWorkflow(state({ n: 2 }, undefined), options); // an old journal entry: no hash, no check
  });
});
