/**
 * Commands leave the orchestrator only after they are in the workflow's state (the outbox is the
 * state itself). Each is published with a deterministic Nats-Msg-Id, so a re-publish after a crash
 * (between the state write and the publish, or before the event's ack) is dropped by JetStream's
 * duplicate window; past that window, a duplicate task is harmless because only the first
 * completion of a step's attempt is recorded.
 */
import { headers } from "@nats-io/nats-core";
import { randomUUID } from "node:crypto";
import type { Topology } from "../nats/topology.js";
import { parkedTimersOf } from "./parked-timers.js";
import { encode, MSG_ID, TIMER_KEY, type AbortMessage, type TaskMessage, type TimerBatchMessage, type TimerMessage } from "../protocol.js";
import { runNumber, type WorkflowState } from "../state.js";
import { carriedCloses, endEffects, pendingChildStarts, publishChildEffect, type ChildEffect } from "./children.js";

/** `abort`: tell the workers to abort these steps' running attempts (cancel-steps.ts); core NATS, not re-published by a repair. */
export type Effect = { kind: "task"; step: string } | { kind: "timer"; timer: TimerMessage } | { kind: "abort"; steps?: string[] } | ChildEffect;
/** What a state waits on, and a repair re-publishes: its tasks, timers, and child effects. */
export type PendingEffect = Exclude<Effect, { kind: "abort" }>;

/** Publish the effects of one decision; resolves when JetStream has stored every one. */
export async function publishEffects(topology: Topology, state: WorkflowState, effects: Effect[]): Promise<void> {
  // Tasks first: the server handles a connection's messages in order, and the workflow waits on
  // its tasks, not on its timers (a start's workflow-timeout timer, published first, delayed the
  // first task by a third of a millisecond).
  const published: Array<Promise<void>> = [];
  for (const effect of effects) if (effect.kind === "task") published.push(publishTask(topology, state, effect.step));
  for (const effect of effects) if (effect.kind === "timer") published.push(publishTimer(topology, effect.timer));
  for (const effect of effects) if (effect.kind === "abort") publishAbort(topology, state, effect.steps, "workflow cancelled");
  for (const effect of effects) if (effect.kind === "child" || effect.kind === "parent" || effect.kind === "close") published.push(publishChildEffect(topology, state, effect));
  await Promise.all(published);
}

/**
 * Every effect a state still waits on: what a recovering runtime re-publishes. `skipContinued`
 * leaves out the tasks of steps a runtime runs as continuations (they were never published).
 */
export function pendingEffects(state: WorkflowState, options: { skipContinued?: boolean } = {}): PendingEffect[] {
  // An ended workflow may still owe its parent its end, and its children its close policy.
  // So may a run its predecessor's children (WorkflowState.closing).
  if (state.status !== "running") return [...endEffects(state), ...carriedCloses(state)];
  const effects: PendingEffect[] = [];
  for (const [name, step] of Object.entries(state.steps)) {
    if (step.status === "scheduled") {
      if (!(options.skipContinued && step.continued)) effects.push({ kind: "task", step: name });
    } else if (step.status === "retrying" && step.nextAttemptAt) effects.push({ kind: "timer", timer: retryTimer(state, name, step.attempt + 1, Date.parse(step.nextAttemptAt)) });
    else if (step.status === "waiting" && step.fireAt) effects.push({ kind: "timer", timer: sleepTimer(state, name, Date.parse(step.fireAt)) });
  }
  if (state.deadline) effects.push({ kind: "timer", timer: timeoutTimer(state, Date.parse(state.deadline)) });
  effects.push(...pendingChildStarts(state), ...carriedCloses(state));
  return effects;
}

/** The run a timer or task belongs to: its workflow id, and the run's id and number (orchestrator/runs.ts). */
export interface RunOf {
  id: string;
  runId?: string | undefined;
  run?: number | undefined;
}

