/**
 * The step timeline: one row per step in the order the workflow issued them, a bar on a shared
 * time axis from when it was scheduled to when it finished (or now). The lighter part of a bar is
 * the wait for a worker (scheduled → started), the solid part the last attempt's run; a step that
 * needed retries says which attempt it is on and why the previous one failed.
 */
import type { State, Step } from "../types.js";
import { formatDuration } from "./common.js";

const TICKS = 5;

function stepLabel(name: string, step: Step): string {
  if (step.kind === "activity") return step.activity && step.activity !== name ? `${name} · ${step.activity}` : name;
  if (step.kind === "sleep") return `${name} · sleep`;
  if (step.kind === "signal") return `${name} · signal ${step.signal ?? ""}`;
  if (step.kind === "child") return `${name} · child ${step.child?.workflow ?? ""}`;
  return `${name} · ${step.kind}`;
}

export function shownStatus(step: Step): string {
  return step.status === "scheduled" ? (step.startedAt ? "running" : "scheduled") : step.status;
}

export function Timeline({ state, now }: { state: State; now: number }) {
  const steps = Object.entries(state.steps).sort((a, b) => a[1].seq - b[1].seq);
  if (steps.length === 0) return <p class="dim">No steps yet.</p>;
  const t0 = Date.parse(state.createdAt);
  const ends = steps.map(([, s]) => Date.parse(s.finishedAt ?? s.nextAttemptAt ?? s.fireAt ?? "") || now);
  const t1 = Math.max(t0 + 1, state.completedAt ? Date.parse(state.completedAt) : now, ...ends);
  const span = t1 - t0;
  const pct = (t: number) => `${(((Math.min(Math.max(t, t0), t1) - t0) / span) * 100).toFixed(3)}%`;
  const width = (a: number, b: number) => `${Math.max(0.4, ((Math.min(b, t1) - Math.max(a, t0)) / span) * 100).toFixed(3)}%`;
  return (
    <div class="timeline" data-testid="timeline">
      <div class="timeline-axis">
        <div class="timeline-label" />
        <div class="timeline-track">
          {Array.from({ length: TICKS }, (_, i) => (
            <span class="tick" style={{ left: `${(i / (TICKS - 1)) * 100}%` }}>
              +{formatDuration((span * i) / (TICKS - 1)) || "0ms"}
            </span>
          ))}
        </div>
      </div>
      {steps.map(([name, step]) => {
        const scheduled = Date.parse(step.scheduledAt);
        const started = step.startedAt ? Date.parse(step.startedAt) : undefined;
        const finished = step.finishedAt ? Date.parse(step.finishedAt) : undefined;
        const end = finished ?? now;
        const status = shownStatus(step);
        const retried = step.attempt > 1;
        const title = [
          `${name}: ${status}`,
          step.kind === "activity" ? `attempt ${step.attempt}/${step.maxAttempts ?? "?"}` : "",
          started ? `ran ${formatDuration((finished ?? now) - started)}` : "",
          started && started > scheduled ? `waited ${formatDuration(started - scheduled)} for a worker` : "",
          step.lastError ? `last error: ${step.lastError.message}` : "",
          step.error ? `error: ${step.error.type}: ${step.error.message}` : "",
        ]
          .filter(Boolean)
          .join("\n");
        // A note past the middle goes left of its bar, so it never runs out of the card.
        const noteAt = (from: number, to: number) => ((to - t0) / span > 0.55 ? { right: `calc(100% - ${pct(from)})`, textAlign: "right" } : { left: pct(to) });
        return (
          <div class="timeline-row" data-step={name} data-status={status} title={title}>
            <div class="timeline-label">
              <span class={`dot status-${status}`} />
              {stepLabel(name, step)}
            </div>
            <div class="timeline-track">
              {step.kind === "sleep" && !finished && step.fireAt ? (
                <div class="bar bar-waiting" style={{ left: pct(scheduled), width: width(scheduled, Date.parse(step.fireAt)) }} />
              ) : started !== undefined ? (
                <>
                  {started > scheduled ? <div class="bar bar-queued" style={{ left: pct(scheduled), width: width(scheduled, started) }} /> : null}
                  <div class={`bar status-${status}`} style={{ left: pct(started), width: width(started, end) }} />
                </>
              ) : (
                <div class={`bar ${step.kind === "activity" ? "bar-queued" : `status-${status}`}`} style={{ left: pct(scheduled), width: width(scheduled, end) }} />
              )}
              {step.status === "retrying" && step.nextAttemptAt ? <div class="bar bar-backoff" style={{ left: pct(end), width: width(now, Date.parse(step.nextAttemptAt)) }} /> : null}
              <span class="bar-note" style={noteAt(started ?? scheduled, end)}>
                {step.kind === "activity" && step.startedAt ? formatDuration(end - (started ?? scheduled)) : ""}
                {retried ? <span class="attempts" data-attempts={step.attempt}> attempt {step.attempt}/{step.maxAttempts ?? "?"}</span> : null}
                {step.lastError && step.status !== "failed" ? <span class="retry-note"> ↻ {step.lastError.message}</span> : null}
                {step.error ? <span class="error-note"> {step.error.message}</span> : null}
              </span>
            </div>
          </div>
        );
      })}
    </div>
  );
}
