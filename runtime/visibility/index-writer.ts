/**
 * Writing the visibility index (index-keys.ts) as workflows start, change their search
 * attributes, end, and are removed. The order of the writes is what keeps the index honest:
 *
 * - start: the run entry (and attribute entries) first, then the state, on one connection, so
 *   the server stores them in that order; the start is acked once the state is stored, which
 *   says the entries are too.
 * - end: the terminal state, then its end entry, the purge of its run entry and the deletion of
 *   its parked timers (orchestrator/parked-timers.ts), none of them waited for. A runtime that
 *   dies in between leaves a run entry next to a terminal state: the next reader (a listing,
 *   recovery) finds it stale, writes the end entry and purges it (query.ts). A lost timer
 *   deletion leaves a timer that fires into a finished workflow and is dropped.
 * - removal: its earlier runs (orchestrator/runs.ts), then the state and its history chunks, then the entries, so a crash in between
 *   leaves an end entry whose state is gone, which the next sweep or listing removes; never a
 *   state no entry leads to.
 *
 * Entries, states and chunks are removed one key at a time by sequence (nats/key-removal.ts): a
 * purge with a subject filter costs nats-server 2.9 and 2.10 a look through the bucket's blocks
 * from the key's onwards, which for an old key is every finished workflow kept since. The one
 * purge left, of a workflow's archived runs, is a wildcard over that workflow's keys, made once
 * per removal of a workflow that continued as new.
 *
 * Entries carry no Nats-Msg-Id: one message per subject makes a repeat replace the entry, and a
 * repair must not be dropped as a duplicate of the write it repairs.
 *
 * Cost per workflow: four messages (its run entry, its end entry, and the run entry's removal: a
 * read and a delete), none with an acknowledgement of its own, plus one message per search
 * attribute. Repairs use acknowledged writes.
 */
import type { Topology } from "../nats/topology.js";
import { parkedTimersOf } from "../orchestrator/parked-timers.js";
import { runNumber, type WorkflowState } from "../state.js";
import { archivedRunKey } from "../orchestrator/runs.js";
import { storedJson } from "../nats/kv-entry.js";
import { removeWorkflowPayloads } from "../payloads/removal.js";
import { keyRemovalOf } from "../nats/key-removal.js";
import { endSubjectOf, entryOf, indexSubjects, retentionOf, type IndexSubjects } from "./index-keys.js";
import { sameAttribute, type TypedAttributes } from "./search-attributes.js";

const subjectsByTopology = new WeakMap<Topology, IndexSubjects>();
export function subjectsOf(topology: Topology): IndexSubjects {
  let subjects = subjectsByTopology.get(topology);
  if (!subjects) subjectsByTopology.set(topology, (subjects = indexSubjects(topology.names)));
  return subjects;
}

const encoder = new TextEncoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

/** The run entry and attribute entries of a workflow about to be created; resolves once stored. */
export function indexStart(topology: Topology, state: WorkflowState, options: { beforeState?: boolean } = {}): Promise<unknown> {
  const subjects = subjectsOf(topology);
  const entry = json(entryOf(state));
  const subjectsToWrite = [subjects.run(state.workflow, state.id), ...Object.entries(state.searchAttributes ?? {}).map(([name, value]) => subjects.attr(name, value, state.id))];
  if (options.beforeState) {
    // Published without an acknowledgement of their own, right before the state's create on this
    // connection: the server stores one connection's messages to one stream in order, so the
    // create's acknowledgement says these are stored too (and a lost connection loses both).
    // A publish with its own acknowledgement cost 4-5 % of the engine's throughput each.
    for (const subject of subjectsToWrite) topology.nc.publish(subject, entry);
    return Promise.resolve();
  }
  return Promise.all(subjectsToWrite.map((subject) => topology.js.publish(subject, entry)));
}

/**
 * Search attributes about to change (`state` is the write's draft, `before` what is stored): the
 * entries of the values that differ, published without an acknowledgement of their own right
 * before the state's write on this connection, as at start (indexStart). The write's
 * acknowledgement then says they are stored: a caller that saw the state (a result, a describe)
 * finds it by its new values at once, and a runtime that dies after the write leaves nothing to
 * repair. A write that loses its CAS leaves entries its state does not have: listings check each
 * against the state and purge it (query.ts), and the retry writes them again.
 */
export function indexAttributesBeforeState(topology: Topology, state: WorkflowState, before: TypedAttributes | undefined): void {
  const subjects = subjectsOf(topology);
  const entry = json(entryOf(state));
  for (const [name, value] of Object.entries(state.searchAttributes ?? {})) if (!sameAttribute(before?.[name], value)) topology.nc.publish(subjects.attr(name, value, state.id), entry);
}

/**
 * Search attributes changed while running, once the state is stored: the run entry again, and old
 * values' entries purged (the new values' entries came before the state: indexAttributesBeforeState).
 */
export async function indexAttributes(topology: Topology, state: WorkflowState, before: TypedAttributes | undefined): Promise<void> {
  await topology.js.publish(subjectsOf(topology).run(state.workflow, state.id), json(entryOf(state)));
  removeOldAttributeEntries(topology, state, before);
}

/** The entries of every value of `state`, acknowledged (a repair, which cannot tell which are missing). */
async function writeAttributeEntries(topology: Topology, state: WorkflowState, entry: Uint8Array): Promise<void> {
  const subjects = subjectsOf(topology);
  await Promise.all(Object.entries(state.searchAttributes ?? {}).map(([name, value]) => topology.js.publish(subjects.attr(name, value, state.id), entry)));
}

