/**
 * The messages that cross NATS, as documented in docs/protocol.md. Anything read off the wire is
 * checked here; a message that fails the check goes to the dead letters, never crashes a runtime.
 */
import { ProtocolError, type ErrorRecord } from "./errors.js";
import { typedAttribute, type TypedAttributes } from "./visibility/search-attributes.js";

/** `workflow.start.<type>`: published by any NATS client. */
export interface StartMessage {
  id?: string;
  input?: unknown;
  /** Typed search attributes (visibility/search-attributes.ts): `{ "customerId": { "type": "string", "value": "c-7" } }`. */
  searchAttributes?: TypedAttributes;
  /** Signal-with-start: delivered to the workflow whether this start creates it or it exists. */
  signal?: { name: string; payload: unknown; signalId: string };
  /** This run's execution timeout in ms, over the definition's (0: none). */
  timeoutMs?: number;
  /** Free JSON kept in the state and shown by `wf show`; not used by the engine. */
  memo?: unknown;
  /** What a start does when the id exists (absent: "reject-duplicate"; orchestrator/runs.ts). */
  idReusePolicy?: IdReusePolicy;
  /** Set by a parent workflow starting this one as its child: the child's end is reported to it (ChildEventMessage). */
  parent?: { id: string; step: string; workflow: string; runId?: string };
  /** W3C trace context of the caller (`00-<trace id>-<span id>-<flags>`): the run's span is its child (docs/protocol.md, "Trace context"). */
  traceparent?: string;
  /**
   * `wf retry`: a new run of the id that replaces its run number `run` (ended failed, cancelled,
   * terminated or timed out) and reuses the results that run's code received before its first
   * failed step (orchestrator/retry.ts). `input` is ignored: the run's input is reused.
   */
  retry?: { run: number };
}

/**
 * `workflow.child.<parentId>`: what happened to a child, for its parent. Published by the runtime
 * that applied it, after the child's state write (or, for "rejected", instead of a state):
 * "started" (its state exists), "ended" (terminal: `status`, and `result` or `error`), "rejected"
 * (the start was refused or the id belongs to another workflow: `error` with a `code`).
 * Nats-Msg-Id `<childId>/parent/<parentId>/<step>/<event>`.
 */
export interface ChildEventMessage {
  parentId: string;
  /** The parent's step that started the child. */
  step: string;
  childId: string;
  workflow: string;
  /** The parent's run that started the child (ParentRef.runId): another run of the parent ignores the report. */
  parentRunId?: string;
  event: "started" | "ended" | "rejected";
  status?: string;
  result?: unknown;
  error?: ErrorRecord;
}

/**
 * `workflow.query.<id>`, core NATS request/reply (no stream): ask a workflow's query handler
 * (ctx.handleQuery). One runtime of the queue group `queries` replays the workflow from its journal
 * and replies with a QueryReply.
 */
export interface QueryRequest {
  workflowId: string;
  name: string;
  args?: unknown;
}

/**
 * The reply to a QueryRequest: the handler's value, or a coded error (WF_UNKNOWN_QUERY,
 * WF_QUERY_EFFECT, …). With a codec, `args` and `result` are envelopes, and so is the message of
 * a WF_QUERY_FAILED error (the handler's own error text): `encoded`, `message` "[encoded error]".
 */
export type QueryReply = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string; hint?: string; encoded?: unknown } };

/**
 * `workflow.update.<id>` (events stream): an update to apply (ctx.handleUpdate). Nats-Msg-Id
 * `<id>/update/<updateId>`; the update id also keeps a retried update from being applied twice.
 */
export interface UpdateMessage {
  workflowId: string;
  name: string;
  updateId: string;
  args?: unknown;
}

export function parseUpdate(body: unknown): UpdateMessage {
  if (!isObject(body) || typeof body.workflowId !== "string" || typeof body.name !== "string" || typeof body.updateId !== "string") {
    throw new ProtocolError(`update needs string "workflowId", "name" and "updateId"`);
  }
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(body.name)) throw new ProtocolError(`update "name" must be 1-100 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(body.name).slice(0, 120)}`);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(body.updateId)) throw new ProtocolError(`update "updateId" must be 1-64 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(body.updateId).slice(0, 120)}`);
  return { workflowId: body.workflowId, name: body.name, updateId: body.updateId, ...(body.args !== undefined ? { args: body.args } : {}) };
}

export function parseQueryRequest(body: unknown): QueryRequest {
  if (!isObject(body) || typeof body.workflowId !== "string" || typeof body.name !== "string") throw new ProtocolError(`query needs string "workflowId" and "name"`);
  return { workflowId: body.workflowId, name: body.name, ...(body.args !== undefined ? { args: body.args } : {}) };
}

