/** Workflow ids, workflow types and step names: what is accepted, and why. */
import { randomUUID } from "node:crypto";
import { ValidationError } from "./errors.js";

export const MAX_ID_LENGTH = 200;
/** Ids are KV keys and appear in Nats-Msg-Id headers: the wire contract allows exactly this. */
const ID_PATTERN = /^[A-Za-z0-9_=.-]+$/;
/** Workflow types, activity types and step names are single subject tokens. */
const NAME_PATTERN = /^[A-Za-z0-9_-]+$/;

export function validateWorkflowId(id: unknown): string {
  if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID_LENGTH || !ID_PATTERN.test(id) || id.startsWith(".") || id.endsWith(".") || id.includes("..")) {
    throw new ValidationError(
      "WF_INVALID_ID",
      `workflow id ${JSON.stringify(id)} is not valid: ids are 1-${MAX_ID_LENGTH} characters of A-Z a-z 0-9 _ = . - (no leading, trailing or double dot)`,
      { hint: "Choose an id such as order-1234, or leave it out and jetflow makes one." },
    );
  }
  return id;
}

export function validateName(kind: string, name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 100 || !NAME_PATTERN.test(name)) {
    throw new ValidationError(
      "WF_INVALID_NAME",
      `${kind} ${JSON.stringify(name)} is not valid: use 1-100 characters of A-Z a-z 0-9 _ -`,
      { hint: `Rename the ${kind}; names are NATS subject tokens, so dots, spaces and wildcards are not allowed.` },
    );
  }
  return name;
}

export function newWorkflowId(workflow: string): string {
  return `${workflow}-${randomUUID()}`;
}
