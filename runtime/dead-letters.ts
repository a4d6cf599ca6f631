/**
 * Bad messages are acknowledged (so they are never redelivered forever), logged, and kept in the
 * WORKFLOW_DEAD_LETTERS stream with the reason, the original subject and the original body.
 * Operators list, show, replay and discard them (`wf dead-letters`, the web UI) with the functions
 * below; a letter's id is its stream sequence.
 */
import { headers } from "@nats-io/nats-core";
import { ValidationError, WorkflowNotFoundError } from "./errors.js";
import type { Logger } from "./logger.js";
import { readNewestMatching } from "./nats/stream-read.js";
import type { Topology } from "./nats/topology.js";

export type DeadLetterReason = "invalid_json" | "invalid_message" | "unknown_workflow" | "invalid_id" | "input_too_large" | "invalid_event" | "event_failed";

export interface DeadLetter {
  reason: DeadLetterReason;
  message: string;
  subject: string;
  workflowId?: string;
  /** The original body as text, cut at 64 KiB. */
  body: string;
  /** The original body's size in bytes (absent in letters recorded before it was kept). */
  bytes?: number;
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
    bytes: letter.data.length,
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

/** Reasons a dead letter may carry, for filters. */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = ["invalid_json", "invalid_message", "unknown_workflow", "invalid_id", "input_too_large", "invalid_event", "event_failed"];

/** A dead letter as kept in WORKFLOW_DEAD_LETTERS: its stream sequence is its id for show, replay and discard. */
export interface StoredDeadLetter extends DeadLetter {
  seq: number;
  /** The body was cut at 64 KiB: it cannot be replayed as it was. */
  truncated: boolean;
}

export interface DeadLetterPage {
  letters: StoredDeadLetter[];
  /** Pass back for the next (older) page; absent on the last one. */
  cursor?: string;
}

export interface DeadLetterFilter {
  reason?: DeadLetterReason;
  /** Default 50, at most 1,000. */
  limit?: number;
  cursor?: string;
}

export const DEFAULT_DEAD_LETTER_PAGE = 50;
const MAX_DEAD_LETTER_PAGE = 1_000;

/**
 * Dead letters newest first, a page at a time. The cursor is the sequence of the last one listed:
 * a page reads only the part of the stream before it (stream-read.ts), so the cost follows the page.
 */
export async function listDeadLetters(topology: Topology, filter: DeadLetterFilter = {}): Promise<DeadLetterPage> {
  if (filter.reason !== undefined && !DEAD_LETTER_REASONS.includes(filter.reason)) {
    throw new ValidationError("WF_INVALID_FILTER", `dead-letter reason ${JSON.stringify(filter.reason)} is not one of ${DEAD_LETTER_REASONS.join(", ")}`, {
      hint: "Leave the reason out to list every dead letter.",
    });
  }
  const limit = filter.limit ?? DEFAULT_DEAD_LETTER_PAGE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DEAD_LETTER_PAGE) {
    throw new ValidationError("WF_INVALID_FILTER", `a page of dead letters holds 1 to ${MAX_DEAD_LETTER_PAGE}, got ${String(limit)}`, { hint: "Ask for fewer and page on with the cursor." });
  }
  const stream = topology.names.deadLettersStream;
  const info = await topology.jsm.streams.info(stream);
  if (info.state.messages === 0) return { letters: [] };
  let beforeSeq = info.state.last_seq;
  if (filter.cursor !== undefined) {
    const after = Number(filter.cursor);
    if (!Number.isInteger(after) || after < 1) {
      throw new ValidationError("WF_INVALID_CURSOR", `dead-letter cursor ${JSON.stringify(filter.cursor)} is not one a page gave`, { hint: "Pass the cursor of the previous page as it was, or start over without one." });
    }
    beforeSeq = Math.min(beforeSeq, after - 1);
  }
  const filterSubject = topology.names.deadLetterSubject(filter.reason ?? ">");
  const found = await readNewestMatching(topology, stream, filterSubject, { beforeSeq, limit: limit + 1, firstSeq: info.state.first_seq });
  const letters = found.slice(0, limit).map((m) => storedLetter(m.seq, m.data));
  return { letters, ...(found.length > limit ? { cursor: String(letters[letters.length - 1]!.seq) } : {}) };
}

