/**
 * The web UI's JSON API: what each route reads or does, through the client and the dead-letter
 * functions `wf dead-letters` uses too. Plain functions over a context; the HTTP plumbing
 * (routing, auth, read-only, SSE) is server.ts's. Every read costs what the page shows: a list
 * page, one workflow, one page of dead letters, the stored versions.
 */
import type { CurrentDeployment, DeploymentRecord, DeploymentStore } from "../bundle/deployments.js";
import type { WorkflowClient } from "../client/client.js";
import { DEAD_LETTER_REASONS, discardDeadLetter, listDeadLetters, readDeadLetter, replayDeadLetter, type DeadLetterPage, type DeadLetterReason, type StoredDeadLetter } from "../dead-letters.js";
import { ValidationError } from "../errors.js";
import type { RunsPage } from "../orchestrator/runs.js";
import { storedJson } from "../nats/kv-entry.js";
import type { WorkflowState, WorkflowStatus } from "../state.js";
import type { ListFilter, ListPage } from "../visibility/query.js";
import { parseAttributeArgument, type SearchAttributes } from "../visibility/search-attributes.js";
import type { DagDefinition } from "../workflow-api.js";
import type { DagDefinitions } from "./dag-definitions.js";

export interface ApiContext {
  client: WorkflowClient;
  deployments: () => Promise<DeploymentStore | undefined>;
  dags: DagDefinitions;
}

export interface WorkflowView {
  state: WorkflowState;
  /** Earlier runs, newest first (the first page). */
  runs: RunsPage;
  /** For a DAG workflow: its definition, for the graph (absent when its code version cannot be read). */
  dag?: DagDefinition;
}

export interface DeploymentsView {
  current: CurrentDeployment | null;
  versions: Array<Omit<DeploymentRecord, "files">>;
  /** Running workflows by the code version they are pinned to (the first PINNED_SCAN running ones). */
  pinned: Record<string, { count: number; ids: string[] }>;
  /** More workflows are running than were looked at. */
  pinnedTruncated: boolean;
}

/** Running workflows looked at for the deployments page's "pinned" counts. */
const PINNED_SCAN = 500;
const PINNED_IDS_SHOWN = 10;
const MAX_UI_PAGE = 200;

/** `GET /api/workflows?status=running,failed&workflow=&since=&until=&where=k=v&limit=&cursor=` */
export async function listWorkflows(ctx: ApiContext, query: URLSearchParams): Promise<ListPage & { count?: number }> {
  const filter: ListFilter = {};
  const statuses = query.getAll("status").flatMap((s) => s.split(",")).filter(Boolean) as WorkflowStatus[];
  if (statuses.length === 1) filter.status = statuses[0]!;
  else if (statuses.length > 1) filter.status = statuses;
  const workflow = query.get("workflow");
  if (workflow) filter.workflow = workflow;
  for (const [param, key] of [["since", "createdAfter"], ["until", "createdBefore"]] as const) {
    const text = query.get(param);
    if (!text) continue;
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) throw new ValidationError("WF_INVALID_FILTER", `${param} ${JSON.stringify(text)} is not a time`, { hint: "Pass an ISO 8601 time such as 2026-12-01T10:00:00Z." });
    filter[key] = new Date(ms);
  }
  const where: SearchAttributes = {};
  for (const text of query.getAll("where").flatMap((w) => w.split(/\s*,\s*/)).filter(Boolean)) {
    const [name, value] = parseAttributeArgument(text, "where");
    where[name] = value;
  }
  if (Object.keys(where).length > 0) filter.where = where;
  const limit = query.has("limit") ? Number(query.get("limit")) : 25;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_UI_PAGE) throw new ValidationError("WF_INVALID_FILTER", `limit must be a whole number from 1 to ${MAX_UI_PAGE}, got ${JSON.stringify(query.get("limit"))}`, { hint: "Page on with the cursor." });
  const cursor = query.get("cursor");
  return ctx.client.listPage(filter, { limit, ...(cursor ? { cursor } : {}) });
}

