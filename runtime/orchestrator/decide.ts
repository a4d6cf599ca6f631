/**
 * Decisions: given a workflow's current state and one event, the next state and the effects
 * (tasks, timers) it needs. Nothing here writes to NATS; the loop writes the state by CAS first
 * and publishes the effects after, so a crash in between is repaired by re-publishing.
 *
 * Every event is idempotent against the state: a start for an existing id, a completion for an
 * attempt that is not the step's current one, a timer whose condition has passed — each is a
 * no-op ("duplicate"), which is what makes redelivered and duplicated events harmless.
 */
import { mergeAttributes, type TypedAttributes } from "../visibility/search-attributes.js";
import type { Config } from "../config.js";
import { bindWorkflow, type Registry, type RegisteredWorkflow } from "../definitions.js";
import { formatDuration, parseDuration } from "../duration.js";
import { BlockedWorkflowError, BundleError, NonDeterminismError, toErrorRecord, UnknownWorkflowError, type ErrorRecord, type QueryError } from "../errors.js";
import { activate, randomSeedOf, toJson, WorkflowExecution, type Command, type ReadOnlyHandler, type StepResult } from "../journal/execution.js";
import { decodeOrRefusal, updateArgsPrefix, type Payloads } from "../payloads/payloads.js";
import { isRef } from "../payloads/claim-check.js";
import { replayWorkflow, stepResult } from "../journal/replay.js";
import type { Logger } from "../logger.js";
import type { CancelMessage, CompletionMessage, SignalMessage, TimerMessage, UpdateMessage } from "../protocol.js";
import { backoffDelayMs, resolveRetryPolicy, shouldRetry } from "../retry-policy.js";
import { runNumber, STATE_SCHEMA_VERSION, updateSeen, updateStepName, type SignalRecord, type StepState, type UpdateRecord, type WorkflowState } from "../state.js";
import { cancelSteps } from "./cancel-steps.js";
import { retryTimer, sleepTimer, timeoutTimer, type Effect } from "./outbox.js";
import type { StoredWorkflow } from "./state-store.js";
import { nextRunId } from "./runs.js";
import { addChildStep, settleReadyChildResult } from "./children.js";
import type { EngineObserver } from "../observability/observer.js";

export interface DecideEnv {
  /** The code a workflow runs on: its recorded version if still loadable, else the current one. */
  registryFor(version: string | undefined): Promise<Registry>;
  defaults: Config["defaults"];
  /** "block": a divergence leaves the workflow as it is and throws BlockedWorkflowError (the loop parks the event). */
  onNonDeterminism?: "fail" | "block";
  /** The state with its history chunks' steps and journal put back (history.ts): what replay needs. */
  withHistory(state: WorkflowState): Promise<WorkflowState>;
  logger: Logger;
  now(): number;
  /** Told of replays and of each run's start (observability/observer.ts). */
  observer?: EngineObserver;
  /**
   * The payload boundary (payloads/payloads.ts): what the code reads (its input, each step's
   * result) is decoded here, at the deliveries below; what it produces is encoded by the loop
   * (Payloads.seal) before the state is written. Absent: values as stored.
   */
  payloads?: Pick<Payloads, "decode" | "openResult"> | undefined;
}

/** A step's result as the workflow code must see it: decoded (a codec, a claim check), before the activation that delivers it. */
const resultFor = (env: DecideEnv, step: StepState): Promise<StepResult> | StepResult => (env.payloads ? env.payloads.openResult(stepResult(step)) : stepResult(step));

export type Decision =
  | { kind: "write"; state: WorkflowState; effects: Effect[]; execution: WorkflowExecution | undefined }
  | {
      kind: "noop";
      reason: string;
      /**
       * A completion for a step this state does not hold: one it never scheduled (a state that
       * went back), or one that moved to a history chunk (see decideCompletion).
       */
      absentStep?: boolean;
      /** A completion of an attempt already recorded, reported by another execution than the recorded one. */
      anotherExecution?: boolean;
      /**
       * A claim-checked payload that only this message references and no state will ever hold (the
       * args of an update that reached an ended workflow): removed when the message is dropped, as no
       * workflow's removal would find it (payloads/removal.ts). `under`: the only names it may have
       * (a forged message must not remove another payload).
       */
      orphanedPayload?: { ref: unknown; under: string };
    };

const iso = (ms: number) => new Date(ms).toISOString();

