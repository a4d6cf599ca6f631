/**
 * Child workflows, on the orchestrator's side. A child is a workflow like any other; what links
 * it to its parent is three kinds of message, each published only after the state write that
 * decided it (so a crash in between is repaired by publishing again, deduplicated by Nats-Msg-Id):
 *
 * - the child's start (effect "child"): a normal start message with `parent`, published after the
 *   parent's write that records the step of kind "child" (status "starting"). Until the parent hears
 *   that the child started, the step is pending: a redelivered event or a recovery publishes the
 *   start again, and the child's id makes a second start a no-op there (it reports again instead).
 * - the child's report (effect "parent", subject `workflow.child.<parentId>`): "started" after the
 *   child's state is created, "ended" after its terminal write, "rejected" when its start was
 *   refused (unknown type, bad input, the id belongs to another workflow). A report the parent's
 *   state already reflects is a no-op there (decideChildEvent), so duplicates are harmless.
 * - the parent's close policy (effect "close"): after the parent's terminal write, a cancel (or a
 *   terminate) to each child still running, unless its policy is "abandon". A child that starts
 *   after its parent ended hears it when its "started" report reaches the ended parent.
 *
 * Reports may arrive in any order ("ended" before "started"): "ended" implies "started", and a
 * later "started" finds the child past it.
 */
import type { Topology } from "../nats/topology.js";
import { encode, MSG_ID, type CancelMessage, type ChildEventMessage, type StartMessage } from "../protocol.js";
import { isTerminal, type ChildRef, type PendingClose, type StepState, type WorkflowState, type WorkflowStatus } from "../state.js";
import type { ErrorRecord } from "../errors.js";
import type { Command } from "../journal/execution.js";
import { deliver, draft, type Decision, type DecideEnv } from "./decide.js";
import type { StoredWorkflow } from "./state-store.js";

export type ChildEffect =
  /** Publish the start of the child of this step. */
  | { kind: "child"; step: string }
  /** Report to this workflow's parent. */
  | { kind: "parent"; event: ChildEventMessage }
  /** The parent's close policy for a child still running. */
  | { kind: "close"; childId: string; terminate: boolean; reason: string; trigger: "end" | "started" };

const iso = (ms: number) => new Date(ms).toISOString();

/** A step of kind "child" or "child_result" for the command the code issued (decide.ts addStep). */
export function addChildStep(state: WorkflowState, command: Command & { kind: "child" | "child_result" }, now: number, effects: { push(effect: ChildEffect): unknown }): void {
  if (command.kind === "child") {
    const child: ChildRef = { id: command.childId, workflow: command.workflow, status: "starting", parentClosePolicy: command.parentClosePolicy, awaits: command.awaits };
    if (command.timeoutMs !== undefined) child.timeoutMs = command.timeoutMs;
    if (command.memo !== undefined) child.memo = command.memo;
    if (command.searchAttributes !== undefined) child.searchAttributes = command.searchAttributes;
    state.steps[command.name] = { seq: command.seq, kind: "child", status: "waiting", attempt: 1, input: command.input, inputHash: command.inputHash, child, scheduledAt: iso(now) };
    effects.push({ kind: "child", step: command.name });
    return;
  }
  // The code has a handle only once the start step settled; it stays in the state until a result
  // step took its child's end (history.ts keepsChangingStep).
  const of = state.steps[command.step]?.child;
  state.steps[command.name] = {
    seq: command.seq,
    kind: "child_result",
    status: "waiting",
    attempt: 0,
    child: { id: of?.id ?? "", workflow: of?.workflow ?? "", status: of?.status ?? "running", step: command.step },
    scheduledAt: iso(now),
  };
}

/**
 * A waiting result step whose child has ended already (before the code called result()): settled
 * now, as its own journal entry, like a signal that arrived before its wait (decide.ts settle).
 */
