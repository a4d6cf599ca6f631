/**
 * Events that keep failing end: a poison start (input nested 5,000 deep) is refused where it is
 * parsed; an event whose application overflows the stack is given up at once; an event that fails
 * on every delivery is given up after orchestrator.maxDeliveries. Each is dead-lettered with its
 * reason, acked, and its workflow's state says failed.
 */
import { expect, it } from "vitest";
import type { ActivityContext, WorkflowContext } from "../runtime/index.js";
import type { Topology } from "../runtime/nats/topology.js";
import { abortableSleep, useEngines, waitFor, waitForEventsApplied, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();

const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

async function deadLetters(topology: Topology): Promise<Array<{ reason: string; message: string; workflowId?: string }>> {
  const { jsm, names } = topology;
  const info = await jsm.streams.info(names.deadLettersStream);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const msg = await jsm.streams.getMessage(names.deadLettersStream, { seq }).catch(() => undefined);
    if (msg) out.push(msg.json<{ reason: string; message: string; workflowId?: string }>());
  }
  return out;
}

const waits = async (ctx: WorkflowContext) => ctx.activity("hang", null);
const hang = (_input: unknown, ctx: ActivityContext) => abortableSleep(60_000, ctx.signal);

it("a start whose input nests 5,000 deep is dead-lettered at once, acked, and its workflow fails", async () => {
  const e = engine();
  await e.runtime({ workflows: { waits }, activities: { hang } });
  const topology = await e.topology();
  await topology.js.publish(topology.names.startSubject("waits"), `{"id":"deep-start","input":${deep(5_000)}}`);
  const client = await e.client();
  const state = await waitForState(client, "deep-start");
  expect(state.status).toBe("failed");
  expect(state.error).toMatchObject({ type: "InvalidStartError" });
  expect(state.error!.message).toMatch(/limits\.maxInputDepth \(64\)/);
  await waitForEventsApplied(topology);
  expect(await deadLetters(topology)).toEqual([expect.objectContaining({ reason: "invalid_message", workflowId: "deep-start" })]);
});

it("an event whose application overflows the stack is given up at once: dead letter, acked, workflow failed", async () => {
  const e = engine();
  await e.runtime({ workflows: { waits }, activities: { hang } });
  const client = await e.client();
  await client.start("waits", null, { id: "deep-output" });
  await waitForState(client, "deep-output", (s) => s.steps["hang"]?.status === "scheduled");
  const topology = await e.topology();
  // A completion whose output parses but cannot be serialized into the state (a RangeError).
  const completion = `{"workflowId":"deep-output","step":"hang","attempt":1,"ok":true,"startedAt":"2026-01-01T00:00:00.000Z","finishedAt":"2026-01-01T00:00:01.000Z","worker":"x","output":${deep(20_000)}}`;
  await topology.js.publish(topology.names.completedSubject("deep-output", "hang"), completion);
  const state = await waitForState(client, "deep-output");
  expect(state.status).toBe("failed");
  expect(state.error).toMatchObject({ type: "PoisonEventError" });
  expect(state.error!.message).toMatch(/Maximum call stack size exceeded/);
  await waitForEventsApplied(topology);
  const letters = await deadLetters(topology);
  expect(letters).toEqual([expect.objectContaining({ reason: "event_failed", workflowId: "deep-output" })]);
  expect(letters[0]!.message).toMatch(/\(1 deliveries\)/);
});

it("an event that fails on every delivery is given up after orchestrator.maxDeliveries", async () => {
  const e = engine();
  let signalDeliveries = 0;
  const waitsForSignal = async (ctx: WorkflowContext) => ctx.waitForSignal("go");
  await e.runtime({
    workflows: { waitsForSignal },
    config: { orchestrator: { maxDeliveries: 3 } },
    // An injected fault: applying any signal throws, on every delivery, as a bug would.
    crashPoint: (name) => {
      if (name === "event-parsed:signal") {
        signalDeliveries += 1;
        throw new Error("injected: applying signals is broken");
      }
    },
  });
  const client = await e.client();
  const handle = await client.start("waitsForSignal", null, { id: "broken-signal" });
  await waitForState(client, "broken-signal", (s) => s.steps["signal_go"]?.status === "waiting");
  await handle.signal("go", 1);
  const state = await waitForState(client, "broken-signal", undefined, 20_000);
  expect(state.status).toBe("failed");
  expect(state.error).toMatchObject({ type: "PoisonEventError" });
  expect(state.error!.message).toMatch(/\(3 deliveries\): injected: applying signals is broken/);
  expect(signalDeliveries).toBe(3);
  const topology = await e.topology();
  await waitForEventsApplied(topology);
  expect(await deadLetters(topology)).toEqual([expect.objectContaining({ reason: "event_failed", workflowId: "broken-signal" })]);
  await waitFor("no redelivery", async () => (signalDeliveries === 3 ? true : undefined));
}, 30_000);