/** A timer of `owner`'s run: it carries the runId, and a later run's key is scoped by its number (protocol.ts MSG_ID). */
function runTimer(owner: RunOf, key: string, timer: Omit<TimerMessage, "workflowId" | "key">): TimerMessage {
  const run = runNumber(owner);
  return { workflowId: owner.id, key: run > 1 ? `r${run}_${key}` : key, ...timer, ...(owner.runId ? { runId: owner.runId } : {}) };
}

export const retryTimer = (owner: RunOf, step: string, attempt: number, fireAt: number): TimerMessage => runTimer(owner, TIMER_KEY.retry(step, attempt), { kind: "retry", fireAt, step, attempt });

export const sleepTimer = (owner: RunOf, step: string, fireAt: number): TimerMessage => runTimer(owner, TIMER_KEY.sleep(step), { kind: "sleep", fireAt, step });

export const timeoutTimer = (owner: RunOf, fireAt: number): TimerMessage => runTimer(owner, TIMER_KEY.timeout(), { kind: "timeout", fireAt });

async function publishTask(topology: Topology, state: WorkflowState, stepName: string): Promise<void> {
  const task = taskMessage(state, stepName);
  await topology.js.publish(topology.names.taskSubject(task.activity), encode(task), { msgID: MSG_ID.task(state.id, stepName, task.attempt, task.run) });
}

/** The task of a `scheduled` step, as its message carries it. */
export function taskMessage(state: WorkflowState, stepName: string): TaskMessage {
  const step = state.steps[stepName]!;
  return {
    workflowId: state.id,
    workflow: state.workflow,
    step: stepName,
    activity: step.activity!,
    attempt: step.attempt,
    input: step.input,
    timeoutMs: step.timeoutMs!,
    scheduledAt: step.scheduledAt,
    bundle: state.bundle,
    ...(state.runId ? { runId: state.runId } : {}),
    ...(runNumber(state) > 1 ? { run: state.run } : {}),
    ...(state.traceparent ? { traceparent: state.traceparent } : {}),
  };
}

/** Ask the workers to abort running attempts of a workflow (`steps`, or all of them): best effort, on core NATS. */
export function publishAbort(topology: Topology, state: WorkflowState, steps: string[] | undefined, reason: string): void {
  const message: AbortMessage = { workflowId: state.id, ...(state.runId ? { runId: state.runId } : {}), ...(steps ? { steps } : {}), reason };
  try {
    topology.nc.publish(topology.names.abortSubject(state.id), encode(message));
  } catch {
    /* connection closing: the attempts run on, and their completions are no-ops */
  }
}

export async function publishTimer(topology: Topology, timer: TimerMessage): Promise<void> {
  const ack = await topology.js.publish(topology.names.timerScheduleSubject(timer.workflowId), encode(timer), { msgID: MSG_ID.timer(timer.workflowId, timer.key, timer.repark), headers: fireAtHeader(timer.fireAt) });
  // (A duplicate's ack names the stored original: the same message.)
  parkedTimersOf(topology).stored(ack.seq, timer.fireAt, [timer.workflowId]);
}

/** Several timers parked as one message (timer-batches.ts), due at the latest of theirs. */
export async function publishTimerBatch(topology: Topology, timers: TimerMessage[]): Promise<void> {
  const batch: TimerBatchMessage = { fireAt: Math.max(...timers.map((t) => t.fireAt)), timers };
  const ack = await topology.js.publish(topology.names.timerBatchSubject, encode(batch), { msgID: MSG_ID.timerBatch(randomUUID()), headers: fireAtHeader(batch.fireAt) });
  parkedTimersOf(topology).stored(ack.seq, batch.fireAt, timers.map((t) => t.workflowId));
}

/** Informational: the body is authoritative. */
function fireAtHeader(fireAt: number) {
  const h = headers();
  h.set("Jetflow-Fire-At", new Date(fireAt).toISOString());
  return h;
}
