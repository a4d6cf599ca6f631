/**
 * Timers never fire early (docs/guarantees.md), even when the timer service that fires them runs on
 * a clock ahead of the orchestrator's: the orchestrator parks an early timer again, for the
 * difference measured on the NATS server's clock.
 */
import { expect, it } from "vitest";
import type { WorkflowContext } from "../runtime/index.js";
import { resultSignal, useEngines } from "./fixtures/engine/harness.js";

const engine = useEngines();

const HOUR_MS = 3_600_000;

it("a sleep fired by a timer service whose clock is an hour ahead completes at its fireAt, not before", async () => {
  const e = engine();
  const sleeper = async (ctx: WorkflowContext) => {
    await ctx.sleep("1500ms");
    return "woke";
  };
  // The timer service believes every timer is an hour overdue; the orchestrator's clock is right.
  await e.runtime({ workflows: { sleeper }, clock: { timers: { now: () => Date.now() + HOUR_MS } } });
  const client = await e.client();
  const handle = await client.start("sleeper", null, { id: "skewed-sleep" });
  expect(await handle.result(resultSignal())).toBe("woke");
  const step = Object.values((await handle.describe()).steps).find((s) => s.kind === "sleep")!;
  // Both times are the orchestrator's clock: the sleep ended no earlier than it was due.
  expect(Date.parse(step.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(step.fireAt!));
});

it("a workflow timeout fired early by a fast timer clock does not end the workflow before its deadline", async () => {
  const e = engine();
  const waiter = async (ctx: WorkflowContext) => {
    await ctx.sleep("3s");
    return "done";
  };
  await e.runtime({ workflows: { waiter }, config: { defaults: { workflowTimeout: "1s" } }, clock: { timers: { now: () => Date.now() + HOUR_MS } } });
  const client = await e.client();
  const handle = await client.start("waiter", null, { id: "skewed-timeout" });
  await expect(handle.result(resultSignal())).rejects.toThrow(/timed out/);
  const state = await handle.describe();
  expect(state.status).toBe("timed_out");
  expect(Date.parse(state.completedAt!)).toBeGreaterThanOrEqual(Date.parse(state.deadline!));
});
