/**
 * The workflow state document: the value of key `<id>` in WORKFLOW_STATES. Part of the wire
 * contract (docs/protocol.md): any NATS client may read it. Every change is a compare-and-set on
 * the key's revision, so the document is also the workflow's journal (with its history chunks,
 * for a long workflow).
 */
import type { ErrorRecord } from "./errors.js";
import type { RetryPolicy } from "./retry-policy.js";
import type { TypedAttributes } from "./visibility/search-attributes.js";

export const STATE_SCHEMA_VERSION = 2;

/**
 * "continued_as_new" ends a run, never a workflow: only an archived run (key `<id>/r.<n>`,
 * orchestrator/runs.ts) holds it; key `<id>` goes from that run's last running state straight to
 * the next run's first. So it is not among TERMINAL_STATUSES (a workflow's end), but isTerminal.
 */
export type WorkflowStatus = "running" | "completed" | "failed" | "cancelled" | "terminated" | "timed_out" | "continued_as_new";
export const TERMINAL_STATUSES: readonly WorkflowStatus[] = ["completed", "failed", "cancelled", "terminated", "timed_out"];

/**
 * scheduled: its task is published (queued or running); retrying: an attempt failed and the next
 * one waits on a durable backoff timer; waiting: a sleep that has not fired, a signal or a child
 * workflow not yet received; cancelled: the code stopped awaiting it because of a cancellation (a
 * cancel request, a withTimeout deadline, or a withTimeout whose function settled before its
 * timer): a later completion or timer is a no-op.
 */
export type StepStatus = "scheduled" | "retrying" | "waiting" | "completed" | "failed" | "cancelled";

export interface StepState {
  /** Position in the order the workflow issued its commands (0-based). */
  seq: number;
  /**
   * "upsert": a ctx.upsertSearchAttributes call, recorded completed when issued; `output` holds the typed values it set.
   * "marker": a ctx.patched(id) that answered true (or a ctx.deprecatePatch(id) that met such a marker on replay),
   * recorded completed when issued; `patch` holds the id.
   * "cancel": a cancel request (`wf cancel`), named `$cancel`, recorded completed when it was applied and
   * entered in the journal at that point, where a replay delivers it to the code again; `reason` holds
   * its reason, `seq` the number of commands the code had issued by then (docs/protocol.md, "Cancellation").
   * "child": a child workflow (ctx.executeChild / ctx.startChild, or a DAG step with `workflow`); `child` describes it.
   * "child_result": a startChild handle's result(), waiting for the child of step `child.step` to end.
   */
  kind: "activity" | "sleep" | "signal" | "upsert" | "marker" | "cancel" | "child" | "child_result" | "update";
  /** Activity type (export name) for kind "activity". */
  activity?: string;
  status: StepStatus;
  /** Current attempt, 1-based (the one running, or the last one). */
  attempt: number;
  /** Attempts allowed by the retry policy. */
  maxAttempts?: number;
  input?: unknown;
  /** kind "activity": hash of `input`'s JSON text, checked on replay (absent in steps recorded before it existed). */
  inputHash?: string;
  output?: unknown;
  /** The error that failed the step (terminal). */
  error?: ErrorRecord;
  /** The last failed attempt's error, kept while retrying and after. */
  lastError?: ErrorRecord;
  timeoutMs?: number;
  /** The resolved policy, while the step can still be retried (dropped once it settled). */
  retry?: RetryPolicy;
  scheduledAt: string;
  /** When the current/last attempt started on a worker (reported with its completion). */
  startedAt?: string;
  finishedAt?: string;
  /** The runtime that ran the last attempt. */
  worker?: string;
  /**
   * status "scheduled": the runtime running this attempt as a continuation of the previous step
   * (its task was not published; docs/protocol.md, "Continuations").
   */
  continued?: string;
  /**
   * status "scheduled", `continued`: the task whose message is this step's lease (the first step
   * of the chain of continued steps; docs/protocol.md, "Continuations"). A repair re-publishes a
   * continued step only when it handles that very task and its holder no longer runs the step.
   * (Absent in states written before it existed: then any repair may re-publish the step.)
   */
  lease?: LeaseRef;
  /** status "retrying": when the next attempt is dispatched. */
  nextAttemptAt?: string;
  /** kind "signal": the signal name it waits for; once received, `output` is its payload. */
  signal?: string;
  /** kind "marker": the patch id (ctx.patched): this run took the patched code path at this point. */
  patch?: string;
  /**
   * kind "upsert": the names it gave the workflow for the first time (absent: none). With them a
   * replay tells the attributes the workflow started with from those its code added.
   */
  added?: string[];
  /** kind "update": an accepted update (named `$update-<id>`), entered in the journal where it was applied; `input` holds its args. */
  update?: { id: string; name: string };
  /** kind "cancel": the reason given with the request, if any. */
  reason?: string;
  /** kind "child" and "child_result": the child workflow (runtime/orchestrator/children.ts). */
  child?: ChildRef;
  /** kind "sleep": when it fires. */
  fireAt?: string;
  /** Epoch ms at which the workflow code received the result; replay's clock for that activation. */
  resolvedAt?: number;
}

