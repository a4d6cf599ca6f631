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
 * A chunk is key `<id>/<n>` of the same bucket (an id cannot contain `/`). Same bucket, same
 * stream: the chunk is stored before the state write that drops its steps, and a server that
 * loses writes in a crash loses a stream's tail, so a state that survived has its chunks.
 * A chunk's content is fixed by the workflow's journal alone (the entries at the same positions,
 * whose steps never change once delivered), so runtimes racing on one revision write the same
 * chunk, and a chunk re-written after a lost CAS is the same chunk.
 */
import type { KV } from "@nats-io/kv";
import { JetflowError, RevisionConflictError } from "../errors.js";
import type { StepState, WorkflowState } from "../state.js";

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
  /** The journal entries it holds, in order: entries chunk×… of the workflow's whole journal. */
  journal: string[];
  /** The step record of each of them. */
  steps: Record<string, StepState>;
}

export const historyKey = (id: string, chunk: number): string => `${id}/${chunk}`;

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
 * `serializedLength`: the length of the state's JSON, which the caller has at hand.
 */
export function splitHistory(state: WorkflowState, serializedLength: number): { head: WorkflowState; chunk: HistoryChunk } | undefined {
  const journal = state.journal;
  if (journal.length < 2) return undefined;
  // The common case, decided without measuring steps: few delivered steps, and a state too small
  // for them to weigh 2 × CHUNK_MAX_BYTES.
  if (journal.length < 2 * CHUNK_MAX_STEPS && serializedLength < 2 * CHUNK_MAX_BYTES) return undefined;
  let total = 0;
  let take = 0;
  let takeBytes = 0;
  for (let i = 0; i < journal.length; i++) {
    const bytes = bytesOf(state.steps[journal[i]!]!);
    total += bytes;
    if (take === i && i < CHUNK_MAX_STEPS && (i === 0 || takeBytes + bytes <= CHUNK_MAX_BYTES)) {
      take += 1;
      takeBytes += bytes;
    }
  }
  if (journal.length < 2 * CHUNK_MAX_STEPS && total < 2 * CHUNK_MAX_BYTES) return undefined;
  // Keep at least the last delivered step in the state: `wf show` and a watcher see what just happened.
  take = Math.min(take, journal.length - 1);
  const moved = journal.slice(0, take);
  const chunkIndex = state.history?.chunks ?? 0;
  const chunk: HistoryChunk = { v: 1, id: state.id, chunk: chunkIndex, journal: moved, steps: {} };
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

/**
 * Store a chunk before the state write that drops its steps. Created, never overwritten: a chunk
 * already there is fine if it holds the same journal entries (a retry, or another runtime that
 * decided on the same revision); different entries mean this decision was made on a stale state,
 * which the caller treats like a lost CAS (re-read, decide again).
 */
export async function storeChunk(kv: KV, chunk: HistoryChunk): Promise<void> {
  const key = historyKey(chunk.id, chunk.chunk);
  try {
    await kv.create(key, JSON.stringify(chunk));
    return;
  } catch (err) {
    const existing = await kv.get(key);
    if (!existing || existing.operation !== "PUT" || existing.length === 0) throw err;
    const stored = existing.json<HistoryChunk>();
    if (stored.journal.length === chunk.journal.length && stored.journal.every((name, i) => name === chunk.journal[i])) return;
    throw new RevisionConflictError(chunk.id, err);
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
      const entry = await kv.get(historyKey(state.id, n));
      if (!entry || entry.operation !== "PUT" || entry.length === 0) throw new HistoryMissingError(state.id, historyKey(state.id, n));
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
