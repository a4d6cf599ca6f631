/**
 * OpenTelemetry traces through `@opentelemetry/api` only: a no-op until the application registers
 * an SDK (a tracer provider, and a context manager for spans started inside activities).
 *
 * - A span `workflow <type>` per run, child of the span that was active where `client.start` was
 *   called: the start message carries its W3C `traceparent` (docs/protocol.md, "Trace context").
 *   The run's state keeps the workflow span's own traceparent, and every task message carries it.
 * - A span `activity <type>` per attempt, child of the workflow span, active while the activity's
 *   code runs: spans it starts (an HTTP client's, say) join the caller's trace.
 *
 * A workflow run outlives processes; an OpenTelemetry span must end where it started. The runtime
 * that applied the start holds the run's span and ends it when the run ends: seen in its own
 * writes, or announced by the runtime that wrote the end (the core NATS subject result() waits on,
 * subscribed to while it holds a span). Spans held are bounded (MAX_OPEN_RUN_SPANS: the oldest is
 * ended early, marked `jetflow.span.truncated`); a runtime that dies loses the spans it held, and
 * their activity spans then have a parent that was never exported.
 */
import { context, isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type SpanContext } from "@opentelemetry/api";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { isTerminal, runNumber, type WorkflowState } from "../state.js";
import type { EngineObserver } from "./observer.js";

export const TRACER_NAME = "jetflow";
/** Run spans one runtime holds open at most. */
export const MAX_OPEN_RUN_SPANS = 10_000;

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C traceparent of a span context (`00-<trace id>-<span id>-<flags>`), undefined for an invalid one. */
export function formatTraceparent(span: SpanContext | undefined): string | undefined {
  if (!span || !isSpanContextValid(span)) return undefined;
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 1) === 1 ? "01" : "00"}`;
}

/** A W3C traceparent's span context (remote), or undefined when it is not one. */
export function parseTraceparent(text: unknown): SpanContext | undefined {
  if (typeof text !== "string") return undefined;
  const m = TRACEPARENT.exec(text);
  if (!m) return undefined;
  const span: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & 1, isRemote: true };
  return isSpanContextValid(span) ? span : undefined;
}

/** The traceparent of the span active where this is called (client.start), if any. */
export function activeTraceparent(): string | undefined {
  return formatTraceparent(trace.getSpanContext(context.active()));
}

const contextOf = (traceparent: string | undefined): Context => {
  const span = parseTraceparent(traceparent);
  return span ? trace.setSpanContext(ROOT_CONTEXT, span) : ROOT_CONTEXT;
};

export interface Tracing extends EngineObserver {
  stop(): void;
}

export interface TracingOptions {
  /** Where the end of a run applied by another runtime is announced (the runtime's connection). */
  nc?: NatsConnection;
  /** names.finishedSubject(">"). */
  finishedSubject?: string;
}

export function createTracing(options: TracingOptions = {}): Tracing {
  const tracer = trace.getTracer(TRACER_NAME);
  /** Run spans started here and not ended yet, by `<id>/<runId>` (insertion order: oldest first). */
  const open = new Map<string, Span>();
  let announcements: Subscription | undefined;
  const keyOf = (state: Pick<WorkflowState, "id" | "runId">) => `${state.id}/${state.runId ?? ""}`;

  function endRun(state: WorkflowState): void {
    const key = keyOf(state);
    const span = open.get(key);
    if (!span) return;
    open.delete(key);
    span.setAttribute("jetflow.status", state.status);
    if (state.status === "failed" || state.status === "timed_out") span.setStatus({ code: SpanStatusCode.ERROR, message: state.error?.message ?? state.status });
    const at = Date.parse(state.completedAt ?? state.updatedAt);
    span.end(Number.isFinite(at) ? at : undefined);
  }

  function hold(key: string, span: Span): void {
    open.get(key)?.end(); // the same start delivered again: its run's span is this new one
    open.set(key, span);
    while (open.size > MAX_OPEN_RUN_SPANS) {
      const [oldest, first] = open.entries().next().value as [string, Span];
      open.delete(oldest);
      first.setAttribute("jetflow.span.truncated", true);
      first.end();
    }
    if (!announcements && options.nc && options.finishedSubject) {
      // Ends written by other runtimes; ours are seen at once (workflowEnded).
      announcements = options.nc.subscribe(options.finishedSubject, {
        callback: (_err, msg) => {
          if (open.size === 0) return;
          try {
            const state = msg.json<WorkflowState>();
            if (state && typeof state.id === "string" && isTerminal(state.status)) endRun(state);
          } catch {
            /* not a state */
          }
        },
      });
    }
  }

  return {
    runStarting(state, parent) {
      const span = tracer.startSpan(
        `workflow ${state.workflow}`,
        {
          kind: SpanKind.INTERNAL,
          startTime: Date.parse(state.createdAt),
          attributes: { "jetflow.workflow.id": state.id, "jetflow.workflow.type": state.workflow, "jetflow.run": runNumber(state), ...(state.runId ? { "jetflow.run.id": state.runId } : {}) },
        },
        contextOf(parent),
      );
      // Without an SDK the span records nothing and carries the parent's context on.
      if (span.isRecording()) hold(keyOf(state), span);
      return formatTraceparent(span.spanContext()) ?? parent;
    },
    workflowStarted: () => undefined,
    workflowEnded: (state) => {
      if (open.size > 0) endRun(state);
    },
    activityAttempt(task) {
      const parent = contextOf(task.traceparent);
      const span = tracer.startSpan(
        `activity ${task.activity}`,
        {
          kind: SpanKind.INTERNAL,
          attributes: {
            "jetflow.workflow.id": task.workflowId,
            "jetflow.workflow.type": task.workflow,
            "jetflow.step": task.step,
            "jetflow.activity": task.activity,
            "jetflow.attempt": task.attempt,
            ...(task.runId ? { "jetflow.run.id": task.runId } : {}),
          },
        },
        parent,
      );
      const active = trace.setSpan(parent, span);
      return {
        run: (fn) => context.with(active, fn),
        end(outcome, error) {
          span.setAttribute("jetflow.outcome", outcome);
          if (outcome === "failed" || outcome === "timed_out") span.setStatus({ code: SpanStatusCode.ERROR, message: error?.message ?? outcome });
          if (error) span.setAttribute("jetflow.error.type", error.type);
          span.end();
        },
      };
    },
    replayed: () => undefined,
    cacheLookup: () => undefined,
    stop() {
      announcements?.unsubscribe();
      announcements = undefined;
      // Runs still going on: their spans end with this runtime, marked so.
      for (const span of open.values()) {
        span.setAttribute("jetflow.span.truncated", true);
        span.end();
      }
      open.clear();
    },
  };
}
