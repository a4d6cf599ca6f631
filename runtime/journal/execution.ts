/**
 * A live workflow execution: the user's workflow function, suspended on the promises it awaits.
 *
 * The orchestrator keeps executions in memory while their state's revision is current, so a new
 * event costs one activation (resolve one promise, let the code run to its next await) instead
 * of a replay from the start. Replay (replay.ts) rebuilds an execution from the journal when a
 * runtime does not hold it.
 *
 * Activations in a sandbox are serialized per sandbox: its Date and Math.random read "the current
 * activation", so two executions must never run its code at the same time. Activations in the
 * host realm (DAGs, programmatic workflows) overlap freely.
 */
import { parseDuration, type Duration } from "../duration.js";
import { QueryError, toErrorRecord, ValidationError, type ErrorRecord } from "../errors.js";
import type { Logger } from "../logger.js";
import { runNumber, type StepState, type WorkflowState } from "../state.js";
import { typedAttributes, type TypedAttributes } from "../visibility/search-attributes.js";
import { ChildWorkflowFailure, type ActivityOptions, type ChildHandle, type ChildOptions, type WorkflowContext, type WorkflowFunction } from "../workflow-api.js";
import { currentScope, HOST_ERRORS, runInScope, Scope, type RealmErrors } from "./cancellation.js";
import { childSpec, type ChildSpec } from "./child-commands.js";
import { createSaga } from "./saga.js";

/**
 * A rejected promise that is not an unhandled rejection if the code never awaits it (a query or a
 * validator that fires and forgets `ctx.activity(...)`): unhandled, it would end the runtime's
 * process. Code that awaits it still sees the error.
 */
function quietReject(err: unknown): Promise<never> {
  const promise = Promise.reject(err);
  promise.catch(() => undefined);
  return promise;
}

/**
 * A handler that runs on the execution but may only read it: a query's handler, or an update's
 * validator (which decides before anything is recorded). `refused`: the refusal of the first
 * command it tried, which fails it even if the handler caught it.
 */
export interface ReadOnlyHandler {
  kind: "query handler" | "update validator";
  name: string;
  refused?: QueryError;
}

/** How an update's handler settled (execution.deliverUpdate). */
export interface UpdateOutcome {
  updateId: string;
  name: string;
  ok: boolean;
  value?: unknown;
  error?: ErrorRecord;
}

/** A command the workflow code issued: it becomes a step. */
export type Command =
  | { kind: "activity"; seq: number; name: string; activity: string; input: unknown; inputHash: string; options: ActivityOptions }
  | { kind: "sleep"; seq: number; name: string; durationMs: number }
  | { kind: "signal"; seq: number; name: string; signal: string }
  /**
   * ctx.upsertSearchAttributes: settled when issued (nothing is awaited). `attributes`: the typed
   * values set; `added`: those of its names the workflow had no value for before.
   */
  | { kind: "upsert"; seq: number; name: string; attributes: TypedAttributes; added: string[] }
  /** ctx.patched (or ctx.deprecatePatch on replay): this run takes the patched path; settled when issued. */
  | { kind: "marker"; seq: number; name: string; patch: string }
  /** ctx.executeChild (awaits "result") or ctx.startChild (awaits "start"): a child workflow. */
  | ({ kind: "child"; seq: number; name: string; input: unknown; inputHash: string; awaits: "result" | "start" } & ChildSpec)
  /** A startChild handle's result(): waits for the child of step `step` to end. */
  | { kind: "child_result"; seq: number; name: string; step: string };

/** `child`: the step was a child workflow's; its failure reaches the code as a ChildWorkflowFailure. */
export type StepResult =
  | { ok: true; value: unknown }
  | { ok: false; error: ErrorRecord; attempts: number; activity: string; child?: { id: string; workflow: string; status: string } };

/** `cancelled`: the function rejected with its realm's CancelledError (the workflow ends cancelled). */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: ErrorRecord; cancelled?: boolean };

