/**
 * Prometheus metrics of one runtime (docs/metrics.md), with prom-client on a registry of its own
 * (several runtimes in one process each count their own). Counters and histograms are fed by the
 * engine's observer calls (observer.ts), on the hot path: they are series.ts's (plain arithmetic
 * per call on series bound once per type; prom-client formats them at scrape); the gauges of what waits in NATS (events, tasks, parked
 * timers) and of the worker slots are sampled when /metrics is scraped, from consumer info: no
 * polling loop, and a scrape costs a few requests whatever ran before.
 */
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { isTerminal } from "../state.js";
import type { AttemptObservation, AttemptOutcome, EngineObserver } from "./observer.js";
import { CounterFamily, HistogramFamily, type CounterSeries, type HistogramSeries } from "./series.js";

/** What a scrape samples; each may be absent (a worker-only runtime has no events to count). */
export interface MetricsSamples {
  /** The worker's activity slots now. */
  slots?(): { busy: number; free: number };
  /** Events waiting for the orchestrators (WORKFLOW_EVENTS consumer: not yet delivered). */
  eventsPending?(): Promise<number | undefined>;
  /** Tasks waiting per activity type (their consumers: not yet delivered). */
  tasksPending?(): Promise<Record<string, number>>;
  /** Timer messages parked until due (the timers consumer: delivered and NAK'd with a delay, or not yet delivered). */
  timersParked?(): Promise<number | undefined>;
}

