// Crash tests: runtimes in child processes (test/fixtures/runtime-process.ts) are SIGKILLed,
// SIGTERMed, or lose their NATS server, and the workflows they were running must still complete
// exactly as the journal says. One real nats-server for the file; every test has its own namespace
// and marker directory.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient, loadConfig, type WorkflowClient, type WorkflowState } from "../runtime/index.js";
import { MARKER_FILES } from "./fixtures/crash-functions.js";
import type { RuntimeProcessOptions } from "./fixtures/runtime-process.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { onLines, sleep, waitFor } from "./helpers/wait.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..");
const fixture = join(here, "fixtures", "runtime-process.ts");
const READY_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Child runtimes

interface ChildRuntime {
  pid: number;
  name: string;
  /** stdout and stderr lines, for diagnostics. */
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

const children = new Set<ChildRuntime>();
const spawned = new Set<ChildProcess>();

// A crashed vitest worker must not leave runtimes behind: SIGKILL ours (and only ours) on exit.
process.on("exit", () => {
  for (const child of spawned) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
});

async function spawnRuntime(name: string, options: RuntimeProcessOptions): Promise<ChildRuntime> {
  const proc = spawn(process.execPath, ["--import", "tsx", fixture, JSON.stringify(options)], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env },
  });
  if (proc.pid === undefined) throw new Error(`could not spawn runtime ${name}`);
  spawned.add(proc);
  const output: string[] = [];
  let exited = false;
  const exitedPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) => {
    proc.once("exit", (code, signal) => {
      exited = true;
      spawned.delete(proc);
      output.push(`(exited: code ${String(code)}, signal ${String(signal)})`);
      resolvePromise({ code, signal });
    });
  });
  const child: ChildRuntime = { pid: proc.pid, name, output, exited: exitedPromise, hasExited: () => exited };
  children.add(child);

  let ready: () => void = () => undefined;
  const readyPromise = new Promise<void>((resolvePromise) => (ready = resolvePromise));
  const collect = (stream: NodeJS.ReadableStream, label: string) =>
    onLines(stream, (line) => {
      output.push(`${label} ${line}`);
      if (label === "out" && line.trim() === "READY") ready();
    });
  collect(proc.stdout!, "out");
  collect(proc.stderr!, "err");

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    readyPromise.then(() => "ready" as const),
    exitedPromise.then(() => "exited" as const),
    new Promise<"timeout">((resolvePromise) => (timer = setTimeout(() => resolvePromise("timeout"), READY_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (outcome !== "ready") {
    if (outcome === "timeout") await killRuntime(child);
    throw new Error(`runtime ${name} (pid ${child.pid}) did not print READY (${outcome}):\n${output.slice(-40).join("\n")}`);
  }
  return child;
}

/** SIGKILL by PID (a child spawned here), and wait until it is gone. */
async function killRuntime(child: ChildRuntime): Promise<void> {
  if (!child.hasExited()) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  await child.exited;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Polling and evidence



interface MarkerLine {
  workflowId: string;
  attempt: number;
  pid: number;
  at: number;
  event?: string;
}

function markerLines(dir: string, file: string): MarkerLine[] {
  const path = join(dir, file);
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((line) => {
      const [workflowId, attempt, pid, at, event] = line.split(" ");
      return { workflowId: workflowId!, attempt: Number(attempt), pid: Number(pid), at: Number(at), ...(event ? { event } : {}) };
    });
}

/** Every workflow in a terminal state (tolerates NATS being down meanwhile); returns the states. */
async function waitForTerminal(client: WorkflowClient, ids: string[], timeoutMs: number): Promise<Map<string, WorkflowState>> {
  const done = new Map<string, WorkflowState>();
  await waitFor(
    `${ids.length} workflow(s) to finish`,
    async () => {
      for (const id of ids) {
        if (done.has(id)) continue;
        const state = await client.describe(id).catch(() => undefined);
        if (state && state.status !== "running") done.set(id, state);
      }
      return done.size === ids.length ? true : undefined;
    },
    timeoutMs,
    150,
  ).catch(async (err: Error) => {
    const pending = ids.filter((id) => !done.has(id));
    const details = await Promise.all(
      pending.slice(0, 5).map(async (id) => {
        const state = await client.describe(id).catch((e: Error) => e.message);
        if (typeof state === "string") return `${id}: ${state}`;
        const steps = Object.entries(state.steps).map(([name, s]) => `${name}=${s.status}#${s.attempt}`);
        return `${id}: ${state.status} [${steps.join(", ")}] journal ${JSON.stringify(state.journal)}`;
      }),
    );
    throw new Error(`${err.message}; still running: ${pending.length}\n${details.join("\n")}`);
  });
  return done;
}

function expectCleanJournal(state: WorkflowState, expectedSteps: string[]): void {
  expect(state.status, `${state.id}: ${JSON.stringify(state.error)}`).toBe("completed");
  // One record per step in the state, and each step delivered to the code exactly once.
  expect(new Set(state.journal).size, `${state.id} journal ${JSON.stringify(state.journal)}`).toBe(state.journal.length);
  expect(state.journal).toEqual(expectedSteps);
  expect(Object.keys(state.steps).sort()).toEqual([...expectedSteps].sort());
  for (const name of expectedSteps) expect(state.steps[name]!.status, `${state.id} step ${name}`).toBe("completed");
}

// ---------------------------------------------------------------------------------------------
// Suite

let nats: TestNats;

beforeAll(async () => {
  nats = await startNatsServer();
});

afterAll(async () => {
  await nats?.stop();
});

describe("crash recovery (child-process runtimes)", () => {
  let markerDir: string;
  let namespace: string;
  let client: WorkflowClient | undefined;

  function setup(label: string): { markerDir: string; namespace: string } {
    namespace = `crash_${label}_${randomBytes(3).toString("hex")}`;
    markerDir = mkdtempSync(join(tmpdir(), `jetflow-crash-${label}-`));
    return { markerDir, namespace };
  }

  function runtimeOptions(overrides: Partial<RuntimeProcessOptions> = {}): RuntimeProcessOptions {
    return { natsUrl: nats.url, namespace, markerDir, workerAckWait: "2s", orchestratorAckWait: "2s", slots: 16, logLevel: (process.env.CRASH_LOG_LEVEL as RuntimeProcessOptions["logLevel"]) ?? "warn", ...overrides };
  }

  async function openClient(): Promise<WorkflowClient> {
    const config = loadConfig({ env: {}, cwd: markerDir, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "error" } } });
    client = await createClient({ config });
    return client;
  }

  afterEach(async (ctx) => {
    // CRASH_DUMP=1 prints the children's logs and markers after every test, not only failed ones.
    const failed = ctx.task.result?.state === "fail" || process.env.CRASH_DUMP === "1";
    const leftovers = [...children];
    children.clear();
    await Promise.all(leftovers.map((child) => killRuntime(child)));
    if (failed) {
      for (const child of leftovers) console.error(`--- runtime ${child.name} (pid ${child.pid}), last lines:\n${child.output.slice(-60).join("\n")}`);
    }
    await client?.close().catch(() => undefined);
    client = undefined;
    if (failed && markerDir) {
      for (const file of Object.values(MARKER_FILES)) {
        const path = join(markerDir, file);
        if (existsSync(path)) console.error(`--- ${file}:\n${readFileSync(path, "utf8")}`);
      }
    }
    if (markerDir) rmSync(markerDir, { recursive: true, force: true });
  });

  it("a runtime SIGKILLed mid-activity: another one runs the activity again and the workflow completes", async () => {
    const t0 = Date.now();
    setup("a");
    const a = await spawnRuntime("A", runtimeOptions());
    const wf = await openClient();
    await wf.start("crashy", { slowMs: 1_500 }, { id: "kill-mid-activity" });

    await waitFor("slow_step to start on A", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === a.pid), 15_000, 20);
    await killRuntime(a);
    const b = await spawnRuntime("B", runtimeOptions());

    const state = (await waitForTerminal(wf, ["kill-mid-activity"], 30_000)).get("kill-mid-activity")!;
    expectCleanJournal(state, ["slow_step", "fast_step"]);
    const starts = markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.workflowId === "kill-mid-activity");
    expect(starts.map((l) => l.pid)).toEqual([a.pid, b.pid]); // at least once: twice here
    expect(starts.every((l) => l.attempt === 1)).toBe(true); // a lost runtime is not a failed attempt
    expect(markerLines(markerDir, MARKER_FILES.slowDone).map((l) => l.pid)).toEqual([b.pid]);
    expect(state.steps.slow_step!.attempt).toBe(1);
    expect(state.steps.slow_step!.worker).toBe(`crash-${b.pid}`);
    expect(state.result).toEqual({ slow: { pid: b.pid }, fast: "fast" });
    console.log(`[crash a] kill mid-activity → completed in ${Date.now() - t0} ms`);
  });

  it("SIGKILLed between a start's run entry and its state, and between a terminal state and its end entry: the index agrees with the states after a restart", async () => {
    setup("index");
    const wf = await openClient();
    // A 10 s ack wait: A's start must not be redelivered to B (which would die at its own crash point
    // on that workflow, maybe before it is even ready) before B has run the instant workflow.
    const ackWait = { orchestratorAckWait: "10s" };
    // 1. Killed after the run entry, before the state: the redelivered start creates it once.
    const a = await spawnRuntime("A", runtimeOptions({ crashPoint: "after-run-entry-before-state", ...ackWait }));
    await wf.start("crashy", { slowMs: 10 }, { id: "killed-before-state" });
    await a.exited;
    // Died right between the two: the run entry is stored, the state is not.
    expect(await wf.count({ status: "running" })).toBe(1);
    await expect(wf.describe("killed-before-state")).rejects.toThrow(/no workflow with id killed-before-state/);
    // 2. Killed after an instant workflow's terminal state, before its end entry.
    const b = await spawnRuntime("B", runtimeOptions({ crashPoint: "after-state-write-before-dispatch", ...ackWait }));
    await wf.start("instant", { value: "v" }, { id: "killed-before-end-entry" });
    await b.exited;
    expect((await wf.describe("killed-before-end-entry")).status).toBe("completed");
    expect(await wf.count({ status: "completed" })).toBe(0); // no end entry yet: the runtime died first
    // A runtime without crash points repairs both through the redelivered starts.
    await spawnRuntime("C", runtimeOptions(ackWait));
    const ids = ["killed-before-state", "killed-before-end-entry"];
    await waitForTerminal(wf, ids, 30_000);
    await waitFor("the index to agree", async () => (await wf.count({ status: "completed" })) === 2 && (await wf.count({ status: "running" })) === 0, 15_000);
    const listed = (await wf.listPage()).workflows.map((w) => [w.id, w.status]).sort();
    expect(listed).toEqual([
      ["killed-before-end-entry", "completed"],
      ["killed-before-state", "completed"],
    ]);
    const crashes = readFileSync(join(markerDir, "crashes.log"), "utf8").trim().split("\n").map((l) => l.split(" ")[0]);
    expect(crashes).toEqual(["after-run-entry-before-state", "after-state-write-before-dispatch"]);
  });

  it("a runtime SIGKILLed in a continued step: the lease is redelivered, the step's task published, and no finished step runs again", async () => {
    setup("cont");
    const a = await spawnRuntime("A", runtimeOptions());
    const wf = await openClient();
    await wf.start("continued_crashy", { slowMs: 1_500 }, { id: "kill-continued" });

    await waitFor("slow_step to start on A", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === a.pid), 15_000, 20);
    // slow_step ran as a continuation: its task was never published (fast_step's is its lease).
    expect((await wf.topology.jsm.streams.info(wf.topology.names.tasksStream)).state.last_seq).toBe(1);
    await killRuntime(a);
    const b = await spawnRuntime("B", runtimeOptions());

    const state = (await waitForTerminal(wf, ["kill-continued"], 30_000)).get("kill-continued")!;
    expectCleanJournal(state, ["fast_step", "slow_step"]);
    expect(state.result).toEqual({ slow: { pid: b.pid }, fast: "fast" });
    expect(markerLines(markerDir, MARKER_FILES.fast).filter((l) => l.workflowId === "kill-continued").map((l) => l.pid)).toEqual([a.pid]);
    expect(markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.workflowId === "kill-continued").map((l) => l.pid)).toEqual([a.pid, b.pid]);
  });

  // Failover with the default settings (docs/ARCHITECTURE.md "Failover"): the work a SIGKILLed
  // runtime held is taken over within 5 s. With the ack waits of 30 s these tests used to have, it
  // waited 30 s; they fail then.
  const DEFAULTS = { workerAckWait: "default", orchestratorAckWait: "default" } as const;
  const FAILOVER_MS = 5_000;

  /**
   * `workflow` (crashy or continued_crashy) runs slow_step (10 s) on A; B starts; A is SIGKILLed
   * mid-step. B must run slow_step within FAILOVER_MS of the kill, once (B's own 10 s run, longer
   * than 2 ack waits, is kept alive), and the workflow completes with `journal`.
   */
  async function slowStepTakenOver(label: string, workflow: "crashy" | "continued_crashy", journal: string[]): Promise<number> {
    setup(label);
    const a = await spawnRuntime("A", runtimeOptions(DEFAULTS));
    const wf = await openClient();
    await wf.start(workflow, { slowMs: 10_000 }, { id: label });
    await waitFor("slow_step to start on A", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === a.pid), 15_000, 20);
    const b = await spawnRuntime("B", runtimeOptions(DEFAULTS));
    const killedAt = Date.now();
    await killRuntime(a);
    const onB = await waitFor("slow_step to start again on B", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === b.pid), 15_000, 20);
    expect(onB.at - killedAt, `taken over ${onB.at - killedAt} ms after the kill`).toBeLessThan(FAILOVER_MS);
    const state = (await waitForTerminal(wf, [label], 30_000)).get(label)!;
    expectCleanJournal(state, journal);
    expect(markerLines(markerDir, MARKER_FILES.slowStarted).map((l) => l.pid)).toEqual([a.pid, b.pid]);
    return onB.at - killedAt;
  }

  it("failover, default settings: an activity whose runtime is SIGKILLed runs again on another runtime within 5 s, and runs there once however long it takes", async () => {
    const ms = await slowStepTakenOver("fo-task", "crashy", ["slow_step", "fast_step"]);
    console.log(`[crash fo-task] activity taken over ${ms} ms after the kill`);
  });

  it("failover, default settings: an event whose runtime is SIGKILLed while applying it is applied by another runtime within 5 s", async () => {
    setup("fo-event");
    await spawnRuntime("B", runtimeOptions(DEFAULTS));
    // A dies at its first state write, before it publishes what that write scheduled and acks the event.
    const a = await spawnRuntime("A", runtimeOptions({ ...DEFAULTS, crashPoint: "after-state-write-before-dispatch" }));
    const wf = await openClient();
    const ids = Array.from({ length: 6 }, (_, i) => `fo-event-${i}`);
    for (const id of ids) await wf.start("crashy", { slowMs: 10 }, { id });
    // B may take some of the events, not all of them: A gets its share of the pulls.
    await Promise.race([a.exited, sleep(20_000).then(() => Promise.reject(new Error("A never reached its crash point")))]);
    const [point, , at] = readFileSync(join(markerDir, "crashes.log"), "utf8").trim().split("\n")[0]!.split(" ");
    expect(point).toBe("after-state-write-before-dispatch");
    const crashedAt = Number(at);
    const states = await waitForTerminal(wf, ids, 30_000);
    for (const id of ids) expectCleanJournal(states.get(id)!, ["slow_step", "fast_step"]);
    const lastEnd = Math.max(...ids.map((id) => Date.parse(states.get(id)!.completedAt!)));
    expect(lastEnd - crashedAt, `the last workflow ended ${lastEnd - crashedAt} ms after the crash`).toBeLessThan(FAILOVER_MS);
    console.log(`[crash fo-event] every workflow ended within ${lastEnd - crashedAt} ms of the crash`);
  });

  it("failover, default settings: a continued step whose runtime is SIGKILLed runs again on another runtime within 5 s (its lease expires)", async () => {
    const ms = await slowStepTakenOver("fo-cont", "continued_crashy", ["fast_step", "slow_step"]);
    console.log(`[crash fo-cont] continued step taken over ${ms} ms after the kill`);
  });

  it("a lease delivered again as a new task (nats-server 2.9 can): its second execution repairs the workflow at once", async () => {
    setup("cont2");
    // A long ack wait: the lease cannot come back by redelivery within this test.
    const a = await spawnRuntime("A", runtimeOptions({ workerAckWait: "60s" }));
    const wf = await openClient();
    await wf.start("continued_crashy", { slowMs: 1_500 }, { id: "lease-twice" });
    await waitFor("slow_step to start on A", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === a.pid), 15_000, 20);
    await killRuntime(a);
    // The server hands fast_step's task (slow_step's lease, still unacked) out again, as a first delivery.
    const { jsm, js, names } = wf.topology;
    const lease = await jsm.streams.getMessage(names.tasksStream, { seq: 1 });
    await js.publish(lease!.subject, lease!.data);
    const b = await spawnRuntime("B", runtimeOptions({ workerAckWait: "60s" }));

    const state = (await waitForTerminal(wf, ["lease-twice"], 30_000)).get("lease-twice")!;
    expectCleanJournal(state, ["fast_step", "slow_step"]);
    expect(markerLines(markerDir, MARKER_FILES.fast).filter((l) => l.workflowId === "lease-twice").map((l) => l.pid)).toEqual([a.pid, b.pid]);
    expect(markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.workflowId === "lease-twice").map((l) => l.pid)).toEqual([a.pid, b.pid]);
  });

  it("a runtime SIGKILLed in a long workflow: another one replays it through its history chunks and runs no finished step again", async () => {
    setup("long");
    const a = await spawnRuntime("A", runtimeOptions());
    const wf = await openClient();
    await wf.start("long_crashy", { slowMs: 1_500 }, { id: "kill-long" });

    await waitFor("slow_step to start on A", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === a.pid), 15_000, 20);
    expect((await wf.topology.states.get("kill-long"))!.json<WorkflowState>().history?.chunks).toBeGreaterThanOrEqual(1);
    await killRuntime(a);
    const b = await spawnRuntime("B", runtimeOptions());

    const state = (await waitForTerminal(wf, ["kill-long"], 30_000)).get("kill-long")!;
    const fastNames = Array.from({ length: 45 }, (_, i) => (i === 0 ? "fast_step" : `fast_step-${i + 1}`));
    expectCleanJournal(state, [...fastNames.slice(0, 40), "slow_step", ...fastNames.slice(40)]);
    expect(state.result).toEqual({ slow: { pid: b.pid }, fast: 45 });
    const fast = markerLines(markerDir, MARKER_FILES.fast).filter((l) => l.workflowId === "kill-long");
    expect(fast.filter((l) => l.pid === a.pid)).toHaveLength(40); // finished before the kill: not run again
    expect(fast.filter((l) => l.pid === b.pid)).toHaveLength(5);
    expect(markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.workflowId === "kill-long").map((l) => l.pid)).toEqual([a.pid, b.pid]);
  });

  for (const point of ["after-run-archived-before-switch", "after-run-switch-before-dispatch"] as const) {
    it(`a runtime SIGKILLed at ${point} (continue-as-new): exactly one new run per switch, nothing lost`, async () => {
      setup(point === "after-run-archived-before-switch" ? "archived" : "switched");
      const wf = await openClient();
      const a = await spawnRuntime("A", runtimeOptions({ crashPoint: point }));
      // Run 1 leaves a child running: the switch owes it its close policy (terminate), through the crash.
      await wf.start("continue_loop", { left: 3, child: `idle-${point}` }, { id: `loop-${point}` });
      await a.exited; // killed at the first switch (run 1 → 2)
      const before = await wf.describe(`loop-${point}`);
      // Archived but not switched: `<id>` still holds run 1, running. Switched: run 2, its task not published.
      expect(before.run ?? 1).toBe(point === "after-run-archived-before-switch" ? 1 : 2);
      expect(before.status).toBe("running");
      await spawnRuntime("B", runtimeOptions());
      const state = (await waitForTerminal(wf, [`loop-${point}`], 30_000)).get(`loop-${point}`)!;
      expect(state).toMatchObject({ status: "completed", run: 3, result: { runs: 3 } });
      const runs = await wf.runs(`loop-${point}`);
      expect(runs.runs.map((r) => [r.run, r.status])).toEqual([
        [2, "continued_as_new"],
        [1, "continued_as_new"],
      ]);
      const [second, first] = await Promise.all([wf.describe(`loop-${point}`, { run: 2 }), wf.describe(`loop-${point}`, { run: 1 })]);
      // One chain of runs: each names the one before, and the one after names it.
      expect(second.previousRunId).toBe(first.runId);
      expect(state.previousRunId).toBe(second.runId);
      expect(first.continuedAsNew?.runId).toBe(second.runId);
      expect(second.continuedAsNew?.runId).toBe(state.runId);
      expect(first.journal).toEqual(["child_idle_child", "fast_step"]);
      for (const run of [second, state]) expect(run.journal).toEqual(["fast_step"]);
      const crashes = readFileSync(join(markerDir, "crashes.log"), "utf8").trim().split("\n").map((l) => l.split(" ")[0]);
      expect(crashes).toEqual([point]);
      const child = (await waitForTerminal(wf, [`idle-${point}`], 15_000)).get(`idle-${point}`)!;
      expect(child).toMatchObject({ status: "terminated", parent: { id: `loop-${point}` } });
      expect(state.closing).toBeUndefined(); // dropped by the write after the switch, once published
    });
  }

  it("a retry backoff pending when the runtime is killed still fires, and not early", async () => {
    const t0 = Date.now();
    setup("b");
    const backoffMs = 3_000;
    const a = await spawnRuntime("A", runtimeOptions());
    const wf = await openClient();
    const id = "retry-after-kill";
    await wf.start("retry_later", { backoffMs }, { id });

    const retrying = await waitFor(
      "attempt 1 to fail (step retrying)",
      async () => {
        const s = await wf.describe(id);
        return s.steps.flaky_step?.status === "retrying" ? s : undefined;
      },
      15_000,
      50,
    );
    expect(retrying.steps.flaky_step!.attempt).toBe(1);
    // Let A's timer service take and park the timer, so the kill leaves it parked on a dead runtime.
    await sleep(300);
    await killRuntime(a);
    const killedAt = Date.now();
    const b = await spawnRuntime("B", runtimeOptions());

    const state = (await waitForTerminal(wf, [id], 30_000)).get(id)!;
    expectCleanJournal(state, ["flaky_step"]);
    expect(state.result).toEqual({ attempt: 2 });
    expect(state.steps.flaky_step!.attempt).toBe(2);

    const lines = markerLines(markerDir, MARKER_FILES.flaky).filter((l) => l.workflowId === id);
    const failed = lines.find((l) => l.attempt === 1 && l.event === "fail");
    const second = lines.find((l) => l.attempt === 2 && l.event === "start");
    expect(failed?.pid).toBe(a.pid);
    expect(second?.pid).toBe(b.pid);
    expect(second!.at - failed!.at).toBeGreaterThanOrEqual(0.8 * backoffMs);
    // The durable timer fires at nextAttemptAt (same machine, same clock), never before it.
    expect(second!.at).toBeGreaterThanOrEqual(Date.parse(retrying.steps.flaky_step!.nextAttemptAt!) - 50);
    expect(lines.filter((l) => l.event === "start")).toHaveLength(2);
    console.log(
      `[crash b] backoff ${backoffMs} ms: attempt 2 started ${second!.at - failed!.at} ms after attempt 1 failed (${second!.at - killedAt} ms after the kill); total ${Date.now() - t0} ms`,
    );
  });

  it("a runtime killed right after 30 starts: two new runtimes complete all, no step completed twice", async () => {
    const t0 = Date.now();
    setup("c");
    const a = await spawnRuntime("A", runtimeOptions());
    const wf = await openClient();
    const ids = Array.from({ length: 30 }, (_, i) => `burst-${i}`);
    await Promise.all(ids.map((id) => wf.start("crashy", { slowMs: 1_500 }, { id })));
    await sleep(300);
    await killRuntime(a);
    const startedOnA = markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.pid === a.pid).length;
    const [b, c] = await Promise.all([spawnRuntime("B", runtimeOptions()), spawnRuntime("C", runtimeOptions())]);

    const states = await waitForTerminal(wf, ids, 45_000);
    for (const id of ids) {
      const state = states.get(id)!;
      expectCleanJournal(state, ["slow_step", "fast_step"]);
      expect(state.steps.slow_step!.attempt, id).toBe(1);
      expect(state.steps.fast_step!.attempt, id).toBe(1);
      expect([`crash-${b.pid}`, `crash-${c.pid}`]).toContain(state.steps.slow_step!.worker);
      expect([b.pid, c.pid]).toContain((state.result as { slow: { pid: number } }).slow.pid);
    }
    // Every workflow's slow_step ran to the end at least once, and only on the survivors.
    const done = markerLines(markerDir, MARKER_FILES.slowDone);
    expect(new Set(done.map((l) => l.workflowId)).size).toBe(ids.length);
    expect(done.every((l) => l.pid === b.pid || l.pid === c.pid)).toBe(true);
    console.log(
      `[crash c] 30 workflows, A killed after 300 ms (${startedOnA} slow_step(s) had started on A), ` +
        `${done.length} slow_step completion(s) on B/C; all completed in ${Date.now() - t0} ms`,
    );
  });

  it("SIGKILLed right after a cancel request is recorded, before its effects are published: another runtime runs the cleanup and the workflow ends cancelled", async () => {
    setup("cancel");
    const a = await spawnRuntime("A", runtimeOptions({ crashPoint: "after-cancel-recorded-before-dispatch" }));
    const wf = await openClient();
    await wf.start("cancellable", null, { id: "kill-after-cancel" });
    await waitFor("slow_step to start on A", () => markerLines(markerDir, MARKER_FILES.slowStarted).find((l) => l.pid === a.pid), 15_000, 20);
    await wf.cancel("kill-after-cancel", "customer left");
    await a.exited;
    // A died between the write and the publish: the request and the cleanup step are recorded, the cleanup's task is not published.
    const recorded = await wf.describe("kill-after-cancel");
    expect(recorded.status).toBe("running");
    expect(recorded.cancelRequested?.reason).toBe("customer left");
    expect(recorded.steps.slow_step!.status).toBe("cancelled");
    expect(recorded.steps.fast_step!.status).toBe("scheduled");
    expect(markerLines(markerDir, MARKER_FILES.fast)).toEqual([]);
    const b = await spawnRuntime("B", runtimeOptions());
    // The cancel event comes back to B unacked: a no-op that re-publishes what the state waits on.
    const state = (await waitForTerminal(wf, ["kill-after-cancel"], 30_000)).get("kill-after-cancel")!;
    expect(state.status).toBe("cancelled");
    expect(state.error).toEqual({ type: "CancelledError", message: "cancelled: customer left" });
    expect(markerLines(markerDir, MARKER_FILES.fast).map((l) => l.pid)).toEqual([b.pid]); // the cleanup ran once, on B
    expect(state.journal).toEqual(["$cancel", "fast_step"]);
    expect(markerLines(markerDir, MARKER_FILES.slowDone)).toEqual([]); // the cancelled step never finished
    expect(readFileSync(join(markerDir, "crashes.log"), "utf8").trim().split("\n").map((l) => l.split(" ")[0])).toEqual(["after-cancel-recorded-before-dispatch"]);
  });

  it("NATS killed and restarted: the runtime reconnects by itself and every workflow completes", async () => {
    const t0 = Date.now();
    setup("d");
    const a = await spawnRuntime("A", runtimeOptions({ workerAckWait: "5s" }));
    const wf = await openClient();
    const ids = Array.from({ length: 10 }, (_, i) => `nats-restart-${i}`);
    await Promise.all(ids.map((id) => wf.start("crashy", { slowMs: 1_500 }, { id })));
    await waitFor("slow_steps to start", () => (markerLines(markerDir, MARKER_FILES.slowStarted).length >= 5 ? true : undefined), 15_000, 20);

    await nats.kill();
    const killedAt = Date.now();
    await sleep(1_000); // activities finish while NATS is away: their completions must wait for it
    await nats.restart();
    const restartedAt = Date.now();

    const states = await waitForTerminal(wf, ids, 45_000);
    for (const id of ids) {
      const state = states.get(id)!;
      expectCleanJournal(state, ["slow_step", "fast_step"]);
      expect((state.result as { slow: { pid: number } }).slow.pid).toBe(a.pid);
    }
    expect(a.hasExited()).toBe(false);
    expect(isAlive(a.pid)).toBe(true);
    console.log(`[crash d] NATS down ${restartedAt - killedAt} ms; all completed ${Date.now() - restartedAt} ms after the restart; total ${Date.now() - t0} ms`);
  });

  it("NATS killed while continued steps run: their runtime records them once NATS is back, without running them again", async () => {
    setup("f");
    // A long ack wait: a lease redelivery cannot be what completes these workflows within the test.
    const a = await spawnRuntime("A", runtimeOptions({ workerAckWait: "60s" }));
    const wf = await openClient();
    const ids = Array.from({ length: 5 }, (_, i) => `nats-continued-${i}`);
    await Promise.all(ids.map((id) => wf.start("continued_crashy", { slowMs: 1_000 }, { id })));
    await waitFor("the continued slow_steps to start", () => (markerLines(markerDir, MARKER_FILES.slowStarted).length >= ids.length ? true : undefined), 15_000, 20);
    await sleep(100);

    await nats.kill();
    await sleep(1_500); // the slow_steps end while NATS is away: recording them fails until it is back
    await nats.restart();

    const states = await waitForTerminal(wf, ids, 45_000);
    for (const id of ids) {
      expectCleanJournal(states.get(id)!, ["fast_step", "slow_step"]);
      expect(markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.workflowId === id).map((l) => l.pid)).toEqual([a.pid]);
    }
    expect(a.hasExited()).toBe(false);
  });

  it("SIGTERM under load: running activities are released at once and finish on another runtime", async () => {
    const t0 = Date.now();
    setup("e");
    const options = runtimeOptions({ workerAckWait: "30s", shutdownGrace: "500ms" });
    const a = await spawnRuntime("A", options);
    const wf = await openClient();
    const ids = Array.from({ length: 5 }, (_, i) => `sigterm-${i}`);
    await Promise.all(ids.map((id) => wf.start("crashy", { slowMs: 2_000 }, { id })));
    await waitFor(
      "every slow_step to start on A",
      () => (new Set(markerLines(markerDir, MARKER_FILES.slowStarted).map((l) => l.workflowId)).size === ids.length ? true : undefined),
      15_000,
      20,
    );

    const termAt = Date.now();
    process.kill(a.pid, "SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([a.exited, new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), 5_000)))]);
    clearTimeout(timer);
    const exitMs = Date.now() - termAt;
    expect(exit, `A did not exit within 5 s of SIGTERM:\n${a.output.slice(-30).join("\n")}`).toEqual({ code: 0, signal: null });

    const b = await spawnRuntime("B", options);
    const states = await waitForTerminal(wf, ids, 25_000);
    const completedMs = Date.now() - termAt;
    expect(completedMs).toBeLessThan(15_000); // far below the 30 s ack wait: the tasks were NAK'd
    for (const id of ids) {
      const state = states.get(id)!;
      expectCleanJournal(state, ["slow_step", "fast_step"]);
      expect(state.steps.slow_step!.attempt, id).toBe(1); // a release is not a failed attempt
      expect((state.result as { slow: { pid: number } }).slow.pid).toBe(b.pid);
    }
    // Each task released once by A and run once by B: none lost to an ack wait, none delivered
    // twice (nats-server 2.9 does both when a task is NAK'd while A's abandoned pull request waits).
    for (const id of ids) {
      const starts = markerLines(markerDir, MARKER_FILES.slowStarted).filter((l) => l.workflowId === id);
      expect(starts.map((l) => l.pid), id).toEqual([a.pid, b.pid]);
    }
    expect(markerLines(markerDir, MARKER_FILES.slowDone).every((l) => l.pid === b.pid)).toBe(true);
    console.log(`[crash e] A exited ${exitMs} ms after SIGTERM; all ${ids.length} completed ${completedMs} ms after SIGTERM; total ${Date.now() - t0} ms`);
  });

  it("SIGKILLed between a parent's child step and the child's start: the child starts once and the parent completes", async () => {
    setup("childstart");
    const wf = await openClient();
    const a = await spawnRuntime("A", runtimeOptions({ crashPoint: "after-child-step-before-child-start" }));
    await wf.start("crash_parent", {}, { id: "parent-a" });
    await a.exited;
    // Died right between the two: the parent records the child as starting, the child has no state.
    const before = await wf.describe("parent-a");
    expect(before.steps["child_crash_child"]).toMatchObject({ kind: "child", status: "waiting", child: { id: "parent-a-child_crash_child", status: "starting" } });
    await expect(wf.describe("parent-a-child_crash_child")).rejects.toThrow(/no workflow with id/);
    await spawnRuntime("B", runtimeOptions());
    const parent = (await waitForTerminal(wf, ["parent-a"], 30_000)).get("parent-a")!;
    expectCleanJournal(parent, ["child_crash_child"]);
    expect(parent.result).toEqual({ child: { fast: "fast" } });
    const child = await wf.describe("parent-a-child_crash_child");
    expectCleanJournal(child, ["fast_step"]);
    expect(child.parent).toMatchObject({ id: "parent-a", step: "child_crash_child" });
    // The child ran once: one execution of its only activity.
    expect(markerLines(markerDir, MARKER_FILES.fast).filter((l) => l.workflowId === "parent-a-child_crash_child")).toHaveLength(1);
    expect(parent.steps["child_crash_child"]!.child!.status).toBe("completed");
  });

  it("SIGKILLed between a child's terminal state and its report to the parent: the parent still hears it, once", async () => {
    setup("childend");
    const wf = await openClient();
    const a = await spawnRuntime("A", runtimeOptions({ crashPoint: "after-child-end-before-parent-event" }));
    await wf.start("crash_parent", {}, { id: "parent-b" });
    await a.exited;
    expect((await wf.describe("parent-b-child_crash_child")).status).toBe("completed");
    expect((await wf.describe("parent-b")).status).toBe("running");
    await spawnRuntime("B", runtimeOptions());
    const parent = (await waitForTerminal(wf, ["parent-b"], 30_000)).get("parent-b")!;
    expectCleanJournal(parent, ["child_crash_child"]);
    expect(parent.result).toEqual({ child: { fast: "fast" } });
    expect(markerLines(markerDir, MARKER_FILES.fast).filter((l) => l.workflowId === "parent-b-child_crash_child")).toHaveLength(1);
    const crashes = readFileSync(join(markerDir, "crashes.log"), "utf8").trim().split("\n").map((l) => l.split(" ")[0]);
    expect(crashes).toEqual(["after-child-end-before-parent-event"]);
  });

  it("NATS killed and restarted while children run: every parent completes with its child's result", async () => {
    setup("childnats");
    const a = await spawnRuntime("A", runtimeOptions({ workerAckWait: "5s" }));
    const wf = await openClient();
    const ids = Array.from({ length: 5 }, (_, i) => `nats-parent-${i}`);
    await Promise.all(ids.map((id) => wf.start("crash_parent", { slowMs: 1_500 }, { id })));
    await waitFor("the children's slow_steps to start", () => (markerLines(markerDir, MARKER_FILES.slowStarted).length >= 3 ? true : undefined), 15_000, 20);
    await nats.kill();
    await sleep(1_000);
    await nats.restart();
    const states = await waitForTerminal(wf, ids, 45_000);
    for (const id of ids) {
      const state = states.get(id)!;
      expectCleanJournal(state, ["child_crash_child"]);
      expect(state.result).toMatchObject({ child: { fast: "fast", slow: { pid: a.pid } } });
    }
    expect(a.hasExited()).toBe(false);
  });
});
