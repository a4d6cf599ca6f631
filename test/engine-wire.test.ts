/**
 * The wire contract as another NATS program sees it (plain publish to workflow.start.<type>, the
 * state in the WORKFLOW_STATES bucket), bad messages that must never crash a runtime, and config
 * errors that must name the key and the file.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { Engine, resultSignal, waitFor, waitForState } from "./fixtures/engine/harness.js";

let nats: TestNats;
const engines: Engine[] = [];
const connections: NatsConnection[] = [];
const engine = (namespace?: string): Engine => {
  const e = namespace === undefined ? new Engine(nats.url) : new Engine(nats.url, namespace);
  engines.push(e);
  return e;
};
const rawConnection = async (): Promise<NatsConnection> => {
  const nc = await connect({ servers: nats.url });
  connections.push(nc);
  return nc;
};

beforeAll(async () => {
  nats = await startNatsServer();
});
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  await Promise.all(connections.splice(0).map((nc) => nc.close()));
});
afterAll(async () => {
  await nats?.stop();
});

const greet = async (ctx: WorkflowContext, input: { name: string }) => {
  const text = await ctx.activity<string>("greet", input.name);
  return { text };
};
const greetActivities = { greet: async (name: string) => `hello ${name}` };

describe("wire contract", () => {
  it("starts a workflow from a plain NATS publish and exposes its state in the raw WORKFLOW_STATES bucket", async () => {
    // The default names (no namespace) are the documented contract: this is the only test using
    // them on this server, and every other test runs in its own namespace.
    const e = engine("");
    await e.runtime({ workflows: { greet_wf: greet }, activities: greetActivities });
    const nc = await rawConnection();
    const encoder = new TextEncoder();
    nc.publish("workflow.start.greet_wf", encoder.encode(JSON.stringify({ id: "raw-1", input: { name: "nats" } })));
    nc.publish("workflow.start.greet_wf", encoder.encode(JSON.stringify({ input: { name: "anonymous" } }))); // no id: the engine makes one
    await nc.flush();

    const kv = await new Kvm(nc).open("WORKFLOW_STATES");
    const state = await waitFor("raw-1 to complete", async () => {
      const entry = await kv.get("raw-1");
      const value = entry && entry.length > 0 ? entry.json<WorkflowState>() : undefined;
      return value?.status === "completed" ? value : undefined;
    });
    expect(state).toMatchObject({ id: "raw-1", workflow: "greet_wf", status: "completed", input: { name: "nats" }, result: { text: "hello nats" } });
    for (const key of ["createdAt", "updatedAt"] as const) expect(Number.isNaN(Date.parse(state[key])), key).toBe(false);
    expect(state.steps.greet).toMatchObject({ status: "completed", attempt: 1, output: "hello nats" });
    expect(Number.isNaN(Date.parse(state.steps.greet!.startedAt!))).toBe(false);
    expect(Number.isNaN(Date.parse(state.steps.greet!.finishedAt!))).toBe(false);

    const anonymous = await waitFor("the id-less start to complete", async () => {
      for await (const key of await kv.keys()) {
        // Keys with a '/' are not states: history chunks and the visibility index (docs/protocol.md).
        if (key === "raw-1" || key.includes("/")) continue;
        const value = (await kv.get(key))?.json<WorkflowState>();
        if (value?.workflow === "greet_wf" && value.status === "completed") return value;
      }
      return undefined;
    });
    expect(anonymous.id).toMatch(/^[A-Za-z0-9_=.-]+$/);
    expect(anonymous.result).toEqual({ text: "hello anonymous" });
  });
});

describe("ids", () => {
  it("runs workflows whose ids use every character the contract allows, and refuses others at the client", async () => {
    const e = engine();
    await e.runtime({ workflows: { greet_wf: greet }, activities: greetActivities });
    const client = await e.client({ limits: { maxInputBytes: 1000 } });
    const ids = ["order.2024=A-1_x", "a", "x".repeat(200), "v1.2.3-rc=4"];
    const handles = await Promise.all(ids.map((id) => client.start("greet_wf", { name: id.slice(0, 10) }, { id })));
    for (const [i, handle] of handles.entries()) {
      expect(await handle.result(resultSignal())).toEqual({ text: `hello ${ids[i]!.slice(0, 10)}` });
      expect((await client.describe(ids[i]!)).id).toBe(ids[i]);
    }
    for (const bad of ["bad id!", "", "x".repeat(201), ".lead", "trail.", "dou..ble", "a/b", "a*b", "a>b"]) {
      await expect(client.start("greet_wf", {}, { id: bad }), JSON.stringify(bad)).rejects.toMatchObject({ name: "ValidationError", code: "WF_INVALID_ID" });
    }
    await expect(client.start("greet_wf", { blob: "x".repeat(2_000) }, { id: "too-big" })).rejects.toMatchObject({ name: "ValidationError", code: "WF_INPUT_TOO_LARGE" });
    await expect(client.start("bad.type", {}, { id: "ok-id" })).rejects.toMatchObject({ name: "ValidationError", code: "WF_INVALID_NAME" });
    await expect(client.describe("never-started")).rejects.toMatchObject({ name: "WorkflowNotFoundError" });
  });
});

describe("bad messages", () => {
  it("dead-letters bad start messages with a reason, records failed states where an id is readable (not for an unknown type), and keeps running", async () => {
    const e = engine();
    const rt = await e.runtime({ workflows: { greet_wf: greet }, activities: greetActivities, config: { limits: { maxInputBytes: 1000 } } });
    expect(rt.config.limits.maxInputBytes).toBe(1000);
    const client = await e.client();
    const { names } = client.topology;
    const nc = await rawConnection();
    const send = (subject: string, body: string) => nc.publish(subject, new TextEncoder().encode(body));
    const start = names.startSubject("greet_wf");
    send(start, "this is { not json");
    send(start, "[1,2]");
    send(start, '{"id": 5}');
    send(start, '{"id": "extra-1", "input": {}, "priority": "high"}');
    send(names.startSubject("no_such_wf"), '{"id": "unknown-1", "input": {}}');
    send(start, '{"id": "bad id!", "input": {}}');
    send(start, JSON.stringify({ id: "big-1", input: { blob: "x".repeat(2_000) } }));
    await nc.flush();

    const expectedReasons = ["invalid_json", "invalid_message", "invalid_message", "invalid_message", "unknown_workflow", "invalid_id", "input_too_large"];
    const jsm = await jetstreamManager(nc);
    await waitFor("7 dead letters", async () => (await jsm.streams.info(names.deadLettersStream)).state.messages >= expectedReasons.length);
    const info = await jsm.streams.info(names.deadLettersStream);
    expect(info.state.messages).toBe(expectedReasons.length);
    const letters: Array<{ reason: string; header: string; body: Record<string, unknown> }> = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const msg = await jsm.streams.getMessage(names.deadLettersStream, { seq });
      if (!msg) continue;
      const body = msg.json<Record<string, unknown>>();
      letters.push({ reason: String(body.reason), header: msg.header.get("Jetflow-Reason"), body });
    }
    for (const letter of letters) expect(letter.header).toBe(letter.reason);
    expect(letters.map((l) => l.reason).sort()).toEqual([...expectedReasons].sort());
    const byBody = (fragment: string) => letters.find((l) => String(l.body.body).includes(fragment))!;
    expect(byBody("not json").reason).toBe("invalid_json");
    expect(byBody("[1,2]").body.message).toMatch(/must be a JSON object/);
    expect(byBody('"id": 5').body.message).toMatch(/"id" must be a string/);
    expect(byBody("priority").body.message).toMatch(/unknown field\(s\) "priority"/);
    expect(byBody("unknown-1").body.message).toMatch(/unknown workflow type "no_such_wf"/);
    expect(byBody("bad id!").body.message).toMatch(/workflow id "bad id!" is not valid/);
    expect(byBody("big-1").body.message).toMatch(/exceeds limits.maxInputBytes \(1000\)/);
    for (const l of letters) expect(l.body.subject, l.reason).toMatch(/\.workflow\.start\./);

    // Where the id can be read, the workflow's state says why it failed; except for a type that
    // may yet be deployed, which leaves the id free (docs/protocol.md, "Starts for unknown workflow types").
    expect(await client.topology.states.get("unknown-1")).toBeNull();
    const big = await waitForState(client, "big-1");
    expect(big.status).toBe("failed");
    expect(big.error!.message).toMatch(/maxInputBytes/);
    const extra = await waitForState(client, "extra-1");
    expect(extra.status).toBe("failed");
    expect(extra.error!.message).toMatch(/priority/);

    // The runtime is still alive and serves a normal workflow.
    const handle = await client.start("greet_wf", { name: "after" }, { id: "after-1" });
    expect(await handle.result(resultSignal())).toEqual({ text: "hello after" });
  });
});

describe("bad messages on internal subjects", () => {
  it("dead-letters malformed tasks, completions and timers without crashing a runtime", async () => {
    const e = engine();
    await e.runtime({ workflows: { greet_wf: greet }, activities: greetActivities });
    const client = await e.client();
    const { names } = client.topology;
    const nc = await rawConnection();
    const send = (subject: string, body: string) => nc.publish(subject, new TextEncoder().encode(body));
    // Tasks as another program might publish them: not JSON, and a task without "timeoutMs".
    send(names.taskSubject("greet"), "{{{");
    send(names.taskSubject("greet"), JSON.stringify({ workflowId: "ghost", workflow: "greet_wf", step: "greet", activity: "greet", attempt: 1, input: "x" }));
    // Events: a completion that is not JSON, one of the wrong shape, a timer of the wrong shape,
    // an unknown event kind, and a well-formed completion of a workflow that does not exist.
    send(names.completedSubject("ghost", "greet"), "nope");
    send(names.completedSubject("ghost", "greet"), JSON.stringify({ workflowId: "ghost", step: "greet" }));
    send(names.timerFiredSubject("ghost", "k"), JSON.stringify({ workflowId: "ghost" }));
    send(`${e.namespace}.workflow.activity.bogus`, "{}");
    send(
      names.completedSubject("ghost2", "greet"),
      JSON.stringify({ workflowId: "ghost2", step: "greet", attempt: 1, ok: true, output: 1, startedAt: "", finishedAt: "", worker: "w" }),
    );
    await nc.flush();

    const jsm = await jetstreamManager(nc);
    // The completion of a workflow that does not exist is kept too, as unknown_workflow.
    const expected = ["invalid_message", "invalid_message", "invalid_json", "invalid_message", "invalid_message", "invalid_event", "unknown_workflow"];
    await waitFor(`${expected.length} dead letters`, async () => (await jsm.streams.info(names.deadLettersStream)).state.messages >= expected.length);
    const info = await jsm.streams.info(names.deadLettersStream);
    const reasons: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const msg = await jsm.streams.getMessage(names.deadLettersStream, { seq });
      if (msg) reasons.push(msg.header.get("Jetflow-Reason"));
    }
    expect(reasons.sort()).toEqual([...expected].sort());
    // Nothing is left to redeliver, and the runtime still serves workflows.
    await waitFor("the task queue to drain", async () => (await jsm.streams.info(names.tasksStream)).state.messages === 0);
    const handle = await client.start("greet_wf", { name: "still here" }, { id: "alive-1" });
    expect(await handle.result(resultSignal())).toEqual({ text: "hello still here" });
    await expect(client.describe("ghost")).rejects.toThrow(/no workflow with id ghost/);
  });
});

describe("config errors", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "jetflow-config-test-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const failure = (fn: () => unknown): ConfigError => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error("expected a ConfigError, but loadConfig succeeded");
  };

  it("names an unknown override key and suggests the right one", () => {
    const err = failure(() => loadConfig({ env: {}, cwd: dir, overrides: { worker: { slot: 3 } } }));
    expect(err.message).toContain("worker.slot");
    expect(err.message).toMatch(/did you mean "worker\.slots"/);
    expect(err.code).toBe("WF_CONFIG_UNKNOWN_KEY");
  });

  it("names the file and the key of an unknown key in wf.config.json", () => {
    const file = join(dir, "unknown-key.json");
    writeFileSync(file, JSON.stringify({ namespace: "app", orchestrator: { concurency: 4 } }));
    const err = failure(() => loadConfig({ env: {}, cwd: dir, file }));
    expect(err.message).toContain(file);
    expect(err.message).toContain("orchestrator.concurency");
    expect(err.message).toMatch(/did you mean "orchestrator\.concurrency"/);
    expect(err.hint).toBeTruthy();
  });

  it("names the key of a value of the wrong type (override, file and environment)", () => {
    const fromOverride = failure(() => loadConfig({ env: {}, cwd: dir, overrides: { worker: { slots: "many" } } }));
    expect(fromOverride.message).toContain("worker.slots");
    expect(fromOverride.code).toBe("WF_CONFIG_INVALID_VALUE");

    const file = join(dir, "wrong-type.json");
    writeFileSync(file, JSON.stringify({ worker: { slots: "many" } }));
    const fromFile = failure(() => loadConfig({ env: {}, cwd: dir, file }));
    expect(fromFile.message).toContain(file);
    expect(fromFile.message).toContain("worker.slots");

    const fromEnv = failure(() => loadConfig({ env: { WF_WORKER_SLOTS: "many" }, cwd: dir }));
    expect(fromEnv.message).toContain("worker.slots");

    const badDuration = failure(() => loadConfig({ env: {}, cwd: dir, overrides: { defaults: { retry: { initialInterval: "soon" } } } }));
    expect(badDuration.message).toContain("defaults.retry.initialInterval");
  });

  it("rejects a file that is not JSON, naming the file", () => {
    const file = join(dir, "broken.json");
    writeFileSync(file, '{ "namespace": "app", }');
    const err = failure(() => loadConfig({ env: {}, cwd: dir, file }));
    expect(err.message).toContain(file);
    expect(err.code).toBe("WF_CONFIG_INVALID_JSON");
  });
});
