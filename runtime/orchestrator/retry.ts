/**
 * Retry (`wf retry <id>`, client.retry): a new run of a workflow whose latest run ended failed,
 * cancelled, terminated or timed out, that reuses what that run's code received before its first
 * failed step instead of running it again.
 *
 * The new run's first state carries the retried run's journal up to (not including) the first
 * entry that is not a plain completed result (a failed step, a cancel request, a child workflow),
 * with those steps' records; its code is replayed against that prefix (replay.ts, `unrecorded`),
 * so the recorded results resolve at once, and the commands beyond it (the failed step, the
 * steps after) become the run's new commands, dispatched as in any run. A DAG is the same: its
 * completed nodes are its journal. The run keeps the retried run's random seed (ctx.random,
 * ctx.uuid), input, search attributes, memo and timeout; signals it had consumed after the cut
 * go back to its inbox.
 *
 * Code that no longer issues the recorded commands in the same order (a change deployed since
 * that diverges before the failed step, or a step input built from ctx.now() before the first
 * await) fails the new run at once with a RetryDivergedError, and nothing runs twice.
 * ctx.patched() past the reused prefix answers as on a replay (the old path), since the
 * activation that reaches it is a replay.
 */
import { bindWorkflow, type RegisteredWorkflow } from "../definitions.js";
import { NonDeterminismError, ValidationError } from "../errors.js";
import type { Command } from "../journal/execution.js";
import { replayWorkflow } from "../journal/replay.js";
import { randomSeedOf } from "../journal/execution.js";
import { runNumber, type SignalRecord, type StepState, type WorkflowState } from "../state.js";
import { cancelSteps } from "./cancel-steps.js";
import { addStep, newRunState, settle, type Decision, type DecideEnv, type StartExtras } from "./decide.js";

export { RETRYABLE_STATUSES } from "./runs.js";

/** The new run's code no longer replays the retried run's reused steps. */
export class RetryDivergedError extends ValidationError {
  constructor(id: string, run: number, cause: NonDeterminismError) {
    super("WF_RETRY_DIVERGED", `retry of workflow ${id} (run ${run}) cannot reuse its completed steps: ${cause.message}`, {
      hint: "The code changed before the failed step, or a step input depends on ctx.now() before the first await. Start the workflow again instead (a new id, or idReusePolicy allow-if-failed), which runs every step.",
      cause,
    });
  }
}

/** What the retried run's code had received before its first failed step: the steps reused, and where it cut. */
export function retryPrefix(ended: WorkflowState): { journal: string[]; steps: Record<string, StepState>; from?: string; signals: SignalRecord[] } {
  const journal: string[] = [];
  let from: string | undefined;
  for (const name of ended.journal) {
    const step = ended.steps[name];
    if (!step || step.status !== "completed" || step.kind === "cancel" || step.kind === "child" || step.kind === "child_result") {
      from = name;
      break;
    }
    journal.push(name);
  }
  const steps = Object.fromEntries(journal.map((name) => [name, ended.steps[name]!]));
  // Signals consumed after the cut: the new run waits for them again, and gets them from its inbox.
  const kept = new Set(journal);
  const signals = Object.entries(ended.steps)
    .filter(([name, step]) => !kept.has(name) && step.kind === "signal" && step.status === "completed")
    .sort((a, b) => a[1].seq - b[1].seq)
    .map(([name, step]) => ({ id: `retry/${name}`, name: step.signal!, payload: step.output ?? null, receivedAt: step.finishedAt ?? ended.updatedAt }));
  return { journal, steps, ...(from ? { from } : {}), signals };
}

/**
 * The first state of the run that retries `ended` (read with its history chunks), and the effects
 * it needs: its reused prefix replayed, its new commands recorded.
 */
export async function decideRetry(env: DecideEnv, definition: RegisteredWorkflow, version: string, ended: WorkflowState, extras: StartExtras): Promise<Decision & { kind: "write" }> {
  const now = env.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const prefix = retryPrefix(ended);
  // What the retried run was started with carries over; the caller's extras say which run this is.
  const { state, effects } = newRunState(env, definition, version, ended.id, ended.input, {
    ...extras,
    searchAttributes: ended.searchAttributes,
    memo: ended.memo,
    parent: ended.parent,
    carried: { signals: [...prefix.signals, ...(ended.signals ?? [])], seenSignals: ended.seenSignals },
    traceparent: extras.traceparent ?? ended.traceparent,
    timeoutMs: extras.timeoutMs ?? ended.timeoutMs,
  }, now);
  state.steps = { ...prefix.steps };
  state.journal = [...prefix.journal];
  state.randomSeed = randomSeedOf(ended) ?? ended.id;
  state.retryOf = { run: runNumber(ended), ...(ended.runId ? { runId: ended.runId } : {}), ...(prefix.from ? { from: prefix.from } : {}), reused: prefix.journal.length };
  const unrecorded: { issued: Command[]; cancelled: string[] } = { issued: [], cancelled: [] };
  let execution;
  try {
    execution = await replayWorkflow(state, { ...bindWorkflow(definition, state.id), logger: env.logger, unrecorded, payloads: env.payloads });
  } catch (err) {
    if (!(err instanceof NonDeterminismError)) throw err;
    const diverged = new RetryDivergedError(ended.id, runNumber(ended), err);
    // Nothing reused, nothing run: the new run records why it could not go on.
    const failed: WorkflowState = { ...state, steps: {}, journal: [], status: "failed", error: { message: `${diverged.message}. ${diverged.hint}`, type: "RetryDivergedError" }, completedAt: iso(now) };
    delete failed.signals;
    return { kind: "write", state: failed, effects: [], execution: undefined };
  }
  for (const command of unrecorded.issued) addStep(env, state, command, now, effects);
  cancelSteps(state, unrecorded.cancelled, now, effects);
  await settle(env, state, execution, now, effects);
  return { kind: "write", state, effects, execution };
}
