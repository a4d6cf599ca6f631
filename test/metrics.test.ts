/**
 * Prometheus metrics (runtime/observability/metrics.ts, docs/metrics.md): a real runtime serves
 * GET /metrics on `metrics.port`; after workflows ran, a scrape shows what ran: counters equal to
 * the runs and attempts, histograms with counts, sampled gauges of what waits in NATS.
 */
import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { NonRetryableError, type WorkflowContext } from "../runtime/index.js";
import { combineObservers, NO_OBSERVER, type EngineObserver } from "../runtime/observability/observer.js";
import { CounterFamily, HistogramFamily } from "../runtime/observability/series.js";
import { resultSignal, useEngines, waitFor } from "./fixtures/engine/harness.js";
import { freePort } from "./helpers/ports.js";

const engine = useEngines();

const activities = {
  step: async (n: number) => n + 1,
  boom: async (_input: null) => {
    throw new Error("boom");
  },
  fatal: async (_input: null) => {
    throw new NonRetryableError("no way");
  },
  queued: async (_input: null) => "never pulled here",
};

async function ok(ctx: WorkflowContext<typeof activities>, n: number) {
  const a = await ctx.activities.step(n);
  return ctx.activities.step(a);
}
async function bad(ctx: WorkflowContext<typeof activities>) {
  return ctx.activities.boom(null);
}
async function sleepy(ctx: WorkflowContext<typeof activities>) {
  await ctx.sleep("1h");
}
async function waiting(ctx: WorkflowContext<typeof activities>) {
  return ctx.activities.queued(null);
}

