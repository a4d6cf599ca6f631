/**
 * The verdict of a chaos run, from three independent sources: the final workflow states (fresh
 * reads), the activities' own execution records (marker lines written before the work, so a
 * SIGKILL cannot hide one), and the state observer (every stored revision). Figures go in the
 * scenario's JSON line; anything that breaks a guarantee goes in `violations`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { WorkflowState } from "../../runtime/index.js";
import { CHAOS_MARKER_FILES, CHAOS_WORKFLOW_STEPS } from "../../test/fixtures/crash-functions.js";
import type { Disruption } from "./fleet.js";
import type { StateObserver } from "./observer.js";
import { percentile, round } from "./util.js";

export interface Execution {
  key: string;
  workflowId: string;
  step: string;
  attempt: number;
  pid: number;
  at: number;
  event: "start" | "done" | "fail" | "abort";
}

export function readExecutions(markerDir: string): Execution[] {
  const path = join(markerDir, CHAOS_MARKER_FILES.executions);
  if (!existsSync(path)) return [];
  const out: Execution[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const [key, attempt, pid, at, event] = line.trim().split(" ");
    if (!key || !event) continue;
    const slash = key.lastIndexOf("/");
    out.push({ key, workflowId: key.slice(0, slash), step: key.slice(slash + 1), attempt: Number(attempt), pid: Number(pid), at: Number(at), event: event as Execution["event"] });
  }
  return out;
}

export function readCrashes(markerDir: string): Array<{ point: string; pid: number; at: number }> {
  const path = join(markerDir, CHAOS_MARKER_FILES.crashes);
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [point, pid, at] = l.split(" ");
      return { point: point!, pid: Number(pid), at: Number(at) };
    });
}

export interface Expectation {
  workflow: string;
  /** The terminal status this workflow must reach. */
  status: "completed" | "failed" | "cancelled";
  /** For status "cancelled": the step that must have completed once, the cleanup the code ran after the cancel. */
  cleanupStep?: string;
  /** An update id the workflow must have applied exactly once, with a successful outcome. */
  update?: string;
  /** A workflow that continues as new: how many runs it must end with. */
  runs?: number;
  /** Step → attempts that fail before one succeeds (the input's simulateFailures). */
  failures?: Record<string, number>;
  /** For status "failed": the error type it must fail with. */
  errorType?: string;
}

export interface VerifyInput {
  expected: Map<string, Expectation>;
  states: Map<string, WorkflowState | undefined>;
  executions: Execution[];
  disruptions: Disruption[];
  /** When NATS was killed or restarted (ms): consumer acks may be lost, and the dedupe table forgets consumed tasks. */
  natsFaults?: number[];
  observer: StateObserver;
}

export interface Verdict {
  started: number;
  completed: number;
  /** Ended cancelled, as expected (the workload cancelled them). */
  cancelled: number;
  /** Never reached a terminal state (or has no state at all). */
  lost: number;
  /** Terminal, but neither completed nor cancelled as expected. */
  failed: number;
  /** Terminal in another status (or with another error) than the scenario expects. */
  unexpected: number;
  duplicateStepCompletions: { total: number; byStep: Record<string, number> };
  activityExecutions: number;
  /** One per attempt the states record: what a fault-free run would execute. */
  expectedExecutions: number;
  extraExecutions: { total: number; afterRuntimeKill: number; releasedAtShutdown: number; afterNatsFault: number; unexplained: number };
  /** A step execution that started before one of its dependencies finished. */
  dependencyViolations: number;
  retries: { count: number; latenessP50Ms: number; latenessMaxMs: number };
  /** How long the activities a killed runtime was running waited for another runtime (takeovers()). */
  takeovers: Takeovers;
  violations: string[];
}

export interface Takeovers {
  /** Kills (SIGKILL, or a crash point) that left at least one activity running on the victim. */
  kills: number;
  /** Activities running on a victim when it died that ran again elsewhere. */
  activities: number;
  /** Per kill, the longest wait of its activities (kill to the next start on another runtime): median and max over kills. */
  perKillP50Ms: number;
  perKillMaxMs: number;
  /** Over all taken-over activities. */
  p50Ms: number;
}

/**
 * Failover, from the execution records: for each runtime that was killed (or crashed at a crash
 * point), the activities it had started and not ended, and for each the first start of the same
 * step on another runtime afterwards. The wait from the kill to that start is the stall the kill
 * caused (the ack wait, less the last in-progress ack, plus a pull); a step that never ran again
 * (its workflow ended or was cancelled meanwhile) is not counted.
 */
