/**
 * Listing and counting workflows through the visibility index (index-keys.ts), at a cost that
 * follows the page asked for and what is running, not everything that ever ran.
 *
 * Order (Temporal's): running workflows first, newest started first; then finished ones, most
 * recently ended first. A listing is a snapshot at its first page: `s`, the states stream's last
 * sequence then. Pages after it are exact while workflows change status meanwhile (no duplicate,
 * no gap): a workflow running at the snapshot stays in the running part, where its place (its
 * start) never moves, even once it ends (its end entry is then after `s`); the finished part
 * holds only end entries at or before `s`, whose places never move either. Workflows started
 * after the first page are not listed (list again to see them).
 *
 * - Running part: every run entry (of the type, if filtered), plus the end entries after `s`:
 *   cost ∝ running workflows (and those ended since the snapshot).
 * - Finished part: end entries read newest first in growing windows, filtered by status and type
 *   on the server (their subjects carry both): cost ∝ the page ÷ the share that matches.
 * - With `where` (search attributes): the attribute entries of the clause with the fewest
 *   matches, then those workflows' states: cost ∝ that clause's matches.
 *
 * Every workflow a page yields is read from its state, which is the truth: an entry that
 * disagrees (a runtime died between a state write and its entry) is repaired here and the state
 * decides what is shown.
 */
import { ValidationError } from "../errors.js";
import { countMatching, readMatching, readNewestMatching } from "../nats/stream-read.js";
import type { Topology } from "../nats/topology.js";
import { isTerminal, runNumber, TERMINAL_STATUSES, type WorkflowState, type WorkflowStatus } from "../state.js";
import { decodeEntry, endSubjectOf, type IndexEntry } from "./index-keys.js";
import { removeEntries, repairIndex, subjectsOf } from "./index-writer.js";
import { keyRemovalOf } from "../nats/key-removal.js";
import { plainAttributes, sameAttribute, typedAttribute, type SearchAttributes, type TypedAttribute } from "./search-attributes.js";

export interface ListFilter {
  /** One status or several. */
  status?: WorkflowStatus | WorkflowStatus[];
  /** Workflow type. */
  workflow?: string;
  /** Started at or after / before this time (`wf list --since/--until`). */
  createdAfter?: Date | string | number;
  createdBefore?: Date | string | number;
  /** Ended at or after / before this time (finished workflows only). */
  endedAfter?: Date | string | number;
  endedBefore?: Date | string | number;
  /** Search attributes, each equal (`wf list --where name=value`). */
  where?: SearchAttributes;
}

export interface WorkflowSummary {
  id: string;
  workflow: string;
  status: WorkflowStatus;
  createdAt: string;
  updatedAt: string;
  endedAt?: string;
  searchAttributes?: SearchAttributes;
}

export interface ListPage {
  workflows: WorkflowSummary[];
  /** Pass to the next call for the next page; absent on the last page. */
  cursor?: string;
}

/** A run entry this young may be one whose state is being created: not stale yet. */
const CREATING_GRACE_MS = 60_000;
const STATE_READS_IN_PARALLEL = 64;
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1_000;

interface Cursor {
  v: 1;
  /** Snapshot: the states stream's last sequence at the first page. */
  s: number;
  /** Filter fingerprint: a cursor continues the listing it came from. */
  f: string;
  /** Part: running (with its last place) or finished (the last end entry's sequence). */
  p: "run" | "end";
  /** run: [createdAt, id] of the last one listed; end: sequence of the last one listed. */
  k?: [string, string] | number;
}

/** The filter, checked and in the form the query needs. */
interface Plan {
  statuses: Set<WorkflowStatus>;
  workflow?: string;
  createdAfter?: number;
  createdBefore?: number;
  endedAfter?: number;
  endedBefore?: number;
  where: Array<[string, TypedAttribute]>;
  fingerprint: string;
}

function time(value: Date | string | number | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = value instanceof Date ? value.getTime() : typeof value === "number" ? value : Date.parse(value);
  if (!Number.isFinite(ms)) {
    throw new ValidationError("WF_INVALID_FILTER", `${what} ${JSON.stringify(value)} is not a time`, { hint: "Give an ISO 8601 time such as 2026-12-01T00:00:00Z (or a Date)." });
  }
  return ms;
}

