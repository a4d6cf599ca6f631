/**
 * OpenTelemetry traces (runtime/observability/tracing.ts): with an SDK registered (the in-memory
 * exporter), one trace goes from the client's span through the workflow run's span to each
 * activity attempt's span, and to a span the activity's own code starts (context.active()).
 */
import { context, trace, type SpanContext } from "@opentelemetry/api";
import { AsyncHooksContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowContext } from "../runtime/index.js";
import { resultSignal, useEngines, waitFor } from "./fixtures/engine/harness.js";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncHooksContextManager();

beforeAll(() => {
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(async () => {
  trace.disable();
  context.disable();
  await provider.shutdown();
});

const engine = useEngines();

const activities = {
  /** Starts a span of its own, as an HTTP client would: it must join the caller's trace. */
  charge: async (cents: number) => {
    const span = trace.getTracer("app").startSpan("POST /payments");
    span.end();
    return { id: `ch-${cents}` };
  },
  ship: async (id: string) => `shipped ${id}`,
};

async function order(ctx: WorkflowContext<typeof activities>, cents: number) {
  const charge = await ctx.activities.charge(cents);
  return ctx.activities.ship(charge.id);
}

const parentOf = (span: ReadableSpan): SpanContext | undefined => span.parentSpanContext;

describe("tracing", () => {
  it("one trace: client span → workflow span → activity spans → the span an activity starts", async () => {
    const e = engine();
    await e.runtime({ workflows: { order }, activities });
    const client = await e.client();
    const tracer = trace.getTracer("test");
    const clientSpan = tracer.startSpan("checkout");
    await context.with(trace.setSpan(context.active(), clientSpan), async () => {
      const handle = await client.start("order", 500, { id: "order-1" });
      expect(await handle.result(resultSignal())).toBe("shipped ch-500");
    });
    clientSpan.end();

    const spans = await waitFor("the workflow span ended and exported", () => {
      const all = exporter.getFinishedSpans();
      return all.some((s) => s.name === "workflow order") ? all : undefined;
    });
    const byName = (name: string) => spans.filter((s) => s.name === name);
    const [root] = byName("checkout");
    const [run] = byName("workflow order");
    const [charge] = byName("activity charge");
    const [ship] = byName("activity ship");
    const [http] = byName("POST /payments");
    for (const span of [root, run, charge, ship, http]) expect(span?.spanContext().traceId).toBe(root!.spanContext().traceId);

    expect(parentOf(run!)?.spanId).toBe(root!.spanContext().spanId);
    expect(run!.attributes).toMatchObject({ "jetflow.workflow.id": "order-1", "jetflow.workflow.type": "order", "jetflow.status": "completed" });
    expect(parentOf(charge!)?.spanId).toBe(run!.spanContext().spanId);
    expect(parentOf(ship!)?.spanId).toBe(run!.spanContext().spanId);
    expect(charge!.attributes).toMatchObject({ "jetflow.workflow.id": "order-1", "jetflow.workflow.type": "order", "jetflow.step": "charge", "jetflow.attempt": 1, "jetflow.outcome": "completed" });
    expect(parentOf(http!)?.spanId).toBe(charge!.spanContext().spanId);

    // The run's state and its tasks carry the workflow span's context (docs/protocol.md, "Trace context").
    const state = await client.describe("order-1");
    expect(state.traceparent).toBe(`00-${run!.spanContext().traceId}-${run!.spanContext().spanId}-01`);
  });

  it("a failed attempt's span has an error status, and a start without a caller's span begins a trace of its own", async () => {
    exporter.reset();
    const e = engine();
    let calls = 0;
    await e.runtime({
      workflows: { order },
      activities: {
        ...activities,
        charge: async (cents: number) => {
          calls += 1;
          if (calls === 1) throw new Error("card declined");
          return { id: `ch-${cents}` };
        },
      },
    });
    const client = await e.client();
    expect(await (await client.start("order", 7, { id: "order-2" })).result(resultSignal())).toBe("shipped ch-7");
    const spans = await waitFor("the workflow span", () => {
      const all = exporter.getFinishedSpans();
      return all.some((s) => s.name === "workflow order") ? all : undefined;
    });
    const run = spans.find((s) => s.name === "workflow order")!;
    expect(parentOf(run)).toBeUndefined();
    const attempts = spans.filter((s) => s.name === "activity charge").sort((a, b) => Number(a.attributes["jetflow.attempt"]) - Number(b.attributes["jetflow.attempt"]));
    expect(attempts.map((s) => [s.attributes["jetflow.attempt"], s.attributes["jetflow.outcome"], s.status.code])).toEqual([
      [1, "failed", 2],
      [2, "completed", 0],
    ]);
    expect(attempts[0]!.status.message).toMatch(/card declined/);
    for (const s of attempts) expect(parentOf(s)?.spanId).toBe(run.spanContext().spanId);
  });
});
