/**
 * Schedules: fire times (pure, DST included), validation, and firing against a real nats-server:
 * exactly once per tick with two runtimes while one is SIGKILLed, overlap policies, pause and
 * unpause, catch-up after a full outage (a test clock skips the outage), backfill, trigger, and
 * the `wf schedule` commands.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildFunctions } from "../runtime/bundle/build.js";
import { deployBundle } from "../runtime/bundle/deploy.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { silentLogger } from "../runtime/logger.js";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, type Runtime, type WorkflowClient, type WorkflowContext } from "../runtime/index.js";
import { createTestClock, type TestClock } from "../runtime/testing/index.js";
import { validateWorkflowId } from "../runtime/ids.js";
import { countTicks, dueAt, jitterOf, nextTick, nextTicks, tickWorkflowId } from "../runtime/schedules/fire-times.js";
import { toScheduleSpec, type ScheduleOptions } from "../runtime/schedules/spec.js";
import { newChain, publishTick, writeSchedule } from "../runtime/schedules/store.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { onLines, sleep, waitFor } from "./helpers/wait.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const spec = (options: Omit<ScheduleOptions, "workflow"> & { workflow?: string }) => toScheduleSpec("s", { workflow: "w", ...options });
const iso = (ms: number) => new Date(ms).toISOString();

describe("fire times (pure)", () => {
  it("an interval is aligned on startAt (or the epoch) and bounded by endAt", () => {
    const every = spec({ every: "2s" });
    expect(nextTick(every, Date.parse("2026-01-01T00:00:00.500Z"))).toBe(Date.parse("2026-01-01T00:00:02Z"));
    expect(nextTick(every, Date.parse("2026-01-01T00:00:02Z"))).toBe(Date.parse("2026-01-01T00:00:04Z")); // strictly after
    const bounded = spec({ every: "10m", startAt: "2026-01-01T00:03:00Z", endAt: "2026-01-01T00:30:00Z" });
    expect(nextTicks(bounded, Date.parse("2025-12-31T00:00:00Z"), 10).map(iso)).toEqual(["2026-01-01T00:03:00.000Z", "2026-01-01T00:13:00.000Z", "2026-01-01T00:23:00.000Z"]);
    expect(countTicks(bounded, Date.parse("2026-01-01T00:00:00Z"), Date.parse("2026-01-02T00:00:00Z"))).toBe(3);
  });

  it("a time-zone cron keeps local time across DST: a skipped local time fires once after the jump, a repeated one once", () => {
    const daily = spec({ cron: "30 2 * * *", timezone: "Europe/Paris" });
    // Spring forward (2027-03-28: 02:00 → 03:00 local): 02:30 does not exist that day.
    expect(nextTicks(daily, Date.parse("2027-03-26T12:00:00Z"), 4).map(iso)).toEqual([
      "2027-03-27T01:30:00.000Z", // 02:30 CET
      "2027-03-28T01:00:00.000Z", // 03:00 CEST, the first instant after the missing 02:30
      "2027-03-29T00:30:00.000Z", // 02:30 CEST
      "2027-03-30T00:30:00.000Z",
    ]);
    // Fall back (2027-10-31: 03:00 → 02:00 local): 02:30 happens twice and fires once.
    expect(nextTicks(daily, Date.parse("2027-10-29T12:00:00Z"), 3).map(iso)).toEqual(["2027-10-30T00:30:00.000Z", "2027-10-31T00:30:00.000Z", "2027-11-01T01:30:00.000Z"]);
    // Hourly: the local day has 23 hours in spring and 25 in autumn, one tick per real hour.
    const hourly = spec({ cron: "0 * * * *", timezone: "Europe/Paris" });
    expect(countTicks(hourly, Date.parse("2027-03-27T23:00:00Z"), Date.parse("2027-03-28T21:59:59Z"))).toBe(23);
    expect(countTicks(hourly, Date.parse("2027-10-30T22:00:00Z"), Date.parse("2027-10-31T22:59:59Z"))).toBe(25);
    // The same expression in New York shifts on its own dates.
    expect(nextTick(spec({ cron: "0 9 * * *", timezone: "America/New_York" }), Date.parse("2027-03-14T00:00:00Z"))).toBe(Date.parse("2027-03-14T13:00:00Z"));
  });

  it("a schedule's steps follow a test clock through DST (no wall-clock wait)", () => {
    const clock: TestClock = createTestClock();
    clock.advanceTo(Date.parse("2027-03-27T00:00:00Z"));
    const daily = spec({ cron: "30 2 * * *", timezone: "Europe/Paris" });
    const fired: string[] = [];
    for (let t = nextTick(daily, clock.now()); fired.length < 3 && t !== undefined; t = nextTick(daily, clock.now())) {
      clock.advanceTo(t);
      fired.push(iso(clock.now() - (clock.now() - t)));
    }
    expect(fired).toEqual(["2027-03-27T01:30:00.000Z", "2027-03-28T01:00:00.000Z", "2027-03-29T00:30:00.000Z"]);
  });

  it("jitter is deterministic per schedule and tick, and below the jitter", () => {
    const jittered = toScheduleSpec("report", { workflow: "w", every: "1m", jitter: "30s" });
    const tick = Date.parse("2026-05-01T10:00:00Z");
    expect(jitterOf("report", tick, 30_000)).toBe(jitterOf("report", tick, 30_000));
    const values = Array.from({ length: 50 }, (_, i) => jitterOf("report", tick + i * 60_000, 30_000));
    expect(values.every((v) => v >= 0 && v < 30_000)).toBe(true);
    expect(new Set(values).size).toBeGreaterThan(40);
    expect(dueAt("report", jittered, tick)).toBe(tick + jitterOf("report", tick, 30_000));
  });

  it("tick workflow ids are valid workflow ids in ISO 8601 basic format", () => {
    expect(tickWorkflowId("nightly-report", Date.parse("2026-03-29T09:00:00Z"))).toBe("nightly-report.20260329T090000Z");
    expect(tickWorkflowId("s", Date.parse("2026-03-29T09:00:00.250Z"))).toBe("s.20260329T090000.250Z");
    expect(validateWorkflowId(tickWorkflowId("x".repeat(100), Date.now()))).toBeTruthy();
  });

  it("refuses a bad cron expression or time zone with croner's reason and an example", () => {
    const codeOf = (f: () => unknown) => {
      try {
        f();
        return undefined;
      } catch (err) {
        return err as { code: string; message: string; hint: string };
      }
    };
    const badCron = codeOf(() => spec({ cron: "61 * * * *" }));
    expect(badCron?.code).toBe("WF_INVALID_CRON");
    expect(badCron?.message).toMatch(/Invalid value for minute: 61/);
    expect(badCron?.hint).toMatch(/0 9 \* \* 1-5/);
    const badZone = codeOf(() => spec({ cron: "0 9 * * *", timezone: "Mars/Olympus" }));
    expect(badZone?.code).toBe("WF_INVALID_TIMEZONE");
    expect(badZone?.message).toMatch(/Mars\/Olympus/);
    expect(badZone?.hint).toMatch(/Europe\/Paris/);
    expect(codeOf(() => spec({ cron: "0 9 * * *", every: "1m" }))?.code).toBe("WF_INVALID_SCHEDULE");
    expect(codeOf(() => spec({}))?.code).toBe("WF_INVALID_SCHEDULE");
    expect(codeOf(() => spec({ every: "1m", overlap: "sometimes" as never }))?.code).toBe("WF_INVALID_SCHEDULE");
    expect(codeOf(() => toScheduleSpec("s", { workflow: "w", every: "1m", startAt: "yesterday-ish" }))?.code).toBe("WF_INVALID_TIME");
  });
});

// ---------------------------------------------------------------------------------------------
// Against NATS

let nats: TestNats;
let counter = 0;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(() => nats?.stop());

/** Finishes when signalled "done" (or at once with input {quick: true}). */
const held = async (ctx: WorkflowContext, input: { quick?: boolean } | null) => {
  if (input?.quick) return "quick";
  await ctx.waitForSignal("done");
  return "done";
};
const scheduled = async (ctx: WorkflowContext, input: unknown) => ctx.activity("echo", input);
const workflows = { held, scheduled };
const activities = { echo: async (x: unknown) => x };