/** The realm workflow code runs in: a node:vm sandbox (bundles) or the host (programmatic API). */
export interface WorkflowRealm {
  /**
   * True when the realm's globals (Date, Math.random) answer for "the current activation": its
   * activations must then run one at a time. The host realm overrides nothing, so activations of
   * different workflows in it overlap.
   */
  readonly exclusive: boolean;
  /**
   * Set only for code we wrote and know (the built-in DAG interpreter): it reacts to a result within
   * a few microtask hops, so an activation need not wait for a macrotask turn (see activate()).
   */
  readonly settlesWithinMicrotasks?: number;
  /** Make Date and Math.random inside the realm answer for this activation. */
  enter(clock: { now(): number; random(): number }): void;
  exit(): void;
  /** The realm's own ActivityFailure, so `err instanceof ActivityFailure` holds in workflow code. */
  activityFailure(step: string, activityType: string, attempts: number, failure: { message: string; type: string }): unknown;
  /** The realm's own CancelledError, ScopeTimeoutError and SagaCompensationError (cancellation.ts); absent: the host's. */
  errors?: RealmErrors | undefined;
  /** The realm's own ChildWorkflowFailure (absent: the host's class, which is the host realm's own). */
  childFailure?: ChildFailureFactory;
}

export type ChildFailureFactory = (workflowId: string, workflowType: string, status: string, failure: { message: string; type: string; code?: string; hint?: string }) => unknown;

/** One execution's own instance of a sandboxed workflow's modules (bundle/sandbox.ts, "Module state"). */
export interface WorkflowInstance {
  fn: WorkflowFunction;
  activityFailure: WorkflowRealm["activityFailure"];
  errors?: RealmErrors | undefined;
  /** Absent in bundles built before child workflows: the host's class stands in. */
  childFailure?: ChildFailureFactory;
}

export interface ExecutionOptions {
  workflowId: string;
  workflow: string;
  fn: WorkflowFunction;
  /**
   * A fresh module instance for this execution, made by its first activation (so top-level code
   * reads that activation's clock); `fn` is then unused. Absent: `fn` runs (host realm).
   */
  instantiate?: (() => WorkflowInstance) | undefined;
  input: unknown;
  /**
   * The search attributes the workflow started with, against which ctx.upsertSearchAttributes
   * checks names and types. Only names and types are read (a replay rebuilds them, replay.ts).
   */
  searchAttributes?: TypedAttributes | undefined;
  realm: WorkflowRealm;
  logger: Logger;
  /**
   * Seed of ctx.random()/ctx.uuid() (default: the workflow id). A later run (orchestrator/runs.ts)
   * passes its runId, so each run of a loop gets its own sequence; run 1 keeps the id's.
   */
  randomSeed?: string | undefined;
  /** The run's number (orchestrator/runs.ts): a later run's default child ids name it, so they differ from an earlier run's. */
  run?: number | undefined;
  /** The workflow types of the code it runs on: ctx.executeChild of another type is refused at the call. */
  workflowTypes?: { has(name: string): boolean } | undefined;
}

