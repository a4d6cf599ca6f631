/**
 * History chunks: how a long workflow's state document stays bounded.
 *
 * The state is rewritten by compare-and-set on every event, and NATS charges for every byte of
 * it (a KV CAS of 72 KB costs about 2.5 times one of 5 KB, bench/RESULTS.md). A state holding
 * every step would make each step of a long workflow dearer than the one before, and the bytes
 * written over a workflow grow as O(n²). So once enough results were delivered to the workflow
 * code, the oldest delivered steps move out of the state into an immutable chunk, written once,
 * and the state keeps the steps that can still change plus the most recent ones.
 *
 * A chunk is key `<id>/<n>` of the same bucket (an id cannot contain `/`); a later run's
 * (orchestrator/runs.ts) is `<id>/r.<run>/<n>`, so a run's chunks are never overwritten by the next's. Same bucket, same
 * stream: the chunk is stored before the state write that drops its steps, and a server that
 * loses writes in a crash loses a stream's tail, so a state that survived has its chunks.
 * A chunk holds only entries of the committed state the decision was made on (its `base`
 * revision), never ones the decision itself adds: those are not the workflow's until the CAS
 * wins, and a runtime racing on the same revision may add others. So runtimes racing on one
 * revision write the same chunk. A decision whose CAS then loses leaves its chunk behind, unread
 * (the state still says `history.chunks` = n); the next split at that position, decided on a
 * later revision, may cut it differently and replaces it (storeChunk). A chunk that a committed
 * state names never changes.
 */
import type { KV } from "@nats-io/kv";
import { JetflowError, RevisionConflictError } from "../errors.js";
import { runNumber, type StepState, type WorkflowState } from "../state.js";
import { keepsChangingStep } from "./children.js";

/** The state moves delivered steps out once it holds twice this many... */
export const CHUNK_MAX_STEPS = 16;
/** ...or twice this many bytes of them; a chunk holds at most this much (at least one step). */
export const CHUNK_MAX_BYTES = 64 * 1024;

export interface HistoryChunk {
  /** Schema version of the chunk. */
  v: 1;
  id: string;
  /** Position of this chunk: 0 holds the first journal entries. */
  chunk: number;
  /** The run it belongs to, when above 1 (absent: run 1, keys `<id>/<n>`). */
  run?: number;
  /** The journal entries it holds, in order: entries chunk×… of the workflow's whole journal. */
  journal: string[];
  /** The step record of each of them. */
  steps: Record<string, StepState>;
  /**
   * KV revision of the committed state this chunk was cut from. Absent in chunks written before
   * it existed: then the chunk's own KV revision stands in for it (see storeChunk).
   */
  base?: number;
}

/** The committed state a decision was made on: what a split may move entries of. */
export interface CommittedState {
  state: WorkflowState;
  revision: number;
}

export const historyKey = (id: string, chunk: number, run?: number): string => (run !== undefined && run > 1 ? `${id}/r.${run}/${chunk}` : `${id}/${chunk}`);

/** Keys of the states bucket that are chunks, not workflow states. */
export const isHistoryKey = (key: string): boolean => key.includes("/");

/** Serialized size of a delivered step, which never changes: measured once. */
const stepBytes = new WeakMap<StepState, number>();
function bytesOf(step: StepState): number {
  let bytes = stepBytes.get(step);
  if (bytes === undefined) {
    bytes = JSON.stringify(step).length;
    stepBytes.set(step, bytes);
  }
  return bytes;
}

/**
 * When `state` holds enough delivered steps, the chunk of the oldest ones and the state without
 * them; undefined otherwise (almost always: a chunk is due once per CHUNK_MAX_STEPS steps).
 * `serializedLength`: the length of the state's JSON, which the caller has at hand. `committed`:
 * the stored state `state` was decided on; only entries it already holds move (see the top).
 */
export function splitHistory(state: WorkflowState, serializedLength: number, committed: CommittedState): { head: WorkflowState; chunk: HistoryChunk } | undefined {
  const journal = state.journal;
  if (journal.length < 2) return undefined;
  const committedLength = committedPrefix(journal, state, committed.state);
  // The common case, decided without measuring steps: few delivered steps, and a state too small
  // for them to weigh 2 × CHUNK_MAX_BYTES.
  if (journal.length < 2 * CHUNK_MAX_STEPS && serializedLength < 2 * CHUNK_MAX_BYTES) return undefined;
  let total = 0;
  let take = 0;
  let takeBytes = 0;
  for (let i = 0; i < journal.length; i++) {
    const bytes = bytesOf(state.steps[journal[i]!]!);
    total += bytes;
    // The cut is measured over committed entries only, so it is the same for every decision
    // made on this revision, whatever each adds.
    // A startChild step whose child has not ended (or whose end no result() took) still changes:
    // it stays, and so does everything after it (judged on the committed state, like the cut).
    if (take === i && i < committedLength && i < CHUNK_MAX_STEPS && (i === 0 || takeBytes + bytes <= CHUNK_MAX_BYTES) && !keepsChangingStep(committed.state.steps[journal[i]!])) {
      take += 1;
      takeBytes += bytes;
    }
  }
  if (journal.length < 2 * CHUNK_MAX_STEPS && total < 2 * CHUNK_MAX_BYTES) return undefined;
  // Keep at least the last committed delivered step in the state: `wf show` and a watcher see
  // what just happened (and the cut stays a function of the committed state alone).
  take = Math.min(take, committedLength - 1);
  if (take <= 0) return undefined;
  const moved = journal.slice(0, take);
  const chunkIndex = state.history?.chunks ?? 0;
  const chunk: HistoryChunk = { v: 1, id: state.id, chunk: chunkIndex, ...(runNumber(state) > 1 ? { run: state.run } : {}), journal: moved, steps: {}, base: committed.revision };
  const steps = { ...state.steps };
  for (const name of moved) {
    chunk.steps[name] = steps[name]!;
    delete steps[name];
  }
  const head: WorkflowState = {
    ...state,
    steps,
    journal: journal.slice(take),
    history: { chunks: chunkIndex + 1, steps: (state.history?.steps ?? 0) + take },
  };
  return { head, chunk };
}

