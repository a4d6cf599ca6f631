/**
 * The workflows list: filters (status, type, started since/until, search attributes) kept in the
 * address, one page at a time through the visibility index with Older/Newer, and live: the page
 * shown is read again every few seconds while the tab is visible, so a new workflow appears and a
 * status changes without a reload (the cost is one page, whatever runs).
 */
import { useEffect, useState } from "preact/hooks";
import { enc, get } from "../api.js";
import { ErrorBox, StatusBadge, Time, formatDuration } from "../components/common.js";
import { href, navigate, type Route } from "../router.js";
import { STATUSES, type Summary } from "../types.js";

const REFRESH_MS = 1_500;
const PAGE_SIZE = 25;

/** ISO time for the API from a datetime-local value (the browser's local time). */
const isoOf = (local: string): string => (local ? new Date(local).toISOString() : "");
const localOf = (iso: string | null): string => {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};

export function WorkflowsPage({ route }: { route: Route }) {
  const q = route.query;
  const [loaded, setLoaded] = useState<{ key: string; workflows: Summary[]; cursor?: string } | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const cursors = q.get("cursors")?.split("~").filter(Boolean) ?? [];
  const cursor = cursors.at(-1);

  const params = new URLSearchParams();
  for (const key of ["status", "workflow", "since", "until", "where"]) if (q.get(key)) params.set(key, q.get(key)!);
  params.set("limit", String(PAGE_SIZE));
  if (cursor) params.set("cursor", cursor);
  const key = params.toString();
  // Only the page read for these filters: while a new filter's first page loads, the rows of the
  // previous one would be shown under it (a completed workflow in the "running" list).
  const page = loaded?.key === key ? loaded : undefined;

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      if (document.visibilityState === "visible") {
        try {
          const next = await get<{ workflows: Summary[]; cursor?: string }>("/api/workflows", new URLSearchParams(key));
          if (!stopped) {
            setLoaded({ ...next, key });
            setError(undefined);
          }
        } catch (err) {
          if (!stopped) setError(err);
        }
      }
      if (!stopped) timer = setTimeout(load, REFRESH_MS);
    };
    void load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [key]);

  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const next = new URLSearchParams();
    const status = String(form.get("status") ?? "");
    if (status) next.set("status", status);
    for (const name of ["workflow", "where"]) {
      const v = String(form.get(name) ?? "").trim();
      if (v) next.set(name, v);
    }
    for (const name of ["since", "until"]) {
      const v = isoOf(String(form.get(name) ?? ""));
      if (v) next.set(name, v);
    }
    navigate(href("/", next));
  };

  const pageLink = (nextCursors: string[]) => {
    const next = new URLSearchParams(q);
    if (nextCursors.length) next.set("cursors", nextCursors.join("~"));
    else next.delete("cursors");
    return href("/", next);
  };

  return (
    <div>
      <div class="page-head">
        <h1>Workflows</h1>
        <span class="live" title={`this page is read again every ${REFRESH_MS / 1000}s`}>● live</span>
      </div>
      <form class="filters card" onSubmit={apply} key={route.query.toString()}>
        <label>
          Status
          <select name="status" value={q.get("status") ?? ""}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option value={s}>{s.replace("_", " ")}</option>
            ))}
          </select>
        </label>
        <label>
          Workflow type
          <input name="workflow" placeholder="order_saga" value={q.get("workflow") ?? ""} />
        </label>
        <label>
          Started since
          <input type="datetime-local" name="since" value={localOf(q.get("since"))} />
        </label>
        <label>
          Started until
          <input type="datetime-local" name="until" value={localOf(q.get("until"))} />
        </label>
        <label class="grow">
          Search attributes
          <input name="where" placeholder="customerId=c-7, priority=2" value={q.get("where") ?? ""} />
        </label>
        <div class="filter-buttons">
          <button type="submit" class="primary">
            Apply
          </button>
          <a class="button" href="#/">
            Clear
          </a>
        </div>
      </form>
      <ErrorBox error={error} />
      <div class="card">
        <table class="list" data-testid="workflows" data-loaded={page ? "true" : "false"}>
          <thead>
            <tr>
              <th>Id</th>
              <th>Workflow</th>
              <th>Status</th>
              <th>Started</th>
              <th>Duration</th>
              <th>Search attributes</th>
            </tr>
          </thead>
          <tbody>
            {page?.workflows.map((w) => (
              <tr data-id={w.id} data-status={w.status}>
                <td>
                  <a href={`#/workflows/${enc(w.id)}`}>{w.id}</a>
                </td>
                <td>{w.workflow}</td>
                <td>
                  <StatusBadge status={w.status} />
                </td>
                <td>
                  <Time at={w.createdAt} />
                </td>
                <td>{formatDuration((w.endedAt ? Date.parse(w.endedAt) : Date.now()) - Date.parse(w.createdAt))}</td>
                <td>
                  <div class="attrs">
                    {Object.entries(w.searchAttributes ?? {}).map(([k, v]) => (
                      <code>
                        {k}={String(v)}
                      </code>
                    ))}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {page && page.workflows.length === 0 ? <p class="empty">No workflows match{cursor ? " on this page" : ""}.</p> : null}
        {!page && !error ? <p class="empty">Loading…</p> : null}
        <div class="pager">
          {cursors.length ? <a href={pageLink(cursors.slice(0, -1))}>← Newer</a> : <span />}
          {page?.cursor ? <a href={pageLink([...cursors, page.cursor])}>Older →</a> : <span />}
        </div>
      </div>
    </div>
  );
}