export function settleReadyChildResult(state: WorkflowState, now: number): string | undefined {
  const ready = Object.entries(state.steps)
    .filter(([, s]) => s.kind === "child_result" && s.status === "waiting" && hasEnded(state.steps[s.child!.step!]?.child))
    .sort((a, b) => a[1].seq - b[1].seq)[0];
  if (!ready) return undefined;
  settleResultStep(state, ready[0], now);
  state.journal.push(ready[0]);
  state.steps[ready[0]]!.resolvedAt = now;
  return ready[0];
}

const hasEnded = (child: ChildRef | undefined): boolean => child !== undefined && (child.status === "rejected" || (child.status !== "starting" && isTerminal(child.status)));

/** Settle result step `name` with the end its start step recorded, and mark that end taken. */
function settleResultStep(state: WorkflowState, name: string, now: number): void {
  const step = edit(state, name);
  const start = edit(state, step.child!.step!);
  const child = start.child!;
  start.child = { ...child, taken: true };
  delete start.child.result;
  delete start.child.error;
  step.child = { ...step.child!, status: child.status };
  step.finishedAt = iso(now);
  if (child.status === "completed") {
    step.status = "completed";
    step.output = child.result === undefined ? null : child.result;
  } else {
    step.status = "failed";
    step.error = child.error ?? { message: child.status, type: "Error" };
  }
}

/** A report from a child (ChildEventMessage) applied to its parent's state. */
export async function decideChildEvent(env: DecideEnv, stored: StoredWorkflow, event: ChildEventMessage): Promise<Decision> {
  const current = stored.state;
  const existing = current.steps[event.step];
  if (!existing || existing.kind !== "child" || existing.child?.id !== event.childId) return { kind: "noop", reason: `no child step "${event.step}" for child ${event.childId}` };
  if (event.parentRunId !== undefined && current.runId !== undefined && event.parentRunId !== current.runId) return { kind: "noop", reason: `the report is for run ${event.parentRunId}, not this run` };
  const child = existing.child;
  const now = env.now();
  if (current.status !== "running") {
    // The parent ended before this child started: its close policy reaches the child now.
    if (event.event === "started" && child.status === "starting" && child.parentClosePolicy !== "abandon") {
      const state = draft(current);
      edit(state, event.step).child = { ...child, status: "running" };
      const close = closeEffect(current, child, "started");
      return { kind: "write", state, effects: [close], execution: undefined };
    }
    return { kind: "noop", reason: `workflow is ${current.status}` };
  }
  if (event.event === "started") {
    if (child.status !== "starting") return { kind: "noop", reason: `child ${child.id} is already ${child.status}` };
    const state = draft(current);
    const step = edit(state, event.step);
    step.child = { ...child, status: "running" };
    state.updatedAt = iso(now);
    if (child.awaits === "start" && step.status === "waiting") {
      step.status = "completed";
      step.output = { workflowId: child.id };
      step.finishedAt = iso(now);
      return deliver(env, stored, state, event.step, now, []);
    }
    return { kind: "write", state, effects: [], execution: stored.execution };
  }
  if (hasEnded(child)) return { kind: "noop", reason: `the end of child ${child.id} is already recorded` };
  const status = event.event === "rejected" ? "rejected" : (event.status as WorkflowStatus);
  const error: ErrorRecord | undefined = status === "completed" ? undefined : trim(event.error ?? { message: status, type: "Error" });
  const state = draft(current);
  const step = edit(state, event.step);
  step.child = { ...child, status };
  state.updatedAt = iso(now);
  if (child.awaits === "start") {
    if (step.status === "waiting") {
      // It ended (or was refused) before the parent heard that it started.
      step.finishedAt = iso(now);
      if (status === "rejected") {
        step.status = "failed";
        step.error = error!;
      } else {
        step.status = "completed";
        step.output = { workflowId: child.id };
      }
    }
    if (status !== "rejected") {
      if (status === "completed") step.child.result = event.result === undefined ? null : event.result;
      else step.child.error = error!;
    }
    if (step.status === "completed" && existing.status === "waiting") return deliver(env, stored, state, event.step, now, []);
    if (step.status === "failed") return deliver(env, stored, state, event.step, now, []);
    const waiting = Object.entries(state.steps).find(([, s]) => s.kind === "child_result" && s.status === "waiting" && s.child?.step === event.step)?.[0];
    if (!waiting) return { kind: "write", state, effects: [], execution: stored.execution };
    settleResultStep(state, waiting, now);
    return deliver(env, stored, state, waiting, now, []);
  }
  step.finishedAt = iso(now);
  if (status === "completed") {
    step.status = "completed";
    step.output = event.result === undefined ? null : event.result;
  } else {
    step.status = "failed";
    step.error = error!;
  }
  return deliver(env, stored, state, event.step, now, []);
}