export function planFilter(filter: ListFilter = {}): Plan {
  const all: WorkflowStatus[] = ["running", ...TERMINAL_STATUSES];
  const asked = filter.status === undefined ? all : Array.isArray(filter.status) ? filter.status : [filter.status];
  for (const status of asked) {
    if (!all.includes(status)) throw new ValidationError("WF_INVALID_FILTER", `status ${JSON.stringify(status)} is not one of ${all.join(", ")}`, { hint: "Filter by one of those (wf list --status failed)." });
  }
  const where = Object.entries(filter.where ?? {}).map(([name, value]): [string, TypedAttribute] => [name, typedAttribute(name, value, "list filter")]);
  const plan: Plan = { statuses: new Set(asked), where, fingerprint: "" };
  if (filter.workflow !== undefined) plan.workflow = filter.workflow;
  const bounds = { createdAfter: time(filter.createdAfter, "createdAfter (--since)"), createdBefore: time(filter.createdBefore, "createdBefore (--until)"), endedAfter: time(filter.endedAfter, "endedAfter"), endedBefore: time(filter.endedBefore, "endedBefore") };
  for (const [key, value] of Object.entries(bounds)) if (value !== undefined) (plan as unknown as Record<string, number>)[key] = value;
  plan.fingerprint = JSON.stringify([[...plan.statuses].sort(), plan.workflow, bounds, where.map(([n, v]) => [n, v.type, v.value]).sort()]);
  return plan;
}

/** Does a state pass every condition of the filter? (The state is the truth.) */
function matches(plan: Plan, state: WorkflowState): boolean {
  if (!plan.statuses.has(state.status)) return false;
  if (plan.workflow !== undefined && state.workflow !== plan.workflow) return false;
  const created = Date.parse(state.createdAt);
  if (plan.createdAfter !== undefined && created < plan.createdAfter) return false;
  if (plan.createdBefore !== undefined && created >= plan.createdBefore) return false;
  if (plan.endedAfter !== undefined || plan.endedBefore !== undefined) {
    if (!isTerminal(state.status)) return false;
    const ended = Date.parse(state.completedAt ?? state.updatedAt);
    if (plan.endedAfter !== undefined && ended < plan.endedAfter) return false;
    if (plan.endedBefore !== undefined && ended >= plan.endedBefore) return false;
  }
  for (const [name, value] of plan.where) if (!sameAttribute(state.searchAttributes?.[name], value)) return false;
  return true;
}

/** The same test on an entry, to skip before reading the state (never to include: the state decides). */
function entryMayMatch(plan: Plan, entry: IndexEntry): boolean {
  const created = Date.parse(entry.createdAt);
  if (plan.createdAfter !== undefined && created < plan.createdAfter) return false;
  if (plan.createdBefore !== undefined && created >= plan.createdBefore) return false;
  if (plan.workflow !== undefined && entry.workflow !== plan.workflow) return false;
  return true;
}

export function summaryOf(state: WorkflowState): WorkflowSummary {
  const summary: WorkflowSummary = { id: state.id, workflow: state.workflow, status: state.status, createdAt: state.createdAt, updatedAt: state.updatedAt };
  if (isTerminal(state.status)) summary.endedAt = state.completedAt ?? state.updatedAt;
  const attrs = plainAttributes(state.searchAttributes);
  if (attrs && Object.keys(attrs).length > 0) summary.searchAttributes = attrs;
  return summary;
}

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify(cursor), "utf8").toString("base64url");
}

function decodeCursor(text: string, plan: Plan): Cursor {
  let cursor: Cursor | undefined;
  try {
    cursor = JSON.parse(Buffer.from(text, "base64url").toString("utf8")) as Cursor;
  } catch {
    cursor = undefined;
  }
  if (!cursor || cursor.v !== 1 || typeof cursor.s !== "number" || (cursor.p !== "run" && cursor.p !== "end")) {
    throw new ValidationError("WF_INVALID_CURSOR", "the cursor is not one a listing gave", { hint: "Pass the cursor exactly as the previous page returned it (wf list prints it as `next: --cursor …`)." });
  }
  if (cursor.f !== plan.fingerprint) {
    throw new ValidationError("WF_INVALID_CURSOR", "the cursor belongs to a listing with other filters", { hint: "Use the same filters as the listing the cursor came from, or start again without --cursor." });
  }
  return cursor;
}


async function readStates(topology: Topology, ids: string[]): Promise<Map<string, { state: WorkflowState; revision: number }>> {
  const out = new Map<string, { state: WorkflowState; revision: number }>();
  for (let i = 0; i < ids.length; i += STATE_READS_IN_PARALLEL) {
    const entries = await Promise.all(ids.slice(i, i + STATE_READS_IN_PARALLEL).map((id) => topology.states.get(id)));
    for (const entry of entries) {
      if (entry && entry.operation === "PUT" && entry.length > 0) out.set(entry.key, { state: entry.json<WorkflowState>(), revision: entry.revision });
    }
  }
  return out;
}

