/**
 * ctx.upsertSearchAttributes: search attributes set from workflow code, recorded in the journal as
 * a step of kind "upsert", found by `where` listings, replayed to the same attributes by a runtime
 * that does not hold the execution, and a NonDeterminismError for code that no longer makes the
 * same call. Against a real nats-server (the sandbox case at the end needs none).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderState } from "../cli/output.js";
import { buildFunctions } from "../runtime/bundle/build.js";
import { loadBundle } from "../runtime/bundle/load.js";
import { bindWorkflow } from "../runtime/definitions.js";
import { NonDeterminismError, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { activate, WorkflowExecution } from "../runtime/journal/execution.js";
import { replayWorkflow } from "../runtime/journal/replay.js";
import { silentLogger } from "../runtime/logger.js";
import { replayHistory } from "../runtime/testing/index.js";
import { useEngines, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();
const signal = () => ({ signal: AbortSignal.timeout(15_000) });

const activities = { charge: async (x: unknown) => ({ charged: x }), note: async (x: unknown) => x };

/** Paid after the charge, shipped on a signal, done on another. */
const order = async (ctx: WorkflowContext<typeof activities>, input: { orderId: string }) => {
  await ctx.activities.charge(input.orderId);
  ctx.upsertSearchAttributes({ stage: "paid" });
  await ctx.waitForSignal("ship");
  ctx.upsertSearchAttributes({ stage: "shipped", shippedAt: new Date(Date.UTC(2026, 11, 24, 18)) });
  await ctx.waitForSignal("done");
  return "delivered";
};

const ids = async (client: Awaited<ReturnType<ReturnType<typeof engine>["client"]>>, where: Record<string, string | number | boolean | Date>) =>
  (await client.listPage({ where })).workflows.map((w) => w.id);