interface Waiter {
  kind: Command["kind"];
  activity?: string;
  /** The cancellation scope the await was issued in (cancellation.ts). */
  scope: Scope;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export class WorkflowExecution {
  readonly workflowId: string;
  readonly workflow: string;
  /** The activation time: what ctx.now() and Date.now() return. */
  now = 0;
  /** True while replaying recorded history: workflow logs are dropped. */
  replaying = false;
  /**
   * While replaying: the step the journal recorded at a command position (replay.ts sets it).
   * ctx.patched reads it to learn whether the recorded run took the patched path there.
   */
  recordedAt: ((seq: number) => StepState | undefined) | undefined;
  outcome: Outcome | undefined;
  /**
   * Set by ctx.continueAsNew: the run ends "continued_as_new" and a new run starts with this input
   * (orchestrator/runs.ts). The first call holds; it wins over the function's own outcome.
   */
  continuedAsNew: { input: unknown } | undefined;

  private readonly options: ExecutionOptions;
  private nextSeq = 0;
  private readonly names = new Set<string>();
  private readonly nameCounts = new Map<string, number>();
  private readonly waiters = new Map<string, Waiter>();
  private issued: Command[] = [];
  private instance: WorkflowInstance | undefined;
  private readonly random: () => number;
  /** The search attributes as the code has set them so far (names and types are what count). */
  private attributes: TypedAttributes;
  /**
   * ctx.patched's answer per patch id, for the rest of this run of the code: the first answer
   * holds, so code that passed a patch point on the old path stays on it (as in Temporal).
   */
  private readonly patches = new Map<string, boolean>();
  /** The workflow's own cancellation scope: a cancel request cancels it. */
  private readonly rootScope = new Scope(undefined, false);
  /** Steps the code stopped awaiting because of a cancellation, since the last takeCancelled(). */
  private cancelled: string[] = [];
  /** ctx.handleQuery's handlers by query name (queries.ts answers them on a replayed execution). */
  readonly queryHandlers = new Map<string, (args: unknown) => unknown>();
  /** ctx.handleUpdate's handlers and validators by update name (orchestrator/updates.ts). */
  readonly updateHandlers = new Map<string, { handler: (args: unknown) => unknown; validate?: ((args: unknown) => unknown) | undefined }>();
  /** Updates whose handler settled since the last takeUpdateOutcomes(): what the state records for their callers. */
  private updateOutcomes: UpdateOutcome[] = [];
  /**
   * Set while a handler that may only read runs (a query's handler: queries.ts; an update's
   * validator: decide.ts): every command is refused then, and the first one it tried is noted.
   */
  readOnlyHandler: ReadOnlyHandler | undefined;
  readonly ctx: WorkflowContext;

  constructor(options: ExecutionOptions) {
    this.options = options;
    this.workflowId = options.workflowId;
    this.workflow = options.workflow;
    this.random = seededRandom(options.randomSeed ?? options.workflowId);
    this.attributes = options.searchAttributes ?? {};
    this.ctx = this.createContext();
  }

  /** Start the workflow function. Call inside `activate`. */
  begin(): void {
    const { input } = this.options;
    let result: Promise<unknown>;
    try {
      if (this.options.instantiate) this.instance = this.options.instantiate();
      const fn = this.instance?.fn ?? this.options.fn;
      result = Promise.resolve(fn(this.ctx, input));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => {
        this.outcome ??= { ok: true, value };
      },
      (err) => {
        this.outcome ??= { ok: false, error: toErrorRecord(err), ...(this.errors.isCancelled(err) ? { cancelled: true } : {}) };
      },
    );
  }

  /** Deliver a step's result to the code awaiting it. Call inside `activate`. */
  deliver(step: string, result: StepResult): boolean {
    const waiter = this.waiters.get(step);
    if (!waiter) return false;
    this.waiters.delete(step);
    if (result.ok) waiter.resolve(result.value);
    else if (result.child) {
      const make = this.instance?.childFailure ?? this.options.realm.childFailure ?? ((...args: ConstructorParameters<typeof ChildWorkflowFailure>) => new ChildWorkflowFailure(...args));
      const { message, type, code, hint } = result.error;
      waiter.reject(make(result.child.id, result.child.workflow, result.child.status, { message, type, ...(code ? { code } : {}), ...(hint ? { hint } : {}) }));
    } else waiter.reject((this.instance?.activityFailure ?? this.options.realm.activityFailure)(step, result.activity, result.attempts, result.error));
    return true;
  }

  /**
   * A cancel request reaches the code (call inside `activate`): every pending await outside a
   * nonCancellable scope rejects with the realm's CancelledError, and so does every later await
   * outside one. A second request changes nothing.
   */
  cancel(reason: string | undefined): void {
    if (this.rootScope.cancelled) return;
    this.cancelScope(this.rootScope, this.errors.cancelled(reason));
  }

  /**
   * An accepted update reaches the code (call inside `activate`): its handler runs as a branch of
   * the workflow, issuing commands like the rest of the code, and its outcome is recorded when it
   * settles (takeUpdateOutcomes). A replay delivers it at the same point of the journal.
   */
  deliverUpdate(name: string, args: unknown, updateId: string): void {
    const entry = this.updateHandlers.get(name);
    const settled = (outcome: Omit<UpdateOutcome, "updateId" | "name">) => this.updateOutcomes.push({ updateId, name, ...outcome });
    if (!entry) {
      settled({ ok: false, error: { message: `no update handler "${name}"`, type: "UnknownUpdateError", code: "WF_UNKNOWN_UPDATE" } });
      return;
    }
    let result: unknown;
    try {
      result = entry.handler(args);
    } catch (err) {
      settled({ ok: false, error: toErrorRecord(err) });
      return;
    }
    Promise.resolve(result).then(
      (value) => {
        try {
          settled({ ok: true, value: toJson(value === undefined ? null : value, `result of update "${name}"`) });
        } catch (err) {
          settled({ ok: false, error: toErrorRecord(err) });
        }
      },
      (err: unknown) => settled({ ok: false, error: toErrorRecord(err) }),
    );
  }

  /** Updates whose handlers settled since the last call. */
  takeUpdateOutcomes(): UpdateOutcome[] {
    const out = this.updateOutcomes;
    this.updateOutcomes = [];
    return out;
  }

  /** True once a cancel request reached the code. */
  get cancelRequested(): boolean {
    return this.rootScope.cancelled;
  }

  /**
   * Steps whose awaits a cancellation rejected (or whose timer a finished withTimeout no longer
   * needs) since the last call: their state records them `cancelled` (orchestrator/cancel-steps.ts).
   */
  takeCancelled(): string[] {
    const out = this.cancelled;
    this.cancelled = [];
    return out;
  }

  /** How many commands the code issued so far: the position a cancel request is recorded at. */
  get issuedCount(): number {
    return this.nextSeq;
  }

  private get errors(): RealmErrors {
    return this.instance?.errors ?? this.options.realm.errors ?? HOST_ERRORS;
  }

  private cancelScope(scope: Scope, error: unknown): void {
    scope.cancelled = true;
    scope.error = error;
    for (const [name, waiter] of this.waiters) {
      const cancellation = waiter.scope.cancellation();
      if (!cancellation) continue;
      this.waiters.delete(name);
      this.cancelled.push(name);
      waiter.reject(cancellation.error);
    }
  }

  /** The code no longer needs this step (a withTimeout whose function settled first): it is cancelled. */
  private release(name: string): void {
    if (!this.waiters.delete(name)) return;
    this.cancelled.push(name);
  }

  /** What a new await must reject with at once because its scope is cancelled, if it is. */
  private refusal(): { error: unknown } | undefined {
    return currentScope(this.rootScope).cancellation();
  }

  /** Commands issued since the last call. */
  takeIssued(): Command[] {
    const out = this.issued;
    this.issued = [];
    return out;
  }

  /** Steps the code awaits and that have not been delivered. */
  get awaitingCount(): number {
    return this.waiters.size;
  }


  /** A read-only handler may read, never act: any command it issues fails it (the query, or the update it validates). */
  private refuseInReadOnly(kind: Command["kind"]): void {
    const running = this.readOnlyHandler;
    if (!running) return;
    const who = running.kind === "query handler" ? `the handler of query "${running.name}"` : `the validator of update "${running.name}"`;
    const act = kind === "activity" ? "call an activity" : kind === "sleep" ? "sleep" : `issue a ${kind} command`;
    const refusal = new QueryError("WF_QUERY_EFFECT", `${who} of workflow ${this.workflow} (${this.workflowId}) tried to ${act}: ${running.kind === "query handler" ? "a query handler" : "an update validator"} can only read the workflow's state`, {
      hint:
        running.kind === "query handler"
          ? "Return values the workflow code keeps in variables; do the work in the workflow (or in an update handler), not in the query."
          : "Validate the arguments against what the workflow knows, and throw to refuse; act in the update's handler.",
    });
    running.refused ??= refusal;
    throw refusal;
  }

  private command(kind: Command["kind"], name: string, extra: object): Promise<unknown> {
    this.refuseInReadOnly(kind);
    const seq = this.nextSeq++;
    const scope = currentScope(this.rootScope);
    const promise = new Promise((resolve, reject) => {
      this.waiters.set(name, { kind, ...("activity" in extra ? { activity: (extra as { activity: string }).activity } : {}), scope, resolve, reject });
      this.issued.push({ kind, seq, name, ...extra } as Command);
    });
    // A rejection of a call the code never awaited (a cancelled fire-and-forget activity) must not
    // be an unhandled rejection, which would end the process; awaiting code still sees it.
    promise.catch(() => undefined);
    return promise;
  }

  /**
   * A command settled when issued: it has no waiter, and its step is recorded completed in the same
   * decision (orchestrator/decide.ts), so it costs no activation.
   */
  private settledCommand(kind: Command["kind"], name: string, extra: object): void {
    this.refuseInReadOnly(kind);
    this.issued.push({ kind, seq: this.nextSeq++, name, ...extra } as Command);
  }

  /**
   * The answer of ctx.patched(id) at this point, recording a marker when it is true. Live code (a
   * new execution, or past the end of a replay) takes the patched path. A replay takes it only
   * when the journal holds this patch's marker at exactly this position: any other step there (or
   * none: the recorded run ended this activation without issuing more) is history written before
   * the patch existed, which the old path must match. `deprecated`: ctx.deprecatePatch, which
   * accepts a recorded marker but never records one of its own.
   */
  private patch(id: unknown, where: string, deprecated: boolean): boolean {
    if (typeof id !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(id)) {
      throw new ValidationError("WF_INVALID_PATCH_ID", `${where}: patch id ${JSON.stringify(id) ?? String(id)} is not valid: use 1-100 characters of A-Z a-z 0-9 _ -`, {
        hint: 'Name the change, e.g. ctx.patched("add-audit"), and keep that id for as long as the patch is in the code.',
      });
    }
    const known = this.patches.get(id);
    if (known !== undefined) return known;
    const recorded = this.replaying ? this.recordedAt?.(this.nextSeq) : undefined;
    const hasMarker = recorded?.kind === "marker" && recorded.patch === id;
    const answer = this.replaying ? hasMarker : !deprecated;
    this.patches.set(id, answer);
    if (answer) this.settledCommand("marker", this.stepName(`patch_${id}`, undefined), { patch: id });
    return answer;
  }

  /**
   * ctx.executeChild ("result") and ctx.startChild ("start"): one step of kind "child". A start
   * resolves with a handle whose result() issues a step of kind "child_result" (once per handle).
   */
  private child(awaits: "result" | "start", workflowType: string, input: unknown, options: ChildOptions | undefined): Promise<unknown> {
    try {
      const text = jsonText(input === undefined ? null : input, `input of child workflow "${workflowType}"`);
      const name = this.stepName(`child_${typeof workflowType === "string" ? workflowType : "workflow"}`, options?.name);
      const spec = childSpec(this.workflowId, workflowType, options, name, this.options.workflowTypes, this.options.run);
      const issued = this.command("child", name, { ...spec, input: JSON.parse(text), inputHash: inputHash(text), awaits });
      if (awaits === "result") return issued;
      return issued.then(() => {
        let result: Promise<unknown> | undefined;
        const handle: ChildHandle = {
          workflowId: spec.childId,
          result: () => (result ??= this.command("child_result", this.stepName(`${name}_result`, undefined), { step: name })),
        };
        return handle;
      });
    } catch (err) {
      return quietReject(err);
    }
  }

  private stepName(base: string, explicit: string | undefined): string {
    if (explicit !== undefined) {
      if (typeof explicit !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(explicit)) {
        throw new TypeError(`step name ${JSON.stringify(explicit)} is not valid: use 1-100 characters of A-Z a-z 0-9 _ -`);
      }
      if (this.names.has(explicit)) throw new TypeError(`step name "${explicit}" is used twice in workflow ${this.workflow}; names must be unique`);
      this.names.add(explicit);
      return explicit;
    }
    let n = this.nameCounts.get(base) ?? 0;
    let name: string;
    do {
      n += 1;
      name = n === 1 ? base : `${base}-${n}`;
    } while (this.names.has(name));
    this.nameCounts.set(base, n);
    this.names.add(name);
    return name;
  }

  private createContext(): WorkflowContext {
    const self = this;
    const activity = (type: string, input?: unknown, options: ActivityOptions = {}): Promise<never> => {
      try {
        const refused = self.refusal();
        if (refused) return quietReject(refused.error);
        if (typeof type !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(type)) {
          throw new TypeError(`activity type ${JSON.stringify(type)} is not valid`);
        }
        // Fail bad options and unserializable input here, at the call, where the user can catch it.
        if (options?.timeout !== undefined) parseDuration(options.timeout, `ctx.activity("${type}") timeout`);
        if (options?.retry?.initialInterval !== undefined) parseDuration(options.retry.initialInterval, `ctx.activity("${type}") retry.initialInterval`);
        if (options?.retry?.maxInterval !== undefined) parseDuration(options.retry.maxInterval, `ctx.activity("${type}") retry.maxInterval`);
        const text = jsonText(input === undefined ? null : input, `input of activity "${type}"`);
        const name = self.stepName(type, options?.name);
        return self.command("activity", name, { activity: type, input: JSON.parse(text), inputHash: inputHash(text), options: options ?? {} }) as Promise<never>;
      } catch (err) {
        return quietReject(err);
      }
    };
    const log = (level: "info" | "warn" | "error") => (message: string, meta?: Record<string, unknown>) => {
      if (!self.replaying) self.options.logger[level](message, { component: "workflow", workflowId: self.workflowId, ...meta });
    };
    return {
      workflowId: this.workflowId,
      workflow: this.workflow,
      activity,
      activities: new Proxy({}, {
        get: (_target, prop) => (typeof prop === "string" ? (input: unknown, options?: ActivityOptions) => activity(prop, input, options) : undefined),
      }) as WorkflowContext["activities"],
      sleep(duration: Duration): Promise<void> {
        try {
          const durationMs = parseDuration(duration, "ctx.sleep()");
          const refused = self.refusal();
          if (refused) return quietReject(refused.error);
          const name = self.stepName("sleep", undefined);
          return self.command("sleep", name, { durationMs }) as Promise<void>;
        } catch (err) {
          return quietReject(err);
        }
      },
      waitForSignal<T = unknown>(signal: string): Promise<T> {
        try {
          if (typeof signal !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(signal)) {
            throw new TypeError(`signal name ${JSON.stringify(signal)} is not valid: use 1-100 characters of A-Z a-z 0-9 _ -`);
          }
          const refused = self.refusal();
          if (refused) return quietReject(refused.error);
          const name = self.stepName(`signal_${signal}`, undefined);
          return self.command("signal", name, { signal }) as Promise<T>;
        } catch (err) {
          return quietReject(err);
        }
      },
      executeChild: ((type: string, input: unknown, options?: ChildOptions) => self.child("result", type, input, options)) as WorkflowContext["executeChild"],
      startChild: ((type: string, input: unknown, options?: ChildOptions) => self.child("start", type, input, options)) as WorkflowContext["startChild"],
      handleUpdate(name: string, handler: (args: never) => unknown, options?: { validate?: (args: never) => unknown }) {
        if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(name)) {
          throw new ValidationError("WF_INVALID_UPDATE_NAME", `ctx.handleUpdate(): update name ${JSON.stringify(name)} is not valid`, { hint: "Use 1-100 characters of A-Z a-z 0-9 _ -, e.g. ctx.handleUpdate(\"addItem\", async (item) => cart)." });
        }
        if (typeof handler !== "function" || (options?.validate !== undefined && typeof options.validate !== "function")) {
          throw new ValidationError("WF_INVALID_UPDATE_NAME", `ctx.handleUpdate("${name}"): the handler (and options.validate, if given) must be functions`, { hint: `ctx.handleUpdate("${name}", async (args) => result, { validate: (args) => { if (bad) throw new Error("why") } })` });
        }
        self.updateHandlers.set(name, { handler: handler as (args: unknown) => unknown, validate: options?.validate as ((args: unknown) => unknown) | undefined });
      },
      handleQuery(name: string, handler: (args: never) => unknown) {
        if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(name)) {
          throw new ValidationError("WF_INVALID_QUERY_NAME", `ctx.handleQuery(): query name ${JSON.stringify(name)} is not valid`, { hint: "Use 1-100 characters of A-Z a-z 0-9 _ -, e.g. ctx.handleQuery(\"progress\", () => ({ done, total }))." });
        }
        if (typeof handler !== "function") {
          throw new ValidationError("WF_INVALID_QUERY_NAME", `ctx.handleQuery("${name}"): the handler must be a function, got ${handler === null ? "null" : typeof handler}`, { hint: `ctx.handleQuery("${name}", (args) => value)` });
        }
        self.queryHandlers.set(name, handler as (args: unknown) => unknown);
      },
      upsertSearchAttributes(attributes) {
        // Checked against the attributes as this run of the code has set them, so that a replay,
        // which sets the same ones in the same order, throws (or not) exactly where the first run did.
        const typed = typedAttributes(attributes, "ctx.upsertSearchAttributes()", self.attributes);
        const names = Object.keys(typed);
        if (names.length === 0) return;
        const added = names.filter((name) => !Object.hasOwn(self.attributes, name));
        self.attributes = { ...self.attributes, ...typed };
        self.settledCommand("upsert", self.stepName("search_attributes", undefined), { attributes: typed, added });
      },
      continueAsNew(input: unknown): Promise<never> {
        try {
          // Checked at the call, where the code can catch it; the size is checked by the orchestrator (limits.maxInputBytes).
          self.refuseInReadOnly("continue-as-new" as Command["kind"]);
          const value = toJson(input === undefined ? null : input, `input of ctx.continueAsNew() in workflow ${self.workflow}`);
          self.continuedAsNew ??= { input: value };
        } catch (err) {
          return quietReject(err);
        }
        // Never settles: the code stops here, and the run ends when this activation does.
        return new Promise<never>(() => undefined);
      },
      patched: (id) => self.patch(id, "ctx.patched()", false),
      deprecatePatch(id) {
        self.patch(id, "ctx.deprecatePatch()", true);
      },
      nonCancellable<T>(fn: () => Promise<T>): Promise<T> {
        if (typeof fn !== "function") return quietReject(scopeFunctionError("ctx.nonCancellable()", fn));
        return runInScope(new Scope(currentScope(self.rootScope), true), fn);
      },
      withTimeout<T>(duration: Duration, fn: () => Promise<T>): Promise<T> {
        let durationMs: number;
        try {
          durationMs = parseDuration(duration, "ctx.withTimeout()");
          if (typeof fn !== "function") throw scopeFunctionError("ctx.withTimeout()", fn);
        } catch (err) {
          return quietReject(err);
        }
        const refused = self.refusal();
        if (refused) return quietReject(refused.error);
        // The deadline is a durable timer, a step like a sleep, awaited in the enclosing scope.
        const name = self.stepName("timeout", undefined);
        const timer = self.command("sleep", name, { durationMs });
        const scope = new Scope(currentScope(self.rootScope), false);
        return new Promise<T>((resolve, reject) => {
          let settled = false;
          timer.then(
            () => {
              if (settled) return;
              settled = true;
              const error = self.errors.scopeTimeout(durationMs, name);
              self.cancelScope(scope, error);
              reject(error);
            },
            () => undefined, // cancelled with the enclosing scope: fn's awaits were rejected too, and fn settles
          );
          runInScope(scope, fn).then(
            (value) => {
              if (settled) return;
              settled = true;
              self.release(name);
              resolve(value);
            },
            (err) => {
              if (settled) return;
              settled = true;
              self.release(name);
              reject(err);
            },
          );
        });
      },
      saga: (options) => createSaga(self.ctx, options, self.errors),
      now: () => self.now,
      random: () => self.random(),
      uuid: () => uuidFrom(self.random),
      log: { info: log("info"), warn: log("warn"), error: log("error") },
    };
  }

  /** Clock handed to the realm while this execution is active. */
  clock(): { now(): number; random(): number } {
    return { now: () => this.now, random: () => this.random() };
  }

  get realm(): WorkflowRealm {
    return this.options.realm;
  }
}

