/** Small shared pieces: status badges, times, durations, JSON, errors. */
import type { ComponentChildren } from "preact";
import { ApiError } from "../api.js";

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge status-${status}`} data-status={status}>{status.replace(/_/g, " ")}</span>;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1_000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.round((ms % 3_600_000) / 60_000)}m`;
}

export function Time({ at }: { at: string | undefined }) {
  if (!at) return <span class="dim">—</span>;
  const d = new Date(at);
  return <time dateTime={at} title={at}>{d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" })}</time>;
}

export function Json({ value }: { value: unknown }) {
  if (value === undefined) return <span class="dim">—</span>;
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as Partial<ApiError> & Error;
  return (
    <div class="error-box" role="alert">
      <strong>{e.code ? `${e.code}: ` : ""}</strong>
      {e.message}
      {e.hint ? <div class="hint">{e.hint}</div> : null}
    </div>
  );
}

export function Section({ title, children, extra }: { title: string; children: ComponentChildren; extra?: ComponentChildren }) {
  return (
    <section class="card">
      <h2>
        {title}
        {extra ? <span class="section-extra">{extra}</span> : null}
      </h2>
      {children}
    </section>
  );
}