/** How many leading entries of the decision's journal the committed state already holds (normally all of its own). */
function committedPrefix(journal: string[], state: WorkflowState, committed: WorkflowState): number {
  if ((committed.history?.chunks ?? 0) !== (state.history?.chunks ?? 0)) return 0; // not the state it was decided on
  const limit = Math.min(journal.length, committed.journal.length);
  let n = 0;
  while (n < limit && journal[n] === committed.journal[n]) n += 1;
  return n;
}

/**
 * Store a chunk before the state write that drops its steps. A chunk already there is fine if it
 * holds the same journal entries (a retry, or another runtime that decided on the same revision).
 *
 * One with other entries was cut by a decision whose CAS lost, or is about to be written by one
 * racing with this. It is replaced when it was decided on a revision older than this chunk's
 * `base`: that decision's CAS was on a revision the state has since left, so no committed state
 * can ever name that chunk, and none does now (the state this one is cut from says
 * `history.chunks` = this position). Replaced by CAS on the chunk's own revision, so two
 * replacers cannot both win. Otherwise (a chunk decided on this revision or a later one) this
 * decision is the stale one, which the caller treats like a lost CAS (re-read, decide again).
 */
export async function storeChunk(kv: KV, chunk: HistoryChunk): Promise<void> {
  const key = historyKey(chunk.id, chunk.chunk, chunk.run);
  const data = JSON.stringify(chunk);
  try {
    await kv.create(key, data);
    return;
  } catch (err) {
    const existing = await kv.get(key);
    if (!existing || existing.operation !== "PUT" || existing.length === 0) throw err;
    const stored = existing.json<HistoryChunk>();
    if (stored.journal.length === chunk.journal.length && stored.journal.every((name, i) => name === chunk.journal[i])) return;
    // An old chunk has no base; it was decided on a revision below the one it was stored at.
    const storedBase = stored.base ?? existing.revision;
    if (chunk.base === undefined || storedBase >= chunk.base) throw new RevisionConflictError(chunk.id, err);
    try {
      await kv.update(key, data, existing.revision);
    } catch (updateErr) {
      throw new RevisionConflictError(chunk.id, updateErr); // another runtime replaced it first: re-read
    }
  }
}

/**
 * The workflow's whole record: its chunks' steps and journal entries put back in front of the
 * state's own. What replay and people (`wf show`, describe()) need; the state as stored otherwise.
 */
export async function withHistory(kv: KV, state: WorkflowState, known?: Map<number, HistoryChunk>): Promise<WorkflowState> {
  const count = state.history?.chunks ?? 0;
  if (count === 0) return state;
  const chunks = await Promise.all(
    Array.from({ length: count }, async (_, n) => {
      const cached = known?.get(n);
      if (cached) return cached;
      const entry = await kv.get(historyKey(state.id, n, state.run));
      if (!entry || entry.operation !== "PUT" || entry.length === 0) throw new HistoryMissingError(state.id, historyKey(state.id, n, state.run));
      const chunk = entry.json<HistoryChunk>();
      known?.set(n, chunk); // chunks never change: a watcher reads each once
      return chunk;
    }),
  );
  const steps: Record<string, StepState> = {};
  const journal: string[] = [];
  for (const chunk of chunks) {
    Object.assign(steps, chunk.steps);
    journal.push(...chunk.journal);
  }
  return { ...state, steps: Object.assign(steps, state.steps), journal: journal.concat(state.journal) };
}

/** A state names a history chunk that is not in the bucket (deleted by hand). */
export class HistoryMissingError extends JetflowError {
  constructor(id: string, key: string) {
    super("WF_HISTORY_MISSING", `history chunk ${key} of workflow ${id} is missing from the states bucket, so its early steps cannot be read or replayed`, {
      hint: "Chunks are written once and never deleted by jetflow: restore the key, or purge the workflow's keys (<id> and <id>/*) together.",
    });
  }
}