/** ExecutionOptions.randomSeed of a state's run: run 1 keeps the workflow id's sequence, a later run its runId's. */
export const randomSeedOf = (state: WorkflowState): string | undefined => state.randomSeed ?? (runNumber(state) > 1 ? state.runId : undefined);
function scopeFunctionError(where: string, fn: unknown): ValidationError {
  return new ValidationError("WF_INVALID_SCOPE_FUNCTION", `${where} takes an async function, got ${fn === null ? "null" : typeof fn}`, {
    hint: `Pass the code to run as a function: ${where.replace("()", "")}(async () => { await ctx.activities.some_activity(input); }).`,
  });
}

/** A plain-JSON copy (host realm), or a TypeError naming what could not be serialized. */
export function toJson(value: unknown, what: string): unknown {
  return JSON.parse(jsonText(value, what));
}

function jsonText(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new TypeError(`${what} is not JSON-serializable: ${(err as Error).message}`);
  }
  return text ?? "null";
}

/**
 * The hash of an activity's input as JSON text, recorded with its step and compared on replay
 * (replay.ts): a changed input is a divergence, like a changed activity type. FNV-1a, 64 bits as
 * 16 hex digits: no security need, and cheaper than a digest for the small inputs of most steps.
 */
export function inputHash(text: string): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x050c5d1f;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 16777619) >>> 0;
    h2 = Math.imul(h2 ^ c, 2246822519) >>> 0;
  }
  return h1.toString(16).padStart(8, "0") + h2.toString(16).padStart(8, "0");
}