/**
 * "reject-duplicate": one id, one workflow (a start for an existing id is a no-op).
 * "allow-if-failed": a new run if the latest ended failed, cancelled, terminated or timed out.
 * "allow-duplicate": a new run if the latest has ended, whatever its status. A running one is never replaced.
 */
export type IdReusePolicy = "reject-duplicate" | "allow-if-failed" | "allow-duplicate";
export const ID_REUSE_POLICIES: readonly IdReusePolicy[] = ["reject-duplicate", "allow-if-failed", "allow-duplicate"];

/** `activity.tasks.<activity>`: published by the orchestrator, Nats-Msg-Id `<id>/<step>/<attempt>`. */
export interface TaskMessage {
  workflowId: string;
  workflow: string;
  step: string;
  activity: string;
  attempt: number;
  input: unknown;
  timeoutMs: number;
  scheduledAt: string;
  /** Code version the workflow runs on; a worker without the activity in its current code uses this one. */
  bundle?: string;
  /** The run that scheduled it (state `runId`); its completion carries it back. */
  runId?: string;
  /** The run's number when above 1: it scopes the Nats-Msg-Ids of the task and its completion (MSG_ID). */
  run?: number;
  /** W3C trace context of the workflow run's span: the attempt's span is its child (docs/protocol.md, "Trace context"). */
  traceparent?: string;
}

/** `workflow.activity.completed.<id>.<step>`: published by a worker, Nats-Msg-Id `<id>/<step>/<attempt>/completed`. */
export type CompletionMessage = {
  workflowId: string;
  /** The task's `runId`: a completion for another run than the state's is a no-op. */
  runId?: string;
  step: string;
  attempt: number;
  startedAt: string;
  finishedAt: string;
  worker: string;
} & ({ ok: true; output: unknown } | { ok: false; error: ErrorRecord });

export type TimerKind = "retry" | "sleep" | "timeout";

/**
 * `workflow.delay.<id>` (parked until due) and then `workflow.timer.<id>.<key>` (fired), both with
 * this body. Nats-Msg-Id `<id>/timer/<key>` and `<id>/fired/<key>`.
 */
export interface TimerMessage {
  workflowId: string;
  key: string;
  kind: TimerKind;
  /** Epoch milliseconds. */
  fireAt: number;
  step?: string;
  /** kind "retry": the attempt the timer dispatches. */
  attempt?: number;
  /** The run that armed it (state `runId`): a timer of another run is a no-op. */
  runId?: string;
  /**
   * Set when the orchestrator re-parked a timer that fired before `fireAt` by its clock (a timer
   * service whose clock runs ahead): the stream sequence of that early fired event, which makes
   * this parking's Nats-Msg-Ids new (`<id>/timer/<key>/<repark>`, `<id>/fired/<key>/<repark>`).
   */
  repark?: number;
  /**
   * With `repark`: how long the timer service waits before firing it, on the NATS server's clock
   * (a NAK delay), whatever its own clock says, so a clock running ahead cannot fire it early again.
   */
  parkMs?: number;
}

/**
 * `workflow.delay.batch/timers`: several timers parked as one message (an id cannot contain `/`,
 * so no workflow's delay subject is this one). Parked until `fireAt`, the latest of theirs; then
 * each is fired as if it had been scheduled alone. Nats-Msg-Id `timers/<batch uuid>`.
 */
export interface TimerBatchMessage {
  fireAt: number;
  timers: TimerMessage[];
}

/** `workflow.signal.<id>.<name>`: Nats-Msg-Id `<id>/signal/<signalId>`. */
export interface SignalMessage {
  workflowId: string;
  name: string;
  payload?: unknown;
  /** Unique per signal; without one, the message's stream sequence is used. */
  signalId?: string;
}

/** `workflow.cancel.<id>`. */
export interface CancelMessage {
  workflowId: string;
  reason?: string;
  /** A hard stop (`wf terminate`): ends it `terminated`, no code runs. */
  terminate?: boolean;
}

/**
 * `workflow.abort.<id>`, core NATS only: the orchestrator asks the workers to abort the running
 * attempts of these steps (all of the workflow's, without `steps`). Their `ctx.signal` fires with
 * a CancelledError. Best effort: a worker that misses it lets the attempt run, and its completion
 * is a no-op once the step is cancelled.
 */
export interface AbortMessage {
  workflowId: string;
  /** The run whose attempts to abort (state `runId`): a later run's attempts of a step with the same name run on. */
  runId?: string;
  steps?: string[];
  reason?: string;
}

