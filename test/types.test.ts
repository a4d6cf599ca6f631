/**
 * Types flow from the definitions to the call sites: activity inputs and outputs through
 * ctx.activities, workflow inputs and results through client.start. These assertions are checked
 * by the TypeScript compiler (`npm run lint`, which `npm test` runs first).
 */
import { describe, expectTypeOf, it } from "vitest";
import type { ChildHandle, WorkflowClient, WorkflowContext, WorkflowHandle } from "../runtime/index.js";
import type * as activities from "../functions/activities/orders.js";
import type { order_saga } from "../functions/workflows/order_saga.js";

describe("types", () => {
  it("ctx.activities is typed from the activity module", () => {
    type Ctx = WorkflowContext<typeof activities>;
    expectTypeOf<Parameters<Ctx["activities"]["charge_payment"]>[0]>().toEqualTypeOf<activities.Order>();
    expectTypeOf<Awaited<ReturnType<Ctx["activities"]["charge_payment"]>>>().toEqualTypeOf<{ chargeId: string; amount: number; idempotencyKey: string }>();
    expectTypeOf<Awaited<ReturnType<Ctx["activities"]["ship_order"]>>>().toHaveProperty("trackingNumber").toEqualTypeOf<string>();
    // Constants exported beside activities are not activities.
    expectTypeOf<Ctx["activities"]>().not.toHaveProperty("MAX_ORDER_AMOUNT");
  });

  it("client.start<typeof workflow> checks the input and types the result", () => {
    const client = {} as WorkflowClient;
    const start = (input: activities.Order) => client.start<typeof order_saga>("order_saga", input);
    expectTypeOf(client.start<typeof order_saga>).parameter(1).toEqualTypeOf<activities.Order | undefined>();
    type Handle = Awaited<ReturnType<typeof start>>;
    expectTypeOf<Handle>().toEqualTypeOf<WorkflowHandle<Awaited<ReturnType<typeof order_saga>>>>();
    expectTypeOf<Awaited<ReturnType<Handle["result"]>>>().toHaveProperty("trackingNumber").toEqualTypeOf<string>();
  });

  it("ctx.continueAsNew takes the workflow's own input, by the context's type or by the workflow named", () => {
    const loop = async (ctx: WorkflowContext<typeof activities, { cursor: number }>, input: { cursor: number }): Promise<number> => {
      if (input.cursor < 10) return ctx.continueAsNew({ cursor: input.cursor + 1 });
      return input.cursor;
    };
    type LoopCtx = Parameters<typeof loop>[0];
    const ctx = {} as WorkflowContext;
    const named = ctx.continueAsNew<typeof loop>;
    expectTypeOf<Parameters<typeof named>[0]>().toEqualTypeOf<{ cursor: number }>();
    const typed = {} as LoopCtx;
    const right = () => typed.continueAsNew({ cursor: 1 });
    expectTypeOf<ReturnType<typeof right>>().toEqualTypeOf<Promise<never>>();
    // @ts-expect-error: not the workflow's input
    const wrong = () => typed.continueAsNew({ page: 1 });
    void wrong;
    // A context without an input type accepts any input.
    const untyped = () => ctx.continueAsNew({ anything: true });
    void untyped;
  });
  it("client.signalWithStart<typeof workflow> checks the input and types the result", () => {
    const client = {} as WorkflowClient;
    const start = (input: activities.Order) => client.signalWithStart<typeof order_saga>("order_saga", { id: "o-1", input, signal: "go" });
    expectTypeOf<Awaited<ReturnType<typeof start>>>().toEqualTypeOf<WorkflowHandle<Awaited<ReturnType<typeof order_saga>>>>();
    // @ts-expect-error: not the workflow's input
    const wrong = () => client.signalWithStart<typeof order_saga>("order_saga", { id: "o-1", input: { orderId: 7 }, signal: "go" });
    void wrong;
  });

  it("ctx.executeChild<typeof child> and ctx.startChild<typeof child> check the input and type the result", () => {
    const ctx = {} as WorkflowContext;
    const run = (input: activities.Order) => ctx.executeChild<typeof order_saga>("order_saga", input);
    expectTypeOf<Awaited<ReturnType<typeof run>>>().toEqualTypeOf<Awaited<ReturnType<typeof order_saga>>>();
    expectTypeOf<Awaited<ReturnType<typeof run>>>().toHaveProperty("trackingNumber").toEqualTypeOf<string>();
    const start = (input: activities.Order) => ctx.startChild<typeof order_saga>("order_saga", input, { parentClosePolicy: "abandon" });
    type Handle = Awaited<ReturnType<typeof start>>;
    expectTypeOf<Handle>().toEqualTypeOf<ChildHandle<Awaited<ReturnType<typeof order_saga>>>>();
    expectTypeOf<Handle["workflowId"]>().toEqualTypeOf<string>();
    expectTypeOf<Awaited<ReturnType<Handle["result"]>>>().toHaveProperty("trackingNumber").toEqualTypeOf<string>();
    // @ts-expect-error: not the child's input
    const wrong = () => ctx.executeChild<typeof order_saga>("order_saga", { orderId: 7 });
    // @ts-expect-error: not a parent close policy
    const badPolicy = () => ctx.startChild("order_saga", {}, { parentClosePolicy: "explode" });
    void wrong;
    void badPolicy;
  });
});