/** `GET /api/workflows/:id?run=N` */
export async function describeWorkflow(ctx: ApiContext, id: string, query: URLSearchParams): Promise<WorkflowView> {
  const runText = query.get("run");
  const run = runText ? Number(runText) : undefined;
  if (run !== undefined && (!Number.isInteger(run) || run < 1)) throw new ValidationError("WF_INVALID_FILTER", `run must be a run number (1 for the first), got ${JSON.stringify(runText)}`, { hint: "Pick one from the workflow page's runs." });
  // A payload the UI's client cannot decode (no codec.keys, or not its key) shows as ENCRYPTED_PLACEHOLDER.
  const state = await ctx.client.describe(id, { undecodable: "mark", ...(run === undefined ? {} : { run }) });
  const [runs, dag] = await Promise.all([ctx.client.runs(id, { limit: 20 }), state.kind === "dag" ? ctx.dags.of(state.workflow, state.bundle) : Promise.resolve(undefined)]);
  return { state, runs, ...(dag ? { dag } : {}) };
}

/** `GET /api/dead-letters?reason=&limit=&cursor=` */
export function deadLetters(ctx: ApiContext, query: URLSearchParams): Promise<DeadLetterPage> {
  const reason = query.get("reason") || undefined;
  const limit = query.has("limit") ? Number(query.get("limit")) : 25;
  const cursor = query.get("cursor") || undefined;
  return listDeadLetters(ctx.client.topology, { ...(reason ? { reason: reason as DeadLetterReason } : {}), limit, ...(cursor ? { cursor } : {}) });
}

export const deadLetterReasons = (): readonly string[] => DEAD_LETTER_REASONS;

export function deadLetter(ctx: ApiContext, seq: number): Promise<StoredDeadLetter> {
  return readDeadLetter(ctx.client.topology, seq);
}

export function replay(ctx: ApiContext, seq: number): Promise<{ seq: number; subject: string }> {
  return replayDeadLetter(ctx.client.topology, seq);
}

export async function discard(ctx: ApiContext, seq: number): Promise<{ seq: number; discarded: boolean }> {
  return { seq, discarded: await discardDeadLetter(ctx.client.topology, seq) };
}

/** `GET /api/deployments`: stored versions, the current one, and where running workflows are pinned. */
export async function deployments(ctx: ApiContext): Promise<DeploymentsView> {
  const store = await ctx.deployments();
  if (!store) return { current: null, versions: [], pinned: {}, pinnedTruncated: false };
  const [records, current, running] = await Promise.all([store.list(), store.current(), ctx.client.listPage({ status: "running" }, { limit: PINNED_SCAN })]);
  const states = await Promise.all(running.workflows.map(async (w) => storedJson<WorkflowState>(await ctx.client.topology.states.get(w.id))));
  const pinned: DeploymentsView["pinned"] = {};
  for (const state of states) {
    if (!state || state.status !== "running") continue;
    const entry = (pinned[state.bundle] ??= { count: 0, ids: [] });
    entry.count += 1;
    if (entry.ids.length < PINNED_IDS_SHOWN) entry.ids.push(state.id);
  }
  return {
    current: current?.deployment ?? null,
    versions: records.map(({ files: _files, ...rest }) => rest),
    pinned,
    pinnedTruncated: running.cursor !== undefined,
  };
}

/** How long `POST …/retry` waits for the new run to be stored before it answers (the page then shows it). */
const RETRY_SHOWN_WITHIN_MS = 10_000;

/**
 * `POST /api/workflows/:id/{cancel,terminate,signal,retry}`. A retry answers once its new run is
 * stored (or after RETRY_SHOWN_WITHIN_MS), with the run's number, so the page reloads onto it.
 */
export async function act(ctx: ApiContext, id: string, action: "cancel" | "terminate" | "signal" | "retry", body: Record<string, unknown>): Promise<{ ok: true; run?: number }> {
  const reason = typeof body.reason === "string" && body.reason ? body.reason : undefined;
  if (action === "retry") {
    const before = (await ctx.client.describe(id)).run ?? 1;
    await ctx.client.retry(id);
    const deadline = Date.now() + RETRY_SHOWN_WITHIN_MS;
    while (Date.now() < deadline) {
      const state = await ctx.client.describe(id).catch(() => undefined);
      if (state && (state.run ?? 1) > before) return { ok: true, run: state.run ?? 1 };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { ok: true, run: before + 1 };
  }
  if (action === "cancel") await ctx.client.cancel(id, reason ?? "cancelled from the web UI");
  else if (action === "terminate") await ctx.client.terminate(id, reason ?? "terminated from the web UI");
  else {
    if (typeof body.name !== "string" || !body.name) throw new ValidationError("WF_INVALID_NAME", "a signal needs a name", { hint: 'Send { "name": "approve", "payload": … }.' });
    await ctx.client.signal(id, body.name, body.payload);
  }
  return { ok: true };
}
