/**
 * Progress events for people: derived by watching WORKFLOW_STATES and comparing each workflow's
 * new state with the last one seen. Used by `wf dev`'s live log; any NATS client could do the same.
 */
import { KvWatchInclude } from "@nats-io/kv";
import type { Topology } from "./nats/topology.js";
import { isHistoryKey } from "./orchestrator/history.js";
import type { StepState, WorkflowState } from "./state.js";

export type ProgressEvent =
  | { kind: "workflow-started"; state: WorkflowState }
  | { kind: "step-started"; state: WorkflowState; step: string; record: StepState }
  | { kind: "step-completed"; state: WorkflowState; step: string; record: StepState; durationMs: number | undefined }
  | { kind: "step-retrying"; state: WorkflowState; step: string; record: StepState; retryInMs: number }
  | { kind: "step-failed"; state: WorkflowState; step: string; record: StepState }
  | { kind: "workflow-ended"; state: WorkflowState; durationMs: number };

export function diffStates(previous: WorkflowState | undefined, next: WorkflowState): ProgressEvent[] {
  const events: ProgressEvent[] = [];
  if (!previous) {
    if (next.createdAt !== next.updatedAt && next.status === "running") return []; // first sight of an older workflow: nothing to compare
    events.push({ kind: "workflow-started", state: next });
  }
  for (const [name, step] of Object.entries(next.steps).sort((a, b) => a[1].seq - b[1].seq)) {
    const before = previous?.steps[name];
    if (before && before.status === step.status && before.attempt === step.attempt) continue;
    switch (step.status) {
      case "scheduled":
        events.push({ kind: "step-started", state: next, step: name, record: step });
        break;
      case "waiting":
        if (!before) events.push({ kind: "step-started", state: next, step: name, record: step });
        break;
      case "completed": {
        const from = step.startedAt ?? step.scheduledAt;
        const durationMs = step.finishedAt && from ? Date.parse(step.finishedAt) - Date.parse(from) : undefined;
        events.push({ kind: "step-completed", state: next, step: name, record: step, durationMs });
        break;
      }
      case "retrying":
        events.push({ kind: "step-retrying", state: next, step: name, record: step, retryInMs: step.nextAttemptAt ? Math.max(0, Date.parse(step.nextAttemptAt) - Date.parse(next.updatedAt)) : 0 });
        break;
      case "failed":
        events.push({ kind: "step-failed", state: next, step: name, record: step });
        break;
    }
  }
  if (next.status !== "running" && previous?.status !== next.status) {
    events.push({ kind: "workflow-ended", state: next, durationMs: Date.parse(next.completedAt ?? next.updatedAt) - Date.parse(next.createdAt) });
  }
  return events;
}

/** Follow every workflow's changes from now on. */
export async function watchProgress(topology: Topology, onEvent: (event: ProgressEvent) => void): Promise<{ stop(): void }> {
  const last = new Map<string, WorkflowState>();
  const watcher = await topology.states.watch({ include: KvWatchInclude.UpdatesOnly });
  void (async () => {
    for await (const entry of watcher) {
      if (entry.operation !== "PUT" || entry.length === 0 || isHistoryKey(entry.key)) continue;
      let state: WorkflowState;
      try {
        state = entry.json<WorkflowState>();
      } catch {
        continue;
      }
      for (const event of diffStates(last.get(entry.key), state)) onEvent(event);
      if (state.status === "running") last.set(entry.key, state);
      else last.delete(entry.key);
    }
  })();
  return { stop: () => watcher.stop() };
}
