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
  const all = [...observers];
  // Called on every step: one closure per call, one object per attempt.
  const each = (call: (o: EngineObserver) => void) => {
    for (const o of all) safely(call, o);
  };
  return {
    runStarting(state, parent) {
      let traceparent = parent;
      each((o) => (traceparent = o.runStarting(state, traceparent) ?? traceparent));
      return traceparent;
    },
    workflowStarted: (state) => each((o) => o.workflowStarted(state)),
    workflowEnded: (state) => each((o) => o.workflowEnded(state)),
    activityAttempt(task, startedAt) {
      const attempts: AttemptObservation[] = [];
      each((o) => attempts.push(o.activityAttempt(task, startedAt)));
      return new CombinedAttempt(attempts);
    },
    replayed: (seconds) => each((o) => o.replayed(seconds)),
    cacheLookup: (hit) => each((o) => o.cacheLookup(hit)),
  };
}

function safely<T>(fn: (arg: T) => void, arg: T): void {
  try {
    fn(arg);
  } catch {
    /* an observer's bug is not the engine's */
  }
}

/** The attempts of several observers: the code runs inside each one's run() (the first outermost), end() tells each. */
class CombinedAttempt implements AttemptObservation {
  constructor(private readonly attempts: AttemptObservation[]) {}
  run<T>(fn: () => T): T {
    return this.runFrom(0, fn);
  }
  private runFrom<T>(i: number, fn: () => T): T {
    const a = this.attempts[i];
    return a ? a.run(() => this.runFrom(i + 1, fn)) : fn();
  }
  end(outcome: AttemptOutcome, error?: { message: string; type: string }): void {
    for (const a of this.attempts) safely((a) => a.end(outcome, error), a);
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
