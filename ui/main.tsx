/** The jetflow web UI: a small Preact app bundled into dist/ui by scripts/build-ui.ts. */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, setToken, takeTokenFromAddress } from "./api.js";
import { ErrorBox } from "./components/common.js";
import { DeadLettersPage } from "./pages/dead-letters.js";
import { DeploymentsPage } from "./pages/deployments.js";
import { WorkflowPage } from "./pages/workflow.js";
import { WorkflowsPage } from "./pages/workflows.js";
import { useRoute } from "./router.js";
import type { Info } from "./types.js";

function TokenForm({ error }: { error: unknown }) {
  return (
    <form
      class="card token-form"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(String(new FormData(e.currentTarget as HTMLFormElement).get("token") ?? ""));
        location.reload();
      }}
    >
      <h2>This UI needs its token</h2>
      <ErrorBox error={error} />
      <label>
        Token (ui.token)
        <input name="token" type="password" autoComplete="current-password" />
      </label>
      <button type="submit" class="primary">
        Open
      </button>
    </form>
  );
}

function App() {
  const route = useRoute();
  const [info, setInfo] = useState<Info | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  useEffect(() => {
    get<Info>("/api/info").then(setInfo, setError);
  }, []);
  const section = route.path[0] ?? "";
  const nav = (to: string, label: string, active: boolean) => (
    <a href={to} class={active ? "active" : ""}>
      {label}
    </a>
  );
  let page;
  if (error instanceof ApiError && error.status === 401) page = <TokenForm error={error} />;
  else if (error) page = <ErrorBox error={error} />;
  else if (!info) page = <p class="empty">Loading…</p>;
  else if (section === "workflows" && route.path[1]) page = <WorkflowPage route={route} readOnly={info.readOnly} />;
  else if (section === "dead-letters") page = <DeadLettersPage route={route} readOnly={info.readOnly} reasons={info.deadLetterReasons} />;
  else if (section === "deployments") page = <DeploymentsPage />;
  else page = <WorkflowsPage route={route} />;
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          jetflow
        </a>
        <nav>
          {nav("#/", "Workflows", section === "" || section === "workflows")}
          {nav("#/dead-letters", "Dead letters", section === "dead-letters")}
          {nav("#/deployments", "Deployments", section === "deployments")}
        </nav>
        <span class="meta">
          {info?.namespace ? <span>namespace {info.namespace}</span> : null}
          {info?.readOnly ? <span class="badge read-only">read-only</span> : null}
        </span>
      </header>
      <main>{page}</main>
    </>
  );
}

takeTokenFromAddress();
render(<App />, document.getElementById("app")!);