/** The states stream's last sequence: a listing's snapshot. */
async function snapshot(topology: Topology): Promise<number> {
  const info = await topology.jsm.streams.info(subjectsOf(topology).stream);
  return info.state.last_seq;
}

/** One page of workflows matching `filter`, in the order above. */
export async function listPage(topology: Topology, filter: ListFilter = {}, options: { limit?: number; cursor?: string } = {}): Promise<ListPage> {
  const plan = planFilter(filter);
  const limit = options.limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    throw new ValidationError("WF_INVALID_FILTER", `page size ${limit} is not between 1 and ${MAX_PAGE_SIZE}`, { hint: "Ask for fewer per page and follow the cursor." });
  }
  const cursor: Cursor = options.cursor ? decodeCursor(options.cursor, plan) : { v: 1, s: await snapshot(topology), f: plan.fingerprint, p: "run" };
  return plan.where.length > 0 ? attributePage(topology, plan, cursor, limit) : scanPage(topology, plan, cursor, limit);
}

const placeAfter = (a: [string, string], b: [string, string]): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

async function scanPage(topology: Topology, plan: Plan, cursor: Cursor, limit: number): Promise<ListPage> {
  const subjects = subjectsOf(topology);
  const out: WorkflowSummary[] = [];
  const wantsRunning = plan.statuses.has("running");
  const wantsFinished = TERMINAL_STATUSES.some((s) => plan.statuses.has(s));
  let part = cursor.p;

  if (part === "run") {
    // Running at the snapshot: run entries, and end entries after it (ended since). A query for
    // finished workflows only needs the latter; one for running ones only, the former.
    const [runs, endedSince] = await Promise.all([
      wantsRunning ? readMatching(topology, subjects.stream, subjects.runFilter(plan.workflow)) : [],
      wantsFinished ? readMatching(topology, subjects.stream, subjects.endFilter({ type: plan.workflow }), { fromSeq: cursor.s + 1 }) : [],
    ]);
    const candidates = new Map<string, Candidate>();
    for (const [msgs, fromRun] of [[runs, true], [endedSince, false]] as const) {
      for (const msg of msgs) {
        const entry = decodeEntry(msg.data);
        if (entry && entryMayMatch(plan, entry)) candidates.set(entry.id, { entry, fromRun, seq: msg.seq }); // an end entry wins: it ended since
      }
    }
    const last = Array.isArray(cursor.k) ? cursor.k : undefined;
    const ordered = [...candidates.values()]
      .map((c) => ({ ...c, place: [c.entry.createdAt, c.entry.id] as [string, string] }))
      .filter((c) => !last || placeAfter(c.place, last))
      .sort((a, b) => (placeAfter(a.place, b.place) ? 1 : placeAfter(b.place, a.place) ? -1 : 0));
    // The states tell; read in slices, so a page reads about as many states as it shows.
    for (let i = 0; i < ordered.length; ) {
      const slice = ordered.slice(i, i + Math.max(limit - out.length, 8));
      i += slice.length;
      const states = await readStates(topology, slice.map((c) => c.entry.id));
      for (const candidate of slice) {
        const state = states.get(candidate.entry.id)?.state;
        if ((await runPartVerdict(topology, cursor.s, candidate, state)) === "skip" || !state || !matches(plan, state)) continue;
        out.push(summaryOf(state));
        if (out.length === limit) return { workflows: out, cursor: encodeCursor({ ...cursor, p: "run", k: candidate.place }) };
      }
    }
    part = "end";
    cursor = { ...cursor, p: "end" };
    delete cursor.k;
  }

  if (part === "end" && wantsFinished) {
    const terminal = TERMINAL_STATUSES.filter((s) => plan.statuses.has(s));
    const filter = subjects.endFilter({ ...(terminal.length === 1 ? { status: terminal[0] } : {}), ...(plan.workflow ? { type: plan.workflow } : {}) });
    let before = typeof cursor.k === "number" ? cursor.k - 1 : cursor.s;
    // End entries are in end order: one older than the lower bound of a time filter ends the scan.
    const floor = Math.max(plan.endedAfter ?? -Infinity, plan.createdAfter ?? -Infinity);
    while (out.length < limit && before >= 1) {
      const want = limit - out.length;
      const batch = await readNewestMatching(topology, subjects.stream, filter, { beforeSeq: before, limit: want, stopWhen: (msg) => msg.time < floor - 60_000 });
      if (batch.length === 0) break;
      const entries = batch.map((msg) => ({ msg, entry: decodeEntry(msg.data) }));
      const states = await readStates(topology, entries.flatMap(({ entry }) => (entry && entryMayMatch(plan, entry) ? [entry.id] : [])));
      for (const { msg, entry } of entries) {
        before = msg.seq - 1;
        if (!entry || !entryMayMatch(plan, entry)) continue;
        const stored = states.get(entry.id);
        if (!stored || !isTerminal(stored.state.status) || endSubjectOf(subjects, stored.state) !== msg.subject) {
          // The workflow is gone (a removal that died half way): finish the job. (An earlier run's entry: skip it.)
          if (!stored) void removeEntries(topology, entry, msg).catch(() => undefined);
          continue;
        }
        if (!matches(plan, stored.state)) continue;
        out.push(summaryOf(stored.state));
        if (out.length === limit) return before >= 1 ? { workflows: out, cursor: encodeCursor({ ...cursor, p: "end", k: msg.seq }) } : { workflows: out };
      }
      if (batch.length < want) break; // nothing older matches
    }
  }
  return { workflows: out };
}

