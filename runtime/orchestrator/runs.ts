/**
 * Runs: one workflow id, several runs. A run ends by continuing as new (ctx.continueAsNew), or a
 * finished id starts again under an id reuse policy (StartMessage.idReusePolicy). Key `<id>` of
 * the states bucket always holds the latest run, so every reader by id keeps working; an earlier
 * run is archived, its final state copied to `<id>/r.<run>`, when the next one replaces it.
 *
 * Keys (an id holds no `/`, so none of them is a workflow's key, and readers of states skip them):
 * - `<id>/r.<n>`: run n's final state (n < the latest run's number);
 * - `<id>/r.<n>/<c>`: history chunk c of run n ≥ 2 (run 1's stay `<id>/<c>`, as before runs);
 * so the subject filter `$KV.<bucket>.<id>/r.>` covers every run but the first and latest, and
 * their chunks: the removal of a workflow removes them with one purge (index-writer.ts).
 *
 * The switch is one CAS of `<id>`, from the old run's last stored state straight to the new run's
 * first, made after the archived copy is stored: a crash in between leaves an archived copy that
 * the retried decision overwrites (same key), never a run without its record.
 *
 * Tasks, completions and timers carry the run's `runId`, and those of another run are no-ops
 * (otherRun): a step name the new run reuses cannot take an earlier run's completion.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { ValidationError } from "../errors.js";
import { storedJson } from "../nats/kv-entry.js";
import type { IdReusePolicy } from "../protocol.js";
import { runNumber, type WorkflowState, type WorkflowStatus } from "../state.js";
import type { Decision } from "./decide.js";

/** Key of run `run`'s archived final state. */
export const archivedRunKey = (id: string, run: number): string => `${id}/r.${run}`;

/** Whether a state bucket key is an archived run's (archivedRunKey), not a workflow's latest run or a history chunk. */
export const isArchivedRunKey = (key: string): boolean => /\/r\.\d+$/.test(key);

/**
 * A run id, deterministic for what makes the run: `seed` is the start message's stream sequence
 * (a redelivered start makes the same one) or the run it continues. UUID-shaped, from a digest.
 */
