/**
 * What code in functions/ imports (`jetflow/workflow`). It is bundled into the workflow sandbox,
 * so it imports nothing from Node and nothing that touches NATS.
 */
import type { Duration } from "./duration.js";
import type { RetryPolicyInput } from "./retry-policy.js";
// Types only: the module itself uses Buffer, which the sandbox does not have.
import type { SearchAttributes } from "./visibility/search-attributes.js";

export type { Duration } from "./duration.js";
export type { RetryPolicyInput } from "./retry-policy.js";
export type { SearchAttributes, SearchAttributeValue } from "./visibility/search-attributes.js";

// ---------------------------------------------------------------------------------------------
// Activities

/** What every activity call receives as its second argument. */
export interface ActivityContext {
  workflowId: string;
  /** Workflow type. */
  workflow: string;
  /** Step name, unique within the workflow. */
  activityId: string;
  activityType: string;
  /** 1 for the first attempt. */
  attempt: number;
  /** Stable across retries of this step: `<workflowId>/<step>`. Pass it to payment APIs and the like. */
  idempotencyKey: string;
  /** Fires on the activity's timeout, the workflow's cancellation, or the runtime's shutdown. */
  signal: AbortSignal;
  /** Tell JetStream the activity is alive: pushes the task's redelivery deadline out. */
  heartbeat(details?: unknown): void;
  log: ActivityLogger;
}

