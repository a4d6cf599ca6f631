/**
 * createTestEnv(): a whole jetflow for one test: its own nats-server (random port, temporary
 * store), a runtime with the code under test, a client, a clock that can skip ahead, activity
 * mocks and a record of every activity call. Nothing is shared between two environments, so test
 * files using it run in parallel, in vitest or node:test alike.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient, type WorkflowClient } from "../client/client.js";
import { loadConfig, type Config, type ConfigOverrides } from "../config.js";
import { parseDuration, type Duration } from "../duration.js";
import { JetflowError, ValidationError, toErrorRecord, type ErrorRecord } from "../errors.js";
import type { Logger } from "../logger.js";
import { createRuntime, type Runtime } from "../runtime.js";
import type { StepState, StepStatus } from "../state.js";
import { plainAttributes, type SearchAttributes, type TypedAttributes } from "../visibility/search-attributes.js";
import type { ActivityContext, ActivityFunction } from "../workflow-api.js";
import { createTestClock, type TestClock } from "./clock.js";
import { engineSnapshot, type EngineSnapshot } from "./idle.js";
import { startNatsServer, type TestNats } from "./nats-server.js";

/** How long skipTime() and waitIdle() wait for the engine to settle before they fail (createTestEnv's idleTimeout). */
export const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
/** How often the engine is looked at while waiting for it to be idle, and in auto time mode. */
const IDLE_POLL_MS = 10;
const AUTO_POLL_MS = 20;

export interface TestEnvOptions {
  /** Programmatic code: workflows (functions or DAG definitions) and activities by name. */
  workflows?: Record<string, unknown>;
  activities?: Record<string, unknown>;
  /** Or a functions/ folder, bundled and loaded as `wf dev` does (default "functions" when no workflows are given). */
  functionsDir?: string;
  /** Namespace of every stream, consumer and bucket (default "test"; the server is this env's own anyway). */
  namespace?: string;
  /**
   * "manual" (default): time flows as usual and jumps on skipTime(). "auto": whenever every running
   * workflow waits on timers only (no activity running, no signal awaited), the clock jumps to the next one.
   */
  time?: "manual" | "auto";
  /** More config, in wf.config.json's shape (the environment and any wf.config.json are ignored). */
  config?: ConfigOverrides;
  /** How long skipTime()/waitIdle() wait for the engine to settle (default 10s). */
  idleTimeout?: Duration;
  logger?: Logger;
}

export interface ActivityCall {
  workflowId: string;
  /** The step name (ctx.activityId). */
  step: string;
  attempt: number;
  input: unknown;
  /** Set when the call returned. */
  output?: unknown;
  /** Set when the call threw. */
  error?: ErrorRecord;
  /** The call was answered by a mock. */
  mocked: boolean;
}

export type ActivityMock = (input: any, ctx: ActivityContext) => unknown;

export interface StepTimelineEntry {
  name: string;
  kind: StepState["kind"];
  /** The activity type, for activity steps. */
  activity?: string;
  status: StepStatus;
  /** Attempts made so far (activity steps; 0 for sleeps, signal waits, upserts and markers). */
  attempts: number;
  /** The search attributes an upsert step set (ctx.upsertSearchAttributes), times as Date. */
  searchAttributes?: SearchAttributes;
  /** The patch id of a marker step (ctx.patched answered true there). */
  patch?: string;
  scheduledAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** The last failure, if any. */
  error?: { message: string; type: string };
}

export interface TestEnv {
  readonly client: WorkflowClient;
  readonly runtime: Runtime;
  readonly config: Config;
  readonly clock: TestClock;
  /** URL of this env's nats-server. */
  readonly natsUrl: string;
  /** The engine's time (epoch ms): the wall clock plus what was skipped. */
  now(): number;
  /**
   * Wait until the engine is idle, then move its clock forward by `duration`: timers due in
   * between (sleeps, retry backoffs, workflow timeouts) fire in order, each one's consequences
   * settled before the next; resolves once the engine is idle again.
   */
  skipTime(duration: Duration): Promise<void>;
  /** Resolves when every running workflow waits (on a timer, a signal, or nothing due); fails after idleTimeout, saying what is still busy. */
  waitIdle(): Promise<EngineSnapshot>;
  /** Replace one activity (for this env only) until unmockActivity(); calls keep being recorded. */
  mockActivity(activityType: string, mock: ActivityMock): void;
  unmockActivity(activityType: string): void;
  /** Every call of one activity type (every type when none is given), in the order they started. */
  activityCalls(activityType?: string): ActivityCall[];
  /** A workflow's steps in the order it issued them, with attempts and outcome. */
  stepsOf(workflowId: string): Promise<StepTimelineEntry[]>;
  /** Stop the runtime and the client, and the nats-server with its store. */
  close(): Promise<void>;
}