export function takeovers(executions: Execution[], disruptions: Disruption[]): Takeovers {
  const byKey = new Map<string, Execution[]>();
  for (const e of executions) {
    const list = byKey.get(e.key) ?? [];
    list.push(e);
    byKey.set(e.key, list);
  }
  const perKill: number[] = [];
  const all: number[] = [];
  for (const kill of disruptions) {
    if (kill.kind !== "sigkill" && kill.kind !== "crash") continue;
    const diedAt = kill.exitedAt ?? kill.at;
    let worst = -1;
    for (const list of byKey.values()) {
      const started = list.filter((e) => e.pid === kill.pid && e.event === "start" && e.at <= diedAt);
      for (const start of started) {
        if (list.some((e) => e.pid === kill.pid && e.attempt === start.attempt && e.event !== "start" && e.at >= start.at)) continue; // it ended there
        const next = list.filter((e) => e.event === "start" && e.pid !== kill.pid && e.at >= start.at).sort((x, y) => x.at - y.at)[0];
        if (!next) continue;
        const wait = Math.max(0, next.at - kill.at);
        all.push(wait);
        worst = Math.max(worst, wait);
      }
    }
    if (worst >= 0) perKill.push(worst);
  }
  return {
    kills: perKill.length,
    activities: all.length,
    perKillP50Ms: round(percentile(perKill, 50), 0),
    perKillMaxMs: round(perKill.length ? Math.max(...perKill) : NaN, 0),
    p50Ms: round(percentile(all, 50), 0),
  };
}

const MAX_VIOLATIONS = 25;