/** A new workflow: run its code until it waits, and record the commands it issued. */
/** What a start fixes besides its input: search attributes, and how long the workflow is kept once finished. */
export interface StartExtras {
  searchAttributes?: TypedAttributes | undefined;
  /** The definition's retention, else the config's. */
  retentionMs: number;
  /** Signal-with-start: in the workflow's inbox from its first activation. */
  signal?: { name: string; payload: unknown; signalId: string } | undefined;
  /** This run's timeout, over the definition's and the default (0: none). */
  timeoutMs?: number | undefined;
  memo?: unknown;
  /** Which run this is (runs.ts): its id and number, and the run it replaces. */
  run?: { runId: string; run: number; previousRunId?: string | undefined } | undefined;
  /** A continued run: the signals the previous run received and did not consume, and the ids it saw (dedupe). */
  carried?: { signals?: SignalRecord[] | undefined; seenSignals?: string[] | undefined; updates?: UpdateRecord[] | undefined; seenUpdates?: string[] | undefined } | undefined;
  /** Started by a parent workflow as its child (children.ts). */
  parent?: WorkflowState["parent"];
  /** W3C trace context the start carried (or the run it continues): the parent of the run's span. */
  traceparent?: string | undefined;
}

/**
 * A run's first state, with no step yet, and its timeout timer: what a start fixes (decideStart),
 * and what a retry carries over from the run it retries (retry.ts).
 */
export function newRunState(env: DecideEnv, definition: RegisteredWorkflow, version: string, id: string, input: unknown, extras: StartExtras, now: number): { state: WorkflowState; effects: Effect[] } {
  const state: WorkflowState = {
    v: STATE_SCHEMA_VERSION,
    id,
    workflow: definition.name,
    status: "running",
    input: input === undefined ? null : input,
    createdAt: iso(now),
    updatedAt: iso(now),
    bundle: version,
    kind: definition.kind,
    steps: {},
    journal: [],
    retentionMs: extras.retentionMs,
  };
  if (extras.searchAttributes && Object.keys(extras.searchAttributes).length > 0) state.searchAttributes = extras.searchAttributes;
  if (extras.memo !== undefined) state.memo = extras.memo;
  if (extras.parent) state.parent = extras.parent;
  if (extras.run) {
    state.runId = extras.run.runId;
    if (extras.run.run > 1) state.run = extras.run.run;
    if (extras.run.previousRunId) state.previousRunId = extras.run.previousRunId;
  }
  if (extras.carried?.signals?.length) state.signals = [...extras.carried.signals];
  if (extras.carried?.seenSignals?.length) state.seenSignals = [...extras.carried.seenSignals];
  // Updates too: a caller still waiting finds its outcome in the run that replaced the one it
  // reached, and an update id the old run applied is not applied again by the new one.
  if (extras.carried?.updates?.length) state.updates = [...extras.carried.updates];
  if (extras.carried?.seenUpdates?.length) state.seenUpdates = [...extras.carried.seenUpdates];
  if (extras.signal) state.signals = [...(state.signals ?? []), { id: extras.signal.signalId, name: extras.signal.name, payload: extras.signal.payload, receivedAt: iso(now) }];
  const traceparent = env.observer ? env.observer.runStarting(state, extras.traceparent) : extras.traceparent;
  if (traceparent) state.traceparent = traceparent;
  const effects: Effect[] = [];
  const timeoutMs = extras.timeoutMs ?? definition.timeoutMs ?? env.defaults.workflowTimeoutMs;
  if (timeoutMs > 0) {
    state.timeoutMs = timeoutMs;
    state.deadline = iso(now + timeoutMs);
    effects.push({ kind: "timer", timer: timeoutTimer(state, now + timeoutMs) });
  }
  return { state, effects };
}

export async function decideStart(env: DecideEnv, definition: RegisteredWorkflow, version: string, id: string, input: unknown, extras: StartExtras): Promise<Decision & { kind: "write" }> {
  const now = env.now();
  const { state, effects } = newRunState(env, definition, version, id, input, extras, now);
  const execution = new WorkflowExecution({
    workflowId: id,
    workflow: definition.name,
    ...bindWorkflow(definition, id),
    // The state keeps the input as it came (encoded, when a codec or the claim check is on); the code gets it decoded.
    input: env.payloads ? await env.payloads.decode(state.input) : state.input,
    searchAttributes: state.searchAttributes,
    logger: env.logger,
    randomSeed: randomSeedOf(state),
    run: runNumber(state),
  });
  await activate(execution, now, () => execution.begin());
  await settle(env, state, execution, now, effects);
  return { kind: "write", state, effects, execution };
}