/**
 * Header of a completion event whose worker tried to record it in-process and failed part way:
 * the state may record it already while its effects were not published. The orchestrator treats
 * such an event like a redelivery: if it finds the attempt recorded, it re-publishes what the
 * workflow waits on.
 */
export const REPAIR_HEADER = "Jetflow-Recorded-Part-Way";

/**
 * Run 1 publishes under the ids it always had; a later run (orchestrator/runs.ts) reuses step
 * names, so its tasks and completions are scoped by its number (`<id>/r.<run>/<step>/<attempt>`),
 * else JetStream's duplicate window would drop them as repeats of the earlier run's. Its timers
 * are scoped through their key (TIMER_KEY, `r<run>_` in front).
 */
export const MSG_ID = {
  task: (id: string, step: string, attempt: number, run?: number) => `${runScope(id, run)}/${step}/${attempt}`,
  completion: (id: string, step: string, attempt: number, run?: number) => `${runScope(id, run)}/${step}/${attempt}/completed`,
  timer: (id: string, key: string, repark?: number) => (repark === undefined ? `${id}/timer/${key}` : `${id}/timer/${key}/${repark}`),
  fired: (id: string, key: string, repark?: number) => (repark === undefined ? `${id}/fired/${key}` : `${id}/fired/${key}/${repark}`),
  timerBatch: (batchId: string) => `timers/${batchId}`,
  /** A cancel or terminate request of run `run`: a later run of the id may be cancelled within the duplicate window too. */
  cancel: (id: string, terminate: boolean, run?: number) => `${runScope(id, run)}/${terminate ? "terminate" : "cancel"}`,
  /** A parent's start of its child: its own id, so a client's `<id>/start` of the same id cannot hide it. */
  childStart: (childId: string, parentId: string, step: string) => `${childId}/start/parent/${parentId}/${step}`,
  childEvent: (childId: string, parentId: string, step: string, event: ChildEventMessage["event"]) => `${childId}/parent/${parentId}/${step}/${event}`,
  /** The cancel a parent's close policy sends; `trigger` "end" (the parent ended) or "started" (the child started after). */
  parentClosed: (childId: string, trigger: "end" | "started") => `${childId}/parent-closed/${trigger}`,
};

const runScope = (id: string, run: number | undefined): string => (run !== undefined && run > 1 ? `${id}/r.${run}` : id);

export const TIMER_KEY = {
  retry: (step: string, attempt: number) => `retry_${attempt}_${step}`,
  sleep: (step: string) => `sleep_${step}`,
  timeout: () => "timeout",
};

/**
 * The UTF-8 size of `text`, counted only when it could pass `limit`: UTF-8 takes at most 3 bytes
 * per UTF-16 unit, so most messages (far below their limit) cost no count at all.
 */
export function utf8BytesOver(text: string, limit: number): number | undefined {
  if (text.length * 3 <= limit) return undefined;
  const bytes = Buffer.byteLength(text);
  return bytes > limit ? bytes : undefined;
}

export { ProtocolError } from "./errors.js";

/**
 * `maxDepth`: the deepest nesting of arrays and objects accepted (the body's own counts as 1),
 * checked on the text before parsing. Deep data parses, but overflows the stack later, wherever it
 * is copied or serialized (the state write): refused here, it is a clear dead letter instead.
 */
export function parseJson(data: Uint8Array, options: { maxDepth?: number } = {}): unknown {
  const text = new TextDecoder().decode(data);
  if (options.maxDepth !== undefined) {
    const depth = jsonDepthOver(text, options.maxDepth);
    if (depth !== undefined) throw new ProtocolError(`body nests arrays/objects deeper than limits.maxInputDepth (${options.maxDepth}); flatten the input or pass a reference`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`body is not JSON (${(err as Error).message}): ${text.slice(0, 80)}`);
  }
}