/**
 * What a workflow's end sets off, published after its terminal write (and again by a repair):
 * its report to its parent, and its close policy for its children still running.
 */
export function endEffects(state: WorkflowState): ChildEffect[] {
  if (!isTerminal(state.status)) return [];
  const effects: ChildEffect[] = [];
  if (state.parent) effects.push({ kind: "parent", event: endReport(state) });
  for (const step of Object.values(state.steps)) {
    const child = step.child;
    if (step.kind !== "child" || !child || child.parentClosePolicy === "abandon" || hasEnded(child)) continue;
    effects.push(closeEffect(state, child, "end"));
  }
  return effects;
}

/** The closes a run owes the children of the run it continued (WorkflowState.closing). */
export function carriedCloses(state: WorkflowState): ChildEffect[] {
  return (state.closing ?? []).map((close) => ({ kind: "close", ...close, trigger: "end" }));
}

/** The closes owed at a switch of runs by `ended` (which continued as new), and what `ended` itself still carried. */
export function closesToCarry(ended: WorkflowState[]): PendingClose[] {
  const closes: PendingClose[] = [];
  for (const run of ended) {
    for (const close of run.closing ?? []) closes.push(close);
    if (run.status !== "continued_as_new") continue;
    for (const effect of endEffects(run)) if (effect.kind === "close") closes.push({ childId: effect.childId, terminate: effect.terminate, reason: effect.reason });
  }
  return closes;
}

/** The pending starts of a running workflow's children (outbox.ts pendingEffects). */
export function pendingChildStarts(state: WorkflowState): ChildEffect[] {
  const effects: ChildEffect[] = [];
  for (const [name, step] of Object.entries(state.steps)) if (step.kind === "child" && step.child?.status === "starting") effects.push({ kind: "child", step: name });
  return effects;
}

function closeEffect(parent: WorkflowState, child: ChildRef, trigger: "end" | "started"): ChildEffect {
  return { kind: "close", childId: child.id, terminate: (child.parentClosePolicy ?? "terminate") === "terminate", reason: `parent workflow ${parent.id} ${parent.status.replaceAll("_", " ")}`, trigger };
}

function endReport(state: WorkflowState): ChildEventMessage {
  const parent = state.parent!;
  const event: ChildEventMessage = { parentId: parent.id, step: parent.step, childId: state.id, workflow: state.workflow, ...runOf(parent), event: "ended", status: state.status };
  if (state.status === "completed") event.result = state.result === undefined ? null : state.result;
  else event.error = state.error ?? { message: state.status, type: "Error" };
  return event;
}