async function setup(options: { clock?: TestClock; maxInputBytes?: number } = {}) {
  const namespace = `sch${++counter}x${process.pid}`;
  const limits = options.maxInputBytes ? { limits: { maxInputBytes: options.maxInputBytes } } : {};
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "error" }, ...limits } });
  const start = async () => {
    const rt = await createRuntime({ config, workflows, activities, ...(options.clock ? { clock: options.clock } : {}) });
    await rt.start();
    return rt;
  };
  const runtime = await start();
  const client = await createClient({ config, ...(options.clock ? { clock: options.clock } : {}) });
  return { config, namespace, runtime, client, start };
}

const runsOf = async (client: WorkflowClient, id: string) => (await client.schedules.describe(id)).state.runs;

describe("schedules on NATS", () => {
  it("an interval schedule runs each tick once; pause stops it, unpause resumes it; trigger runs now", async () => {
    const { runtime, client } = await setup();
    try {
      const created = await client.schedules.create("every1s", { workflow: "scheduled", input: { n: 1 }, every: "1s", overlap: "allow-all" });
      expect(created.nextFireTimes).toHaveLength(5);
      await waitFor("3 runs", async () => ((await runsOf(client, "every1s")).length >= 3 ? true : undefined), 15_000);
      await client.schedules.pause("every1s");
      const paused = await client.schedules.describe("every1s");
      expect(paused.nextFireTimes).toEqual([]);
      const runs = paused.state.runs;
      // Consecutive ticks, one workflow each, with the tick's id.
      for (let i = 1; i < runs.length; i++) expect(Date.parse(runs[i]!.tick) - Date.parse(runs[i - 1]!.tick)).toBe(1_000);
      for (const run of runs) {
        expect(run.workflowId).toBe(tickWorkflowId("every1s", Date.parse(run.tick)));
        expect(await client.result(run.workflowId, { signal: AbortSignal.timeout(10_000) })).toEqual({ n: 1 });
      }
      // Paused: its parked tick is gone, nothing fires (2.5 ticks' worth of waiting).
      await sleep(2_500);
      expect((await runsOf(client, "every1s")).length).toBe(runs.length);
      expect(await client.count({ where: { scheduleId: "every1s" } })).toBe(runs.length);
      await client.schedules.unpause("every1s");
      await waitFor("a run after unpause", async () => ((await runsOf(client, "every1s")).length > runs.length ? true : undefined), 10_000);
      // trigger: now, whatever the schedule.
      await client.schedules.pause("every1s");
      const triggered = await client.schedules.trigger("every1s");
      expect(triggered).toMatch(/^every1s\.\d{8}T\d{6}(\.\d{3})?Z$/);
      expect(await client.result(triggered, { signal: AbortSignal.timeout(10_000) })).toEqual({ n: 1 });
      expect((await runsOf(client, "every1s")).at(-1)).toMatchObject({ workflowId: triggered, trigger: "trigger" });
      const listed = await client.schedules.list();
      expect(listed.map((s) => [s.id, s.paused])).toEqual([["every1s", true]]);
      expect(await client.schedules.delete("every1s")).toBe(true);
      expect(await client.schedules.list()).toEqual([]);
      await expect(client.schedules.describe("every1s")).rejects.toMatchObject({ code: "WF_SCHEDULE_NOT_FOUND" });
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("create refuses a bad expression before anything is stored, and another spec for an existing id", async () => {
    const { runtime, client } = await setup();
    try {
      await expect(client.schedules.create("bad", { workflow: "scheduled", cron: "* * *" })).rejects.toMatchObject({ code: "WF_INVALID_CRON" });
      await expect(client.schedules.create("bad", { workflow: "scheduled", cron: "0 9 * * *", timezone: "Europe/Pariss" })).rejects.toMatchObject({ code: "WF_INVALID_TIMEZONE" });
      expect(await client.schedules.list()).toEqual([]);
      await client.schedules.create("daily", { workflow: "scheduled", cron: "0 9 * * *", timezone: "Europe/Paris" });
      await client.schedules.create("daily", { workflow: "scheduled", cron: "0 9 * * *", timezone: "Europe/Paris" }); // same: a no-op
      await expect(client.schedules.create("daily", { workflow: "scheduled", cron: "0 10 * * *" })).rejects.toMatchObject({ code: "WF_SCHEDULE_EXISTS" });
      const updated = await client.schedules.update("daily", { cron: "0 10 * * *" });
      expect(updated.spec).toMatchObject({ cron: "0 10 * * *", timezone: "Europe/Paris", workflow: "scheduled" });
      for (const t of updated.nextFireTimes) expect(new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit" }).format(new Date(t))).toBe("10:00");
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("a tick whose start is refused (input over the limit) is recorded as skipped, and the schedule goes on", async () => {
    const { runtime, client } = await setup({ maxInputBytes: 2_000 });
    try {
      await client.schedules.create("big", { workflow: "scheduled", input: "x".repeat(3_000), every: "1s" });
      await waitFor("2 refused ticks", async () => ((await client.schedules.describe("big")).state.skippedCount >= 2 ? true : undefined), 10_000);
      await client.schedules.pause("big");
      const d = await client.schedules.describe("big");
      expect(d.state.runs).toEqual([]);
      expect(d.state.skipped.every((k) => k.reason === "refused")).toBe(true);
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("overlap policies: skip, buffer-one, cancel-other", async () => {
    const { runtime, client } = await setup();
    try {
      for (const overlap of ["skip", "buffer-one", "cancel-other"] as const) {
        await client.schedules.create(overlap, { workflow: "held", every: "1s", overlap });
      }
      await waitFor("overlapping ticks", async () => {
        const [skip, buffer, cancel] = await Promise.all(["skip", "buffer-one", "cancel-other"].map((id) => client.schedules.describe(id)));
        return skip!.state.skippedCount >= 2 && buffer!.state.buffered && buffer!.state.skippedCount >= 1 && cancel!.state.runs.length >= 3 ? true : undefined;
      }, 20_000);
      for (const id of ["skip", "buffer-one", "cancel-other"]) await client.schedules.pause(id);

      // skip: one run, the overlapping ticks skipped.
      const skip = await client.schedules.describe("skip");
      expect(skip.state.runs).toHaveLength(1);
      expect(skip.state.skipped.every((k) => k.reason === "overlap")).toBe(true);

      // cancel-other: every run but the last was cancelled by the next tick.
      const cancel = await client.schedules.describe("cancel-other");
      const cancelRuns = cancel.state.runs;
      for (const run of cancelRuns.slice(0, -1)) {
        await waitFor(`${run.workflowId} cancelled`, async () => ((await client.describe(run.workflowId)).status === "cancelled" ? true : undefined), 10_000);
      }
      expect(cancel.state.skippedCount).toBe(0);

      // buffer-one: one tick waits; the others were skipped as "buffer-full". Unpaused, it runs once the first ends.
      const buffer = await client.schedules.describe("buffer-one");
      expect(buffer.state.runs).toHaveLength(1);
      expect(buffer.state.skipped.every((k) => k.reason === "buffer-full")).toBe(true);
      const bufferedTick = buffer.state.buffered!.tick;
      await client.schedules.update("buffer-one", { every: "1h" }); // no more ticks for now; the buffer goes with the old chain
      expect((await client.schedules.describe("buffer-one")).state.buffered).toBeUndefined();
      await client.signal(buffer.state.runs[0]!.workflowId, "done");
      await client.result(buffer.state.runs[0]!.workflowId, { signal: AbortSignal.timeout(10_000) });
      expect(bufferedTick).toBeTruthy();
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("buffer-one starts the buffered tick when the running one ends", async () => {
    const { runtime, client } = await setup();
    try {
      await client.schedules.create("buf2", { workflow: "held", every: "1s", overlap: "buffer-one" });
      const firstOf2 = await waitFor("a buffered tick of buf2", async () => {
        const d = await client.schedules.describe("buf2");
        return d.state.buffered ? d.state.runs[0]! : undefined;
      }, 10_000);
      const buffered = (await client.schedules.describe("buf2")).state.buffered!;
      await client.signal(firstOf2.workflowId, "done");
      const started = await waitFor("the buffered run", async () => (await runsOf(client, "buf2")).find((r) => r.trigger === "buffered"), 15_000);
      expect(started.tick).toBe(buffered.tick);
      await client.schedules.pause("buf2");
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("backfill starts each tick of a range once, however often it is asked", async () => {
    const { runtime, client } = await setup();
    try {
      await client.schedules.create("hourly", { workflow: "scheduled", input: "b", cron: "0 * * * *", paused: true });
      const ids = await client.schedules.backfill("hourly", { from: "2026-01-01T00:00:00Z", to: "2026-01-01T04:00:00Z" });
      expect(ids).toEqual(["00", "01", "02", "03", "04"].map((h) => `hourly.20260101T${h}0000Z`));
      for (const id of ids) expect(await client.result(id, { signal: AbortSignal.timeout(10_000) })).toBe("b");
      const again = await client.schedules.backfill("hourly", { from: "2026-01-01T03:00:00Z", to: "2026-01-01T05:00:00Z" });
      expect(again).toEqual(["03", "04", "05"].map((h) => `hourly.20260101T${h}0000Z`));
      await client.result("hourly.20260101T050000Z", { signal: AbortSignal.timeout(10_000) });
      for (const id of ids) expect((await client.runs(id)).runs).toEqual([]); // one run each
      expect(await client.count({ where: { scheduleId: "hourly" } })).toBe(6);
      await expect(client.schedules.backfill("hourly", { from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z" })).rejects.toMatchObject({ code: "WF_SCHEDULE_BACKFILL_TOO_LARGE" });
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("a first tick handled before the record that names its chain is written still runs (the publish-then-write window of a create)", async () => {
    // A writer publishes a chain's first tick, then writes the record that names it. A tick due
    // at once can reach a scheduler in between: dropped there, the chain had no message and the
    // schedule never ticked (chaos scenario 1 saw "only 0 tick workflow(s)").
    const { runtime, client } = await setup();
    try {
      const { jsm, names, schedules: kv } = client.topology;
      const early = toScheduleSpec("early", { workflow: "scheduled", input: { n: 2 }, every: "1h", overlap: "allow-all" });
      const chain = newChain();
      const tick = Date.now();
      const seq = await publishTick(client.topology, "early", early, chain, tick);
      // The scheduler has it (no record yet), and a moment to handle it, before the record is
      // written. (On the previous code it was acked by then: the run below never came.)
      await waitFor("the scheduler to take the tick", async () => ((await jsm.consumers.info(names.scheduleTicksStream, names.schedulerConsumer)).delivered.stream_seq >= seq ? true : undefined), 10_000, 20);
      await sleep(100);
      const now = iso(Date.now());
      expect(await writeSchedule(kv, { id: "early", spec: early, source: "api", createdAt: now, updatedAt: now, state: { chain, nextTick: iso(tick), tickSeq: seq, runs: [], skipped: [], skippedCount: 0 } }, 0)).toBe(true);
      await waitFor("the first tick's run", async () => ((await runsOf(client, "early")).length === 1 ? true : undefined), 10_000);
      expect(await client.result(tickWorkflowId("early", tick), { signal: AbortSignal.timeout(10_000) })).toEqual({ n: 2 });
      await client.schedules.delete("early");
    } finally {
      await client.close();
      await runtime.stop();
    }
  });

  it("after a full outage, missed ticks within the catch-up window run and older ones are recorded as skipped", async () => {
    const clock = createTestClock();
    const { runtime, client, start } = await setup({ clock });
    let second: Runtime | undefined;
    try {
      // Ticks every 10 minutes (by the test clock), a 25-minute catch-up window.
      await client.schedules.create("outage", { workflow: "scheduled", input: "c", every: "10m", catchupWindow: "25m", overlap: "allow-all" });
      const firstTick = Date.parse((await client.schedules.describe("outage")).state.nextTick!);
      clock.advanceTo(firstTick);
      await waitFor("the first tick", async () => ((await runsOf(client, "outage")).length === 1 ? true : undefined), 10_000);
      await runtime.stop(); // everything down
      clock.advance(60 * 60_000 + 1_000); // one hour and a second later
      second = await start();
      const expectedRuns = [firstTick + 40 * 60_000, firstTick + 50 * 60_000, firstTick + 60 * 60_000].map(iso);
      await waitFor("the catch-up runs", async () => ((await runsOf(client, "outage")).length === 4 ? true : undefined), 15_000).catch(async (err) => {
        console.log(JSON.stringify(await client.schedules.describe("outage"), null, 1));
        throw err;
      });
      const d = await client.schedules.describe("outage");
      expect(d.state.runs.slice(1).map((r) => r.tick)).toEqual(expectedRuns);
      expect(d.state.runs.slice(1).map((r) => r.trigger)).toEqual(["catchup", "catchup", "schedule"]); // the last one was due a second before the restart
      expect(d.state.skipped).toEqual([expect.objectContaining({ tick: iso(firstTick + 10 * 60_000), until: iso(firstTick + 30 * 60_000), count: 3, reason: "missed" })]);
      expect(d.state.skippedCount).toBe(3);
      expect(d.state.nextTick).toBe(iso(firstTick + 70 * 60_000));
      for (const run of d.state.runs) expect(await client.result(run.workflowId, { signal: AbortSignal.timeout(10_000) })).toBe("c");
      await client.schedules.delete("outage");
    } finally {
      await client.close();
      await second?.stop();
    }
  });
});

describe("schedules declared in functions/schedules.ts", () => {
  it("are created on deploy, updated when changed, removed when dropped; a bad one fails the deploy", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jetflow-schedules-"));
    const functionsDir = join(dir, "functions");
    mkdirSync(join(functionsDir, "workflows"), { recursive: true });
    mkdirSync(join(functionsDir, "activities"), { recursive: true });
    writeFileSync(join(functionsDir, "activities", "echo.ts"), "export async function echo(x: unknown) { return x; }\n");
    writeFileSync(join(functionsDir, "workflows", "report.ts"), "export async function report(ctx: any, input: unknown) { return ctx.activity('echo', input); }\n");
    const declare = (body: string) => writeFileSync(join(functionsDir, "schedules.ts"), `import { defineSchedule } from "jetflow/workflow";\n${body}\n`);
    declare(`export const nightly = defineSchedule("nightly", { workflow: "report", cron: "0 3 * * *", timezone: "Europe/Paris" });
export const often = defineSchedule("often", { workflow: "report", every: "1h", input: { v: 1 } });`);
    const namespace = `schdecl${process.pid}`;
    const config = loadConfig({ env: {}, cwd: dir, overrides: { nats: { servers: [nats.url] }, namespace, functions: { dir: functionsDir }, log: { level: "warn" } } });
    const runtime = await createRuntime({ config, code: "local" });
    await runtime.start();
    const client = await createClient({ config });
    try {
      await client.schedules.create("by-hand", { workflow: "report", every: "1h", paused: true });
      expect((await client.schedules.list()).map((s) => [s.id, s.source])).toEqual([["by-hand", "api"], ["nightly", "code"], ["often", "code"]]);
      const deploy = async () => {
        const bundle = await buildFunctions(functionsDir);
        const registry = await loadBundle(bundle, { logger: silentLogger, cacheDir: join(dir, ".wf") });
        return deployBundle({ topology: runtime.topology, store: runtime.deployments!, bundle, registry, deployedBy: "test", logger: silentLogger });
      };
      await client.schedules.pause("nightly");
      declare(`export const nightly = defineSchedule("nightly", { workflow: "report", cron: "0 4 * * *", timezone: "Europe/Paris" });`);
      const report = await deploy();
      expect(report.schedules).toEqual({ created: [], updated: ["nightly"], removed: ["often"] });
      const nightly = await client.schedules.describe("nightly");
      expect(nightly.spec).toMatchObject({ cron: "0 4 * * *", paused: true }); // the operator's pause stays
      expect((await client.schedules.list()).map((s) => s.id)).toEqual(["by-hand", "nightly"]);
      declare(`export const nightly = defineSchedule("nightly", { workflow: "report", cron: "0 4 * * 8" });`);
      await expect(deploy()).rejects.toMatchObject({ code: "WF_INVALID_CRON", message: expect.stringMatching(/functions\/schedules.ts, export nightly: .*dayOfWeek: 8/) });
      expect((await client.schedules.describe("nightly")).spec.cron).toBe("0 4 * * *");
    } finally {
      await client.close();
      await runtime.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Two runtimes in child processes, one SIGKILLed

const spawned = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of spawned) if (child.exitCode === null && child.pid) process.kill(child.pid, "SIGKILL");
});

async function spawnRuntime(namespace: string, workerId: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./fixtures/schedule-runtime.ts", import.meta.url)), JSON.stringify({ natsUrl: nats.url, namespace, workerId })], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  spawned.add(proc);
  proc.once("exit", () => spawned.delete(proc));
  const output: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`runtime ${workerId} not ready:\n${output.join("\n")}`)), 30_000);
    onLines(proc.stdout!, (line) => line.trim() === "READY" && (clearTimeout(timer), resolve()));
    onLines(proc.stderr!, (line) => output.push(line));
    proc.once("exit", (code) => reject(new Error(`runtime ${workerId} exited (${code}):\n${output.join("\n")}`)));
  });
  return proc;
}

async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  process.kill(proc.pid!, "SIGKILL");
  await exited;
}

describe("exactly once per tick across runtimes", () => {
  it("a 1s schedule runs every tick once with 2 runtimes while one is SIGKILLed", async () => {
    const namespace = `schkill${process.pid}`;
    const [a, b] = await Promise.all([spawnRuntime(namespace, "a"), spawnRuntime(namespace, "b")]);
    const client = await createClient({ config: loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "warn" } } }) });
    try {
      await client.schedules.create("kill", { workflow: "scheduled", input: "k", every: "1s", overlap: "allow-all", catchupWindow: "1m" });
      await waitFor("3 runs", async () => ((await runsOf(client, "kill")).length >= 3 ? true : undefined), 20_000);
      await kill(a!);
      const killedAt = Date.now();
      await waitFor("ticks after the kill", async () => {
        const last = (await client.schedules.describe("kill")).state.lastTick;
        return last && Date.parse(last) > killedAt + 3_000 ? true : undefined;
      }, 40_000);
      await client.schedules.pause("kill");
      const d = await client.schedules.describe("kill");
      expect(d.state.skippedCount).toBe(0);
      // Every tick from the first to the last started exactly one workflow (one id each, run 1), and no other.
      const firstTick = Math.min(...(await listTicks(client))); // the record keeps only the last 10 runs
      const lastTick = Date.parse(d.state.lastTick!);
      const expected: string[] = [];
      for (let t = firstTick; t <= lastTick; t += 1_000) expected.push(tickWorkflowId("kill", t));
      const ids = await listIds(client);
      expect(ids).toEqual(expected);
      for (const id of expected) {
        expect(await client.result(id, { signal: AbortSignal.timeout(20_000) })).toBe("k");
        expect((await client.runs(id)).runs).toEqual([]);
      }
    } finally {
      await client.close();
      await kill(a!);
      await kill(b!);
    }
  });

  it("a nats-server restart loses no tick and doubles none", async () => {
    const own = await startNatsServer();
    const config = loadConfig({ env: {}, overrides: { nats: { servers: [own.url] }, namespace: "restart", log: { level: "error" } } });
    const runtime = await createRuntime({ config, workflows, activities });
    await runtime.start();
    const client = await createClient({ config });
    try {
      await client.schedules.create("restart", { workflow: "scheduled", input: "r", every: "1s", overlap: "allow-all", catchupWindow: "1m" });
      await waitFor("3 runs", async () => ((await runsOf(client, "restart")).length >= 3 ? true : undefined), 15_000);
      await own.restart();
      const restartedAt = Date.now();
      await waitFor("ticks after the restart", async () => {
        const last = (await client.schedules.describe("restart")).state.lastTick;
        return last && Date.parse(last) > restartedAt + 2_000 ? true : undefined;
      }, 40_000);
      await client.schedules.pause("restart");
      const d = await client.schedules.describe("restart");
      expect(d.state.skippedCount).toBe(0);
      const firstTick = Math.min(...(await listTicks(client, "restart")));
      const expected: string[] = [];
      for (let t = firstTick; t <= Date.parse(d.state.lastTick!); t += 1_000) expected.push(tickWorkflowId("restart", t));
      expect(await listIds(client, "restart")).toEqual(expected);
      for (const id of expected) expect(await client.result(id, { signal: AbortSignal.timeout(20_000) })).toBe("r");
    } finally {
      await client.close();
      await runtime.stop();
      await own.stop();
    }
  });
});

async function listIds(client: WorkflowClient, scheduleId = "kill"): Promise<string[]> {
  const ids: string[] = [];
  for await (const w of client.list({ where: { scheduleId } })) ids.push(w.id);
  return ids.sort();
}
async function listTicks(client: WorkflowClient, scheduleId = "kill"): Promise<number[]> {
  return (await listIds(client, scheduleId)).map((id) => {
    const m = /\.(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(id)!;
    return Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  });
}

// ---------------------------------------------------------------------------------------------
// The CLI

const exec = promisify(execFile);
function wf(namespace: string, ...args: string[]) {
  return exec(process.execPath, ["--import", "tsx", "cli/wf.ts", ...args], { cwd: ROOT, env: { ...process.env, NATS_URL: nats.url, WF_NAMESPACE: namespace, WF_CONFIG: "" }, timeout: 30_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

describe("wf schedule", () => {
  it("create, list, describe, trigger, backfill, pause, unpause, delete", async () => {
    const { runtime, client, namespace } = await setup();
    try {
      const bad = await wf(namespace, "schedule", "create", "nightly", "--workflow", "scheduled", "--cron", "0 25 * * *");
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/cron expression "0 25 \* \* \*" is not valid: .*hour/);
      expect(bad.stderr).toMatch(/hint: .*0 9 \* \* 1-5/);
      const badZone = await wf(namespace, "schedule", "create", "nightly", "--workflow", "scheduled", "--cron", "0 2 * * *", "--timezone", "Europe/Nowhere");
      expect(badZone.stderr).toMatch(/time zone "Europe\/Nowhere" is not valid/);
      const created = await wf(namespace, "schedule", "create", "nightly", "--workflow", "scheduled", "--input", '{"r":1}', "--cron", "30 2 * * *", "--timezone", "Europe/Paris", "--jitter", "30s", "--overlap", "skip", "--catchup", "1h");
      expect(created.stderr).toBe("");
      expect(created.stdout).toMatch(/schedule nightly created: cron "30 2 \* \* \*" Europe\/Paris/);
      expect((await wf(namespace, "schedule", "list")).stdout).toMatch(/nightly\s+scheduled\s+cron/);
      const trig = await wf(namespace, "schedule", "trigger", "nightly", "--json");
      const { workflowId } = JSON.parse(trig.stdout) as { workflowId: string };
      expect(await client.result(workflowId, { signal: AbortSignal.timeout(10_000) })).toEqual({ r: 1 });
      const back = await wf(namespace, "schedule", "backfill", "nightly", "--from", "2026-06-01T00:00:00Z", "--to", "2026-06-02T23:00:00Z");
      expect(back.stdout).toMatch(/started 2 workflow\(s\): nightly\.20260601T003000Z, nightly\.20260602T003000Z/);
      const described = await wf(namespace, "schedule", "describe", "nightly");
      expect(described.stdout).toMatch(/next fire times:\n(  \S+\n){5}/);
      expect(described.stdout).toMatch(/last runs \(3\)/);
      expect((await wf(namespace, "schedule", "pause", "nightly")).stdout).toMatch(/paused/);
      expect((await wf(namespace, "schedule", "describe", "nightly")).stdout).toMatch(/\(paused\)/);
      expect((await wf(namespace, "schedule", "unpause", "nightly")).stdout).toMatch(/unpaused/);
      expect((await wf(namespace, "schedule", "delete", "nightly")).stdout).toMatch(/deleted/);
      expect((await wf(namespace, "schedule", "describe", "nightly")).stderr).toMatch(/no schedule with id nightly/);
      expect((await wf(namespace, "schedule", "create", "x", "--workflow", "scheduled")).stderr).toMatch(/exactly one of --cron and --every/);
    } finally {
      await client.close();
      await runtime.stop();
    }
  }, 60_000);
});