/** The entries of `before`'s values that `state` no longer has, removed without waiting. */
function removeOldAttributeEntries(topology: Topology, state: WorkflowState, before: TypedAttributes | undefined): void {
  const subjects = subjectsOf(topology);
  const after = state.searchAttributes ?? {};
  for (const [name, value] of Object.entries(before ?? {})) if (!sameAttribute(after[name], value)) keyRemovalOf(topology).removeLater(subjects.attr(name, value, state.id));
}

/** Retention classes this process has recorded (`idx/class.<ms>`), so it writes each once. */
const recordedClasses = new WeakMap<Topology, Set<number>>();

/**
 * A workflow's terminal state is stored: its end entry (resolves once stored), then the clean-up
 * of its run entry and its parked timers, not awaited. `attributes`: the write that ended it also
 * changed its search attributes (an upsert in its last activation) from `before`, whose entries
 * are purged (the new values' came before the state: indexAttributesBeforeState); or "rewrite"
 * (a repair, which cannot tell what is missing): every value's entry is written, acknowledged.
 */
export async function indexEnd(topology: Topology, state: WorkflowState, attributes?: { before: TypedAttributes | undefined } | "rewrite", options: { unacknowledged?: boolean } = {}): Promise<void> {
  const subjects = subjectsOf(topology);
  const retentionMs = retentionOf(state);
  let classes = recordedClasses.get(topology);
  if (!classes) recordedClasses.set(topology, (classes = new Set()));
  const entry = json(entryOf(state));
  const writes: Array<Promise<unknown>> = [];
  // On the hot path without an acknowledgement (4-5 % of throughput each): a runtime that dies
  // before the server has it leaves a stale run entry, which its next reader repairs (query.ts).
  if (options.unacknowledged) topology.nc.publish(endSubjectOf(subjects, state), entry);
  else writes.push(topology.js.publish(endSubjectOf(subjects, state), entry));
  if (attributes === "rewrite") writes.push(writeAttributeEntries(topology, state, entry));
  else if (attributes) removeOldAttributeEntries(topology, state, attributes.before);
  if (!classes.has(retentionMs)) writes.push(topology.js.publish(subjects.retentionClass(retentionMs), json({ retentionMs })).then(() => classes.add(retentionMs)));
  await Promise.all(writes);
  keyRemovalOf(topology).removeLater(subjects.run(state.workflow, state.id));
  parkedTimersOf(topology).ended(state.id);
}

/**
 * Make the index agree with a state the engine found already written (a redelivered event, a
 * duplicate start): what the writer of that state may have died before writing.
 */
export async function repairIndex(topology: Topology, state: WorkflowState): Promise<void> {
  if (state.status === "running") await indexStart(topology, state);
  // The attribute entries too: the write that ended it may have changed them (indexEnd).
  else await indexEnd(topology, state, state.searchAttributes ? "rewrite" : undefined);
}

/**
 * Remove a finished workflow: its state and history chunks, then its index entries and timers.
 * Each step removes one key, so a repeat after a crash finds less to do. `at`: where the caller
 * read its state (the revision) and, if it did, its end entry: removed by those sequences.
 */
export async function removeWorkflow(topology: Topology, state: WorkflowState, at: { stateSeq: number; endSeq?: number }): Promise<"removed" | "written since"> {
  // Its claim-checked payloads first, while the state that references them is still there.
  await removeWorkflowPayloads(topology, state);
  const subjects = subjectsOf(topology);
  const keys = keyRemovalOf(topology);
  const run = runNumber(state);
  if (run > 1) {
    // Earlier runs first (orchestrator/runs.ts), while the state that leads here is still there:
    // run 1's chunks (`<id>/<n>`: its archived state tells how many, one read), then one purge
    // for every archived run and the later runs' chunks, however many runs there were.
    const firstChunks = storedJson<WorkflowState>(await topology.states.get(archivedRunKey(state.id, 1)))?.history?.chunks ?? 0;
    await Promise.all(Array.from({ length: firstChunks }, (_, i) => keys.remove(subjects.chunk(state.id, i))));
    await topology.jsm.streams.purge(subjects.stream, { filter: subjects.archivedRuns(state.id) });
  }
  const chunks = state.history?.chunks ?? 0;
  await Promise.all(Array.from({ length: chunks }, (_, i) => keys.remove(subjects.chunk(state.id, i, run))));
  if (!(await keys.delete(at.stateSeq)) && (await topology.states.get(state.id))?.operation === "PUT") {
    // Written since it was read (a retry or a start that reuses the id made a new run): its
    // entries may be the new run's now; whoever removes it next reads it again.
    return "written since";
  }
  await removeEntries(topology, { id: state.id, workflow: state.workflow, attrs: state.searchAttributes }, state.status !== "running" ? { subject: endSubjectOf(subjects, state), seq: at.endSeq } : undefined);
  return "removed";
}

/**
 * The index entries of a workflow whose state is gone: its attribute entries and run entry, then
 * its end entry (last: while it exists, a sweep finds this workflow again and finishes the job;
 * by `end.seq` when the caller read it there). Also how a reader finishes a removal that died
 * half way.
 */
export async function removeEntries(topology: Topology, workflow: { id: string; workflow: string; attrs?: TypedAttributes | undefined }, end: { subject: string; seq?: number | undefined } | undefined): Promise<void> {
  const subjects = subjectsOf(topology);
  const keys = keyRemovalOf(topology);
  await Promise.all([...Object.entries(workflow.attrs ?? {}).map(([name, value]) => keys.remove(subjects.attr(name, value, workflow.id))), keys.remove(subjects.run(workflow.workflow, workflow.id))]);
  if (end) await (end.seq !== undefined ? keys.delete(end.seq) : keys.remove(end.subject));
}