export async function publishChildEffect(topology: Topology, state: WorkflowState, effect: ChildEffect): Promise<void> {
  if (effect.kind === "parent") {
    const event = effect.event;
    await topology.js.publish(topology.names.childSubject(event.parentId), encode(event), { msgID: MSG_ID.childEvent(event.childId, event.parentId, event.step, event.event) });
    return;
  }
  if (effect.kind === "close") {
    const message: CancelMessage = { workflowId: effect.childId, reason: effect.reason, ...(effect.terminate ? { terminate: true } : {}) };
    await topology.js.publish(topology.names.cancelSubject(effect.childId), encode(message), { msgID: MSG_ID.parentClosed(effect.childId, effect.trigger) });
    return;
  }
  const step = state.steps[effect.step]!;
  const child = step.child!;
  const start: StartMessage = { id: child.id, input: step.input, parent: { id: state.id, step: effect.step, workflow: state.workflow, ...(state.runId ? { runId: state.runId } : {}) } };
  if (child.timeoutMs !== undefined) start.timeoutMs = child.timeoutMs;
  if (child.memo !== undefined) start.memo = child.memo;
  if (child.searchAttributes !== undefined) start.searchAttributes = child.searchAttributes;
  await topology.js.publish(topology.names.startSubject(child.workflow), encode(start), { msgID: MSG_ID.childStart(child.id, state.id, effect.step) });
}

/** The report a child makes once its state is created: "started" (or its end, if it ended in its start). */
export function startReport(state: WorkflowState): ChildEffect[] {
  if (!state.parent) return [];
  if (isTerminal(state.status)) return endEffects(state).filter((e) => e.kind === "parent");
  return [{ kind: "parent", event: { parentId: state.parent.id, step: state.parent.step, childId: state.id, workflow: state.workflow, ...runOf(state.parent), event: "started" } }];
}

/**
 * A child start for an id whose state exists. The same parent's child (a repeated start, after a
 * crash): report again what the child is at. Another workflow: the parent's child is rejected.
 */
export async function childStartFoundState(topology: Topology, existing: WorkflowState, start: StartMessage, workflowType: string): Promise<void> {
  const parent = start.parent;
  if (!parent) return;
  if (existing.parent?.id === parent.id && existing.parent.step === parent.step) {
    await Promise.all(startReport(existing).map((effect) => publishChildEffect(topology, existing, effect)));
    return;
  }
  await reportRejectedStart(topology, start, existing.id, workflowType, {
    message: `workflow id ${existing.id} is taken by another workflow (${existing.workflow}, ${existing.status}${existing.parent ? `, child of ${existing.parent.id}` : ""})`,
    type: "ChildWorkflowIdTakenError",
    code: "WF_CHILD_ID_TAKEN",
    hint: "Give the child an id of its own (options.id), or leave it out: the default `<parent id>-<step>` is unique per parent.",
  });
}

/** A child start the runtime refused without a state (unknown type, bad input): the parent hears it, instead of waiting forever. */
export async function reportRejectedStart(topology: Topology, start: StartMessage, childId: string, workflowType: string, error: ErrorRecord): Promise<void> {
  const parent = start.parent;
  if (!parent) return;
  const event: ChildEventMessage = { parentId: parent.id, step: parent.step, childId, workflow: workflowType, ...runOf(parent), event: "rejected", status: "rejected", error };
  await topology.js.publish(topology.names.childSubject(parent.id), encode(event), { msgID: MSG_ID.childEvent(childId, parent.id, parent.step, "rejected") });
}

/** A settled step of a child whose state is still to change blocks the history split (history.ts). */
export function keepsChangingStep(step: StepState | undefined): boolean {
  const child = step?.kind === "child" ? step.child : undefined;
  if (!child) return false;
  return !hasEnded(child) || (child.awaits === "start" && child.status !== "rejected" && child.taken !== true);
}

/** The parent run a report is for (absent for parents from before runs). */
const runOf = (parent: { runId?: string | undefined }): { parentRunId?: string } => (parent.runId ? { parentRunId: parent.runId } : {});

function edit(state: WorkflowState, name: string): StepState {
  const copy = { ...state.steps[name]! };
  state.steps[name] = copy;
  return copy;
}

function trim(error: ErrorRecord): ErrorRecord {
  const out: ErrorRecord = { message: String(error.message).slice(0, 4_000), type: typeof error.type === "string" ? error.type : "Error" };
  if (error.code) out.code = error.code;
  if (error.hint) out.hint = error.hint;
  if (error.encoded !== undefined) out.encoded = error.encoded; // a codec's envelope of the message (payloads.ts)
  return out;
}
