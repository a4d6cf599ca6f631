/**
 * Bad messages are acknowledged (so they are never redelivered forever), logged, and kept in the
 * WORKFLOW_DEAD_LETTERS stream with the reason, the original subject and the original body.
 */
import { headers } from "@nats-io/nats-core";
import type { Logger } from "./logger.js";
import type { Topology } from "./nats/topology.js";

export type DeadLetterReason = "invalid_json" | "invalid_message" | "unknown_workflow" | "invalid_id" | "input_too_large" | "invalid_event" | "event_failed";

export interface DeadLetter {
  reason: DeadLetterReason;
  message: string;
  subject: string;
  workflowId?: string;
  /** The original body as text, cut at 64 KiB. */
  body: string;
  at: string;
}

const MAX_BODY_CHARS = 64 * 1024;

export async function recordDeadLetter(
  topology: Topology,
  logger: Logger,
  letter: { reason: DeadLetterReason; message: string; subject: string; data: Uint8Array; workflowId?: string; /** Stream sequence of the bad message: a redelivery records it once. */ sourceSeq?: number },
): Promise<void> {
  const body = new TextDecoder().decode(letter.data.subarray(0, MAX_BODY_CHARS));
  const record: DeadLetter = {
    reason: letter.reason,
    message: letter.message,
    subject: letter.subject,
    ...(letter.workflowId ? { workflowId: letter.workflowId } : {}),
    body,
    at: new Date().toISOString(),
  };
  logger.warn(`dead letter (${letter.reason}) from ${letter.subject}: ${letter.message}`, { component: "dead-letters", ...(letter.workflowId ? { workflowId: letter.workflowId } : {}) });
  const h = headers();
  h.set("Jetflow-Reason", letter.reason);
  h.set("Jetflow-Original-Subject", letter.subject);
  await topology.js.publish(topology.names.deadLetterSubject(letter.reason), JSON.stringify(record), {
    headers: h,
    ...(letter.sourceSeq !== undefined ? { msgID: `deadletter/${letter.subject}/${letter.sourceSeq}` } : {}),
  });
}