let envCount = 0;

export async function createTestEnv(options: TestEnvOptions = {}): Promise<TestEnv> {
  const programmatic = Boolean(options.workflows || options.activities);
  const functionsDir = resolve(options.functionsDir ?? "functions");
  if (!programmatic && !existsSync(functionsDir)) {
    throw new ValidationError("WF_TEST_NO_CODE", `createTestEnv: no code to run: no workflows/activities given and ${functionsDir} does not exist`, {
      hint: "Pass { workflows, activities } or { functionsDir: \"path/to/functions\" }.",
    });
  }
  const idleTimeoutMs = parseDuration(options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_MS, "createTestEnv idleTimeout");
  const nats: TestNats = await startNatsServer();
  // No wf.config.json and no WF_* variable reaches a test env: a test behaves the same on every machine.
  const emptyCwd = mkdtempSync(join(tmpdir(), "jetflow-test-env-"));
  const clock = createTestClock();
  const calls: Array<ActivityCall & { type: string }> = [];
  const mocks = new Map<string, ActivityMock>();
  let runtime: Runtime | undefined;
  let client: WorkflowClient | undefined;
  let auto: Promise<void> | undefined;
  let closed = false;

  const cleanup = async () => {
    closed = true;
    await auto;
    await runtime?.stop("test env closed").catch(() => undefined);
    await client?.close().catch(() => undefined);
    await nats.stop();
    rmSync(emptyCwd, { recursive: true, force: true });
  };

  try {
    envCount += 1;
    const overrides = deepMerge(
      {
        nats: { servers: [nats.url] },
        namespace: options.namespace ?? "test",
        log: { level: "warn" },
        functions: { dir: functionsDir },
        worker: { id: `test-env-${process.pid}-${envCount}`, shutdownGrace: "200ms" },
      },
      (options.config ?? {}) as Plain,
    );
    const config = loadConfig({ env: {}, cwd: emptyCwd, overrides });
    runtime = await createRuntime({
      config,
      clock,
      ...(programmatic ? { workflows: options.workflows ?? {}, activities: options.activities ?? {} } : { code: "local" as const }),
      ...(options.logger ? { logger: options.logger } : {}),
    });
    await runtime.start();
    instrumentActivities(runtime.registry.activities);
    client = await createClient({ config, ...(options.logger ? { logger: options.logger } : {}) });
  } catch (err) {
    await cleanup();
    throw err;
  }

  /**
   * Every activity of the loaded code goes through one wrapper, in place in the registry the
   * worker pool reads at each task: it records the call and routes it to a mock when there is one.
   */
  function instrumentActivities(activities: Map<string, ActivityFunction>): void {
    for (const [type, original] of activities) {
      activities.set(type, async (input: unknown, ctx: ActivityContext) => {
        const mock = mocks.get(type);
        const call: ActivityCall & { type: string } = { type, workflowId: ctx.workflowId, step: ctx.activityId, attempt: ctx.attempt, input, mocked: Boolean(mock) };
        calls.push(call);
        try {
          const output = await (mock ?? original)(input, ctx);
          call.output = output;
          return output;
        } catch (err) {
          call.error = toErrorRecord(err);
          throw err;
        }
      });
    }
  }

  const topology = runtime.topology;
  const theClient = client;
  const theRuntime = runtime;

  async function waitIdle(): Promise<EngineSnapshot> {
    const deadline = Date.now() + idleTimeoutMs;
    for (;;) {
      const snapshot = await engineSnapshot(topology, clock.now());
      if (!snapshot.busy) return snapshot;
      if (Date.now() > deadline) {
        throw new JetflowError("WF_TEST_NOT_IDLE", `the test engine did not become idle within ${idleTimeoutMs} ms: ${snapshot.busy}`, {
          hint: "An activity still running (activity timeouts use the wall clock, not the test clock), or an event that cannot be applied; raise createTestEnv's idleTimeout for slow activities.",
        });
      }
      await sleep(IDLE_POLL_MS);
    }
  }

  let skipping: Promise<void> = Promise.resolve();
  function skipTime(duration: Duration): Promise<void> {
    const ms = parseDuration(duration, "skipTime duration");
    // One skip at a time: the second starts from where the first ended.
    const run = skipping.then(async () => {
      // From the moment the engine is idle: a sleep a just-started workflow reaches meanwhile is
      // inside the skipped span (`start` then `skipTime("30d")` ends a 30-day sleep).
      let snapshot = await waitIdle();
      const target = clock.now() + ms;
      for (;;) {
        if (snapshot.nextTimerAt === undefined || snapshot.nextTimerAt > target) break;
        // Jump to the next timer only, and let what it causes settle: a workflow that sleeps,
        // works, and sleeps again sees each sleep end in turn, as it would in real time.
        clock.advanceTo(snapshot.nextTimerAt);
        snapshot = await waitIdle();
      }
      clock.advanceTo(target);
      await waitIdle();
    });
    skipping = run.catch(() => undefined);
    return run;
  }

  async function autoSkip(): Promise<void> {
    while (!closed) {
      await sleep(AUTO_POLL_MS);
      if (closed) return;
      try {
        const snapshot = await engineSnapshot(topology, clock.now());
        if (!snapshot.busy && snapshot.running > 0 && snapshot.timersOnly && snapshot.nextTimerAt !== undefined) clock.advanceTo(snapshot.nextTimerAt);
      } catch {
        /* the server is going away (close()), or a read raced a write: look again */
      }
    }
  }
  if (options.time === "auto") auto = autoSkip();

  return {
    client: theClient,
    runtime: theRuntime,
    config: theRuntime.config,
    clock,
    natsUrl: nats.url,
    now: () => clock.now(),
    skipTime,
    waitIdle,
    mockActivity(activityType, mock) {
      if (!theRuntime.registry.activities.has(activityType)) {
        const known = [...theRuntime.registry.activities.keys()];
        throw new ValidationError("WF_TEST_UNKNOWN_ACTIVITY", `mockActivity: the code under test has no activity "${activityType}" (it has: ${known.join(", ") || "none"})`, {
          hint: "A mock replaces an activity the code has; pass a stub in createTestEnv({ activities }) for one it lacks.",
        });
      }
      mocks.set(activityType, mock);
    },
    unmockActivity(activityType) {
      mocks.delete(activityType);
    },
    activityCalls(activityType) {
      return calls.filter((c) => activityType === undefined || c.type === activityType).map(({ type: _type, ...call }) => ({ ...call }));
    },
    async stepsOf(workflowId) {
      const state = await theClient.describe(workflowId);
      return Object.entries(state.steps)
        .sort(([, a], [, b]) => a.seq - b.seq)
        .map(([name, step]) => {
          const entry: StepTimelineEntry = { name, kind: step.kind, status: step.status, attempts: step.kind === "activity" ? step.attempt : 0 };
          if (step.activity) entry.activity = step.activity;
          if (step.kind === "upsert") entry.searchAttributes = plainAttributes(step.output as TypedAttributes) ?? {};
          if (step.kind === "marker" && step.patch) entry.patch = step.patch;
          if (step.scheduledAt) entry.scheduledAt = step.scheduledAt;
          if (step.startedAt) entry.startedAt = step.startedAt;
          if (step.finishedAt) entry.finishedAt = step.finishedAt;
          const error = step.error ?? step.lastError;
          if (error) entry.error = { message: error.message, type: error.type };
          return entry;
        });
    },
    close: async () => {
      if (closed) return;
      await cleanup();
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === "object" && v !== null && !Array.isArray(v);
function deepMerge(base: Plain, extra: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(extra)) out[k] = isPlain(v) && isPlain(out[k]) ? deepMerge(out[k] as Plain, v) : v;
  return out;
}
