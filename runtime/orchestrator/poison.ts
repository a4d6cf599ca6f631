/**
 * Events that keep failing. An event whose application throws is retried with a growing delay, but
 * not forever: after orchestrator.maxDeliveries deliveries (at once, for an error that cannot heal)
 * it is given up: dead-lettered as `event_failed` with the error, the workflow it names fails with
 * PoisonEventError, and the event is acked. Before this, such an event was NAK'd every second,
 * forever, and its workflow never learned why.
 *
 * The count is the server's delivery count, durable and shared by every runtime: a runtime that
 * crashes on the event (and never NAKs it) counts too. NAKs of a blocked workflow's events and
 * ack-wait redeliveries count as well, so a workflow blocked for longer than maxDeliveries × 30 s
 * gives up on the first event that then also throws.
 */
import { PoisonEventError } from "../errors.js";
import { RevisionConflictError } from "../errors.js";
import type { WorkflowState } from "../state.js";
import type { StateStore } from "./state-store.js";

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;

/**
 * Errors that the same event will raise on every delivery: the stack overflowing on its data
 * (RangeError: Maximum call stack size exceeded, Invalid string length). Retrying cannot help.
 */
export function cannotHeal(err: unknown): boolean {
  return err instanceof RangeError;
}

/** What to do with an event whose application threw, on its `deliveryCount`-th delivery. */
export function afterFailure(err: unknown, deliveryCount: number, maxDeliveries: number): { giveUp: true } | { giveUp: false; retryInMs: number } {
  if (cannotHeal(err) || deliveryCount >= maxDeliveries) return { giveUp: true };
  return { giveUp: false, retryInMs: Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, deliveryCount - 1)) };
}

/** The workflow id an event's body names (`workflowId`, or a start's `id`), if it has one. */
export function workflowIdOf(body: unknown, kind: string | undefined): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const value = kind === "start" ? (body as { id?: unknown }).id : kind === "child" ? (body as { parentId?: unknown }).parentId : (body as { workflowId?: unknown }).workflowId;
  return typeof value === "string" ? value : undefined;
}

/**
 * Fail a running workflow because an event for it was given up. The last stored state is kept as
 * it was (it could be stored), only its status and error change. Returns the state written, or
 * undefined when there is nothing to fail (no state, or it has already ended).
 */
export async function failForPoison(store: StateStore, id: string, error: PoisonEventError, now: number): Promise<WorkflowState | undefined> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const stored = await store.load(id, true);
    if (!stored || stored.state.status !== "running") return undefined;
    const at = new Date(now).toISOString();
    const state: WorkflowState = { ...stored.state, status: "failed", error: { message: `${error.message}. ${error.hint}`, type: "PoisonEventError" }, updatedAt: at, completedAt: at };
    try {
      return (await store.update(state, stored.revision)).state;
    } catch (err) {
      store.forget(id);
      if (!(err instanceof RevisionConflictError)) throw err;
    }
  }
  return undefined;
}
