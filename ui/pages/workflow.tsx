/**
 * One workflow: status, input, result or error, the step timeline, the DAG for DAG workflows,
 * the journal, signals, links to its parent, children and earlier runs; cancel, terminate and
 * signal, each after a confirmation. While it runs, its state arrives as server-sent events from a
 * watch of its one key.
 */
import { useEffect, useState } from "preact/hooks";
import { ApiError, enc, eventsUrl, get, post } from "../api.js";
import { ErrorBox, Json, Section, StatusBadge, Time, formatDuration } from "../components/common.js";
import { ConfirmDialog } from "../components/confirm.js";
import { DagGraph } from "../components/dag.js";
import { Timeline, shownStatus } from "../components/timeline.js";
import type { Route } from "../router.js";
import type { State, WorkflowView } from "../types.js";

type Action = "cancel" | "terminate" | "signal" | "retry";
const NOT_FOUND_RETRY_MS = 1_000;
/** The latest run of an id that is not stored (yet): the page looks again (an earlier run that is missing stays an error). */
const notStartedYet = (err: unknown, run: string | null): boolean => !run && err instanceof ApiError && err.code === "WF_WORKFLOW_NOT_FOUND";
/** Statuses a workflow can be retried from (runtime/orchestrator/runs.ts RETRYABLE_STATUSES). */
const RETRYABLE = ["failed", "cancelled", "terminated", "timed_out"];