/**
 * Whether a running-part candidate belongs there, repairing what disagrees with its state:
 * a run entry of a workflow that has ended (the purge after its end was lost) is purged, and if
 * its end entry is missing too (its runtime died right after the terminal write), written.
 */
/** An entry of the running part: a run entry, or an end entry written after the first page; `seq` where it was read. */
interface Candidate {
  entry: IndexEntry;
  fromRun: boolean;
  seq: number;
}

async function runPartVerdict(topology: Topology, snapshotSeq: number, candidate: Candidate, state: WorkflowState | undefined): Promise<"list" | "skip"> {
  const subjects = subjectsOf(topology);
  if (!state) {
    if (candidate.fromRun && Date.now() - Date.parse(candidate.entry.createdAt) > CREATING_GRACE_MS) keyRemovalOf(topology).deleteLater(candidate.seq);
    return "skip";
  }
  if (state.createdAt !== candidate.entry.createdAt) {
    // A run entry of an earlier run of this id. One a later running run (orchestrator/runs.ts)
    // has not rewritten yet (its runtime died right after the switch) stands for it: repaired.
    if (!(candidate.fromRun && state.status === "running" && runNumber(state) > 1)) return "skip";
    await repairIndex(topology, state).catch(() => undefined);
  }
  if (state.status === "running" || !candidate.fromRun) return "list";
  // Ended, found through a stale run entry. If its end entry is at or before the snapshot, the
  // finished part lists it; otherwise (missing: repaired now, or after the snapshot) it is listed here.
  const end = await topology.jsm.streams.getMessage(subjects.stream, { last_by_subj: endSubjectOf(subjects, state) }).catch(() => null);
  if (!end) await repairIndex(topology, state).catch(() => undefined);
  else keyRemovalOf(topology).deleteLater(candidate.seq); // the stale run entry, where it was read
  return end && end.seq <= snapshotSeq ? "skip" : "list";
}

async function attributePage(topology: Topology, plan: Plan, cursor: Cursor, limit: number): Promise<ListPage> {
  const matching = await attributeMatches(topology, plan);
  // Running at the snapshot (or ended since: its terminal write is after it) first, by start; then by end.
  const atSnapshot = ({ state, revision }: { state: WorkflowState; revision: number }) => state.status === "running" || revision > cursor.s;
  const running = matching.filter(atSnapshot).map(({ state }) => ({ state, place: [state.createdAt, state.id] as [string, string] }));
  running.sort((a, b) => (placeAfter(a.place, b.place) ? 1 : -1));
  const finished = matching.filter((m) => !atSnapshot(m)).sort((a, b) => b.revision - a.revision);
  const out: WorkflowSummary[] = [];
  if (cursor.p === "run") {
    const last = Array.isArray(cursor.k) ? cursor.k : undefined;
    let lastPlace: [string, string] | undefined;
    for (const { state, place } of running) {
      if (last && !placeAfter(place, last)) continue;
      if (out.length === limit) return { workflows: out, cursor: encodeCursor({ ...cursor, p: "run", k: lastPlace! }) };
      out.push(summaryOf(state));
      lastPlace = place;
    }
  }
  const below = cursor.p === "end" && typeof cursor.k === "number" ? cursor.k : Infinity;
  let lastRevision = 0;
  for (const { state, revision } of finished) {
    if (revision >= below) continue;
    if (out.length === limit) return { workflows: out, cursor: encodeCursor({ ...cursor, p: "end", k: lastRevision }) };
    out.push(summaryOf(state));
    lastRevision = revision;
  }
  return { workflows: out };
}

/**
 * The workflows whose states pass the filter, found through the attribute clause with the fewest
 * entries (counted by the server). Stale attribute entries (a value since changed, a workflow
 * gone) are purged.
 */
