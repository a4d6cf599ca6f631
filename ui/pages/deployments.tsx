/** Deployments: every stored code version, the current one, and the running workflows pinned to each. */
import { useEffect, useState } from "preact/hooks";
import { enc, get } from "../api.js";
import { ErrorBox, Time } from "../components/common.js";
import type { DeploymentsView } from "../types.js";

export function DeploymentsPage() {
  const [view, setView] = useState<DeploymentsView | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  useEffect(() => {
    get<DeploymentsView>("/api/deployments").then(setView, setError);
  }, []);
  if (error) return <ErrorBox error={error} />;
  if (!view) return <p class="empty">Loading…</p>;
  return (
    <div>
      <div class="page-head">
        <h1>Deployments</h1>
        {view.current ? (
          <span class="dim">
            current <code>{view.current.version}</code> since <Time at={view.current.deployedAt} /> by {view.current.deployedBy}
          </span>
        ) : null}
      </div>
      <div class="card">
        {view.versions.length === 0 ? <p class="empty">Nothing deployed yet: `wf deploy` (or `wf run` / `wf dev` with functions/) deploys.</p> : null}
        <table class="list" data-testid="deployments">
          <thead>
            <tr>
              <th>Version</th>
              <th>Deployed</th>
              <th>By</th>
              <th>Workflows</th>
              <th>Activities</th>
              <th>Size</th>
              <th>Running on it</th>
            </tr>
          </thead>
          <tbody>
            {view.versions.map((v) => {
              const pinned = view.pinned[v.version];
              return (
                <tr data-version={v.version} class={v.version === view.current?.version ? "current" : ""}>
                  <td>
                    <code>{v.version}</code> {v.version === view.current?.version ? <span class="badge status-running">current</span> : null}
                  </td>
                  <td>
                    <Time at={v.deployedAt} />
                  </td>
                  <td>{v.deployedBy}</td>
                  <td>{v.workflows.join(", ") || <span class="dim">none</span>}</td>
                  <td>{v.activities.join(", ") || <span class="dim">none</span>}</td>
                  <td>{(v.bytes / 1024).toFixed(1)} KiB</td>
                  <td>
                    {pinned ? (
                      <>
                        {pinned.count}
                        {": "}
                        {pinned.ids.map((id, i) => (
                          <>
                            {i ? ", " : ""}
                            <a href={`#/workflows/${enc(id)}`}>{id}</a>
                          </>
                        ))}
                        {pinned.count > pinned.ids.length ? " …" : ""}
                      </>
                    ) : (
                      <span class="dim">0</span>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {view.pinnedTruncated ? <p class="dim">Counts of running workflows cover the first 500 running ones.</p> : null}
      </div>
    </div>
  );
}
