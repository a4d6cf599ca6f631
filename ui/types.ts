/**
 * What the API returns, as the page uses it: the engine's own types (runtime/state.ts and
 * friends, erased at build time), with what JSON turns into strings said so here.
 */
import type { StoredDeadLetter } from "../runtime/dead-letters.js";
import type { ErrorRecord as EngineErrorRecord } from "../runtime/errors.js";
import type { StepState, WorkflowState, WorkflowStatus } from "../runtime/state.js";
import type { DeploymentsView as EngineDeploymentsView, WorkflowView as EngineWorkflowView } from "../runtime/ui/api.js";
import type { WorkflowSummary } from "../runtime/visibility/query.js";
import type { DagDefinition as EngineDagDefinition } from "../runtime/workflow-api.js";

export type Status = WorkflowStatus;
export const STATUSES: Status[] = ["running", "completed", "failed", "cancelled", "terminated", "timed_out"];

/** A summary's time attributes arrive as ISO strings. */
export type Summary = Omit<WorkflowSummary, "searchAttributes"> & { searchAttributes?: Record<string, unknown> };
export type ErrorRecord = EngineErrorRecord;
export type Step = StepState;
export type State = WorkflowState;
export type DagDefinition = EngineDagDefinition;
export type WorkflowView = EngineWorkflowView;
export type DeadLetter = StoredDeadLetter;
export type DeploymentsView = EngineDeploymentsView;

export interface Info {
  namespace: string;
  readOnly: boolean;
  deadLetterReasons: string[];
}

export const isTerminal = (status: string): boolean => status !== "running";