export async function decideCompletion(env: DecideEnv, stored: StoredWorkflow, event: CompletionMessage): Promise<Decision> {
  const current = stored.state;
  if (current.status !== "running") return { kind: "noop", reason: `workflow is ${current.status}` };
  const existing = current.steps[event.step];
  if (!existing || existing.kind !== "activity") {
    // Not in the state: a step this state never scheduled (a state that went back: a NATS crash
    // lost writes), or a delivered one that moved to a history chunk. The caller tells them apart.
    return { kind: "noop", reason: `no activity step "${event.step}"`, absentStep: !existing };
  }
  if (existing.status !== "scheduled" || existing.attempt !== event.attempt) {
    // The same report again (a duplicated event) carries the recorded times and worker; another
    // execution of the recorded attempt does not: its task was delivered again, and may have been
    // a continuation's lease (only the task of a settled attempt whose step came next can be one).
    // A report of an older attempt is stale, nothing more.
    const settled = existing.status === "completed" || existing.status === "failed";
    const anotherExecution = settled && existing.attempt === event.attempt && (existing.startedAt !== event.startedAt || existing.finishedAt !== event.finishedAt || existing.worker !== event.worker);
    return { kind: "noop", reason: `attempt ${event.attempt} of step "${event.step}" is already settled (step is ${existing.status}, attempt ${existing.attempt})`, anotherExecution };
  }
  const now = env.now();
  const state = draft(current);
  const step = editStep(state, event.step);
  step.startedAt = event.startedAt;
  step.finishedAt = event.finishedAt;
  step.worker = event.worker;
  delete step.continued; // this attempt is over
  delete step.lease;
  const effects: Effect[] = [];

  if (event.ok) {
    step.status = "completed";
    step.output = event.output === undefined ? null : event.output;
    // The policy only matters while the step can be retried; the state is rewritten on every
    // event, so what a settled step no longer needs is dropped (a quarter of a step's bytes).
    delete step.retry;
  } else {
    const error = event.error;
    step.lastError = trimError(error);
    const policy = step.retry ?? env.defaults.retry;
    if (shouldRetry(policy, step.attempt, error)) {
      // The retry is recorded here and armed by a durable timer: a runtime that dies during the
      // backoff loses nothing; another one fires the timer and dispatches the next attempt.
      const fireAt = now + backoffDelayMs(policy, step.attempt + 1);
      step.status = "retrying";
      step.nextAttemptAt = iso(fireAt);
      effects.push({ kind: "timer", timer: retryTimer(state, event.step, step.attempt + 1, fireAt) });
      state.updatedAt = iso(now);
      return { kind: "write", state, effects, execution: stored.execution };
    }
    step.status = "failed";
    step.error = trimError(error);
    delete step.retry;
  }
  return deliver(env, stored, state, event.step, now, effects);
}

export async function decideTimer(env: DecideEnv, stored: StoredWorkflow, timer: TimerMessage): Promise<Decision> {
  const current = stored.state;
  if (current.status !== "running") return { kind: "noop", reason: `workflow is ${current.status}` };
  const now = env.now();
  if (timer.kind === "timeout") {
    const state = draft(current);
    state.status = "timed_out";
    state.error = { message: `workflow ${state.workflow} timed out after ${formatDuration(state.timeoutMs ?? 0)}`, type: "WorkflowTimeoutError" };
    finish(state, now);
    return { kind: "write", state, effects: [], execution: undefined };
  }
  const name = timer.step ?? "";
  const existing = current.steps[name];
  if (timer.kind === "retry") {
    if (!existing || existing.status !== "retrying" || existing.attempt + 1 !== timer.attempt) {
      return { kind: "noop", reason: `retry ${timer.attempt} of "${name}" no longer pending` };
    }
    const state = draft(current);
    const step = editStep(state, name);
    step.attempt = timer.attempt;
    step.status = "scheduled";
    step.scheduledAt = iso(now);
    delete step.nextAttemptAt;
    delete step.startedAt;
    delete step.finishedAt;
    state.updatedAt = iso(now);
    return { kind: "write", state, effects: [{ kind: "task", step: name }], execution: stored.execution };
  }
  if (!existing || existing.kind !== "sleep" || existing.status !== "waiting") return { kind: "noop", reason: `sleep "${name}" no longer pending` };
  const state = draft(current);
  const step = editStep(state, name);
  step.status = "completed";
  step.finishedAt = iso(now);
  return deliver(env, stored, state, name, now, []);
}

