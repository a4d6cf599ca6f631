/**
 * Code that arrives during a deploy (issue 11, item 9), with in-process runtimes on a real
 * nats-server: a start for a workflow type no runtime has yet is retried and then dead-lettered
 * without a terminal state, so the same id runs once the code is deployed; and a runtime that
 * boots with an older copy of functions/ does not move workflows back to it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, type Runtime, type WorkflowClient } from "../runtime/index.js";
import type { Logger, LogMeta } from "../runtime/logger.js";
import { UNKNOWN_START_DELIVERIES } from "../runtime/orchestrator/unknown-start.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

let nats: TestNats;
const dirs: string[] = [];
const runtimes: Runtime[] = [];
const clients: WorkflowClient[] = [];
beforeAll(async () => {
  nats = await startNatsServer();
});
afterEach(async () => {
  await Promise.allSettled(runtimes.splice(0).map((rt) => rt.stop("test end")));
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await nats?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const ACTIVITIES = `export async function greet(name: string) { return "hello " + name; }\n`;
const HELLO = `export async function hello(ctx: any, name: string) { return ctx.activities.greet(name); }\n`;
const ADDED = `export async function added(ctx: any, name: string) { return (await ctx.activities.greet(name)) + "!"; }\n`;

/** A project directory with functions/: v1 has `hello`, v2 adds `added`. */
function project(version: 1 | 2): string {
  const dir = mkdtempSync(join(tmpdir(), `jetflow-boot-v${version}-`));
  dirs.push(dir);
  mkdirSync(join(dir, "functions", "activities"), { recursive: true });
  mkdirSync(join(dir, "functions", "workflows"), { recursive: true });
  writeFileSync(join(dir, "functions", "activities", "greet.ts"), ACTIVITIES);
  writeFileSync(join(dir, "functions", "workflows", "hello.ts"), HELLO);
  if (version === 2) writeFileSync(join(dir, "functions", "workflows", "added.ts"), ADDED);
  return dir;
}

interface Line { level: string; message: string; meta: LogMeta }
function recordingLogger(lines: Line[], base: LogMeta = {}): Logger {
  const at = (level: string) => (message: string, meta?: LogMeta) => void lines.push({ level, message, meta: { ...base, ...meta } });
  return { debug: () => undefined, info: at("info"), warn: at("warn"), error: at("error"), child: (meta) => recordingLogger(lines, { ...base, ...meta }) };
}

const configFor = (dir: string, namespace: string) =>
  loadConfig({ env: {}, cwd: dir, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "warn" }, worker: { shutdownGrace: "1s" } } });

async function boot(dir: string, namespace: string, extra: { promoteLocal?: boolean; lines?: Line[] } = {}): Promise<Runtime> {
  const rt = await createRuntime({
    config: configFor(dir, namespace),
    code: "local",
    ...(extra.promoteLocal ? { promoteLocal: true } : {}),
    ...(extra.lines ? { logger: recordingLogger(extra.lines) } : {}),
  });
  runtimes.push(rt);
  await rt.start();
  return rt;
}

async function clientFor(dir: string, namespace: string): Promise<WorkflowClient> {
  const c = await createClient({ config: configFor(dir, namespace) });
  clients.push(c);
  return c;
}

describe("a start for a workflow type not deployed yet", () => {
  it("is retried, then dead-lettered with no state written, and the same id runs once the code that has it is deployed", async () => {
    const ns = "boot_unknown";
    const v1 = project(1);
    const lines: Line[] = [];
    await boot(v1, ns, { lines });
    const c = await clientFor(v1, ns);
    await c.start("added" as never, "ada" as never, { id: "late-1" });
    const dead = await waitFor(
      "the start's dead letter",
      () => lines.find((l) => l.message.startsWith("dead letter (unknown_workflow)") && l.meta.workflowId === "late-1"),
      20_000,
    );
    expect(dead.message).toContain(`refused after ${UNKNOWN_START_DELIVERIES} deliveries`);
    expect(lines.filter((l) => l.message.includes('unknown workflow type "added"') && l.message.includes("retrying"))).toHaveLength(UNKNOWN_START_DELIVERIES - 1);
    // No terminal state: the id is still free.
    expect(await c.topology.states.get("late-1")).toBeNull();

    // The code that has the type is deployed (by a runtime booting with it); the same id now runs.
    await boot(project(2), ns);
    expect(await c.start("added" as never, "ada" as never, { id: "late-1" }).then((h) => h.result({ signal: AbortSignal.timeout(20_000) }))).toBe("hello ada!");
  });
});

describe("booting with a copy of functions/ that a later deployment replaced", () => {
  it("runs the current deployment and says so, instead of moving workflows back; --promote-local deploys it", async () => {
    const ns = "boot_older";
    const v1 = project(1);
    const v2 = project(2);
    const first = await boot(v1, ns);
    const v1Version = first.registry.version;
    await first.stop("test");
    runtimes.splice(runtimes.indexOf(first), 1);
    const second = await boot(v2, ns);
    const v2Version = second.registry.version;
    expect(v2Version).not.toBe(v1Version);
    await second.stop("test");
    runtimes.splice(runtimes.indexOf(second), 1);

    // The old copy restarts: v2 stays current, and this runtime runs it.
    const lines: Line[] = [];
    const restarted = await boot(v1, ns, { lines });
    expect((await restarted.deployments!.current())!.deployment.version).toBe(v2Version);
    expect(restarted.registry.version).toBe(v2Version);
    const warning = lines.find((l) => l.level === "warn" && l.message.includes("not deploying it over the newer code"));
    expect(warning?.message).toContain(`functions/ holds code ${v1Version}`);
    expect(warning?.message).toContain("--promote-local");
    const c = await clientFor(v1, ns);
    expect(await c.start("added" as never, "bo" as never, { id: "on-v2" }).then((h) => h.result({ signal: AbortSignal.timeout(20_000) }))).toBe("hello bo!");
    await restarted.stop("test");
    runtimes.splice(runtimes.indexOf(restarted), 1);

    // The operator's choice: deploy the local copy anyway.
    const forced = await boot(v1, ns, { promoteLocal: true });
    expect((await forced.deployments!.current())!.deployment.version).toBe(v1Version);
  });
});
