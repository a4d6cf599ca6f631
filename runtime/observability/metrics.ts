/**
 * Prometheus metrics of one runtime (docs/metrics.md), with prom-client on a registry of its own
 * (several runtimes in one process each count their own). Counters and histograms are fed by the
 * engine's observer calls (observer.ts); the gauges of what waits in NATS (events, tasks, parked
 * timers) and of the worker slots are sampled when /metrics is scraped, from consumer info: no
 * polling loop, and a scrape costs a few requests whatever ran before.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { isTerminal, type WorkflowState } from "../state.js";
import type { EngineObserver } from "./observer.js";

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

  const started = new Counter({ name: "jetflow_workflows_started_total", help: "Workflow runs started (a new workflow, a new run of an id, a continuation, a retry).", labelNames: ["workflow"], registers });
  const ended = new Counter({ name: "jetflow_workflows_ended_total", help: "Workflow runs ended, by terminal status.", labelNames: ["workflow", "status"], registers });
  const duration = new Histogram({ name: "jetflow_workflow_duration_seconds", help: "From a run's start to its end.", labelNames: ["workflow"], buckets: WORKFLOW_BUCKETS_S, registers });
  const attempts = new Counter({ name: "jetflow_activity_attempts_total", help: "Activity attempts run by this runtime's workers, by how they ended.", labelNames: ["activity", "outcome"], registers });
  const activityDuration = new Histogram({ name: "jetflow_activity_duration_seconds", help: "An activity attempt's run time on a worker (start to close).", labelNames: ["activity"], buckets: ACTIVITY_BUCKETS_S, registers });
  const scheduleToStart = new Histogram({ name: "jetflow_activity_schedule_to_start_seconds", help: "From the step's scheduling (its task's scheduledAt) to the attempt's start on a worker.", labelNames: ["activity"], buckets: ACTIVITY_BUCKETS_S, registers });
  const replay = new Histogram({ name: "jetflow_replay_seconds", help: "Replays of a journal to rebuild a workflow's execution (state cache misses).", buckets: REPLAY_BUCKETS_S, registers });
  let hits = 0;
  let misses = 0;
  const lookups = new Counter({ name: "jetflow_state_cache_lookups_total", help: "Lookups in the orchestrator's state cache, by result.", labelNames: ["result"], registers });
  new Gauge({
    name: "jetflow_cache_hit_ratio",
    help: "Share of state cache lookups that found the workflow cached, since the runtime started (rate(jetflow_state_cache_lookups_total) gives it over a window).",
    registers,
    collect() {
      this.set(hits + misses === 0 ? 0 : hits / (hits + misses));
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

  // Children bound to their labels once (prom-client hashes the labels of every labelled call):
  // the calls per step then cost a map lookup and an increment.
  const bound = <T>(make: (key: string) => T) => {
    const children = new Map<string, T>();
    return (key: string) => {
      let child = children.get(key);
      if (!child) children.set(key, (child = make(key)));
      return child;
    };
  };
  const hitLookups = lookups.labels("hit");
  const missLookups = lookups.labels("miss");
  const attemptsOf = bound((key) => {
    const [activity, outcome] = key.split("\u0000") as [string, string];
    return attempts.labels(activity, outcome);
  });
  const activityDurationOf = bound((activity) => activityDuration.labels(activity));
  const scheduleToStartOf = bound((activity) => scheduleToStart.labels(activity));

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    runStarting: (_state, parent) => parent,
    workflowStarted(state) {
      started.inc({ workflow: state.workflow });
      // A run that ends in its first activation is written terminal at once (and announced then).
    },
    workflowEnded(state) {
      if (!isTerminal(state.status)) return;
      ended.inc({ workflow: state.workflow, status: state.status });
      const seconds = secondsBetween(state.createdAt, state.completedAt ?? state.updatedAt);
      if (seconds !== undefined) duration.observe({ workflow: state.workflow }, seconds);
    },
    activityAttempt(task, startedAt) {
      const scheduled = Date.parse(task.scheduledAt);
      const wait = Number.isFinite(scheduled) ? (startedAt.getTime() - scheduled) / 1000 : undefined;
      if (wait !== undefined) scheduleToStartOf(task.activity).observe(Math.max(0, wait));
      const t0 = performance.now();
      return {
        run: (fn) => fn(),
        end(outcome) {
          attemptsOf(`${task.activity}\u0000${outcome}`).inc();
          if (outcome !== "released" && outcome !== "cancelled") activityDurationOf(task.activity).observe((performance.now() - t0) / 1000);
        },
      };
    },
    replayed: (seconds) => replay.observe(seconds),
    cacheLookup(hit) {
      if (hit) {
        hits += 1;
        hitLookups.inc();
      } else {
        misses += 1;
        missLookups.inc();
      }
    },
  };
}

function secondsBetween(from: string | undefined, to: string | undefined): number | undefined {
  if (!from || !to) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}