/** A nesting depth beyond `limit` (the first one found), or undefined; brackets inside strings do not count. */
function jsonDepthOver(text: string, limit: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export function parseStart(body: unknown): StartMessage {
  if (!isObject(body)) throw new ProtocolError(`start message must be a JSON object {"id"?: string, "input"?: any, "searchAttributes"?: object}, got ${typeName(body)}`);
  const known = ["id", "input", "searchAttributes", "signal", "timeoutMs", "memo", "idReusePolicy", "parent", "traceparent", "retry"];
  const unknownKeys = Object.keys(body).filter((k) => !known.includes(k));
  if (unknownKeys.length) throw new ProtocolError(`start message has unknown field(s) ${unknownKeys.map((k) => `"${k}"`).join(", ")}; only ${known.map((k) => `"${k}"`).join(", ")} are accepted`);
  if (body.id !== undefined && body.id !== null && typeof body.id !== "string") throw new ProtocolError(`start message "id" must be a string, got ${typeName(body.id)}`);
  const start: StartMessage = body.id === undefined || body.id === null ? { input: body.input } : { id: body.id as string, input: body.input };
  if (body.searchAttributes !== undefined && body.searchAttributes !== null) start.searchAttributes = parseTypedAttributes(body.searchAttributes, "start message \"searchAttributes\"");
  if (body.signal !== undefined && body.signal !== null) {
    const signal = body.signal;
    if (!isObject(signal) || typeof signal.name !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(signal.name) || typeof signal.signalId !== "string" || signal.signalId.length === 0) {
      throw new ProtocolError(`start message "signal" must be {"name": <1-100 characters of A-Z a-z 0-9 _ ->, "payload"?: any, "signalId": <non-empty string>}`);
    }
    start.signal = { name: signal.name, payload: signal.payload === undefined ? null : signal.payload, signalId: signal.signalId };
  }
  if (body.timeoutMs !== undefined && body.timeoutMs !== null) {
    if (typeof body.timeoutMs !== "number" || !Number.isInteger(body.timeoutMs) || body.timeoutMs < 0) throw new ProtocolError(`start message "timeoutMs" must be a whole number of milliseconds ≥ 0, got ${JSON.stringify(body.timeoutMs)}`);
    start.timeoutMs = body.timeoutMs;
  }
  if (body.memo !== undefined && body.memo !== null) start.memo = body.memo;
  if (body.idReusePolicy !== undefined && body.idReusePolicy !== null) {
    if (!ID_REUSE_POLICIES.includes(body.idReusePolicy as IdReusePolicy)) throw new ProtocolError(`start message "idReusePolicy" must be one of ${ID_REUSE_POLICIES.map((p) => `"${p}"`).join(", ")}, got ${JSON.stringify(body.idReusePolicy)}`);
    start.idReusePolicy = body.idReusePolicy as IdReusePolicy;
  }
  if (body.parent !== undefined && body.parent !== null) {
    const parent = body.parent;
    if (!isObject(parent) || typeof parent.id !== "string" || typeof parent.step !== "string" || typeof parent.workflow !== "string") {
      throw new ProtocolError(`start message "parent" must be {"id": string, "step": string, "workflow": string}`);
    }
    if (parent.runId !== undefined && typeof parent.runId !== "string") throw new ProtocolError(`start message "parent.runId" must be a string`);
    start.parent = { id: parent.id, step: parent.step, workflow: parent.workflow, ...(typeof parent.runId === "string" ? { runId: parent.runId } : {}) };
  }
  if (body.retry !== undefined && body.retry !== null) {
    const retry = body.retry;
    if (!isObject(retry) || !Number.isInteger(retry.run) || (retry.run as number) < 1) throw new ProtocolError(`start message "retry" must be {"run": <the run number to retry, ≥ 1>}`);
    if (start.id === undefined) throw new ProtocolError(`start message "retry" needs the "id" of the workflow to retry`);
    start.retry = { run: retry.run as number };
  }
  // Trace context is best effort: one that is not a W3C traceparent is ignored, never refused.
  if (typeof body.traceparent === "string" && /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/.test(body.traceparent)) start.traceparent = body.traceparent;
  return start;
}

/** Typed search attributes from the wire: each `{ "type": "string"|"number"|"boolean"|"time", "value": … }` of that type. */
export function parseTypedAttributes(body: unknown, where: string): TypedAttributes {
  if (!isObject(body)) throw new ProtocolError(`${where} must be an object of name → { type, value }, got ${typeName(body)}`);
  const out: TypedAttributes = {};
  for (const [name, raw] of Object.entries(body)) {
    if (!isObject(raw) || typeof raw.type !== "string") throw new ProtocolError(`${where}: "${name}" must be { "type": …, "value": … }`);
    const value = raw.type === "time" ? (typeof raw.value === "string" && !Number.isNaN(Date.parse(raw.value)) ? new Date(raw.value) : undefined) : raw.value;
    if (value === undefined || !["string", "number", "boolean", "time"].includes(raw.type) || (raw.type !== "time" && typeof value !== raw.type)) {
      throw new ProtocolError(`${where}: "${name}" has type ${JSON.stringify(raw.type)} and value ${JSON.stringify(raw.value)}; the type is one of string, number, boolean, time (an ISO 8601 text), and the value is of it`);
    }
    try {
      out[name] = typedAttribute(name, value, where);
    } catch (err) {
      throw new ProtocolError((err as Error).message);
    }
  }
  return out;
}

export function parseCompletion(body: unknown): CompletionMessage {
  if (!isObject(body)) throw new ProtocolError(`completion must be a JSON object, got ${typeName(body)}`);
  if (typeof body.workflowId !== "string" || typeof body.step !== "string") throw new ProtocolError(`completion needs string "workflowId" and "step"`);
  if (!Number.isInteger(body.attempt) || (body.attempt as number) < 1) throw new ProtocolError(`completion needs "attempt" ≥ 1`);
  if (typeof body.ok !== "boolean") throw new ProtocolError(`completion needs boolean "ok"`);
  if (body.ok === false && !(isObject(body.error) && typeof body.error.message === "string")) throw new ProtocolError(`failed completion needs "error": {"message", "type"}`);
  // Only an object can carry a type: `"error": "x"` on a successful completion is ignored, not written to.
  const error = isObject(body.error) ? (body.error as unknown as ErrorRecord) : undefined;
  if (error && typeof error.type !== "string") error.type = "Error";
  return body as unknown as CompletionMessage;
}

export function parseTimer(body: unknown): TimerMessage {
  if (!isObject(body) || typeof body.workflowId !== "string" || typeof body.key !== "string" || typeof body.fireAt !== "number") {
    throw new ProtocolError(`timer message needs "workflowId", "key" and numeric "fireAt"`);
  }
  if (body.kind !== "retry" && body.kind !== "sleep" && body.kind !== "timeout") throw new ProtocolError(`timer kind ${JSON.stringify(body.kind)} is unknown`);
  return body as unknown as TimerMessage;
}

export function parseTimerBatch(body: unknown): TimerBatchMessage {
  if (!isObject(body) || typeof body.fireAt !== "number" || !Array.isArray(body.timers)) throw new ProtocolError(`timer batch needs numeric "fireAt" and a "timers" array`);
  return { fireAt: body.fireAt, timers: body.timers.map(parseTimer) };
}

export function parseSignal(body: unknown): SignalMessage {
  if (!isObject(body) || typeof body.workflowId !== "string" || typeof body.name !== "string") throw new ProtocolError(`signal message needs "workflowId" and "name"`);
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(body.name)) throw new ProtocolError(`signal name ${JSON.stringify(body.name)} is not valid`);
  if (body.signalId !== undefined && typeof body.signalId !== "string") throw new ProtocolError(`signal "signalId" must be a string`);
  return body as unknown as SignalMessage;
}

