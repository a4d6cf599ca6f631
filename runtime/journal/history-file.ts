/**
 * The exported history of one workflow: what `client.history(id)` and `wf show <id> --history`
 * write, and what jetflow/testing's replayHistory() reads back to check new code against runs
 * recorded earlier. It is the workflow's state with its history chunks put back (every step and
 * the whole journal, orchestrator/history.ts withHistory), wrapped with a format name and version.
 *
 * The format is a contract with files users keep in their repositories: a change that an older
 * reader would misread bumps HISTORY_FORMAT_VERSION, and readers keep accepting older versions.
 * docs/testing.md documents it.
 */
import { ValidationError } from "../errors.js";
import type { WorkflowState } from "../state.js";

export const HISTORY_FORMAT = "jetflow-history";
export const HISTORY_FORMAT_VERSION = 1;

export interface WorkflowHistory {
  format: typeof HISTORY_FORMAT;
  /** Version of this file format (not of the state schema, which is `state.v`). */
  version: typeof HISTORY_FORMAT_VERSION;
  /** When it was exported (ISO 8601). */
  exportedAt: string;
  /** The whole state: every step and journal entry, none left in history chunks. */
  state: WorkflowState;
}

export function toWorkflowHistory(state: WorkflowState, exportedAt = new Date()): WorkflowHistory {
  return { format: HISTORY_FORMAT, version: HISTORY_FORMAT_VERSION, exportedAt: exportedAt.toISOString(), state };
}

/** Check a parsed history file (or an object) and return it typed; `source` names it in errors. */
export function parseWorkflowHistory(value: unknown, source = "history"): WorkflowHistory {
  const fail = (what: string): never => {
    throw new ValidationError("WF_HISTORY_INVALID", `${source} is not a jetflow workflow history: ${what}`, {
      hint: "Export one with `wf show <id> --history > file.json` or `await client.history(id)`; docs/testing.md describes the format.",
    });
  };
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail("expected a JSON object");
  const h = value as Partial<WorkflowHistory> & { version?: unknown };
  if (h.format !== HISTORY_FORMAT) return fail(`"format" is ${JSON.stringify(h.format)}, expected "${HISTORY_FORMAT}"`);
  if (h.version !== HISTORY_FORMAT_VERSION) {
    return fail(`format version ${JSON.stringify(h.version)} is not one this jetflow reads (it reads version ${HISTORY_FORMAT_VERSION}; a newer jetflow wrote it?)`);
  }
  const state = h.state as Partial<WorkflowState> | undefined;
  if (typeof state !== "object" || state === null) return fail(`"state" is missing`);
  if (typeof state.id !== "string" || typeof state.workflow !== "string") return fail(`"state" has no id or workflow name`);
  if (typeof state.steps !== "object" || state.steps === null || !Array.isArray(state.journal)) return fail(`"state" of ${state.id} has no steps or journal`);
  if ((state.history?.chunks ?? 0) > 0 && Object.keys(state.steps).length < (state.history?.steps ?? 0)) {
    return fail(`"state" of ${state.id} still names history chunks whose steps are not in it (a raw state, not an export)`);
  }
  return h as WorkflowHistory;
}
