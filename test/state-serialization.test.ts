/**
 * serializeState reuses the JSON of settled steps; what it writes must be exactly what
 * JSON.stringify writes, including after a step was replaced (decide copies steps before editing).
 */
import { describe, expect, it } from "vitest";
import { serializeState } from "../runtime/orchestrator/state-store.js";
import type { StepState, WorkflowState } from "../runtime/state.js";

function stateWith(stepCount: number): WorkflowState {
  const steps: Record<string, StepState> = {};
  for (let i = 0; i < stepCount; i++) {
    steps[`step "${i}" ✓`] = {
      seq: i,
      kind: "activity",
      activity: "bench_step",
      status: i < stepCount - 1 ? "completed" : "scheduled",
      attempt: 1,
      input: { i, text: "line\nbreak \u2028 \u0000" },
      output: i < stepCount - 1 ? { i, nested: [1, "two", null, { deep: true }] } : undefined,
      scheduledAt: "2026-11-25T00:00:00.000Z",
    };
  }
  return {
    v: 1,
    id: "wf-1",
    workflow: "w",
    status: "running",
    input: { note: "steps", placeholder: "\u0000jetflow-steps\u0000" },
    createdAt: "2026-11-25T00:00:00.000Z",
    updatedAt: "2026-11-25T00:00:00.000Z",
    bundle: "abc",
    kind: "code",
    steps,
    journal: Object.keys(steps),
  };
}

describe("serializeState", () => {
  it("writes what JSON.stringify writes, for small and long workflows", () => {
    for (const n of [0, 3, 16, 40, 250]) {
      const state = stateWith(n);
      expect(serializeState(state)).toBe(JSON.stringify(state));
    }
  });

  it("reuses nothing stale: a replaced step and new top-level fields show up", () => {
    const state = stateWith(30);
    serializeState(state); // fills the cache with the settled steps
    const names = Object.keys(state.steps);
    const next: WorkflowState = { ...state, steps: { ...state.steps }, status: "completed", result: { done: true }, completedAt: "2026-11-25T00:00:01.000Z" };
    next.steps[names[3]!] = { ...state.steps[names[3]!]!, output: { changed: true } }; // a copy, as decide makes
    next.steps[names[29]!] = { ...state.steps[names[29]!]!, status: "completed", output: 29 };
    expect(serializeState(next)).toBe(JSON.stringify(next));
    expect(JSON.parse(serializeState(next)).steps[names[3]!].output).toEqual({ changed: true });
  });
});