/**
 * `terminate`: the hard stop, at once, no code runs. A cancel: a request the code sees (see
 * decideCancelRequest), except in a blocked workflow, whose code cannot run.
 */
export async function decideCancel(env: DecideEnv, stored: StoredWorkflow, message: CancelMessage): Promise<Decision> {
  if (stored.state.status !== "running") return { kind: "noop", reason: `workflow is ${stored.state.status}` };
  // A blocked workflow's code cannot run (its replay does not match the journal: blocked.ts), so
  // it cannot see a cancel request: the request ends it cancelled at once, as a terminate would.
  if (!message.terminate && !stored.state.blocked) return decideCancelRequest(env, stored, message);
  const state = draft(stored.state);
  const word = message.terminate ? "terminated" : "cancelled";
  state.status = word;
  state.error = { message: message.reason ? `${word}: ${message.reason}` : word, type: message.terminate ? "TerminatedError" : "CancelledError" };
  finish(state, env.now());
  return { kind: "write", state, effects: [], execution: undefined };
}

/** The name of the step that records a cancel request: no name the code can give a step (they have no `$`). */
export const CANCEL_STEP = "$cancel";

/**
 * A cancel request: recorded as a step of kind "cancel" entered in the journal now, and delivered
 * to the code, whose pending awaits outside nonCancellable scopes reject with CancelledError (a
 * replay delivers it at the same point of the journal: replay.ts). The steps it stopped awaiting
 * are cancelled (cancel-steps.ts); the code may clean up; it ends when its function settles.
 */
async function decideCancelRequest(env: DecideEnv, stored: StoredWorkflow, message: CancelMessage): Promise<Decision> {
  if (stored.state.cancelRequested || stored.state.steps[CANCEL_STEP]) return { kind: "noop", reason: "a cancel was requested already" };
  const now = env.now();
  const state = draft(stored.state);
  const execution = await executionFor(env, stored, state, now);
  if (!(execution instanceof WorkflowExecution)) return execution;
  state.cancelRequested = { at: iso(now), ...(message.reason ? { reason: message.reason } : {}) };
  state.steps[CANCEL_STEP] = {
    seq: execution.issuedCount,
    kind: "cancel",
    status: "completed",
    attempt: 0,
    ...(message.reason ? { reason: message.reason } : {}),
    scheduledAt: iso(now),
    finishedAt: iso(now),
    resolvedAt: now,
  };
  state.journal.push(CANCEL_STEP);
  await activate(execution, now, () => execution.cancel(message.reason));
  const effects: Effect[] = [];
  await settle(env, state, execution, now, effects);
  return { kind: "write", state, effects, execution };
}

/** Outcomes kept for callers; older ones are dropped (their callers have long had them). */
export const MAX_UPDATE_RECORDS = 64;
/**
 * Accepted update ids kept for dedupe (state.seenUpdates). The journal step of an update is no
 * record to rely on: it moves to a history chunk with the steps around it, and the head state is
 * all a decision reads. A caller's retry with the same Nats-Msg-Id is dropped by JetStream within
 * its duplicate window; this covers a redelivery and a retry after the window, for the most recent
 * updates, at most 256 × 65 bytes in the state of a workflow that takes updates, nothing otherwise.
 */
export const MAX_SEEN_UPDATE_IDS = 256;

function recordUpdates(state: WorkflowState, records: UpdateRecord[]): void {
  state.updates = [...(state.updates ?? []).filter((u) => !records.some((r) => r.id === u.id)), ...records].slice(-MAX_UPDATE_RECORDS);
}

/**
 * An update (ctx.handleUpdate): its validator runs first, read-only, on the live execution; a
 * refusal records only its outcome for the caller (`updates`, `rejected`), nothing in the journal.
 * An accepted update is entered in the journal as a step of kind "update" and delivered to its
 * handler, which runs as a branch of the code; its outcome is recorded when it settles (record).
 * An update id already applied (or refused) is a no-op, so a caller's retry applies it once; so
 * is an update to a workflow that has ended.
 */