export function verify(input: VerifyInput): Verdict {
  const violations: string[] = [];
  const violate = (message: string) => {
    if (violations.length < MAX_VIOLATIONS) violations.push(message);
    else if (violations.length === MAX_VIOLATIONS) violations.push("… (more)");
  };
  const byKeyAttempt = new Map<string, Execution[]>();
  const starts = input.executions.filter((e) => e.event === "start");
  const startsByKey = new Map<string, Execution[]>();
  for (const e of starts) {
    const list = startsByKey.get(e.key) ?? [];
    list.push(e);
    startsByKey.set(e.key, list);
  }
  for (const e of input.executions) {
    const k = `${e.key}#${e.attempt}`;
    const list = byKeyAttempt.get(k) ?? [];
    list.push(e);
    byKeyAttempt.set(k, list);
  }

  let completed = 0;
  let cancelled = 0;
  let lost = 0;
  let failed = 0;
  let unexpected = 0;
  let expectedExecutions = 0;
  let dependencyViolations = 0;
  const lateness: number[] = [];
  const journalDupByStep: Record<string, number> = {};

  for (const [id, expectation] of input.expected) {
    const state = input.states.get(id);
    if (!state || state.status === "running") {
      lost += 1;
      violate(`${id}: ${state ? `still running [${stepSummary(state)}]` : "no state"}`);
      continue;
    }
    if (state.status === "completed") completed += 1;
    else if (state.status === "cancelled" && expectation.status === "cancelled") cancelled += 1;
    else failed += 1;
    if (state.status !== expectation.status || (expectation.errorType && state.error?.type !== expectation.errorType)) {
      unexpected += 1;
      violate(`${id}: ${state.status}${state.error ? ` (${state.error.type}: ${state.error.message})` : ""}, expected ${expectation.status}${expectation.errorType ? ` (${expectation.errorType})` : ""}`);
    }
    for (const step of Object.values(state.steps)) if (step.kind === "activity") expectedExecutions += step.attempt;
    if (expectation.runs !== undefined && (state.run ?? 1) !== expectation.runs) violate(`${id}: ended in run ${state.run ?? 1}, expected ${expectation.runs}`);
    if (expectation.update) {
      const applied = state.journal.filter((name) => name === `$update-${expectation.update}`).length;
      const outcome = state.updates?.find((u) => u.id === expectation.update);
      if (applied !== 1 || !outcome?.ok) violate(`${id}: update ${expectation.update} applied ${applied} time(s), outcome ${JSON.stringify(outcome)}`);
    }
    if (expectation.cleanupStep && state.status === "cancelled") {
      const cleanup = state.steps[expectation.cleanupStep];
      if (cleanup?.status !== "completed") violate(`${id}: cancelled, but its cleanup step ${expectation.cleanupStep} is ${cleanup?.status ?? "missing"}`);
    }

    // The journal names each step once.
    const seen = new Set<string>();
    for (const step of state.journal) {
      if (seen.has(step)) {
        journalDupByStep[step] = (journalDupByStep[step] ?? 0) + 1;
        violate(`${id}: step ${step} twice in the journal ${JSON.stringify(state.journal)}`);
      }
      seen.add(step);
    }
    const shape = CHAOS_WORKFLOW_STEPS[expectation.workflow];
    if (!shape || expectation.status !== "completed" || state.status !== "completed") continue;

    // Activities' idempotency keys (what the executions record) name the run after the first.
    const runKey = (state.run ?? 1) > 1 ? `${id}/r${state.run}` : id;
    // Every step completed, once, after the attempts its input makes fail.
    const names = Object.keys(state.steps).sort();
    if (JSON.stringify(names) !== JSON.stringify([...shape.steps].sort())) violate(`${id}: steps ${names.join(",")}, expected ${shape.steps.join(",")}`);
    if (state.journal.length !== shape.steps.length) violate(`${id}: journal ${JSON.stringify(state.journal)}, expected each of ${shape.steps.join(",")} once`);
    for (const name of shape.steps) {
      const step = state.steps[name];
      if (!step || step.status !== "completed") {
        violate(`${id}: step ${name} is ${step?.status ?? "missing"}`);
        continue;
      }
      if (step.kind === "child") {
        // A child workflow: its own state is verified as an expected workflow; here, that the parent heard its end.
        if (step.child?.status !== "completed") violate(`${id}: child step ${name} records its child ${step.child?.status ?? "missing"}`);
        continue;
      }
      const wantAttempt = (expectation.failures?.[name] ?? 0) + 1;
      if (step.attempt !== wantAttempt) violate(`${id}: step ${name} completed at attempt ${step.attempt}, expected ${wantAttempt}`);
      // The recorded completion is one of the recorded executions of that attempt.
      const execs = byKeyAttempt.get(`${runKey}/${name}#${step.attempt}`) ?? [];
      if (!execs.some((e) => e.event === "start")) violate(`${id}: step ${name} attempt ${step.attempt} completed, but no execution of it was recorded`);
      // Every execution of the step (any attempt) started after each dependency's recorded finish.
      const depsDone = Math.max(0, ...shape.dependencies[name]!.map((d) => Date.parse(state.steps[d]?.finishedAt ?? "") || Infinity));
      for (const e of startsByKey.get(`${runKey}/${name}`) ?? []) {
        if (e.at < depsDone) {
          dependencyViolations += 1;
          violate(`${id}: ${name} attempt ${e.attempt} started at ${e.at} on pid ${e.pid}, before its dependencies finished (${depsDone})`);
        }
      }
      // The first retry happened, and on time give or take the faults.
      const backoff = shape.firstRetryMs?.[name];
      if (step.attempt >= 2 && backoff !== undefined) {
        const failedAt = Math.max(...(byKeyAttempt.get(`${runKey}/${name}#1`) ?? []).filter((e) => e.event === "fail").map((e) => e.at));
        const startedAt = Math.min(...(byKeyAttempt.get(`${runKey}/${name}#2`) ?? []).filter((e) => e.event === "start").map((e) => e.at));
        if (Number.isFinite(failedAt) && Number.isFinite(startedAt)) lateness.push(startedAt - failedAt - backoff);
      }
    }
  }

  // Executions beyond one per attempt, and what explains each.
  const extra = { total: 0, afterRuntimeKill: 0, releasedAtShutdown: 0, afterNatsFault: 0, unexplained: 0 };
  for (const [k, list] of byKeyAttempt) {
    const runs = list.filter((e) => e.event === "start").sort((a, b) => a.at - b.at);
    for (let i = 1; i < runs.length; i++) {
      extra.total += 1;
      const before = runs[i - 1]!;
      const again = runs[i]!;
      const disruption = input.disruptions.find((d) => d.pid === before.pid && d.at >= before.at - 5 && d.at <= again.at);
      if (disruption && disruption.kind !== "sigterm") extra.afterRuntimeKill += 1;
      else if (disruption) extra.releasedAtShutdown += 1;
      else if ((input.natsFaults ?? []).some((t) => t >= before.at - 5 && t <= again.at)) extra.afterNatsFault += 1;
      else {
        extra.unexplained += 1;
        violate(`${k}: executed again on pid ${again.pid} at ${again.at}, after pid ${before.pid} at ${before.at}, with no fault in between`);
      }
    }
  }

  const duplicatesByStep: Record<string, number> = { ...journalDupByStep };
  for (const [step, n] of Object.entries(input.observer.duplicatesByStep())) duplicatesByStep[step] = (duplicatesByStep[step] ?? 0) + n;
  for (const d of input.observer.duplicates.slice(0, 5)) violate(`${d.workflowId} step ${d.step} attempt ${d.attempt} recorded twice: ${d.first} then ${d.second}`);
  for (const j of input.observer.journalDuplicates.slice(0, 5)) {
    if (!input.states.get(j.workflowId)) continue;
    duplicatesByStep["(journal)"] = (duplicatesByStep["(journal)"] ?? 0) + 1;
    violate(`${j.workflowId}: a stored revision had a step twice in its journal ${JSON.stringify(j.journal)}`);
  }
  for (const r of input.observer.regressions.slice(0, 5)) violate(`state regression: ${r}`);
  for (const r of input.observer.rollbacks.slice(0, 5)) violate(`state rollback: ${r}`);

  return {
    started: input.expected.size,
    completed,
    cancelled,
    lost,
    failed,
    unexpected,
    duplicateStepCompletions: { total: Object.values(duplicatesByStep).reduce((a, b) => a + b, 0), byStep: duplicatesByStep },
    activityExecutions: starts.length,
    expectedExecutions,
    extraExecutions: extra,
    dependencyViolations,
    retries: { count: lateness.length, latenessP50Ms: round(percentile(lateness, 50), 0), latenessMaxMs: round(lateness.length ? Math.max(...lateness) : NaN, 0) },
    takeovers: takeovers(input.executions, input.disruptions),
    violations,
  };
}

function stepSummary(state: WorkflowState): string {
  return Object.entries(state.steps)
    .map(([name, s]) => `${name}=${s.status}#${s.attempt}`)
    .join(", ");
}