describe("ctx.upsertSearchAttributes", () => {
  it("records an upsert step, merges into the state's attributes, and the index follows each change", async () => {
    const e = engine();
    await e.runtime({ workflows: { order }, activities });
    const client = await e.client();
    await client.start("order", { orderId: "o-1" }, { id: "up-1", searchAttributes: { customer: "c-1" } });
    await client.start("order", { orderId: "o-2" }, { id: "up-2", searchAttributes: { customer: "c-2" } });

    const paid = await waitForState(client, "up-1", (s) => s.steps.signal_ship !== undefined);
    expect(paid.searchAttributes).toEqual({ customer: { type: "string", value: "c-1" }, stage: { type: "string", value: "paid" } });
    expect(paid.steps.search_attributes).toMatchObject({
      seq: 1,
      kind: "upsert",
      status: "completed",
      attempt: 0,
      output: { stage: { type: "string", value: "paid" } },
      added: ["stage"],
    });
    expect(paid.journal).toEqual(["charge", "search_attributes"]);
    expect(renderState(paid)).toMatch(/search_attributes\s+completed\s+-\s+\S+\s+search attributes stage=paid/);
    await waitForState(client, "up-2", (s) => s.steps.signal_ship !== undefined);
    expect(await ids(client, { stage: "paid" })).toEqual(["up-2", "up-1"]);
    expect(await ids(client, { stage: "paid", customer: "c-1" })).toEqual(["up-1"]);

    await client.signal("up-1", "ship", null);
    const shipped = await waitForState(client, "up-1", (s) => s.steps.signal_done !== undefined);
    expect(shipped.steps["search_attributes-2"]).toMatchObject({ seq: 3, kind: "upsert", status: "completed", added: ["shippedAt"] });
    expect(shipped.searchAttributes).toEqual({
      customer: { type: "string", value: "c-1" },
      stage: { type: "string", value: "shipped" },
      shippedAt: { type: "time", value: "2026-12-24T18:00:00.000Z" },
    });
    expect(await ids(client, { stage: "paid" })).toEqual(["up-2"]); // the old value no longer matches
    expect(await ids(client, { stage: "shipped" })).toEqual(["up-1"]);
    expect(await ids(client, { shippedAt: new Date("2026-12-24T18:00:00Z") })).toEqual(["up-1"]);
    expect((await client.listPage({ where: { stage: "shipped" } })).workflows[0]!.searchAttributes).toEqual({
      customer: "c-1",
      stage: "shipped",
      shippedAt: new Date("2026-12-24T18:00:00Z"),
    });
  });

  it("an upsert in the workflow's last activation is indexed with its end", async () => {
    const e = engine();
    const last = async (ctx: WorkflowContext<typeof activities>) => {
      await ctx.activities.charge(1);
      ctx.upsertSearchAttributes({ stage: "closed" });
      return "ok";
    };
    await e.runtime({ workflows: { last }, activities });
    const client = await e.client();
    await client.result((await client.start("last", null, { id: "last-1" })).id, signal());
    expect((await client.listPage({ where: { stage: "closed" } })).workflows.map((w) => [w.id, w.status])).toEqual([["last-1", "completed"]]);
  });

  it("the new values' entries are stored with the state: found at once, even when the runtime dies right after the write", async () => {
    const e = engine();
    const last = async (ctx: WorkflowContext<typeof activities>) => {
      await ctx.activities.charge(1);
      ctx.upsertSearchAttributes({ stage: "closed" });
      return "ok";
    };
    const waiting = async (ctx: WorkflowContext<typeof activities>) => {
      await ctx.activities.charge(1);
      ctx.upsertSearchAttributes({ stage: "open" });
      await ctx.waitForSignal("go");
      return "ok";
    };
    // The runtime "dies" right after a state write that recorded a step (the start's create passes the
    // same point): nothing it meant to write after the state reaches NATS, and while it is dead every
    // later point throws too, so no redelivery repairs the index before the listing looks.
    let dead = false;
    let recording = false;
    const died: string[] = [];
    const crashPoint = (name: string) => {
      if (dead) throw new Error(`injected: the runtime is dead (${name})`);
      if (name === "before-state-write") recording = true;
      if (name === "after-state-write-before-dispatch" && recording) {
        dead = true;
        died.push(name);
        throw new Error("injected: the runtime died after the state write");
      }
    };
    await e.runtime({ workflows: { last, waiting }, activities, crashPoint });
    const client = await e.client();
    await client.start("waiting", null, { id: "open-1" });
    await waitForState(client, "open-1", (s) => s.searchAttributes?.stage !== undefined);
    expect(await ids(client, { stage: "open" })).toEqual(["open-1"]);
    recording = false;
    dead = false;
    await client.start("last", null, { id: "closed-1" });
    await waitForState(client, "closed-1", (s) => s.status === "completed");
    expect((await client.listPage({ where: { stage: "closed" } })).workflows.map((w) => [w.id, w.status])).toEqual([["closed-1", "completed"]]);
    expect(died).toHaveLength(2);
    dead = false;
  });

  it("a runtime that does not hold the execution replays it to the same attributes, and the exported history replays cleanly", async () => {
    const e = engine();
    const first = await e.runtime({ workflows: { order }, activities });
    const client = await e.client();
    await client.start("order", { orderId: "o-1" }, { id: "re-1", searchAttributes: { customer: "c-1" } });
    await waitForState(client, "re-1", (s) => s.steps.signal_ship !== undefined);
    await e.stopRuntime(first);

    // A new runtime has no cached execution: the signal makes it replay charge + the first upsert.
    await e.runtime({ workflows: { order }, activities });
    await client.signal("re-1", "ship", null);
    await waitForState(client, "re-1", (s) => s.steps.signal_done !== undefined);
    await client.signal("re-1", "done", null);
    expect(await client.result("re-1", signal())).toBe("delivered");
    const state = await client.describe("re-1");
    expect(state.status).toBe("completed");
    expect(state.searchAttributes).toMatchObject({ customer: { value: "c-1" }, stage: { value: "shipped" }, shippedAt: { type: "time" } });
    expect(Object.entries(state.steps).map(([name, s]) => [name, s.kind, s.status])).toEqual([
      ["charge", "activity", "completed"],
      ["search_attributes", "upsert", "completed"],
      ["signal_ship", "signal", "completed"],
      ["search_attributes-2", "upsert", "completed"],
      ["signal_done", "signal", "completed"],
    ]);
    expect(await ids(client, { stage: "shipped" })).toEqual(["re-1"]);

    const history = await client.history("re-1");
    await expect(replayHistory(history, { workflows: { order } })).resolves.toMatchObject({ workflowId: "re-1" });
    // Other values at the same point: a divergence naming the step.
    const otherValue = async (ctx: WorkflowContext<typeof activities>, input: { orderId: string }) => {
      await ctx.activities.charge(input.orderId);
      ctx.upsertSearchAttributes({ stage: "pending" });
      await ctx.waitForSignal("ship");
      ctx.upsertSearchAttributes({ stage: "shipped", shippedAt: new Date(Date.UTC(2026, 11, 24, 18)) });
      await ctx.waitForSignal("done");
      return "delivered";
    };
    const diverged = await replayHistory(history, { workflows: { order: otherValue } }).catch((err: unknown) => err);
    expect(diverged).toBeInstanceOf(NonDeterminismError);
    expect((diverged as Error).message).toContain('diverged at step "search_attributes"');
    expect((diverged as Error).message).toContain('the journal recorded upsert of search attributes {stage: "paid"}');
    expect((diverged as Error).message).toContain('the code now issues upsert of search attributes {stage: "pending"}');
  });

  it("code that no longer upserts at that point fails with a NonDeterminismError naming the step", async () => {
    const e = engine();
    const first = await e.runtime({ workflows: { order }, activities });
    const client = await e.client();
    await client.start("order", { orderId: "o-1" }, { id: "nd-1" });
    await waitForState(client, "nd-1", (s) => s.steps.signal_ship !== undefined);
    await e.stopRuntime(first);

    const withoutUpsert = async (ctx: WorkflowContext<typeof activities>, input: { orderId: string }) => {
      await ctx.activities.charge(input.orderId);
      await ctx.waitForSignal("ship");
      return "delivered";
    };
    await e.runtime({ workflows: { order: withoutUpsert }, activities });
    await client.signal("nd-1", "ship", null);
    const end = await client.waitForEnd("nd-1", signal());
    expect(end.status).toBe("failed");
    expect(end.error?.type).toBe("NonDeterminismError");
    expect(end.error?.message).toContain('diverged at step "search_attributes" (command #2)');
    expect(end.error?.message).toContain("the journal recorded upsert of search attributes");
    expect(end.error?.message).toContain("wait for signal ship");
  });

  it("a value of another type throws at the call, records nothing, and the code can catch it; a replay throws at the same call", async () => {
    const e = engine();
    const wrongType = async (ctx: WorkflowContext<typeof activities>) => {
      await ctx.activities.charge(1);
      ctx.upsertSearchAttributes({ stage: "paid" });
      const caught: Array<{ name: string; code: unknown; message: string }> = [];
      const attempt = (attributes: Record<string, string | number>) => {
        try {
          ctx.upsertSearchAttributes(attributes);
        } catch (err) {
          caught.push({ name: (err as Error).name, code: (err as { code?: unknown }).code, message: (err as Error).message });
        }
      };
      attempt({ stage: 5 });
      // region is new here, so only stage is wrong; region becomes a string only after. A replay
      // that checked against the final attributes would blame region instead.
      attempt({ region: 7, stage: 5 });
      attempt({ region: "eu" });
      // The messages go into an activity's input, whose hash replay checks: a replay must throw the same errors.
      await ctx.activities.note(caught.map((c) => c.message));
      await ctx.waitForSignal("go");
      return caught;
    };
    const first = await e.runtime({ workflows: { wrongType }, activities });
    const client = await e.client();
    await client.start("wrongType", null, { id: "wt-1" });
    const waiting = await waitForState(client, "wt-1", (s) => s.steps.signal_go !== undefined);
    expect(Object.keys(waiting.steps)).toEqual(["charge", "search_attributes", "search_attributes-2", "note", "signal_go"]);
    expect(waiting.steps["search_attributes-2"]).toMatchObject({ seq: 2, output: { region: { type: "string", value: "eu" } }, added: ["region"] });
    expect(waiting.searchAttributes).toEqual({ stage: { type: "string", value: "paid" }, region: { type: "string", value: "eu" } });
    await e.stopRuntime(first);

    await e.runtime({ workflows: { wrongType }, activities });
    await client.signal("wt-1", "go", null);
    const wrongStage = {
      name: "ValidationError",
      code: "WF_INVALID_SEARCH_ATTRIBUTE",
      message: 'ctx.upsertSearchAttributes(): search attribute "stage" is a string in this workflow; 5 is a number',
    };
    expect(await client.result("wt-1", signal())).toEqual([wrongStage, wrongStage]);
    const end = await client.describe("wt-1");
    expect(end.status).toBe("completed");
    expect(end.searchAttributes).toEqual({ stage: { type: "string", value: "paid" }, region: { type: "string", value: "eu" } });
  });

  it("an uncaught bad name fails the workflow with the ValidationError", async () => {
    const e = engine();
    const badName = async (ctx: WorkflowContext) => {
      ctx.upsertSearchAttributes({ "order-id": "o-1" });
      return "unreachable";
    };
    await e.runtime({ workflows: { badName }, activities });
    const client = await e.client();
    const end = await client.waitForEnd((await client.start("badName", null, { id: "bn-1" })).id, signal());
    expect(end.status).toBe("failed");
    expect(end.error).toEqual({ type: "ValidationError", message: expect.stringContaining('search attribute name "order-id" is not valid') });
    expect(end.steps).toEqual({});
  });
});

