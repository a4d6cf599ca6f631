/** Workflow code is bundled with esbuild and runs in a deterministic node:vm sandbox. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildFunctions } from "../runtime/bundle/build.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { activate, WorkflowExecution } from "../runtime/journal/execution.js";
import { BundleError } from "../runtime/errors.js";
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
  const execution = new WorkflowExecution({ workflowId: id, workflow, fn: def.fn, input: null, realm: def.realm, logger: silentLogger });
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
