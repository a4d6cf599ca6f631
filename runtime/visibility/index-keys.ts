/**
 * The visibility index: small entries in the states bucket (WORKFLOW_STATES) that find
 * workflows without reading them all. Part of the wire contract (docs/protocol.md, "Visibility
 * index"). Keys start with `idx/`, which no workflow id can (ids have no '/'), like history
 * chunks' `<id>/<n>`: code that reads states skips every key with a '/'.
 *
 * | key | written | removed |
 * | --- | --- | --- |
 * | `idx/run.<type>.<id>` | at start, before the state is created | when it ends, after its end entry |
 * | `idx/end.<retentionMs>.<status>.<type>.<id>` | when it ends, after the terminal state | with the workflow (retention, `wf delete`) |
 * | `idx/attr.<name>.<value token>.<id>` | at start and on upsert | with the workflow, or when the value changes |
 * | `idx/class.<retentionMs>` | the first time a runtime ends a workflow with that retention | never (one per retention in use) |
 *
 * Why in the states bucket, not a stream of its own: one stream is stored in order, so a
 * nats-server that crashed and kept a state also kept the run entry written before it; recovery
 * (which finds running workflows through their run entries) can rely on that.
 *
 * The state stays the truth: every entry a listing yields is checked against its state, and a
 * stale one (a crash between the two writes) is repaired then (visibility/query.ts).
 *
 * Each bucket holds one message per key (history 1), so an entry is replaced in place and removed
 * by deleting its message by sequence (nats/key-removal.ts; no delete marker is left behind to
 * accumulate).
 */
import type { Names } from "../nats/names.js";
import { historyKey } from "../orchestrator/history.js";
import type { WorkflowState, WorkflowStatus } from "../state.js";
import { attributeToken, type TypedAttribute, type TypedAttributes } from "./search-attributes.js";

/** `retentionMs` of a workflow kept until deleted by hand (`retention: "forever"`). */
export const KEEP_FOREVER = 0;

/** What an entry holds: enough to filter and order without reading the state. */
export interface IndexEntry {
  id: string;
  workflow: string;
  status: WorkflowStatus;
  createdAt: string;
  endedAt?: string;
  /** End entries: when retention removes it (absent: kept until deleted). */
  expiresAt?: string;
  attrs?: TypedAttributes;
}

export interface IndexSubjects {
  /** `$KV.<bucket>.` */
  prefix: string;
  stream: string;
  run(type: string, id: string): string;
  /** Filter: run entries of a type, or of every type. */
  runFilter(type?: string): string;
  end(retentionMs: number, status: WorkflowStatus, type: string, id: string): string;
  /** Filter over end entries; undefined parts match anything. */
  endFilter(parts: { retentionMs?: number; status?: WorkflowStatus; type?: string }): string;
  attr(name: string, value: TypedAttribute, id: string): string;
  attrFilter(name: string, value: TypedAttribute): string;
  retentionClass(retentionMs: number): string;
  retentionClassFilter: string;
  state(id: string): string;
  /** History chunk `index` of run `run` (orchestrator/history.ts historyKey). */
  chunk(id: string, index: number, run?: number): string;
  /** Filter: every archived run of a workflow but its first's chunks (`<id>/r.<n>`, `<id>/r.<n>/<c>`; orchestrator/runs.ts). */
  archivedRuns(id: string): string;
  /** The workflow id at the end of an entry subject of `kind` (ids may contain dots). */
  idOf(subject: string, kind: "run" | "end" | "attr"): string;
}

export function indexSubjects(names: Names): IndexSubjects {
  const prefix = `$KV.${names.statesBucket}.`;
  const skip = { run: 2, end: 4, attr: 3 } as const;
  return {
    prefix,
    stream: `KV_${names.statesBucket}`,
    run: (type, id) => `${prefix}idx/run.${type}.${id}`,
    runFilter: (type) => `${prefix}idx/run.${type ?? "*"}.>`,
    end: (retentionMs, status, type, id) => `${prefix}idx/end.${retentionMs}.${status}.${type}.${id}`,
    endFilter: ({ retentionMs, status, type }) => `${prefix}idx/end.${retentionMs ?? "*"}.${status ?? "*"}.${type ?? "*"}.>`,
    attr: (name, value, id) => `${prefix}idx/attr.${name}.${attributeToken(value)}.${id}`,
    attrFilter: (name, value) => `${prefix}idx/attr.${name}.${attributeToken(value)}.>`,
    retentionClass: (retentionMs) => `${prefix}idx/class.${retentionMs}`,
    retentionClassFilter: `${prefix}idx/class.*`,
    state: (id) => `${prefix}${id}`,
    chunk: (id, index, run) => `${prefix}${historyKey(id, index, run)}`,
    // `<id>/r.` ends a token (ids may hold dots, never `/`), so `>` after it matches only this id's runs.
    archivedRuns: (id) => `${prefix}${id}/r.>`,
    idOf(subject, kind) {
      // prefix, then `idx/<kind>`, then `skip[kind] - 1` tokens that hold no dots, then the id.
      const rest = subject.slice(prefix.length).split(".");
      return rest.slice(skip[kind]).join(".");
    },
  };
}

const decoder = new TextDecoder();

/** An entry as stored, or undefined for a message that is not one (written by something else). */
export function decodeEntry(data: Uint8Array): IndexEntry | undefined {
  try {
    const entry = JSON.parse(decoder.decode(data)) as IndexEntry;
    return entry && typeof entry.id === "string" ? entry : undefined;
  } catch {
    return undefined;
  }
}

export function entryOf(state: WorkflowState): IndexEntry {
  const entry: IndexEntry = { id: state.id, workflow: state.workflow, status: state.status, createdAt: state.createdAt };
  if (state.status !== "running") {
    entry.endedAt = state.completedAt ?? state.updatedAt;
    const retentionMs = retentionOf(state);
    if (retentionMs !== KEEP_FOREVER) entry.expiresAt = new Date(Date.parse(entry.endedAt) + retentionMs).toISOString();
  }
  if (state.searchAttributes && Object.keys(state.searchAttributes).length > 0) entry.attrs = state.searchAttributes;
  return entry;
}

/** How long a finished workflow is kept: recorded in its state at start (absent in states from before retention: the default). */
export const DEFAULT_RETENTION_MS = 7 * 86_400_000;
export const retentionOf = (state: WorkflowState): number => state.retentionMs ?? DEFAULT_RETENTION_MS;

/** The end entry's subject of a finished state. */
export const endSubjectOf = (subjects: IndexSubjects, state: WorkflowState): string => subjects.end(retentionOf(state), state.status, state.workflow, state.id);