export async function decideUpdate(env: DecideEnv, stored: StoredWorkflow, message: UpdateMessage): Promise<Decision> {
  const current = stored.state;
  const name = updateStepName(message.updateId);
  if (updateSeen(current, message.updateId)) return { kind: "noop", reason: `update ${message.updateId} already applied` };
  // An ended workflow's state is final: no event rewrites it. The state is the caller's answer:
  // it ended without this update (client.update reports WF_WORKFLOW_NOT_RUNNING on seeing it).
  if (current.status !== "running") return { kind: "noop", reason: `workflow is ${current.status}: update ${message.updateId} not applied`, ...(isRef(message.args) ? { orphanedPayload: { ref: message.args, under: updateArgsPrefix(message.workflowId, message.updateId) } } : {}) };
  const now = env.now();
  const state = draft(current);
  const execution = await executionFor(env, stored, state, now);
  if (!(execution instanceof WorkflowExecution)) return execution;
  // The step keeps the arguments as they came (encoded by a caller with the codec, a reference when
  // claim-checked); the validator and the handler get them decoded, as a replay does (replay.ts).
  const args = message.args === undefined ? null : message.args;
  const decoded = await decodeUpdateArgs(env, message.name, args);
  const plainArgs = decoded.ok ? decoded.value : undefined;
  const refusal = decoded.ok ? validateUpdate(execution, message.name, plainArgs) : decoded.refusal;
  if (refusal) {
    recordUpdates(state, [{ id: message.updateId, name: message.name, ok: false, rejected: true, error: refusal, ...(isRef(args) ? { args } : {}), at: iso(now) }]);
    state.updatedAt = iso(now);
    return { kind: "write", state, effects: [], execution };
  }
  state.steps[name] = { seq: execution.issuedCount, kind: "update", status: "completed", attempt: 0, input: args, update: { id: message.updateId, name: message.name }, scheduledAt: iso(now), finishedAt: iso(now), resolvedAt: now };
  state.journal.push(name);
  state.seenUpdates = [...(state.seenUpdates ?? []), message.updateId].slice(-MAX_SEEN_UPDATE_IDS);
  await activate(execution, now, () => execution.deliverUpdate(message.name, plainArgs, message.updateId));
  const effects: Effect[] = [];
  await settle(env, state, execution, now, effects);
  return { kind: "write", state, effects, execution };
}

/**
 * An update's arguments as its handler gets them. Arguments that cannot be decoded here refuse
 * the update like its validator would (payloads.ts decodeOrRefusal), keeping the codec's code and
 * hint (which key to configure).
 */
async function decodeUpdateArgs(env: DecideEnv, name: string, args: unknown): Promise<{ ok: true; value: unknown } | { ok: false; refusal: ErrorRecord }> {
  if (!env.payloads) return { ok: true, value: args };
  const decoded = await decodeOrRefusal(env.payloads, args);
  if (decoded.ok) return decoded;
  const err = decoded.error;
  return { ok: false, refusal: { message: `the arguments of update "${name}" cannot be decoded here: ${err.message}`, type: err.name, code: err.code, ...(err.hint ? { hint: err.hint } : {}) } };
}

/** The validator's refusal (an unknown name included), or undefined to accept. Read-only: it may not act (execution.ts refuseInReadOnly). */
function validateUpdate(execution: WorkflowExecution, name: string, args: unknown): ErrorRecord | undefined {
  const entry = execution.updateHandlers.get(name);
  if (!entry) {
    const known = [...execution.updateHandlers.keys()].sort();
    return { message: `workflow ${execution.workflow} (${execution.workflowId}) has no update "${name}"; known: ${known.length ? known.join(", ") : "none"}`, type: "UnknownUpdateError", code: "WF_UNKNOWN_UPDATE", hint: known.length ? `Send one of ${known.join(", ")}.` : 'Register one before the first await: ctx.handleUpdate("name", async (args) => result).' };
  }
  if (!entry.validate) return undefined;
  const check: ReadOnlyHandler = { kind: "update validator", name };
  execution.readOnlyHandler = check;
  try {
    const verdict = entry.validate(args);
    // A validator that swallowed the refusal of its effect still tried to act.
    if (check.refused) return effectRefusal(check.refused);
    if (verdict !== null && typeof verdict === "object" && typeof (verdict as PromiseLike<unknown>).then === "function") {
      return { message: `the validator of update "${name}" returned a promise: it must decide at once (throw to refuse)`, type: "UpdateRejectedError", code: "WF_UPDATE_REJECTED" };
    }
    return undefined;
  } catch (err) {
    if (check.refused) return effectRefusal(check.refused);
    const record = toErrorRecord(err);
    return { message: record.message, type: record.type, code: "WF_UPDATE_REJECTED", hint: "The workflow's validator refused it: fix the arguments; nothing was recorded." };
  } finally {
    execution.readOnlyHandler = undefined;
  }
}