export function WorkflowPage({ route, readOnly }: { route: Route; readOnly: boolean }) {
  const id = route.path[1]!;
  const run = route.query.get("run");
  const [view, setView] = useState<WorkflowView | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [now, setNow] = useState(Date.now());
  const [action, setAction] = useState<Action | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const [reload, setReload] = useState(0);

  // Another workflow's error is not this one's; a look again keeps its own until it is answered.
  useEffect(() => setError(undefined), [id, run]);

  useEffect(() => {
    let stopped = false;
    let source: EventSource | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const params = new URLSearchParams(run ? { run } : {});
    get<WorkflowView>(`/api/workflows/${enc(id)}`, params).then(
      (loaded) => {
        if (stopped) return;
        setError(undefined);
        setView(loaded);
        if (run || loaded.state.status !== "running") return;
        // Live: the state whole on every change, until it ends; then read the page once more (runs).
        source = new EventSource(eventsUrl(`/api/workflows/${enc(id)}/events`));
        source.addEventListener("state", (e) => {
          const state = JSON.parse((e as MessageEvent<string>).data) as State;
          setView((v) => (v ? { ...v, state } : v));
        });
        source.addEventListener("end", () => {
          source?.close();
          setReload((n) => n + 1);
        });
      },
      (err) => {
        if (stopped) return;
        setError(err);
        // A link opened right after a start can arrive before the runtime stored the state: look
        // again every second (one read per open page) and show the workflow once it exists.
        if (notStartedYet(err, run)) retry = setTimeout(() => setReload((n) => n + 1), NOT_FOUND_RETRY_MS);
      },
    );
    return () => {
      stopped = true;
      clearTimeout(retry);
      source?.close();
    };
  }, [id, run, reload]);

  const running = view?.state.status === "running";
  useEffect(() => {
    if (!running) return;
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, [running]);

  if (notStartedYet(error, run))
    return (
      <div data-testid="workflow-missing">
        <ErrorBox error={error} />
        <p class="empty">Looking again every second: the page shows it as soon as it starts.</p>
      </div>
    );
  if (error) return <ErrorBox error={error} />;
  if (!view) return <p class="empty">Loading…</p>;
  const s = view.state;
  const ended = s.completedAt ?? (s.status !== "running" ? s.updatedAt : undefined);
  const children = Object.entries(s.steps).filter(([, step]) => step.child?.id);
  const received = Object.entries(s.steps).filter(([, step]) => step.kind === "signal" && step.status === "completed");
  const waiting = Object.entries(s.steps).filter(([, step]) => step.kind === "signal" && step.status !== "completed");

  return (
    <div data-testid="workflow" data-status={s.status}>
      <div class="page-head">
        <h1>
          <a href="#/" class="crumb">
            Workflows
          </a>{" "}
          / {s.id}
        </h1>
        <StatusBadge status={s.status} />
        {running && !run && !readOnly ? (
          <div class="actions">
            <button type="button" onClick={() => setAction("signal")}>
              Signal…
            </button>
            <button type="button" onClick={() => setAction("cancel")}>
              Cancel…
            </button>
            <button type="button" class="danger" onClick={() => setAction("terminate")}>
              Terminate…
            </button>
          </div>
        ) : null}
        {!run && !readOnly && RETRYABLE.includes(s.status) ? (
          <div class="actions">
            <button type="button" onClick={() => setAction("retry")}>
              Retry…
            </button>
          </div>
        ) : null}
      </div>
      {notice ? <div class="notice">{notice}</div> : null}
      <div class="facts card">
        <dl>
          <dt>Workflow</dt>
          <dd>
            {s.workflow} <span class="dim">({s.kind})</span>
          </dd>
          <dt>Run</dt>
          <dd>
            {s.run ?? 1} <span class="dim">{s.runId ?? ""}</span>
          </dd>
          <dt>Started</dt>
          <dd>
            <Time at={s.createdAt} />
          </dd>
          <dt>{ended ? "Ended" : "Running for"}</dt>
          <dd>{ended ? <><Time at={ended} /> <span class="dim">after {formatDuration(Date.parse(ended) - Date.parse(s.createdAt))}</span></> : formatDuration(now - Date.parse(s.createdAt))}</dd>
          <dt>Code version</dt>
          <dd>
            <code>{s.bundle}</code>
          </dd>
          {s.deadline ? (
            <>
              <dt>Deadline</dt>
              <dd>
                <Time at={s.deadline} />
              </dd>
            </>
          ) : null}
          {s.parent ? (
            <>
              <dt>Parent</dt>
              <dd>
                <a href={`#/workflows/${enc(s.parent.id)}`}>{s.parent.id}</a> <span class="dim">({s.parent.workflow}, step {s.parent.step})</span>
              </dd>
            </>
          ) : null}
          {s.searchAttributes && Object.keys(s.searchAttributes).length ? (
            <>
              <dt>Search attributes</dt>
              <dd class="attrs">
                {Object.entries(s.searchAttributes).map(([k, v]) => (
                  <code>
                    {k}={String(v.value)}
                  </code>
                ))}
              </dd>
            </>
          ) : null}
        </dl>
      </div>
      {s.blocked ? (
        <div class="error-box">
          Blocked since <Time at={s.blocked.since} />: {s.blocked.message}
        </div>
      ) : null}
      {s.error ? (
        <div class="error-box" data-testid="workflow-error">
          <strong>{s.error.type}:</strong> {s.error.message}
        </div>
      ) : null}
      <div class="two">
        <Section title="Input">
          <Json value={s.input} />
        </Section>
        <Section title={s.status === "completed" ? "Result" : "Result (none yet)"}>
          <Json value={s.status === "completed" ? s.result : undefined} />
        </Section>
      </div>
      <Section title="Timeline">
        <Timeline state={s} now={s.status === "running" ? now : Date.parse(ended ?? s.updatedAt)} />
      </Section>
      {s.kind === "dag" ? (
        <Section title="DAG">
          {view.dag ? <div class="dag-wrap"><DagGraph dag={view.dag} state={s} /></div> : <p class="dim">The definition of code version {s.bundle} is not stored in NATS (a programmatic runtime?): no graph.</p>}
        </Section>
      ) : null}
      <div class="two">
        <Section title="Journal" extra={<span class="dim">results in the order the workflow received them</span>}>
          {s.journal.length === 0 ? (
            <p class="dim">Nothing received yet.</p>
          ) : (
            <ol class="journal" data-testid="journal">
              {s.journal.map((name) => {
                const step = s.steps[name];
                return (
                  <li>
                    <code>{name}</code> {step ? <span class={`dim status-text-${shownStatus(step)}`}>{step.kind}{step.activity ? ` ${step.activity}` : ""} · {shownStatus(step)}{step.attempt > 1 ? ` · attempt ${step.attempt}` : ""}</span> : null}
                  </li>
                );
              })}
            </ol>
          )}
        </Section>
        <Section title="Signals">
          {waiting.map(([name, step]) => (
            <p>
              Waiting for <code>{step.signal}</code> <span class="dim">(step {name})</span>
            </p>
          ))}
          {received.map(([name, step]) => (
            <div class="signal">
              Received <code>{step.signal}</code> <span class="dim">(step {name}, <Time at={step.finishedAt} />)</span>
              <Json value={step.output} />
            </div>
          ))}
          {(s.signals ?? []).map((sig) => (
            <div class="signal">
              Pending <code>{sig.name}</code> <span class="dim">(<Time at={sig.receivedAt} />, not consumed yet)</span>
              <Json value={sig.payload} />
            </div>
          ))}
          {!waiting.length && !received.length && !(s.signals ?? []).length ? <p class="dim">No signals.</p> : null}
        </Section>
      </div>
      {children.length ? (
        <Section title="Children">
          <ul>
            {children.map(([name, step]) => (
              <li>
                <a href={`#/workflows/${enc(step.child!.id)}`}>{step.child!.id}</a> <span class="dim">({step.child!.workflow}, step {name}, {step.child!.status})</span>
              </li>
            ))}
          </ul>
        </Section>
      ) : null}
      {view.runs.runs.length || run ? (
        <Section title="Runs">
          <ul>
            <li>
              <a href={`#/workflows/${enc(s.id)}`}>latest run</a>
            </li>
            {view.runs.runs.map((r) => (
              <li>
                <a href={`#/workflows/${enc(s.id)}?run=${r.run}`}>run {r.run}</a> <StatusBadge status={r.status} /> <span class="dim">{r.runId}</span>
              </li>
            ))}
          </ul>
        </Section>
      ) : null}
      {s.memo !== undefined ? (
        <Section title="Memo">
          <Json value={s.memo} />
        </Section>
      ) : null}
      {action ? (
        <ActionDialog
          action={action}
          id={s.id}
          onClose={() => setAction(undefined)}
          onDone={(text) => {
            setNotice(text);
            if (action === "retry") setReload((n) => n + 1); // the new run, live
          }}
        />
      ) : null}
    </div>
  );
}

function ActionDialog({ action, id, onClose, onDone }: { action: Action; id: string; onClose(): void; onDone(text: string): void }) {
  const [reason, setReason] = useState("");
  const [name, setName] = useState("");
  const [payload, setPayload] = useState("");
  const confirm = async () => {
    if (action === "signal") {
      if (!name.trim()) throw new Error("Give the signal a name (what ctx.waitForSignal waits for).");
      let value: unknown = null;
      if (payload.trim()) {
        try {
          value = JSON.parse(payload);
        } catch (err) {
          throw new Error(`The payload is not JSON: ${(err as Error).message}`);
        }
      }
      await post(`/api/workflows/${enc(id)}/signal`, { name: name.trim(), payload: value });
      onDone(`Signal ${name.trim()} sent to ${id}.`);
      return;
    }
    if (action === "retry") {
      const answer = await post<{ ok: true; run?: number }>(`/api/workflows/${enc(id)}/retry`, {});
      onDone(`Retry of ${id} started as run ${answer.run ?? "?"}.`);
      return;
    }
    await post(`/api/workflows/${enc(id)}/${action}`, reason.trim() ? { reason: reason.trim() } : {});
    onDone(`${action === "cancel" ? "Cancellation" : "Termination"} of ${id} requested.`);
  };
  const titles = { cancel: `Cancel ${id}?`, terminate: `Terminate ${id}?`, signal: `Send a signal to ${id}`, retry: `Retry ${id}?` };
  const labels = { cancel: "Cancel workflow", terminate: "Terminate workflow", signal: "Send signal", retry: "Retry workflow" };
  return (
    <ConfirmDialog title={titles[action]} confirmLabel={labels[action]} danger={action === "cancel" || action === "terminate"} onConfirm={confirm} onClose={onClose}>
      {action === "retry" ? (
        <p>
          A new run of this workflow starts from its failed step: the steps that completed before it are not run again, their recorded results are reused (<code>wf retry</code> does the same).
        </p>
      ) : action === "signal" ? (
        <>
          <label>
            Signal name
            <input name="signal-name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="approve" />
          </label>
          <label>
            Payload (JSON, optional)
            <textarea name="signal-payload" rows={5} value={payload} onInput={(e) => setPayload((e.target as HTMLTextAreaElement).value)} placeholder='{"approved": true}' />
          </label>
        </>
      ) : (
        <>
          <p>
            {action === "cancel"
              ? "The workflow is asked to stop: it ends cancelled at its next durable wait, and its running activities are told through their AbortSignal."
              : "A hard stop: the workflow ends terminated at once, no workflow code runs, its running activities are aborted."}
          </p>
          <label>
            Reason (optional)
            <input name="reason" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
          </label>
        </>
      )}
    </ConfirmDialog>
  );
}