/** The value of one sample line (`name{labels} value`), or undefined when there is none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-z_:]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}

describe("metrics", () => {
  it("GET /metrics of a runtime shows the workflows and attempts that ran, histograms with counts, and sampled gauges", async () => {
    const e = engine();
    const port = await freePort();
    const rt = await e.runtime({
      workflows: { ok, bad, sleepy, waiting },
      activities,
      // "queued" is not pulled by this runtime: its task waits in the queue.
      config: { metrics: { port }, worker: { activities: ["step", "boom", "fatal"] }, defaults: { retry: { maxRetries: 1, initialInterval: "10ms" } } },
    });
    expect(rt.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
    const client = await e.client();
    for (let i = 0; i < 3; i++) expect(await (await client.start("ok", i, { id: `ok-${i}` })).result(resultSignal())).toBe(i + 2);
    await expect((await client.start("bad", null, { id: "bad-1" })).result(resultSignal())).rejects.toThrow(/boom/);
    await client.start("sleepy", null, { id: "sleepy-1" });
    await client.start("waiting", null, { id: "waiting-1" });
    await waitFor("the sleep and the queued task recorded", async () => {
      const [s, w] = await Promise.all([client.describe("sleepy-1"), client.describe("waiting-1")]);
      return Object.keys(s.steps).length > 0 && Object.keys(w.steps).length > 0;
    });

    const response = await fetch(rt.metricsUrl!);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await response.text();

    expect(sample(text, "jetflow_workflows_started_total", { workflow: "ok" })).toBe(3);
    expect(sample(text, "jetflow_workflows_started_total", { workflow: "bad" })).toBe(1);
    expect(sample(text, "jetflow_workflows_started_total", { workflow: "sleepy" })).toBe(1);
    expect(sample(text, "jetflow_workflows_ended_total", { workflow: "ok", status: "completed" })).toBe(3);
    expect(sample(text, "jetflow_workflows_ended_total", { workflow: "bad", status: "failed" })).toBe(1);
    expect(sample(text, "jetflow_workflows_ended_total", { workflow: "sleepy" })).toBeUndefined();
    expect(sample(text, "jetflow_workflow_duration_seconds_count", { workflow: "ok" })).toBe(3);
    expect(sample(text, "jetflow_workflow_duration_seconds_bucket", { workflow: "ok", le: "+Inf" })).toBe(3);

    expect(sample(text, "jetflow_activity_attempts_total", { activity: "step", outcome: "completed" })).toBe(6);
    // One retry: two failed attempts.
    expect(sample(text, "jetflow_activity_attempts_total", { activity: "boom", outcome: "failed" })).toBe(2);
    expect(sample(text, "jetflow_activity_duration_seconds_count", { activity: "step" })).toBe(6);
    expect(sample(text, "jetflow_activity_schedule_to_start_seconds_count", { activity: "step" })).toBe(6);
    expect(sample(text, "jetflow_activity_schedule_to_start_seconds_count", { activity: "boom" })).toBe(2);

    expect(sample(text, "jetflow_worker_slots", { state: "busy" })).toBe(0);
    expect(sample(text, "jetflow_worker_slots", { state: "free" })).toBe(8);
    expect(sample(text, "jetflow_tasks_pending", { activity: "queued" })).toBe(1);
    expect(sample(text, "jetflow_tasks_pending", { activity: "step" })).toBe(0);
    expect(sample(text, "jetflow_events_pending")).toBe(0);
    // The sleep is parked until due.
    expect(sample(text, "jetflow_timers_parked")).toBeGreaterThanOrEqual(1);
    expect(sample(text, "jetflow_cache_hit_ratio")).toBeGreaterThan(0);
    expect(sample(text, "jetflow_state_cache_lookups_total", { result: "hit" })).toBeGreaterThan(0);
    expect(text).toMatch(/^# TYPE jetflow_replay_seconds histogram$/m);
    // Node's default metrics.
    expect(sample(text, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(sample(text, "nodejs_eventloop_lag_seconds")).toBeGreaterThanOrEqual(0);

    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
  });

  it("two runtimes in one process each count their own (registries of their own); a cache miss is a replay; off without metrics.port", async () => {
    const e = engine();
    // No cache: every event after the start replays the journal.
    const config = async () => ({ metrics: { port: await freePort() }, orchestrator: { cacheSize: 0 } });
    const [a, b] = [await e.runtime({ workflows: { ok }, activities, config: await config() }), await e.runtime({ workflows: { ok }, activities, config: await config() })];
    const off = await e.runtime({ workflows: { ok }, activities: {}, config: { worker: { activities: [] } } });
    expect(off.metrics).toBeUndefined();
    expect(off.metricsUrl).toBeUndefined();
    const client = await e.client();
    for (let i = 0; i < 4; i++) await client.start("ok", i, { id: `ok-${i}` });
    for (let i = 0; i < 4; i++) expect(await client.result(`ok-${i}`, resultSignal())).toBe(i + 2);
    const [ta, tb] = await Promise.all([a, b].map(async (rt) => (await fetch(rt.metricsUrl!)).text()));
    const sum = (name: string, labels: Record<string, string>) => (sample(ta!, name, labels) ?? 0) + (sample(tb!, name, labels) ?? 0);
    expect(sum("jetflow_workflows_ended_total", { workflow: "ok", status: "completed" })).toBe(4);
    expect(sum("jetflow_activity_attempts_total", { activity: "step", outcome: "completed" })).toBe(8);
    expect(sum("jetflow_replay_seconds_count", {})).toBeGreaterThanOrEqual(4);
    expect(sample(ta!, "jetflow_state_cache_lookups_total", { result: "hit" }) ?? 0).toBe(0);
  });

  it("the hot path's counters and histograms (series.ts) scrape as prom-client's own would, for the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    // Values on the bounds (le is inclusive), between them, above every bound, and 0.
    const observations: Array<[string, number]> = [["a", 0.001], ["a", 0.005], ["b", 1], ["a", 7], ["b", 0], ["a", 0.1]];
    const ours = new Registry();
    const counter = new CounterFamily(ours, "t_total", "help of t", ["kind", "outcome"]);
    const histogram = new HistogramFamily(ours, "t_seconds", "help of h", ["kind"], buckets);
    const unlabelled = new HistogramFamily(ours, "t_plain_seconds", "help of p", [], buckets);
    const theirs = new Registry();
    const pCounter = new Counter({ name: "t_total", help: "help of t", labelNames: ["kind", "outcome"], registers: [theirs] });
    const pHistogram = new Histogram({ name: "t_seconds", help: "help of h", labelNames: ["kind"], buckets, registers: [theirs] });
    new Histogram({ name: "t_plain_seconds", help: "help of p", buckets, registers: [theirs] });
    for (const [kind, v] of observations) {
      counter.of(kind, "ok").inc();
      histogram.of(kind).observe(v);
      pCounter.inc({ kind, outcome: "ok" });
      pHistogram.observe({ kind }, v);
    }
    counter.of("b", "failed").inc(2);
    pCounter.inc({ kind: "b", outcome: "failed" }, 2);
    // Not an observation: a clock gone wrong is dropped, not a scrape-breaking NaN.
    histogram.of("a").observe(Number.NaN);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(sample(await ours.metrics(), "t_seconds_bucket", { kind: "a", le: "0.001" })).toBe(1);
    expect(sample(await ours.metrics(), "t_seconds_count", { kind: "a" })).toBe(4);
    expect(() => counter.of("only one")).toThrow(/want 2 value/);
  });

  it("an observer that throws does not stop the others, nor the engine", () => {
    const seen: string[] = [];
    const broken: EngineObserver = {
      ...NO_OBSERVER,
      workflowStarted: () => {
        throw new Error("observer bug");
      },
      activityAttempt: () => {
        throw new Error("observer bug");
      },
    };
    const counting: EngineObserver = {
      ...NO_OBSERVER,
      workflowStarted: (state) => void seen.push(`started ${state.id}`),
      activityAttempt: (task) => ({ run: (fn) => (seen.push(`run ${task.activity}`), fn()), end: (outcome) => void seen.push(`end ${outcome}`) }),
    };
    const both = combineObservers([broken, counting]);
    const state = { id: "w1" } as Parameters<EngineObserver["workflowStarted"]>[0];
    both.workflowStarted(state);
    const attempt = both.activityAttempt({ activity: "step" } as Parameters<EngineObserver["activityAttempt"]>[0], new Date());
    expect(attempt.run(() => 42)).toBe(42);
    attempt.end("completed");
    expect(seen).toEqual(["started w1", "run step", "end completed"]);
  });
});