/**
 * Microtask generations, counted by one hop chain that every waiting activation shares. V8 runs
 * microtasks in order: when the chain's hop that ends generation g runs, every reaction queued
 * before it has run, and the next hop is queued behind whatever those queued. An activation that
 * waits n generations from now is released at the hop that ends generation now + 1 + n: at least
 * as late as n hops of its own (`await undefined` n times), since the hop running now may have
 * been queued before the activation's action. Activations released by one batch of NATS replies
 * start within one drain of the queue, and a hop of their own each cost a promise and an async
 * resumption (64 of them per activation of a DAG, 320 per order workflow: a sixth of what a
 * runtime allocated under load, and what it allocates is what its scavenges cost). The chain runs
 * only while some activation waits. Cost: one hop per generation while any waits, one entry each.
 */
let generation = 0;
let hopping = false;
/** Waiting activations by release generation; appended in order for one hop count (DAGs all use one). */
const generationWaiters: Array<{ at: number; release: () => void }> = [];

function microtaskGenerations(n: number): Promise<void> {
  return new Promise<void>((release) => {
    const at = generation + 1 + n;
    const last = generationWaiters.at(-1);
    if (!last || last.at <= at) generationWaiters.push({ at, release });
    else generationWaiters.splice(generationWaiters.findIndex((w) => w.at > at), 0, { at, release });
    if (!hopping) void hop();
  });
}