/**
 * A parent's record of one child workflow, on its step of kind "child" (and, copied when it
 * settles, on a "child_result" step).
 */
export interface ChildRef {
  /** The child's workflow id (deterministic: see docs/protocol.md, "Child workflows"). */
  id: string;
  /** The child's workflow type. */
  workflow: string;
  /**
   * "starting": its start is published, its state not known to exist yet; then the child's own
   * status as the parent last heard it (a terminal one once its end reached the parent).
   * "rejected": the start was refused (unknown type, id taken by another workflow, bad input).
   */
  status: "starting" | "rejected" | WorkflowStatus;
  /** What happens to the child if the parent ends first (default "terminate"). */
  parentClosePolicy?: ParentClosePolicy;
  /** kind "child": "result" (executeChild: the step settles when the child ends) or "start" (startChild: when it started). */
  awaits?: "result" | "start";
  /** kind "child_result": the startChild step it waits on. */
  step?: string;
  /** Start options passed through to the child's start message. */
  timeoutMs?: number;
  memo?: unknown;
  searchAttributes?: TypedAttributes;
  /** awaits "start": the child's result or error once it ended, until a result() call takes it. */
  result?: unknown;
  error?: ErrorRecord;
  /** awaits "start": a result() step took the end (it may then move to a history chunk). */
  taken?: boolean;
}

export type ParentClosePolicy = "terminate" | "cancel" | "abandon";

/** A child workflow's link to its parent (`WorkflowState.parent`). */
export interface ParentRef {
  id: string;
  /** The parent's step of kind "child" that started this workflow. */
  step: string;
  /** The parent's workflow type. */
  workflow: string;
  /** The parent's run that started this child (its `runId`): a report to a later run of the parent is a no-op there. */
  runId?: string;
}

/** A close policy owed to a child of an earlier run (WorkflowState.closing): cancel, or terminate. */
export interface PendingClose {
  childId: string;
  terminate: boolean;
  reason: string;
}

/** A task by its step and attempt: what `Nats-Msg-Id` `<id>/<step>/<attempt>` names. */
export interface LeaseRef {
  step: string;
  attempt: number;
}