/** One dead letter by its sequence; WF_DEAD_LETTER_NOT_FOUND when it is gone (replayed, discarded, expired). */
export async function readDeadLetter(topology: Topology, seq: number): Promise<StoredDeadLetter> {
  validateSeq(seq);
  const stream = topology.names.deadLettersStream;
  const msg = await topology.jsm.streams.getMessage(stream, { seq }).catch((err: unknown) => {
    if (/no message found|not found/i.test(String((err as Error)?.message))) return null;
    throw err;
  });
  if (!msg) {
    throw new WorkflowNotFoundError("WF_DEAD_LETTER_NOT_FOUND", `no dead letter ${seq} in ${stream}`, {
      hint: "It was replayed, discarded or expired (after 30 days); `wf dead-letters list` shows those that are kept.",
    });
  }
  return storedLetter(seq, msg.data);
}

/**
 * Publish a dead letter's original message again, to its original subject, then remove the letter.
 * For a message refused for a reason that has gone away (a workflow type deployed since, a fixed
 * event). The publish carries `Nats-Msg-Id` `deadletter/replay/<stream>/<seq>`: two replays of one
 * letter within the duplicate window publish once. A crash between the publish and the removal
 * leaves the letter, which a second replay then removes (its publish a duplicate).
 * A message that fails again is dead-lettered again, under a new sequence.
 */
export async function replayDeadLetter(topology: Topology, seq: number): Promise<{ seq: number; subject: string }> {
  const letter = await readDeadLetter(topology, seq);
  if (letter.truncated) {
    throw new ValidationError("WF_DEAD_LETTER_TRUNCATED", `dead letter ${seq} kept only the first 64 KiB of its ${letter.bytes ?? "?"}-byte message: it cannot be replayed as it was`, {
      hint: "Publish a corrected message yourself (`wf dead-letters show` prints the subject and the kept part), then discard this one.",
    });
  }
  await topology.js.publish(letter.subject, letter.body, { msgID: `deadletter/replay/${topology.names.deadLettersStream}/${seq}` });
  await topology.jsm.streams.deleteMessage(topology.names.deadLettersStream, seq, false).catch(() => undefined);
  return { seq, subject: letter.subject };
}

/** Remove a dead letter for good. Resolves false when it was already gone. */
export async function discardDeadLetter(topology: Topology, seq: number): Promise<boolean> {
  validateSeq(seq);
  return topology.jsm.streams.deleteMessage(topology.names.deadLettersStream, seq, false).then(
    (deleted) => deleted,
    (err: unknown) => {
      if (/no message found|not found|sequence/i.test(String((err as Error)?.message))) return false;
      throw err;
    },
  );
}

function validateSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new ValidationError("WF_INVALID_DEAD_LETTER", `dead letter ${JSON.stringify(seq)} is not a sequence number`, { hint: "Pass the number `wf dead-letters list` prints in its first column." });
  }
}

function storedLetter(seq: number, data: Uint8Array): StoredDeadLetter {
  let record: DeadLetter;
  try {
    record = JSON.parse(new TextDecoder().decode(data)) as DeadLetter;
  } catch {
    // Not written by recordDeadLetter (someone published to the subject by hand): show it as it is.
    record = { reason: "invalid_message", message: "not a dead-letter record", subject: "", body: new TextDecoder().decode(data), at: "" };
  }
  const kept = new TextEncoder().encode(record.body ?? "").length;
  const truncated = record.bytes !== undefined ? record.bytes > kept : kept >= MAX_BODY_CHARS;
  return { ...record, seq, truncated };
}