export interface ActivityLogger {
  debug(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

/** An activity: a plain exported async function; its export name is its activity type. */
export type ActivityFunction<I = any, O = any> = (input: I, ctx: ActivityContext) => Promise<O> | O;

/** Throw this from an activity to fail its step at once, without retries. */
export class NonRetryableError extends Error {
  readonly nonRetryable = true;
  readonly details: unknown;
  constructor(message: string, options: { cause?: unknown; details?: unknown; type?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = options.type ?? "NonRetryableError";
    this.details = options.details;
  }
}

// ---------------------------------------------------------------------------------------------
// Workflows

export interface ActivityOptions {
  /** Step name (default: the activity type, then `<type>-2`, `<type>-3`, … for repeats). */
  name?: string;
  /** Start-to-close timeout of one attempt. */
  timeout?: Duration;
  retry?: RetryPolicyInput;
}

type ActivityInput<F> = F extends (input: infer I, ...rest: any[]) => any ? I : never;
type ActivityOutput<F> = F extends (...args: any[]) => infer R ? Awaited<R> : never;

/** The typed proxy over an activity module: `ctx.activities.charge_payment(input)`. */
export type ActivityProxy<A> = {
  [K in keyof A as A[K] extends (...args: any[]) => any ? K : never]: (
    input: ActivityInput<A[K]>,
    options?: ActivityOptions,
  ) => Promise<ActivityOutput<A[K]>>;
};

export interface WorkflowLogger {
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

/**
 * What workflow code gets. Every effect goes through it and is recorded in the journal, so the
 * function can be replayed after a crash and reach the same point.
 */
export interface WorkflowContext<A = Record<string, ActivityFunction>, I = any> {
  workflowId: string;
  workflow: string;
  /** Run an activity by type; resolves with its output once it succeeded (after retries). */
  activity<O = unknown>(type: string, input?: unknown, options?: ActivityOptions): Promise<O>;
  /** The same, typed: `import type * as activities from "../activities/orders.js"`, then `WorkflowContext<typeof activities>`. */
  activities: ActivityProxy<A>;
  /** A durable sleep: survives crashes of every runtime. */
  sleep(duration: Duration): Promise<void>;
  /**
   * Wait for a signal sent to this workflow (`wf signal <id> <name> --payload '<json>'`,
   * `client.signal()`); resolves with its payload. Signals that arrive before the wait are kept.
   */
  waitForSignal<T = unknown>(name: string): Promise<T>;
  /**
   * Run another workflow as this one's child and wait for its end: resolves with its result, or
   * rejects with `ChildWorkflowFailure` (it failed, was cancelled, terminated, timed out, or could
   * not start). Typed from the child's function: `ctx.executeChild<typeof shipOrder>("shipOrder", input)`.
   * The child is a workflow like any other (its own state, listable, signals, cancel); its id is
   * `<this id>-<step>` unless `options.id` says otherwise, so a replay finds the same child.
   * An unknown workflow type or bad options reject at the call (`ValidationError`, codes
   * WF_UNKNOWN_CHILD_WORKFLOW, WF_INVALID_CHILD_OPTIONS).
   */
  executeChild<F extends ChildWorkflowFunction = ChildWorkflowFunction>(workflowType: string, input: ChildInput<F>, options?: ChildOptions): Promise<ChildOutput<F>>;
  /** Start a child workflow: resolves once its state exists, with a handle whose `result()` waits for its end (as executeChild). */
  startChild<F extends ChildWorkflowFunction = ChildWorkflowFunction>(workflowType: string, input: ChildInput<F>, options?: ChildOptions): Promise<ChildHandle<ChildOutput<F>>>;
  /**
   * Merge values into the workflow's search attributes (`client.list({ where })`, `wf list
   * --where`): `ctx.upsertSearchAttributes({ stage: "paid" })`. Recorded in the journal as a step
   * of kind "upsert" when called, so a replay must make the same call at the same point; the index
   * follows once the step is stored. Nothing to await: it returns at once.
   *
   * A value is a string, a finite number, a boolean or a Date, and a name keeps the type it was
   * first given (at start or by an earlier upsert). A bad name or value, a value of another type,
   * or more than 32 attributes in all, throws here, at the call, and records nothing: a
   * `ValidationError` (its `name`; `code` "WF_INVALID_SEARCH_ATTRIBUTE"), which the code may catch.
   */
  upsertSearchAttributes(attributes: SearchAttributes): void;
  /**
   * Change the code of running workflows safely: `if (ctx.patched("add-audit")) await
   * ctx.activities.audit();`. True for a run that reaches this point on this code (it records a
   * step of kind "marker" with the id, at once); on replay, true only if the recorded run has that
   * marker at exactly this point, and false for history recorded before the patch existed: the
   * code then takes the old path, which must match it. The first answer holds for the rest of the
   * run: later calls with the same id return it again and record nothing.
   *
   * The id is 1-100 characters of A-Z a-z 0-9 _ -; another throws a `ValidationError` (`code`
   * "WF_INVALID_PATCH_ID") at the call. Keep the old path until no run that passed this point on
   * the old code is left, then replace the call with `ctx.deprecatePatch(id)`.
   */
  patched(patchId: string): boolean;
  /**
   * The cleanup step of a patch, once no run that took the old path is left: the code keeps only
   * the new path, and this call stands where `ctx.patched(id)` was. On replay it accepts the
   * patch's marker if the run recorded one here, and nothing if not; it records no marker of its
   * own, so once runs that recorded one are gone the call can be removed. Same id rules as
   * `patched`.
   */
  deprecatePatch(patchId: string): void;
  /**
   * End this run and start a new run of the same workflow (same id, type, search attributes and
   * memo) with `input` and a fresh history: how a loop that never ends keeps its state small.
   * `return ctx.continueAsNew(next)`: the returned promise never settles, so no code after it
   * runs. Signals this run received but did not consume go to the new run. Typed by the
   * workflow's input (`WorkflowContext<A, I>`), or name the workflow:
   * `ctx.continueAsNew<typeof myLoop>({ cursor })`. An input that is not JSON rejects at the
   * call; one over limits.maxInputBytes fails the workflow (WF_CONTINUE_AS_NEW_INPUT_TOO_LARGE).
   */
  continueAsNew<F extends WorkflowFunction = WorkflowFunction<I>>(input: Parameters<F>[1]): Promise<never>;
  /**
   * Run `fn` shielded from cancellation: a cancel request (or the deadline of an enclosing
   * `withTimeout`) does not reject the awaits inside it, and activities started inside run to
   * completion. A cancel that arrives meanwhile is delivered once the scope has ended, to the next
   * await outside it. Resolves (or rejects) as `fn` does. The usual place for cleanup:
   * `catch (err) { if (err instanceof CancelledError) await ctx.nonCancellable(() => ctx.activities.release(...)); throw err; }`.
   */
  nonCancellable<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Run `fn`, but give it at most `duration` (a durable timer, recorded as a step of kind "sleep"
   * named `timeout`, `timeout-2`, …). If `fn` has not settled by then, its pending awaits reject with
   * `ScopeTimeoutError`, any later await inside it rejects at once, and `withTimeout` rejects with that
   * `ScopeTimeoutError`; the rest of the workflow goes on. If `fn` settles first, the timer is
   * cancelled and `withTimeout` settles as `fn` did. A bad duration throws a `ValidationError`
   * (`code` "WF_INVALID_DURATION") at the call.
   */
  withTimeout<T>(duration: Duration, fn: () => Promise<T>): Promise<T>;
  /**
   * A saga: record a compensation after each step that needs undoing, and on failure or
   * cancellation run them with `await saga.compensate()`.
   */
  saga(options?: SagaOptions): Saga;
  /**
   * Answer the query `name` (`client.query(id, name, args)`, `wf query <id> <name>`) with what
   * `handler` returns: a read of the workflow's own variables, on demand, while it runs, sleeps or
   * waits, and after it ended (while it is kept). The handler may not act: an activity, a sleep, a
   * signal wait, a child, an upsert or continue-as-new inside it fails that query
   * (`WF_QUERY_EFFECT`) and leaves the workflow untouched. Register handlers before the first await
   * so every query finds them; a later registration answers once the code has reached it.
   */
  handleQuery<A = unknown, R = unknown>(name: string, handler: (args: A) => R): void;
  /**
   * Accept the update `name` (`client.update(id, name, args)`, `wf update <id> <name>`): a durable
   * request whose caller gets what `handler` returns. `validate` runs first, read-only (like a
   * query): if it throws, nothing is recorded in the journal and the caller gets its error. An
   * accepted update is recorded in the journal and applied exactly once (its update id), even if
   * the caller retries; its handler runs as a branch of the workflow and may call activities and
   * sleep. Register handlers before the first await.
   */
  handleUpdate<A = unknown, R = unknown>(name: string, handler: (args: A) => R | Promise<R>, options?: { validate?: (args: A) => void }): void;
  /** Deterministic time: when the current activation happened (also what `Date.now()` returns). */
  now(): number;
  /** Deterministic random in [0, 1) (also what `Math.random()` returns). */
  random(): number;
  /** Deterministic UUID v4. */
  uuid(): string;
  /** Logs are dropped while the workflow replays. */
  log: WorkflowLogger;
}

export type WorkflowFunction<I = any, O = any, A = any> = (ctx: WorkflowContext<A, I>, input: I) => Promise<O>;

/** What a child workflow's type parameter may be: any workflow function (`typeof childFn`). */
export type ChildWorkflowFunction = (ctx: any, input: any) => any;
type ChildInput<F> = F extends (ctx: any, input: infer I) => any ? I : never;
type ChildOutput<F> = F extends (...args: any[]) => infer R ? Awaited<R> : never;

/** Options of ctx.executeChild / ctx.startChild. */
export interface ChildOptions {
  /** The child's workflow id (default `<parent id>-<step>`, the same on every replay). */
  id?: string;
  /** Step name in the parent (default `child_<type>`, then `child_<type>-2`, …). */
  name?: string;
  /** The child's execution timeout (over its definition's). */
  timeout?: Duration;
  /**
   * What happens to the child when the parent ends while the child still runs: "terminate"
   * (default: a hard stop), "cancel" (a cancel request), "abandon" (it runs on).
   */
  parentClosePolicy?: "terminate" | "cancel" | "abandon";
  /** Free JSON kept in the child's state (`wf show`). */
  memo?: unknown;
  /** The child's search attributes at start. */
  searchAttributes?: SearchAttributes;
}

/** A started child workflow (ctx.startChild). */
export interface ChildHandle<O = unknown> {
  workflowId: string;
  /** Wait for the child's end: its result, or a `ChildWorkflowFailure`. Calling it again returns the same promise. */
  result(): Promise<O>;
}

/** The rejection of an awaited child workflow that did not complete. */
export class ChildWorkflowFailure extends Error {
  readonly workflowId: string;
  readonly workflowType: string;
  /** The child's end status (failed, cancelled, terminated, timed_out), or "rejected": it could not start. */
  readonly status: string;
  /** The child's error type (e.g. the ActivityFailure's type that failed it). */
  readonly type: string;
  /** Set when the start was rejected: WF_CHILD_ID_TAKEN, WF_UNKNOWN_CHILD_WORKFLOW, … (docs/errors.md). */
  readonly code: string | undefined;
  readonly hint: string | undefined;
  constructor(workflowId: string, workflowType: string, status: string, failure: { message: string; type: string; code?: string; hint?: string }) {
    super(`child workflow ${workflowId} (${workflowType}) ${status.replaceAll("_", " ")}: ${failure.message}`);
    this.name = "ChildWorkflowFailure";
    this.workflowId = workflowId;
    this.workflowType = workflowType;
    this.status = status;
    this.type = failure.type;
    this.code = failure.code;
    this.hint = failure.hint;
  }
}

/** The rejection an awaited activity raises once its retries are exhausted (or it is not retryable). */
export class ActivityFailure extends Error {
  readonly step: string;
  readonly activityType: string;
  readonly attempts: number;
  /** The error type of the last attempt (e.g. the activity's `error.name`). */
  readonly type: string;
  constructor(step: string, activityType: string, attempts: number, failure: { message: string; type: string }) {
    super(`activity ${step} (${activityType}) failed after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${failure.message}`);
    this.name = "ActivityFailure";
    this.step = step;
    this.activityType = activityType;
    this.attempts = attempts;
    this.type = failure.type;
  }
}

/**
 * What the awaits of a workflow reject with once it is asked to cancel (`wf cancel`,
 * `client.cancel()`), and what a new await outside `ctx.nonCancellable` rejects with after that.
 * Let it propagate and the workflow ends `cancelled`; catch it and return a value and it ends
 * `completed`.
 */
export class CancelledError extends Error {
  /** The reason given with the cancel request, if any. */
  readonly reason: string | undefined;
  constructor(reason?: string) {
    super(reason ? `cancelled: ${reason}` : "cancelled");
    this.name = "CancelledError";
    this.reason = reason;
  }
}

/** What the awaits inside `ctx.withTimeout(duration, fn)` reject with when `duration` has passed, and what `withTimeout` rejects with. */
export class ScopeTimeoutError extends Error {
  /** The scope's duration in milliseconds. */
  readonly timeoutMs: number;
  /** The name of the timer step that fired. */
  readonly step: string;
  constructor(timeoutMs: number, step: string) {
    super(`ctx.withTimeout() scope timed out after ${timeoutMs}ms (timer step "${step}")`);
    this.name = "ScopeTimeoutError";
    this.timeoutMs = timeoutMs;
    this.step = step;
  }
}

export interface SagaOptions {
  /** Run the compensations all at once instead of one after the other in reverse order (default false). */
  parallel?: boolean;
  /**
   * Keep running the other compensations when one fails (default false: the first failure stops
   * the rest and `compensate()` rejects with it). With it, `compensate()` still rejects at the end,
   * with a `SagaCompensationError` listing every failure, if any failed.
   */
  continueOnError?: boolean;
}

/** `ctx.saga()`: compensations recorded as the workflow goes, run in reverse order on `compensate()`. */
export interface Saga {
  /** Record a compensation: a function that calls activities, e.g. `() => ctx.activities.refund_payment(charge)`. */
  add(compensation: () => Promise<unknown>): void;
  /**
   * Run the recorded compensations (last added first, or all at once with `parallel`) inside a
   * non-cancellable scope, each activity retried by its own policy. Resolves once all succeeded;
   * runs each compensation at most once per saga (a second call runs only those added since).
   */
  compensate(): Promise<void>;
}

/** `saga.compensate()` with `continueOnError` when compensations failed: `failures` holds each one's error, in the order they ran. */
export class SagaCompensationError extends Error {
  readonly failures: unknown[];
  constructor(failures: unknown[]) {
    super(`${failures.length} compensation${failures.length === 1 ? "" : "s"} failed: ${failures.map((f) => (f instanceof Error ? f.message : String(f))).join("; ")}`);
    this.name = "SagaCompensationError";
    this.failures = failures;
  }
}

// ---------------------------------------------------------------------------------------------
// DAG definitions (the seed's WorkflowDefinition)

export interface DagActivity {
  /** Step name, unique in the workflow. */
  name: string;
  /** Activity type (export name in functions/activities); a step has this or `workflow`. */
  type?: string;
  /** A child workflow's type: the step runs it (as ctx.executeChild) and its result is the step's output. */
  workflow?: string;
  timeout?: Duration;
  retryPolicy?: RetryPolicyInput;
  /** Steps that must complete before this one starts. */
  dependencies?: string[];
  /**
   * Activity type that undoes this step. When the DAG fails or is cancelled, the compensations of
   * the steps that completed run in reverse dependency order (a step's after those of the steps
   * that depend on it), each with input `{ input: <this step's input>, output: <its output> }`,
   * as steps named `compensate_<step>`; then the DAG ends failed or cancelled.
   */
  compensation?: string;
}

export interface DagDefinition {
  name: string;
  version?: string;
  description?: string;
  /** Timeout of the whole workflow. */
  timeout?: Duration;
  /** How long a finished run is kept before it is removed (default: the `retention` config; 0: until `wf delete`). */
  retention?: Duration;
  activities: DagActivity[];
}

export const DAG_MARKER = "__jetflowDag";

/**
 * Declare a DAG workflow. Each activity runs once all of its dependencies completed; independent
 * ones run in parallel. An activity's input is `{ ...workflowInput, [dependencyName]: output }`;
 * the workflow's result is `{ [stepName]: output }` for every step.
 */
export function defineDag<D extends DagDefinition>(definition: D): D {
  Object.defineProperty(definition, DAG_MARKER, { value: true, enumerable: false });
  return definition;
}

/** Options for code workflows declared with `defineWorkflow`. */
export interface WorkflowOptions {
  /** Timeout of the whole workflow. */
  timeout?: Duration;
  /** How long a finished run is kept before it is removed (default: the `retention` config; 0: until `wf delete`). */
  retention?: Duration;
}

export const WORKFLOW_OPTIONS = "__jetflowWorkflowOptions";

/** Attach options (a workflow timeout) to a code workflow; plain exported functions work too. */
export function defineWorkflow<F extends WorkflowFunction>(fn: F, options: WorkflowOptions): F {
  Object.defineProperty(fn, WORKFLOW_OPTIONS, { value: options, enumerable: false });
  return fn;
}

/**
 * A schedule declared in functions/schedules.ts (`export const nightly = defineSchedule("nightly", {...})`):
 * `wf deploy` (and a runtime deploying its functions/) creates or updates it, and removes a
 * declared schedule that is no longer exported. Same options as `client.schedules.create`
 * (schedules/spec.ts ScheduleOptions), checked at deploy: a bad cron expression fails the deploy.
 * A schedule paused with `wf schedule pause` stays paused across deploys.
 */
export interface ScheduleDeclaration<I = unknown> {
  id: string;
  workflow: string;
  input?: I;
  cron?: string;
  every?: Duration;
  timezone?: string;
  jitter?: Duration;
  overlap?: "skip" | "buffer-one" | "allow-all" | "cancel-other";
  catchupWindow?: Duration;
  startAt?: string;
  endAt?: string;
  paused?: boolean;
  note?: string;
}

export const SCHEDULE_MARKER = "__jetflowSchedule";

export function defineSchedule<I = unknown>(id: string, options: Omit<ScheduleDeclaration<I>, "id">): ScheduleDeclaration<I> {
  const declaration = { ...options, id } as ScheduleDeclaration<I>;
  Object.defineProperty(declaration, SCHEDULE_MARKER, { value: true, enumerable: false });
  return declaration;
}