/** A validator that tried to act (whether it threw the refusal on or caught it): the refusal, as the caller's error. */
const effectRefusal = (refused: QueryError): ErrorRecord => ({ message: refused.message, type: refused.name, code: refused.code, ...(refused.hint ? { hint: refused.hint } : {}) });

/** Give a settled step's result to the workflow code, and record what the code does next. */
export async function deliver(env: DecideEnv, stored: StoredWorkflow, state: WorkflowState, stepName: string, now: number, effects: Effect[]): Promise<Decision> {
  const step = state.steps[stepName]!;
  step.resolvedAt = now;
  state.journal.push(stepName);
  const execution = await executionFor(env, stored, state, now);
  if (!(execution instanceof WorkflowExecution)) return execution;
  let delivered = false;
  const result = await resultFor(env, step);
  await activate(execution, now, () => {
    delivered = execution.deliver(stepName, result);
  });
  if (!delivered) {
    // The code stopped waiting for this step (a Promise.race it lost); the result stays recorded.
    env.logger.debug(`step ${stepName} settled but the workflow no longer awaits it`, { component: "orchestrator", workflowId: state.id });
  }
  await settle(env, state, execution, now, effects);
  return { kind: "write", state, effects, execution };
}

/**
 * Record what the code issued; a wait for a signal that arrived earlier is satisfied at once,
 * as its own journal entry (and activation), so replay sees the same order.
 */
export async function settle(env: DecideEnv, state: WorkflowState, execution: WorkflowExecution, now: number, effects: Effect[]): Promise<void> {
  record(env, state, execution, now, effects);
  while (state.status === "running") {
    const match = nextSignalMatch(state);
    if (match) consumeSignal(state, match.step, match.signal, now);
    // A startChild handle's result() for a child that ended already (children.ts).
    const ready = match ? match.step : settleReadyChildResult(state, now);
    if (!ready) return;
    const result = await resultFor(env, state.steps[ready]!);
    await activate(execution, now, () => {
      execution.deliver(ready, result);
    });
    record(env, state, execution, now, effects);
  }
}

/** The earliest waiting signal step (by seq) for which an unconsumed signal of its name is in the inbox. */
function nextSignalMatch(state: WorkflowState): { step: string; signal: SignalRecord } | undefined {
  const inbox = state.signals?.filter((s) => !s.step);
  if (!inbox?.length) return undefined;
  const waiting = Object.entries(state.steps)
    .filter(([, s]) => s.kind === "signal" && s.status === "waiting")
    .sort((a, b) => a[1].seq - b[1].seq);
  for (const [name, step] of waiting) {
    const signal = inbox.find((s) => s.name === step.signal);
    if (signal) return { step: name, signal };
  }
  return undefined;
}

function consumeSignal(state: WorkflowState, stepName: string, signal: SignalRecord, now: number): void {
  const step = editStep(state, stepName);
  step.status = "completed";
  step.output = signal.payload;
  step.finishedAt = iso(now);
  step.resolvedAt = now;
  // A consumed signal lives on as the step's output; the inbox keeps only what no wait has taken
  // (it is rewritten on every CAS), and its id joins a bounded record for dedupe. Entries with a
  // `step` are consumed signals that states written before this change still hold.
  const consumed = state.signals!.filter((s) => s === signal || s.step !== undefined);
  state.signals = state.signals!.filter((s) => s !== signal && s.step === undefined);
  if (state.signals.length === 0) delete state.signals;
  state.seenSignals = [...(state.seenSignals ?? []), ...consumed.map((s) => s.id)].slice(-MAX_SEEN_SIGNAL_IDS);
  state.journal.push(stepName);
}

/**
 * Consumed signal ids kept for dedupe. A signal event is redelivered only if its ack was lost
 * after the write that consumed it (within the ack wait), and a publisher's retry with the same
 * signalId is dropped by JetStream's duplicate window: a few hundred recent ids cover both.
 */
export const MAX_SEEN_SIGNAL_IDS = 256;

