/**
 * Pending steps the workflow code stopped awaiting because of a cancellation (a cancel request,
 * a withTimeout deadline, a withTimeout whose function settled first; journal/cancellation.ts):
 * their state records them `cancelled`, so a completion or a timer that comes for them later is a
 * no-op (decide.ts only applies those to a scheduled, retrying or waiting step), and what still
 * runs for them is stopped by the effects their kind asks for.
 */
import type { StepState, WorkflowState } from "../state.js";
import type { Effect } from "./outbox.js";

/**
 * What cancelling a pending step of one kind does besides recording it: the effects to publish
 * after the state write. A kind absent here needs nothing (a sleep's or a retry's timer finds the
 * step cancelled and is dropped; a signal wait just stops waiting). Other kinds of steps (child
 * workflows) add their own entry.
 */
export type StepCancelHook = (state: WorkflowState, name: string, step: StepState) => Effect[];

export const STEP_CANCEL_HOOKS: Partial<Record<StepState["kind"], StepCancelHook>> = {
  // A running attempt is aborted through its AbortSignal (worker/pool.ts); a retrying one has no attempt running.
  activity: (_state, name, step) => (step.status === "scheduled" ? [{ kind: "abort", steps: [name] }] : []),
};

const PENDING: ReadonlySet<StepState["status"]> = new Set(["scheduled", "retrying", "waiting"]);

/** Record `names` cancelled in `state` (a decision's draft), and add their effects (one abort for all activities). */
export function cancelSteps(state: WorkflowState, names: string[], now: number, effects: Effect[]): void {
  const aborted: string[] = [];
  for (const name of names) {
    const current = state.steps[name];
    if (!current || !PENDING.has(current.status)) continue;
    const step: StepState = { ...current, status: "cancelled", finishedAt: new Date(now).toISOString() };
    delete step.nextAttemptAt;
    delete step.continued;
    delete step.lease;
    delete step.retry;
    state.steps[name] = step;
    for (const effect of STEP_CANCEL_HOOKS[current.kind]?.(state, name, current) ?? []) {
      if (effect.kind === "abort") aborted.push(...(effect.steps ?? []));
      else effects.push(effect);
    }
  }
  if (aborted.length > 0) effects.push({ kind: "abort", steps: aborted });
}