export function runIdFor(id: string, seed: string): string {
  const hex = createHash("sha256").update(`${id}\u0000${seed}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** The run id of the run a start message makes. */
export const startRunId = (id: string, streamSeq: number): string => runIdFor(id, `start/${streamSeq}`);

/** The run id of the run that continues `ended`. */
export const nextRunId = (ended: WorkflowState): string => runIdFor(ended.id, `continued/${ended.runId ?? ""}/${runNumber(ended) + 1}`);

/**
 * A no-op for an event that names another run than the state's (a task, completion or timer of an
 * earlier run). An event without a runId comes from before runs: it can only be run 1's.
 */
export function otherRun(state: WorkflowState, runId: string | undefined, what: string): (Decision & { kind: "noop" }) | undefined {
  const stale = runId !== undefined ? runId !== state.runId : runNumber(state) > 1;
  // Reported as another execution: the runtime that switched runs may have died before it
  // published the new run's effects, and this event (a task of the old run run again) repairs them.
  return stale ? { kind: "noop", reason: `${what} of run ${runId ?? "1"} is not for run ${state.runId ?? "1"}`, anotherExecution: true } : undefined;
}

const FAILED_STATUSES: readonly WorkflowStatus[] = ["failed", "cancelled", "terminated", "timed_out"];
/** The statuses a run can be retried from (`wf retry`, retry.ts): those that allow-if-failed replaces. */
export const RETRYABLE_STATUSES = FAILED_STATUSES;

/** Whether a start under `policy` replaces `latest` (the id's latest run) with a new run. A running one never is. */
export function reusesId(latest: WorkflowState, policy: IdReusePolicy | undefined): boolean {
  if (latest.status === "running" || policy === undefined || policy === "reject-duplicate") return false;
  return policy === "allow-duplicate" || FAILED_STATUSES.includes(latest.status);
}

/** Store the final state of a run that is being replaced (before the CAS that replaces it: see the top). */
export async function archiveRun(kv: KV, ended: WorkflowState): Promise<void> {
  await kv.put(archivedRunKey(ended.id, runNumber(ended)), JSON.stringify(ended));
}

/** Run `run` of a workflow whose latest run is `latest`: `latest` itself, an archived run, or undefined. */
export async function readRun(kv: KV, latest: WorkflowState, run: number): Promise<WorkflowState | undefined> {
  if (run === runNumber(latest)) return latest;
  if (!Number.isInteger(run) || run < 1 || run > runNumber(latest)) return undefined;
  return storedJson<WorkflowState>(await kv.get(archivedRunKey(latest.id, run)));
}

/** One earlier run, as `wf show` lists it. */
export interface RunSummary {
  run: number;
  runId?: string;
  status: WorkflowStatus;
  createdAt: string;
  completedAt?: string;
}

export interface RunsPage {
  runs: RunSummary[];
  /** The run number to pass as `before` for the next (older) page; absent on the last. */
  before?: number;
}

/** The runs before `before` (default: before the latest), newest first, at most `limit`: one read each. */
export async function listRuns(kv: KV, latest: WorkflowState, page: { limit?: number; before?: number } = {}): Promise<RunsPage> {
  const limit = Math.max(1, Math.min(page.limit ?? 10, 1_000));
  const top = Math.min(page.before ?? runNumber(latest), runNumber(latest)) - 1;
  const numbers: number[] = [];
  for (let n = top; n >= 1 && numbers.length < limit; n--) numbers.push(n);
  const states = await Promise.all(numbers.map((n) => readRun(kv, latest, n)));
  const runs: RunSummary[] = numbers.map((n, i) => {
    const state = states[i];
    // An archived copy that is gone (removed by hand): listed by number, status unknown.
    if (!state) return { run: n, status: "completed", createdAt: "" };
    return { run: n, ...(state.runId ? { runId: state.runId } : {}), status: state.status, createdAt: state.createdAt, ...(state.completedAt ? { completedAt: state.completedAt } : {}) };
  });
  const last = numbers[numbers.length - 1];
  return { runs, ...(last !== undefined && last > 1 ? { before: last } : {}) };
}

/** ctx.continueAsNew with an input over limits.maxInputBytes: the run fails with this instead (no new run). */
export class ContinueAsNewInputTooLargeError extends ValidationError {
  constructor(id: string, bytes: number, maxBytes: number) {
    super("WF_CONTINUE_AS_NEW_INPUT_TOO_LARGE", `workflow ${id} called ctx.continueAsNew with an input of ${bytes} bytes, over limits.maxInputBytes (${maxBytes})`, {
      hint: "Carry only what the next run needs (a cursor, a reference to data stored elsewhere), or raise limits.maxInputBytes.",
    });
  }
}

/**
 * A run that asked to continue as new with an input too large to start a run with: the state that
 * fails it instead (an ordinary write), or undefined when the input fits.
 */
export function refuseContinuation(ended: WorkflowState, maxInputBytes: number): WorkflowState | undefined {
  const bytes = Buffer.byteLength(JSON.stringify(ended.continuedAsNew?.input ?? null));
  if (bytes <= maxInputBytes) return undefined;
  const error = new ContinueAsNewInputTooLargeError(ended.id, bytes, maxInputBytes);
  const state: WorkflowState = { ...ended, status: "failed", error: { message: `${error.message}. ${error.hint}`, type: "ContinueAsNewInputTooLargeError" } };
  delete state.continuedAsNew;
  return state;
}

/**
 * A run that continued as new in its first activation after MAX_RUNS_PER_EVENT runs that did the
 * same within one event: a loop that never waits on anything, which would spin forever. It fails.
 */
export function runawayContinuation(ended: WorkflowState): WorkflowState {
  const state: WorkflowState = {
    ...ended,
    status: "failed",
    error: {
      message: `workflow ${ended.id} (${ended.workflow}) continued as new run after run without waiting on anything (an activity, a sleep, a signal); it would never stop. Make each run do some work before ctx.continueAsNew, or end the loop`,
      type: "ContinueAsNewLoopError",
    },
  };
  delete state.continuedAsNew;
  return state;
}