/** A signal arrives: keep it in the inbox (deduplicated by id) and wake the wait it satisfies. */
export async function decideSignal(env: DecideEnv, stored: StoredWorkflow, event: SignalMessage & { signalId: string }): Promise<Decision> {
  const current = stored.state;
  if (current.status !== "running") return { kind: "noop", reason: `workflow is ${current.status}` };
  if (current.signals?.some((s) => s.id === event.signalId) || current.seenSignals?.includes(event.signalId)) return { kind: "noop", reason: `signal ${event.signalId} already received` };
  const now = env.now();
  const state = draft(current);
  state.signals = [...(state.signals ?? []), { id: event.signalId, name: event.name, payload: event.payload === undefined ? null : event.payload, receivedAt: iso(now) }];
  state.updatedAt = iso(now);
  if (!nextSignalMatch(state)) return { kind: "write", state, effects: [], execution: stored.execution };
  const execution = await executionFor(env, stored, state, now);
  if (!(execution instanceof WorkflowExecution)) return execution;
  const effects: Effect[] = [];
  await settle(env, state, execution, now, effects);
  return { kind: "write", state, effects, execution };
}

/**
 * The execution whose code has seen exactly `stored`'s journal: the cached one, or a replay. Only
 * a verdict about the code (divergence, missing workflow type or bundle) fails the workflow, as
 * the returned decision; anything else (NATS unreachable while a pinned bundle is fetched) is
 * thrown, and the event is retried.
 */
async function executionFor(env: DecideEnv, stored: StoredWorkflow, next: WorkflowState, now: number): Promise<WorkflowExecution | Decision> {
  if (stored.execution) return stored.execution;
  try {
    const started = performance.now();
    const execution = await replay(env, stored.state);
    env.observer?.replayed((performance.now() - started) / 1000);
    return execution;
  } catch (err) {
    if (!isPermanentReplayFailure(err)) throw err;
    if (err instanceof NonDeterminismError && env.onNonDeterminism === "block") throw new BlockedWorkflowError(err);
    return failWorkflow(next, now, err, env.logger);
  }
}

async function replay(env: DecideEnv, state: WorkflowState): Promise<WorkflowExecution> {
  const registry = await env.registryFor(state.bundle);
  const definition = registry.workflows.get(state.workflow);
  if (!definition) {
    throw new UnknownWorkflowError(state.workflow, registry.version);
  }
  return replayWorkflow(await env.withHistory(state), { ...bindWorkflow(definition, state.id), logger: env.logger, payloads: env.payloads });
}

/** Turn the commands issued in the last activation into steps, and settle the workflow if it returned. */
function record(env: DecideEnv, state: WorkflowState, execution: WorkflowExecution, now: number, effects: Effect[]): void {
  for (const command of execution.takeIssued()) addStep(env, state, command, now, effects);
  const outcomes = execution.takeUpdateOutcomes();
  if (outcomes.length > 0) recordUpdates(state, outcomes.map((o) => ({ id: o.updateId, name: o.name, ok: o.ok, ...(o.ok ? { result: o.value } : { error: trimError(o.error!) }), at: iso(now) })));
  cancelSteps(state, execution.takeCancelled(), now, effects);
  state.updatedAt = iso(now);
  if (execution.continuedAsNew) {
    // The run ends here; the loop archives it and starts the next run in the same CAS (runs.ts).
    state.status = "continued_as_new";
    state.continuedAsNew = { runId: nextRunId(state), input: execution.continuedAsNew.input };
    finish(state, now);
    return;
  }
  const outcome = execution.outcome;
  if (!outcome) return;
  if (outcome.ok) {
    try {
      state.result = toJson(outcome.value, `result of workflow ${state.workflow}`);
      state.status = "completed";
    } catch (err) {
      state.status = "failed";
      state.error = { message: (err as Error).message, type: "TypeError" };
    }
  } else {
    // An uncaught CancelledError (the code let the cancel propagate) ends it cancelled.
    state.status = outcome.cancelled ? "cancelled" : "failed";
    state.error = { message: outcome.error.message, type: outcome.error.type };
  }
  finish(state, now);
}

