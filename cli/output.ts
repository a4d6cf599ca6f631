/** Presentation only: colors on a TTY, plain text otherwise, JSON on request. */
import { retentionOf } from "../runtime/visibility/index-keys.js";
import { formatDuration } from "../runtime/duration.js";
import type { StepState, UpdateRecord, WorkflowState } from "../runtime/state.js";
import type { TypedAttributes } from "../runtime/visibility/search-attributes.js";
import type { RunsPage } from "../runtime/orchestrator/runs.js";
import { runNumber, stepsInOrder } from "../runtime/state.js";

const useColor = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number) => (text: string) => (useColor ? `\x1b[${code}m${text}\x1b[0m` : text);
export const color = { red: paint(31), green: paint(32), yellow: paint(33), blue: paint(34), dim: paint(2), bold: paint(1) };

export function print(line = ""): void {
  process.stdout.write(line + "\n");
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

export function statusColor(status: string): string {
  switch (status) {
    case "completed":
      return color.green(status);
    case "continued_as_new":
      return color.yellow(status);
    case "failed":
    case "timed_out":
    case "cancelled":
    case "terminated":
      return color.red(status);
    case "retrying":
    case "waiting":
      return color.yellow(status);
    default:
      return color.blue(status);
  }
}

function elapsed(from?: string, to?: string): string {
  if (!from) return "";
  const end = to ? Date.parse(to) : Date.now();
  return formatDuration(end - Date.parse(from));
}

/** `wf show`: the workflow, then one line per step in the order it was issued. */
export function renderState(state: WorkflowState): string {
  const lines: string[] = [];
  lines.push(`${color.bold(state.id)}  ${state.workflow}  ${statusColor(state.status)}` + (state.runId ? color.dim(`  run ${runNumber(state)} (${state.runId})`) : ""));
  lines.push(
    color.dim(
      `created ${state.createdAt}` + (state.completedAt ? `, ended ${state.completedAt} (${elapsed(state.createdAt, state.completedAt)})` : `, running for ${elapsed(state.createdAt)}`) + `, code ${state.bundle}`,
    ),
  );
  if (state.memo !== undefined) lines.push(`memo: ${JSON.stringify(state.memo)}`);
  const attributes = Object.entries(state.searchAttributes ?? {});
  if (attributes.length) lines.push(`search attributes: ${attributes.map(([name, { type, value }]) => `${name}=${String(value)} ${color.dim(`(${type})`)}`).join("  ")}`);
  if (state.status !== "running") {
    const keptMs = retentionOf(state);
    const ended = Date.parse(state.completedAt ?? state.updatedAt);
    lines.push(color.dim(keptMs === 0 ? "kept until `wf delete`" : `kept until ${new Date(ended + keptMs).toISOString()} (retention)`));
  }
  if (state.error) lines.push(color.red(`error: ${state.error.type}: ${state.error.message}`));
  if (state.continuedAsNew) lines.push(`continued as new: run ${runNumber(state) + 1} (${state.continuedAsNew.runId}) with input ${JSON.stringify(state.continuedAsNew.input)}`);
  if (state.blocked) {
    lines.push(color.yellow(`blocked since ${state.blocked.since}: ${state.blocked.message}`));
    lines.push(color.dim("  its events are parked until code that replays its journal is deployed (or it is cancelled)"));
  }
  const steps = stepsInOrder(state);
  if (steps.length) {
    lines.push("");
    const width = Math.max(4, ...steps.map(([name]) => name.length));
    lines.push(color.dim(`${"step".padEnd(width)}  ${"status".padEnd(10)}  attempts  duration  detail`));
    for (const [name, step] of steps) lines.push(renderStep(name, step, width));
  }
  if (state.updates?.length) {
    lines.push("");
    lines.push(color.dim(`updates (the ${state.updates.length} most recent outcomes)`));
    for (const u of state.updates) lines.push(renderUpdate(u));
  }
  if (state.status === "completed") {
    lines.push("");
    lines.push("result: " + JSON.stringify(state.result, null, 2));
  }
  return lines.join("\n");
}

/** One outcome of `state.updates`: its id, name, and result or error (a long result shortened). */
function renderUpdate(u: UpdateRecord): string {
  const head = `  ${u.id}  ${u.name}  `;
  if (u.ok) {
    const text = JSON.stringify(u.result) ?? "null";
    return head + `→ ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`;
  }
  const message = `${u.error?.type ?? "Error"}: ${u.error?.message ?? "?"}`;
  return head + (u.rejected ? color.yellow(`rejected: ${message}`) : color.red(`failed: ${message}`));
}

/** The earlier runs of a workflow (a page, newest first), under its latest run in `wf show`. */
export function renderRuns(latest: WorkflowState, page: RunsPage): string {
  const lines = [color.dim(`earlier runs (${runNumber(latest) - 1}; \`wf show ${latest.id} --run N\` shows one):`)];
  lines.push(color.dim(`${"run".padEnd(6)}  ${"status".padEnd(16)}  ${"runId".padEnd(36)}  created → ended`));
  for (const run of page.runs) lines.push(`${String(run.run).padEnd(6)}  ${statusColor(run.status)}${" ".repeat(Math.max(0, 16 - run.status.length))}  ${(run.runId ?? "").padEnd(36)}  ${run.createdAt} → ${run.completedAt ?? ""}`);
  if (page.before !== undefined) lines.push(color.dim(`… ${page.before - 1} older (--runs N lists more)`));
  return lines.join("\n");
}

/** An upsert step's values, as `wf show` prints the workflow's: `stage=paid`. */
export function upserted(step: StepState): string {
  return Object.entries((step.output ?? {}) as TypedAttributes)
    .map(([name, { value }]) => `${name}=${String(value)}`)
    .join("  ");
}

function renderStep(name: string, step: StepState, width: number): string {
  const status = step.status === "scheduled" ? (step.startedAt ? "running" : "scheduled") : step.status;
  const attempts = step.kind === "activity" ? `${step.attempt}/${step.maxAttempts ?? "?"}` : "-";
  const duration = step.kind === "activity" ? elapsed(step.startedAt, step.finishedAt) : elapsed(step.scheduledAt, step.finishedAt);
  let detail =
    step.kind === "sleep"
      ? `sleep until ${step.fireAt}`
      : step.kind === "signal"
        ? `signal ${step.signal}`
        : step.kind === "upsert"
          ? `search attributes ${upserted(step)}`
          : step.kind === "marker"
            ? `patched ${step.patch ?? "?"}`
            : step.kind === "update"
              ? `update ${step.update?.name ?? "?"}`
              : (step.activity ?? "");
  if (step.status === "retrying" && step.lastError) detail += color.yellow(`  last error: ${step.lastError.message}; next attempt at ${step.nextAttemptAt}`);
  else if (step.status === "failed" && step.error) detail += color.red(`  ${step.error.type}: ${step.error.message}`);
  else if (step.lastError && step.status === "completed") detail += color.dim(`  (after: ${step.lastError.message})`);
  return `${name.padEnd(width)}  ${statusColor(status.padEnd(10))}  ${attempts.padEnd(8)}  ${duration.padEnd(8)}  ${detail}`;
}