export function parseCancel(body: unknown): CancelMessage {
  if (!isObject(body) || typeof body.workflowId !== "string") throw new ProtocolError(`cancel message needs "workflowId"`);
  if (body.reason !== undefined && typeof body.reason !== "string") throw new ProtocolError(`cancel "reason" must be a string`);
  if (body.terminate !== undefined && typeof body.terminate !== "boolean") throw new ProtocolError(`cancel "terminate" must be a boolean`);
  return body as unknown as CancelMessage;
}

export function parseChildEvent(body: unknown): ChildEventMessage {
  if (!isObject(body) || typeof body.parentId !== "string" || typeof body.step !== "string" || typeof body.childId !== "string" || typeof body.workflow !== "string") {
    throw new ProtocolError(`child event needs string "parentId", "step", "childId" and "workflow"`);
  }
  if (body.event !== "started" && body.event !== "ended" && body.event !== "rejected") throw new ProtocolError(`child event "event" must be "started", "ended" or "rejected", got ${JSON.stringify(body.event)}`);
  if (body.event === "ended" && typeof body.status !== "string") throw new ProtocolError(`child event "ended" needs the child's "status"`);
  if (body.parentRunId !== undefined && typeof body.parentRunId !== "string") throw new ProtocolError(`child event "parentRunId" must be a string`);
  if (body.error !== undefined && !(isObject(body.error) && typeof body.error.message === "string")) throw new ProtocolError(`child event "error" must be {"message", "type"}`);
  return body as unknown as ChildEventMessage;
}

export function parseTask(body: unknown): TaskMessage {
  if (!isObject(body) || typeof body.workflowId !== "string" || typeof body.step !== "string" || typeof body.activity !== "string" || !Number.isInteger(body.attempt)) {
    throw new ProtocolError(`task needs "workflowId", "step", "activity" and integer "attempt"`);
  }
  if (typeof body.timeoutMs !== "number" || !Number.isFinite(body.timeoutMs) || body.timeoutMs < 0) {
    throw new ProtocolError(`task needs "timeoutMs", a number of milliseconds ≥ 0, got ${JSON.stringify(body.timeoutMs)}`);
  }
  return body as unknown as TaskMessage;
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

export const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
