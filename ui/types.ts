/** What the API returns, as the page uses it (the engine's types are runtime/state.ts and friends). */

export type Status = "running" | "completed" | "failed" | "cancelled" | "terminated" | "timed_out" | "continued_as_new";
export const STATUSES: Status[] = ["running", "completed", "failed", "cancelled", "terminated", "timed_out"];

export interface Summary {
  id: string;
  workflow: string;
  status: Status;
  createdAt: string;
  updatedAt: string;
  endedAt?: string;
  searchAttributes?: Record<string, unknown>;
}

export interface ErrorRecord {
  message: string;
  type: string;
}

export interface Step {
  seq: number;
  kind: "activity" | "sleep" | "signal" | "upsert" | "marker" | "child" | string;
  activity?: string;
  status: string;
  attempt: number;
  maxAttempts?: number;
  input?: unknown;
  output?: unknown;
  error?: ErrorRecord;
  lastError?: ErrorRecord;
  scheduledAt: string;
  startedAt?: string;
  finishedAt?: string;
  nextAttemptAt?: string;
  fireAt?: string;
  signal?: string;
  patch?: string;
  worker?: string;
  /** Child workflow steps (when the engine has them). */
  child?: { id: string; workflow: string; status: string };
}

export interface State {
  id: string;
  workflow: string;
  status: Status;
  input: unknown;
  result?: unknown;
  error?: ErrorRecord;
  createdAt: string;
  updatedAt: string;
  completedAt?: string;
  bundle: string;
  kind: "code" | "dag";
  deadline?: string;
  steps: Record<string, Step>;
  journal: string[];
  blocked?: { message: string; since: string };
  signals?: Array<{ id: string; name: string; payload: unknown; receivedAt: string }>;
  memo?: unknown;
  searchAttributes?: Record<string, { type: string; value: unknown }>;
  runId?: string;
  run?: number;
  parent?: { id: string; step: string; workflow: string };
  continuedAsNew?: { runId: string; input: unknown };
}

export interface DagDefinition {
  name: string;
  activities: Array<{ name: string; type: string; dependencies?: string[] }>;
}

export interface WorkflowView {
  state: State;
  runs: { runs: Array<{ run: number; status: string; runId?: string; createdAt?: string; completedAt?: string }>; before?: number };
  dag?: DagDefinition;
}

export interface DeadLetter {
  seq: number;
  reason: string;
  message: string;
  subject: string;
  workflowId?: string;
  body: string;
  bytes?: number;
  at: string;
  truncated: boolean;
}

export interface Info {
  namespace: string;
  readOnly: boolean;
  deadLetterReasons: string[];
}

export interface DeploymentsView {
  current: { version: string; deployedAt: string; deployedBy: string; previous?: string } | null;
  versions: Array<{ version: string; builtAt: string; deployedAt: string; deployedBy: string; workflows: string[]; activities: string[]; bytes: number }>;
  pinned: Record<string, { count: number; ids: string[] }>;
  pinnedTruncated: boolean;
}

export const isTerminal = (status: string): boolean => status !== "running";
