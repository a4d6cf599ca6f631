/**
 * A start for a workflow type this runtime's code does not have. During a deploy that is often
 * a runtime that has not switched yet (its deployment watch lags the `current` key by a moment),
 * or a client that started the new type while the deploy was still uploading. Refusing at once,
 * with a `failed` state, would make that id unusable for good. So the start is re-checked against
 * the current deployment in the KV bucket and, while still unknown, retried a few times with a
 * short delay; then it is dead-lettered, and no state is written: the same id can be started
 * again once the code that has the type is deployed.
 *
 * The retries are short on purpose: a NAK'd message holds one of the shared events consumer's
 * max_ack_pending slots until it is redelivered, so a start must not park there for long.
 * UNKNOWN_START_DELIVERIES × UNKNOWN_START_RETRY_MS (5 × 1 s) bounds the wait; a burst of
 * unknown starts holds at most that many seconds' worth of slots.
 */
import type { RegisteredWorkflow, Registry } from "../definitions.js";

/** Deliveries of a start whose type stays unknown before it is dead-lettered. */
export const UNKNOWN_START_DELIVERIES = 5;
/** Delay of each redelivery, in milliseconds. */
export const UNKNOWN_START_RETRY_MS = 1_000;

export type UnknownStartVerdict =
  | { kind: "found"; registry: Registry; definition: RegisteredWorkflow }
  | { kind: "retry"; delayMs: number; message: string }
  | { kind: "refuse"; message: string };

export interface UnknownStartOptions {
  workflowType: string;
  /** JetStream's delivery count of the start message (1 the first time). */
  deliveryCount: number;
  /** The code this runtime has as current. */
  registry: Registry;
  /** The code of the deployment current in NATS now (read from the KV bucket, not the watch). */
  latest?: (() => Promise<Registry>) | undefined;
}

export async function recheckUnknownStart(options: UnknownStartOptions): Promise<UnknownStartVerdict> {
  let registry = options.registry;
  if (options.latest) {
    try {
      registry = await options.latest();
    } catch {
      // NATS or the bundle store unreachable: judge by what we have, and retry while allowed.
    }
    const definition = registry.workflows.get(options.workflowType);
    if (definition) return { kind: "found", registry, definition };
  }
  const known = [...registry.workflows.keys()].sort().join(", ") || "none";
  const message = `unknown workflow type "${options.workflowType}" (the current code ${registry.version} has: ${known})`;
  if (options.deliveryCount < UNKNOWN_START_DELIVERIES) return { kind: "retry", delayMs: UNKNOWN_START_RETRY_MS, message };
  return {
    kind: "refuse",
    message: `${message}; refused after ${UNKNOWN_START_DELIVERIES} deliveries. No state was written: deploy code that has it, then start the same id again`,
  };
}