async function hop(): Promise<void> {
  hopping = true;
  try {
    let released = 0;
    while (released < generationWaiters.length) {
      await undefined;
      generation += 1;
      while (released < generationWaiters.length && generationWaiters[released]!.at <= generation) generationWaiters[released++]!.release();
      if (released > 1024) {
        generationWaiters.splice(0, released);
        released = 0;
      }
    }
    generationWaiters.length = 0;
  } finally {
    hopping = false;
  }
}

/** Activations of an exclusive realm, one after the other. */
const activationChains = new WeakMap<WorkflowRealm, Promise<void>>();

/**
 * Run `action` (which starts the function or delivers a result) at time `at`, then let the
 * workflow code run until every promise it can settle has settled. Workflow code cannot use
 * timers, so once a macrotask turn has passed, it is waiting on commands only.
 */
export function activate(execution: WorkflowExecution, at: number, action: () => void): Promise<void> {
  const run = async () => {
    execution.now = at;
    execution.realm.enter(execution.clock());
    try {
      action();
      const hops = execution.realm.settlesWithinMicrotasks;
      if (hops !== undefined) {
        // Known code: let its promise chains run, hop by hop, without leaving the microtask queue
        // (a macrotask turn cost 0.07 ms per activation, five times per order workflow).
        await microtaskGenerations(hops);
        // Code that awaits nothing of ours and has not ended is still running: should it ever
        // need more hops than expected, fall back to the general barrier.
        if (execution.awaitingCount === 0 && !execution.outcome) await new Promise<void>((resolve) => setImmediate(resolve));
      } else {
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      execution.realm.exit();
    }
  };
  const realm = execution.realm;
  if (!realm.exclusive) return run();
  const result = (activationChains.get(realm) ?? Promise.resolve()).then(run);
  activationChains.set(
    realm,
    result.catch(() => undefined),
  );
  return result;
}

/** The host realm: for workflows passed as functions to createRuntime (no sandbox). */
export function hostRealm(ActivityFailureClass: new (step: string, type: string, attempts: number, failure: { message: string; type: string }) => unknown): WorkflowRealm {
  return {
    exclusive: false,
    enter() {},
    exit() {},
    activityFailure: (step, type, attempts, failure) => new ActivityFailureClass(step, type, attempts, failure),
  };
}

/** sfc32 seeded from the workflow id: the same sequence on every replay. */
function seededRandom(seedText: string): () => number {
  let h = 2166136261 >>> 0;
  const seeds: number[] = [];
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < seedText.length; i++) h = Math.imul(h ^ seedText.charCodeAt(i), 16777619) >>> 0;
    h = Math.imul(h ^ (round + 0x9e3779b9), 16777619) >>> 0;
    seeds.push(h);
  }
  let [a, b, c, d] = seeds as [number, number, number, number];
  return () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

function uuidFrom(random: () => number): string {
  const bytes = Array.from({ length: 16 }, () => Math.floor(random() * 256));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