export function addStep(env: DecideEnv, state: WorkflowState, command: Command, now: number, effects: Effect[]): void {
  if (command.kind === "signal") {
    state.steps[command.name] = { seq: command.seq, kind: "signal", signal: command.signal, status: "waiting", attempt: 0, scheduledAt: iso(now) };
    return;
  }
  if (command.kind === "upsert") {
    // Settled as it is recorded: the code awaits nothing, so there is no activation to run. It
    // joins the journal now, which lets it move to a history chunk like any delivered step.
    state.steps[command.name] = {
      seq: command.seq,
      kind: "upsert",
      status: "completed",
      attempt: 0,
      output: command.attributes,
      ...(command.added.length > 0 ? { added: command.added } : {}),
      scheduledAt: iso(now),
      finishedAt: iso(now),
    };
    state.journal.push(command.name);
    // A new object only when a value changed: the loop re-indexes on a new object (loop.ts).
    const merged = mergeAttributes(state.searchAttributes, command.attributes);
    if (merged) state.searchAttributes = merged;
    return;
  }
  if (command.kind === "marker") {
    // Like an upsert: settled as it is recorded, and in the journal at once.
    state.steps[command.name] = { seq: command.seq, kind: "marker", patch: command.patch, status: "completed", attempt: 0, scheduledAt: iso(now), finishedAt: iso(now) };
    state.journal.push(command.name);
    return;
  }
  if (command.kind === "child" || command.kind === "child_result") return addChildStep(state, command, now, effects);
  if (command.kind === "sleep") {
    const fireAt = now + command.durationMs;
    state.steps[command.name] = { seq: command.seq, kind: "sleep", status: "waiting", attempt: 0, scheduledAt: iso(now), fireAt: iso(fireAt) };
    effects.push({ kind: "timer", timer: sleepTimer(state, command.name, fireAt) });
    return;
  }
  const retry = resolveRetryPolicy(command.options.retry, env.defaults.retry, `step ${command.name} retry`);
  const timeoutMs = command.options.timeout === undefined ? env.defaults.activityTimeoutMs : parseDuration(command.options.timeout);
  state.steps[command.name] = {
    seq: command.seq,
    kind: "activity",
    activity: command.activity,
    status: "scheduled",
    attempt: 1,
    maxAttempts: retry.maxRetries + 1,
    input: command.input,
    inputHash: command.inputHash,
    timeoutMs,
    retry,
    scheduledAt: iso(now),
  };
  effects.push({ kind: "task", step: command.name });
}

const PERMANENT_BUNDLE_CODES = new Set(["WF_BUNDLE_NOT_FOUND", "WF_WORKFLOW_LOAD_FAILED", "WF_ACTIVITY_LOAD_FAILED"]);

function isPermanentReplayFailure(err: unknown): boolean {
  if (err instanceof NonDeterminismError || err instanceof UnknownWorkflowError) return true;
  // Code that cannot load never will; a NATS error while fetching it is retried instead.
  return err instanceof BundleError && PERMANENT_BUNDLE_CODES.has(err.code);
}

function failWorkflow(state: WorkflowState, now: number, err: unknown, logger: Logger): Decision {
  const record = toErrorRecord(err);
  if (err instanceof NonDeterminismError) logger.error(record.message, { component: "orchestrator", workflowId: state.id });
  state.status = "failed";
  state.error = { message: record.message, type: record.type };
  finish(state, now);
  return { kind: "write", state, effects: [], execution: undefined };
}

function finish(state: WorkflowState, now: number): void {
  state.updatedAt = iso(now);
  state.completedAt = iso(now);
}

/** Stacks are useful in `wf show` but must not bloat the state: keep the first lines. */
function trimError(error: ErrorRecord): ErrorRecord {
  const out: ErrorRecord = { message: error.message.slice(0, 4_000), type: error.type };
  if (error.encoded !== undefined) out.encoded = error.encoded; // a codec's envelope of message and stack (payloads.ts): kept whole
  if (error.stack) out.stack = error.stack.split("\n").slice(0, 12).join("\n");
  if (error.nonRetryable) out.nonRetryable = true;
  if (error.details !== undefined) out.details = error.details;
  return out;
}

/**
 * The next state, sharing every unchanged part with the current one (which the state cache and a
 * concurrent reader may hold): top level, steps map, journal and inbox are copied; a step is
 * copied by editStep before it changes. A deep clone of a long workflow's state on every event
 * cost more CPU than the rest of the decision (bench/RESULTS.md).
 */
export function draft(current: WorkflowState): WorkflowState {
  return { ...current, steps: { ...current.steps }, journal: [...current.journal], ...(current.signals ? { signals: [...current.signals] } : {}) };
}

function editStep(state: WorkflowState, name: string): StepState {
  const copy = { ...state.steps[name]! };
  state.steps[name] = copy;
  return copy;
}