async function attributeMatches(topology: Topology, plan: Plan): Promise<Array<{ state: WorkflowState; revision: number }>> {
  const subjects = subjectsOf(topology);
  const counts = await Promise.all(plan.where.map(([name, value]) => countMatching(topology, subjects.stream, subjects.attrFilter(name, value))));
  const best = counts.indexOf(Math.min(...counts));
  const [name, value] = plan.where[best]!;
  const entries = await readMatching(topology, subjects.stream, subjects.attrFilter(name, value));
  const ids = [...new Set(entries.map((msg) => subjects.idOf(msg.subject, "attr")))];
  const states = await readStates(topology, ids);
  const out: Array<{ state: WorkflowState; revision: number }> = [];
  for (const msg of entries) {
    const id = subjects.idOf(msg.subject, "attr");
    const stored = states.get(id);
    if (!stored || !sameAttribute(stored.state.searchAttributes?.[name], value)) {
      if (!stored || Date.now() - msg.time > CREATING_GRACE_MS) keyRemovalOf(topology).deleteLater(msg.seq);
      continue;
    }
    if (matches(plan, stored.state)) out.push(stored);
  }
  return out;
}

/**
 * How many workflows match. Status and type alone are counted by the server from the entries'
 * subjects; time ranges read the entries of the matching subjects; search attributes read the
 * states of the fewest-entries clause. Counts index entries: a workflow that ended a moment ago
 * may count twice until its run entry's purge lands (milliseconds), and one whose entry a crash
 * left stale counts as the entry says until a listing or recovery repairs it.
 */
export async function countWorkflows(topology: Topology, filter: ListFilter = {}): Promise<number> {
  const plan = planFilter(filter);
  if (plan.where.length > 0) return (await attributeMatches(topology, plan)).length;
  const subjects = subjectsOf(topology);
  const timed = plan.createdAfter !== undefined || plan.createdBefore !== undefined || plan.endedAfter !== undefined || plan.endedBefore !== undefined;
  const parts: Array<Promise<number>> = [];
  const countEntries = async (filterSubject: string, fromTime?: number) => {
    if (!timed) return countMatching(topology, subjects.stream, filterSubject);
    const msgs = await readMatching(topology, subjects.stream, filterSubject, fromTime !== undefined ? { fromTime: fromTime - 60_000 } : {});
    return msgs.filter((msg) => {
      const entry = decodeEntry(msg.data);
      if (!entry || !entryMayMatch(plan, entry)) return false;
      const ended = entry.endedAt ? Date.parse(entry.endedAt) : undefined;
      if (plan.endedAfter !== undefined && (ended === undefined || ended < plan.endedAfter)) return false;
      if (plan.endedBefore !== undefined && (ended === undefined || ended >= plan.endedBefore)) return false;
      return true;
    }).length;
  };
  if (plan.statuses.has("running") && plan.endedAfter === undefined && plan.endedBefore === undefined) parts.push(countEntries(subjects.runFilter(plan.workflow)));
  const terminal = TERMINAL_STATUSES.filter((s) => plan.statuses.has(s));
  const floor = plan.endedAfter ?? plan.createdAfter;
  if (terminal.length === TERMINAL_STATUSES.length) parts.push(countEntries(subjects.endFilter({ type: plan.workflow }), floor));
  else for (const status of terminal) parts.push(countEntries(subjects.endFilter({ status, type: plan.workflow }), floor));
  return (await Promise.all(parts)).reduce((a, b) => a + b, 0);
}

/** Every running workflow's state, through the run entries (recovery, deploy checks): cost ∝ running. Stale run entries are repaired. */
export async function readRunningStates(topology: Topology, keep: (state: WorkflowState) => boolean = () => true): Promise<Array<{ state: WorkflowState; revision: number }>> {
  const subjects = subjectsOf(topology);
  const runs = await readMatching(topology, subjects.stream, subjects.runFilter());
  const ids = runs.map((msg) => subjects.idOf(msg.subject, "run"));
  const states = await readStates(topology, ids);
  const out: Array<{ state: WorkflowState; revision: number }> = [];
  for (const [i, msg] of runs.entries()) {
    const stored = states.get(ids[i]!);
    if (stored?.state.status === "running") {
      if (keep(stored.state)) out.push(stored);
    } else if (stored) {
      await repairIndex(topology, stored.state).catch(() => undefined);
    } else if (Date.now() - msg.time > CREATING_GRACE_MS) {
      keyRemovalOf(topology).deleteLater(msg.seq);
    }
  }
  return out;
}
