/**
 * What the engine tells its observers (metrics.ts, tracing.ts), at the places things happen: a
 * workflow run started or ended, an activity attempt ran, a journal was replayed, the state cache
 * was asked. The core calls it in one line at each place and knows nothing of Prometheus or
 * OpenTelemetry; an observer must be cheap and must never throw into the engine.
 */
import type { TaskMessage } from "../protocol.js";
import type { WorkflowState } from "../state.js";

/** How an activity attempt ended on this worker. */
export type AttemptOutcome = "completed" | "failed" | "timed_out" | "cancelled" | "released";

/** One activity attempt, from its start on a worker to its end. */
export interface AttemptObservation {
  /** Run the activity's code (inside its span, so spans it starts are its children). */
  run<T>(fn: () => T): T;
  end(outcome: AttemptOutcome, error?: { message: string; type: string }): void;
}

export interface EngineObserver {
  /**
   * A run's first state is being decided (before it is written): `parent` is the W3C traceparent
   * the start carried (StartMessage.traceparent, or the run it continues). Returns the traceparent
   * the run's state keeps (`WorkflowState.traceparent`), which its task messages carry.
   */
  runStarting(state: WorkflowState, parent: string | undefined): string | undefined;
  /** A run's first state was written (a new workflow, or a new run of an id). */
  workflowStarted(state: WorkflowState): void;
  /** A run's terminal state was written (completed, failed, cancelled, terminated, timed out, continued as new). */
  workflowEnded(state: WorkflowState): void;
  /** An activity attempt starts on this worker now. */
  activityAttempt(task: TaskMessage, startedAt: Date): AttemptObservation;
  /** A journal was replayed to rebuild an execution (a cache miss), in seconds. */
  replayed(seconds: number): void;
  /** The orchestrator's state cache was asked for a workflow. */
  cacheLookup(hit: boolean): void;
}

const NO_ATTEMPT: AttemptObservation = { run: (fn) => fn(), end: () => undefined };

/** An observer that does nothing (the default). */
export const NO_OBSERVER: EngineObserver = {
  runStarting: (_state, parent) => parent,
  workflowStarted: () => undefined,
  workflowEnded: () => undefined,
  activityAttempt: () => NO_ATTEMPT,
  replayed: () => undefined,
  cacheLookup: () => undefined,
};

/** Several observers as one; an observer that throws is ignored (it must not break the engine). */
export function combineObservers(observers: EngineObserver[]): EngineObserver {
  if (observers.length === 0) return NO_OBSERVER;
  if (observers.length === 1) return observers[0]!;
  const each = (call: (o: EngineObserver) => void) => {
    for (const o of observers) safely(() => call(o));
  };
  return {
    runStarting(state, parent) {
      let traceparent = parent;
      for (const o of observers) safely(() => (traceparent = o.runStarting(state, traceparent) ?? traceparent));
      return traceparent;
    },
    workflowStarted: (state) => each((o) => o.workflowStarted(state)),
    workflowEnded: (state) => each((o) => o.workflowEnded(state)),
    activityAttempt(task, startedAt) {
      const attempts = observers.map((o) => o.activityAttempt(task, startedAt));
      return {
        run: (fn) => attempts.reduceRight<() => ReturnType<typeof fn>>((inner, a) => () => a.run(inner), fn)(),
        end: (outcome, error) => attempts.forEach((a) => safely(() => a.end(outcome, error))),
      };
    },
    replayed: (seconds) => each((o) => o.replayed(seconds)),
    cacheLookup: (hit) => each((o) => o.cacheLookup(hit)),
  };
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    /* an observer's bug is not the engine's */
  }
}

/** How an attempt ended, for AttemptObservation.end: its outcome (absent: it was aborted, `reason` says why) and its error. */
export function attemptOutcome(
  outcome: { ok: true } | { ok: false; error: { message: string; type: string } } | undefined,
  reason: unknown,
): [AttemptOutcome, { message: string; type: string }?] {
  if (outcome?.ok) return ["completed"];
  if (outcome) return [outcome.error.type === "ActivityTimeoutError" ? "timed_out" : "failed", outcome.error];
  return [(reason as Error | undefined)?.name === "CancelledError" ? "cancelled" : "released"];
}