describe("ctx.upsertSearchAttributes in the sandbox", () => {
  const root = mkdtempSync(join(tmpdir(), "jetflow-upsert-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("takes the sandbox's Dates as times, throws a catchable error for another type, and replays the same calls", async () => {
    const files: Record<string, string> = {
      "activities/a.ts": `export async function noop() { return 1; }\n`,
      "workflows/w.ts": [
        `export async function dated(ctx) {`,
        `  ctx.upsertSearchAttributes({ due: new Date(Date.UTC(2026, 11, 24)), priority: 2 });`,
        `  let message = "not thrown";`,
        `  try { ctx.upsertSearchAttributes({ region: 7 }); } catch (err) { message = err.name + ": " + err.message; }`,
        `  await ctx.activity("noop", message);`,
        `  return message;`,
        `}`,
      ].join("\n"),
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(root, "functions", path, ".."), { recursive: true });
      writeFileSync(join(root, "functions", path), text);
    }
    const registry = await loadBundle(await buildFunctions(join(root, "functions")), { logger: silentLogger, cacheDir: join(root, ".wf") });
    const definition = registry.workflows.get("dated")!;
    // Started with region as a string: the second upsert's number is refused.
    const started = { region: { type: "string" as const, value: "eu" } };
    const execution = new WorkflowExecution({
      workflowId: "sb-1",
      workflow: "dated",
      ...bindWorkflow(definition, "sb-1"),
      input: null,
      searchAttributes: started,
      logger: silentLogger,
    });
    const at = Date.UTC(2026, 0, 1);
    await activate(execution, at, () => execution.begin());
    const issued = execution.takeIssued();
    expect(issued).toEqual([
      {
        kind: "upsert",
        seq: 0,
        name: "search_attributes",
        attributes: { due: { type: "time", value: "2026-12-24T00:00:00.000Z" }, priority: { type: "number", value: 2 } },
        added: ["due", "priority"],
      },
      expect.objectContaining({
        kind: "activity",
        seq: 1,
        input: 'ValidationError: ctx.upsertSearchAttributes(): search attribute "region" is a string in this workflow; 7 is a number',
      }),
    ]);

    // The state as the orchestrator would have written it (region from the start, due and priority added).
    const upsert = issued[0] as Extract<(typeof issued)[number], { kind: "upsert" }>;
    const activity = issued[1] as Extract<(typeof issued)[number], { kind: "activity" }>;
    const scheduledAt = new Date(at).toISOString();
    const state: WorkflowState = {
      v: 2,
      id: "sb-1",
      workflow: "dated",
      status: "running",
      input: null,
      createdAt: scheduledAt,
      updatedAt: scheduledAt,
      bundle: registry.version,
      kind: "code",
      searchAttributes: { ...started, ...upsert.attributes },
      steps: {
        search_attributes: { seq: 0, kind: "upsert", status: "completed", attempt: 0, output: upsert.attributes, added: upsert.added, scheduledAt },
        noop: { seq: 1, kind: "activity", activity: "noop", status: "scheduled", attempt: 1, input: activity.input, inputHash: activity.inputHash, scheduledAt },
      },
      journal: ["search_attributes"],
    };
    await expect(replayWorkflow(state, { ...bindWorkflow(definition, "sb-1"), logger: silentLogger })).resolves.toBeInstanceOf(WorkflowExecution);
  });
});