export interface WorkflowState {
  /** Schema version of this document. */
  v: number;
  id: string;
  workflow: string;
  status: WorkflowStatus;
  input: unknown;
  result?: unknown;
  error?: { message: string; type: string };
  createdAt: string;
  updatedAt: string;
  completedAt?: string;
  /** Version (content hash) of the code the workflow runs on. */
  bundle: string;
  kind: "code" | "dag";
  /** Whole-workflow timeout, if any, and when it fires. */
  timeoutMs?: number;
  deadline?: string;
  /** Steps by name, each with its own record (a long workflow's oldest ones: see `history`). */
  steps: Record<string, StepState>;
  /**
   * Step names in the order their results were delivered to the workflow code. Replay delivers them
   * again in this order, which makes Promise.all / Promise.race deterministic. An upsert step,
   * which delivers nothing, is entered when it is recorded (so it can move to a history chunk).
   */
  journal: string[];
  /**
   * Present once the oldest delivered steps moved out of this document into history chunks
   * (orchestrator/history.ts): keys `<id>/0` … `<id>/<chunks − 1>` of the same bucket hold their
   * records and their part of the journal, which comes before `journal`.
   */
  history?: { chunks: number; steps: number };
  /**
   * Set while the workflow is blocked (orchestrator.onNonDeterminism = "block"): its code diverged
   * from the journal; its events are retried until code that replays cleanly runs.
   */
  blocked?: { message: string; since: string };
  /**
   * Signals received that no wait has consumed yet, in arrival order. A consumed one is dropped:
   * its payload is the output of the signal step that took it.
   */
  signals?: SignalRecord[];
  /** Ids of the most recently consumed signals (at most 256), so a redelivered one is not received twice. */
  seenSignals?: string[];
  /**
   * The outcomes of the most recent updates (at most 64), for their callers (client.update): an
   * accepted one once its handler settled, a rejected one (its validator threw, `rejected`: no
   * journal entry) at once. An update id in here, in `seenUpdates` or in the journal is never
   * applied again.
   */
  updates?: UpdateRecord[];
  /**
   * Ids of the most recently accepted updates (at most 256), in the order they were applied: what
   * keeps a retried update from applying twice once its `$update-<id>` step moved to a history
   * chunk (orchestrator/history.ts) and before, or long after, its outcome is in `updates`.
   */
  seenUpdates?: string[];
  /**
   * Set when a cancel request was applied (status stays "running" while the code cleans up):
   * when, and the reason given. A second request is a no-op; `wf terminate` still stops it.
   */
  cancelRequested?: { at: string; reason?: string };
  /** Set when a parent workflow started this one as its child (runtime/orchestrator/children.ts). */
  parent?: ParentRef;
  /** Free JSON given at start (`memo`), shown by `wf show`; the engine does not read it. */
  memo?: unknown;
  /** Search attributes (visibility/search-attributes.ts), typed; indexed for `wf list --where`. */
  searchAttributes?: TypedAttributes;
  /**
   * How long the workflow is kept once finished, in ms (0: until deleted); fixed at start from its
   * definition or the `retention` config. Absent in states from before retention: 7 days.
   */
  retentionMs?: number;
  /**
   * This run's id (orchestrator/runs.ts): deterministic for the start message (or the run it
   * continues), carried by its tasks, completions and timers, so that an earlier run's cannot
   * act on this one. Absent in states from before runs.
   */
  runId?: string;
  /** This run's number, 1 for the first (absent: 1). Runs 1 … run − 1 are archived at `<id>/r.<n>`. */
  run?: number;
  /** The run this one replaced (continue-as-new, or a start under an id reuse policy). */
  previousRunId?: string;
  /**
   * A run that continued as new: its children still running, to close by their policy
   * (orchestrator/children.ts). Recorded with the switch, so a runtime that dies before it
   * publishes them leaves them to the next writer of this run, which publishes them before the
   * write that drops them; until then they are pending effects of this state.
   */
  closing?: PendingClose[];
  /** Status "continued_as_new" (an archived run): the run that continued it, and its input. */
  continuedAsNew?: { runId: string; input: unknown };
  /** W3C trace context of this run's span (observability/tracing.ts): its task messages carry it. */
  traceparent?: string;
  /**
   * A retry (orchestrator/retry.ts): the run retried, and the step it re-ran from (absent: it
   * re-ran nothing that had been delivered, e.g. a run terminated before its first result).
   */
  retryOf?: { run: number; runId?: string; from?: string; reused: number };
  /** The seed of ctx.random/ctx.uuid when it is not this run's own (a retry keeps the retried run's, so its reused steps replay). */
  randomSeed?: string;
}

export interface SignalRecord {
  id: string;
  name: string;
  payload: unknown;
  receivedAt: string;
  /** Only in states written before consumed signals were dropped: the wait that consumed it. */
  step?: string;
}

/** The run number of a state (states from before runs: 1). */
export const runNumber = (state: Pick<WorkflowState, "run">): number => state.run ?? 1;

export function isTerminal(status: WorkflowStatus): boolean {
  return status === "continued_as_new" || TERMINAL_STATUSES.includes(status);
}

/** The name of the step that records an accepted update: no name the code can give a step. */
export const updateStepName = (updateId: string): string => `$update-${updateId}`;

/**
 * The update was applied or refused already, by what the head state holds (never a history
 * chunk): its id among the accepted ones, its outcome, or its step (which states written before
 * seenUpdates existed have alone).
 */
export function updateSeen(state: WorkflowState, updateId: string): boolean {
  return state.seenUpdates?.includes(updateId) === true || state.updates?.some((u) => u.id === updateId) === true || state.steps[updateStepName(updateId)] !== undefined;
}

/** Steps sorted by the order the workflow issued them. */
export function stepsInOrder(state: WorkflowState): Array<[string, StepState]> {
  return Object.entries(state.steps).sort((a, b) => a[1].seq - b[1].seq);
}

/** An update's outcome as its caller reads it (WorkflowState.updates). */
export interface UpdateRecord {
  id: string;
  name: string;
  ok: boolean;
  result?: unknown;
  error?: ErrorRecord;
  /** The validator refused it: nothing was recorded in the journal. */
  rejected?: boolean;
  /**
   * A refused update's arguments when they were claim-checked (a `$ref`): no step holds them, so
   * its outcome does, and the object goes with the workflow (payloads/removal.ts) while it is kept.
   */
  args?: unknown;
  at: string;
}