export interface Metrics extends EngineObserver {
  readonly registry: Registry;
  /** The Prometheus text exposition of every metric (what GET /metrics answers). */
  text(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsOptions {
  samples?: MetricsSamples;
  /** Node's default metrics (process CPU, memory, event loop lag, GC), prefixed `jetflow_` not: their usual names. Default true. */
  defaultMetrics?: boolean;
}

const WORKFLOW_BUCKETS_S = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400];
const ACTIVITY_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
const REPLAY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const samples = options.samples ?? {};
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  // Fed on the hot path: series of series.ts (plain arithmetic per call), bound per type below.
  const started = new CounterFamily(registry, "jetflow_workflows_started_total", "Workflow runs started (a new workflow, a new run of an id, a continuation, a retry).", ["workflow"]);
  const ended = new CounterFamily(registry, "jetflow_workflows_ended_total", "Workflow runs ended, by terminal status.", ["workflow", "status"]);
  const duration = new HistogramFamily(registry, "jetflow_workflow_duration_seconds", "From a run's start to its end.", ["workflow"], WORKFLOW_BUCKETS_S);
  const attempts = new CounterFamily(registry, "jetflow_activity_attempts_total", "Activity attempts run by this runtime's workers, by how they ended.", ["activity", "outcome"]);
  const activityDuration = new HistogramFamily(registry, "jetflow_activity_duration_seconds", "An activity attempt's run time on a worker (start to close).", ["activity"], ACTIVITY_BUCKETS_S);
  const scheduleToStart = new HistogramFamily(
    registry,
    "jetflow_activity_schedule_to_start_seconds",
    "From the step's scheduling (its task's scheduledAt) to the attempt's start on a worker.",
    ["activity"],
    ACTIVITY_BUCKETS_S,
  );
  const replay = new HistogramFamily(registry, "jetflow_replay_seconds", "Replays of a journal to rebuild a workflow's execution (state cache misses).", [], REPLAY_BUCKETS_S).of();
  const lookups = new CounterFamily(registry, "jetflow_state_cache_lookups_total", "Lookups in the orchestrator's state cache, by result.", ["result"]);
  const hits = lookups.of("hit");
  const misses = lookups.of("miss");
  new Gauge({
    name: "jetflow_cache_hit_ratio",
    help: "Share of state cache lookups that found the workflow cached, since the runtime started (rate(jetflow_state_cache_lookups_total) gives it over a window).",
    registers,
    collect() {
      const all = hits.value + misses.value;
      this.set(all === 0 ? 0 : hits.value / all);
    },
  });
  new Gauge({
    name: "jetflow_worker_slots",
    help: "This runtime's activity slots, busy (running an attempt) or free.",
    labelNames: ["state"],
    registers,
    collect() {
      const now = samples.slots?.();
      if (!now) return;
      this.set({ state: "busy" }, now.busy);
      this.set({ state: "free" }, now.free);
    },
  });
  new Gauge({
    name: "jetflow_events_pending",
    help: "Events in WORKFLOW_EVENTS not yet delivered to an orchestrator (the shared consumer's num_pending), sampled at scrape.",
    registers,
    async collect() {
      const n = await samples.eventsPending?.().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });
  new Gauge({
    name: "jetflow_tasks_pending",
    help: "Tasks in ACTIVITY_TASKS not yet delivered to a worker, per activity type (its consumer's num_pending), sampled at scrape.",
    labelNames: ["activity"],
    registers,
    async collect() {
      const byType = await samples.tasksPending?.().catch(() => undefined);
      this.reset();
      for (const [activity, n] of Object.entries(byType ?? {})) this.set({ activity }, n);
    },
  });
  new Gauge({
    name: "jetflow_timers_parked",
    help: "Timer messages parked in WORKFLOW_TIMERS until due (sleeps, retry backoffs, deadlines; a batch of timers is one message), sampled at scrape.",
    registers,
    async collect() {
      const n = await samples.timersParked?.().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });

  // The series of each workflow and activity type, bound on first use: a call then costs a Map
  // lookup by type and a few additions.
  const families: Families = { started, ended, duration, attempts, activityDuration, scheduleToStart };
  const workflowSeries = new Map<string, WorkflowSeries>();
  const workflowOf = (workflow: string) => {
    let w = workflowSeries.get(workflow);
    if (!w) workflowSeries.set(workflow, (w = new WorkflowSeries(families, workflow)));
    return w;
  };
  const activitySeries = new Map<string, ActivitySeries>();
  const activityOf = (activity: string) => {
    let a = activitySeries.get(activity);
    if (!a) activitySeries.set(activity, (a = new ActivitySeries(families, activity)));
    return a;
  };

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    runStarting: (_state, parent) => parent,
    workflowStarted(state) {
      workflowOf(state.workflow).started().inc();
      // A run that ends in its first activation is written terminal at once (and announced then).
    },
    workflowEnded(state) {
      if (!isTerminal(state.status)) return;
      const w = workflowOf(state.workflow);
      w.ended(state.status).inc();
      const seconds = secondsBetween(state.createdAt, state.completedAt ?? state.updatedAt);
      if (seconds !== undefined) w.duration().observe(seconds);
    },
    activityAttempt(task, startedAt) {
      const a = activityOf(task.activity);
      const scheduled = Date.parse(task.scheduledAt);
      if (Number.isFinite(scheduled)) a.scheduleToStart().observe(Math.max(0, (startedAt.getTime() - scheduled) / 1000));
      return new AttemptTimer(a, performance.now());
    },
    replayed: (seconds) => replay.observe(seconds),
    cacheLookup: (hit) => (hit ? hits : misses).inc(),
  };
}

interface Families {
  started: CounterFamily;
  ended: CounterFamily;
  duration: HistogramFamily;
  attempts: CounterFamily;
  activityDuration: HistogramFamily;
  scheduleToStart: HistogramFamily;
}

/** The series of one workflow type, each bound on its first use (a scrape shows only what happened). */
class WorkflowSeries {
  private startedSeries: CounterSeries | undefined;
  private durationSeries: HistogramSeries | undefined;
  private readonly byStatus = new Map<string, CounterSeries>();
  constructor(
    private readonly families: Families,
    private readonly workflow: string,
  ) {}
  started(): CounterSeries {
    return (this.startedSeries ??= this.families.started.of(this.workflow));
  }
  ended(status: string): CounterSeries {
    let s = this.byStatus.get(status);
    if (!s) this.byStatus.set(status, (s = this.families.ended.of(this.workflow, status)));
    return s;
  }
  duration(): HistogramSeries {
    return (this.durationSeries ??= this.families.duration.of(this.workflow));
  }
}

/** The series of one activity type, each bound on its first use. */
class ActivitySeries {
  private durationSeries: HistogramSeries | undefined;
  private waitSeries: HistogramSeries | undefined;
  private readonly byOutcome = new Map<AttemptOutcome, CounterSeries>();
  constructor(
    private readonly families: Families,
    private readonly activity: string,
  ) {}
  attempts(outcome: AttemptOutcome): CounterSeries {
    let s = this.byOutcome.get(outcome);
    if (!s) this.byOutcome.set(outcome, (s = this.families.attempts.of(this.activity, outcome)));
    return s;
  }
  duration(): HistogramSeries {
    return (this.durationSeries ??= this.families.activityDuration.of(this.activity));
  }
  scheduleToStart(): HistogramSeries {
    return (this.waitSeries ??= this.families.scheduleToStart.of(this.activity));
  }
}

/** One attempt being timed: an object per attempt, no closures. */
class AttemptTimer implements AttemptObservation {
  constructor(
    private readonly series: ActivitySeries,
    private readonly t0: number,
  ) {}
  run<T>(fn: () => T): T {
    return fn();
  }
  end(outcome: AttemptOutcome): void {
    this.series.attempts(outcome).inc();
    // An attempt released at shutdown or dropped for a cancel did not run to its end: no duration.
    if (outcome !== "released" && outcome !== "cancelled") this.series.duration().observe((performance.now() - this.t0) / 1000);
  }
}

function secondsBetween(from: string | undefined, to: string | undefined): number | undefined {
  if (!from || !to) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}
