/**
 * Claim check (runtime/payloads/claim-check.ts): payloads over limits.inlinePayloadBytes travel
 * as references to objects in the namespace's WORKFLOW_PAYLOADS Object Store, transparently both
 * ways; a 10 MiB activity output survives a SIGKILL of the runtime that produced it; retention and
 * client.delete remove the objects with their workflow; limits.maxInputBytes bounds the total.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Objm } from "@nats-io/obj";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkflowContext, WorkflowState } from "../runtime/index.js";
import { MAX_UPDATE_RECORDS } from "../runtime/orchestrator/decide.js";
import { bigText, sha256 } from "./fixtures/payloads/big-payload.js";
import { activities, workflows } from "./fixtures/payloads/functions.js";
import { useEngines, waitFor, waitForEventsApplied, waitForState, type Engine } from "./fixtures/engine/harness.js";
import { onLines } from "./helpers/wait.js";

const engine = useEngines();
const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..");
const fixture = join(here, "fixtures", "payloads", "runtime-process.ts");
const MiB = 1024 * 1024;

const connections: NatsConnection[] = [];
const spawned = new Set<ChildProcess>();
afterEach(async () => {
  for (const child of spawned) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, "SIGKILL");
  spawned.clear();
  await Promise.all(connections.splice(0).map((nc) => nc.close()));
});

async function raw(e: Engine): Promise<NatsConnection> {
  const nc = await connect({ servers: e.url });
  connections.push(nc);
  return nc;
}

async function rawState(e: Engine, id: string): Promise<{ bytes: number; state: WorkflowState }> {
  const kv = await new Kvm(await raw(e)).open(e.names.statesBucket);
  const entry = (await kv.get(id))!;
  return { bytes: entry.length, state: entry.json<WorkflowState>() };
}

/** Names of the objects stored now, and the messages left in the bucket's stream (chunks and meta). */
async function objects(e: Engine): Promise<{ names: string[]; messages: number }> {
  const nc = await raw(e);
  const store = await new Objm(nc).open(e.names.payloadsStore);
  const names = (await store.list()).filter((info) => !info.deleted).map((info) => info.name).sort();
  const info = await (await jetstreamManager(nc)).streams.info(`OBJ_${e.names.payloadsStore}`);
  return { names, messages: info.state.messages };
}

function spawnRuntime(e: Engine, workerId: string, crashPoint?: string): Promise<{ proc: ChildProcess; exited: Promise<NodeJS.Signals | null> }> {
  const proc = spawn(process.execPath, ["--import", "tsx", fixture, JSON.stringify({ natsUrl: e.url, namespace: e.namespace, workerId, ...(crashPoint ? { crashPoint } : {}) })], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
  });
  spawned.add(proc);
  const output: string[] = [];
  const exited = new Promise<NodeJS.Signals | null>((done) => proc.once("exit", (_code, signal) => done(signal)));
  return new Promise((ready, fail) => {
    onLines(proc.stdout!, (line) => {
      output.push(line);
      if (line.trim() === "READY") ready({ proc, exited });
    });
    onLines(proc.stderr!, (line) => output.push(line));
    proc.once("exit", () => fail(new Error(`runtime ${workerId} exited before READY:\n${output.join("\n")}`)));
  });
}

/** Updates "put" a blob and get it back; a validator refuses `refuse: true`; "close" ends it. */
async function box(ctx: WorkflowContext) {
  ctx.handleUpdate("put", async (item: { blob: string; refuse?: boolean }) => ({ blob: item.blob, length: item.blob.length }), {
    validate: (item) => {
      if (item.refuse) throw new Error("refused");
    },
  });
  await ctx.waitForSignal("close");
  return "closed";
}

describe("claim check", () => {
  it("a large input, signal, activity input and output and result round-trip as object references", async () => {
    const e = engine();
    await e.runtime({ workflows, activities });
    const client = await e.client();
    const input = bigText(200 * 1024, "input");
    const signal = bigText(150 * 1024, "signal");
    await client.start("echo", { blob: input }, { id: "echo-1" });
    await waitForState(client, "echo-1", (s) => s.steps.signal_more !== undefined);
    await client.signal("echo-1", "more", { blob: signal });
    expect(await client.result("echo-1")).toEqual({ digest: sha256(input + signal), input: input.length, signal: signal.length });

    const { bytes, state } = await rawState(e, "echo-1");
    expect(bytes).toBeLessThan(8 * 1024); // the state holds references, not the data
    expect(state.input).toMatchObject({ $ref: expect.stringMatching(new RegExp(`^obj:${e.names.payloadsStore}/echo-1/start/input-`)), bytes: expect.any(Number) });
    expect(state.steps.signal_more!.output).toMatchObject({ $ref: expect.any(String) });
    expect(state.steps.digest!.input).toMatchObject({ $ref: `obj:${e.names.payloadsStore}/echo-1/steps/digest/input` });
    expect((await client.describe("echo-1")).input).toEqual({ blob: input });
    // The state is small enough for any NATS client; the data is in the Object Store.
    expect((await objects(e)).names).toHaveLength(3);
  });

  it("a large update's args and result travel as references, and go with their workflow, a refused update's args too", async () => {
    const e = engine();
    await e.runtime({ workflows: { box } });
    const client = await e.client();
    await client.start("box", null, { id: "box-1" });
    await waitForState(client, "box-1", (s) => s.steps.signal_close?.status === "waiting");
    const blob = bigText(100 * 1024, "update");
    expect(await client.update("box-1", "put", { blob }, { updateId: "big-1" })).toEqual({ blob, length: blob.length });
    await expect(client.update("box-1", "put", { blob, refuse: true }, { updateId: "big-2" })).rejects.toMatchObject({ code: "WF_UPDATE_REJECTED" });

    const { bytes, state } = await rawState(e, "box-1");
    expect(bytes).toBeLessThan(8 * 1024);
    const ref = (name: string) => ({ $ref: `obj:${e.names.payloadsStore}/${name}`, bytes: expect.any(Number) });
    const argsRef = (updateId: string) => ({ $ref: expect.stringMatching(new RegExp(`^obj:${e.names.payloadsStore}/box-1/updates/${updateId}/args-[0-9a-f]{16}$`)) });
    expect(state.steps["$update-big-1"]!.input).toMatchObject(argsRef("big-1"));
    expect(state.updates!.find((u) => u.id === "big-1")!.result).toMatchObject(ref("box-1/updates/big-1/result"));
    expect(state.updates!.find((u) => u.id === "big-2")!.args).toMatchObject(argsRef("big-2"));
    expect((await objects(e)).names.map((n) => n.replace(/-[0-9a-f]{16}$/, ""))).toEqual(["box-1/updates/big-1/args", "box-1/updates/big-1/result", "box-1/updates/big-2/args"]);

    await client.signal("box-1", "close");
    await waitForState(client, "box-1");
    expect(await client.delete("box-1")).toBe(true);
    expect(await objects(e)).toEqual({ names: [], messages: 0 });
  });

  it("the args of an update that reaches its workflow after it ended are removed, not left in the store", async () => {
    const e = engine();
    const first = await e.runtime({ workflows: { box } });
    const client = await e.client();
    await client.start("box", null, { id: "box-late" });
    await waitForState(client, "box-late", (s) => s.steps.signal_close?.status === "waiting");
    // With no runtime, the close signal and then the update wait in that order: the workflow ends
    // before the update is decided, so no state will ever reference its args.
    await first.stop();
    await client.signal("box-late", "close");
    // Settled into a value at once: it rejects while the next runtime starts, before the expect below.
    const late = client.update("box-late", "put", { blob: bigText(100 * 1024, "late") }, { updateId: "late-1", timeout: "60s" }).then(() => "applied", (err: unknown) => err);
    await waitFor("the update's args stored", async () => (await objects(e)).names.some((n) => n.startsWith("box-late/updates/late-1/args-")));
    await e.runtime({ workflows: { box } });
    expect(await late).toMatchObject({ code: "WF_WORKFLOW_NOT_RUNNING" });
    await waitFor("the args removed", async () => (await objects(e)).messages === 0, 20_000, 200);
    expect((await client.describe("box-late")).status).toBe("completed");

    // A forged update to the ended workflow that names another workflow's object removes nothing.
    await client.start("box", null, { id: "box-other" });
    await waitForState(client, "box-other", (s) => s.steps.signal_close?.status === "waiting");
    await client.update("box-other", "put", { blob: bigText(100 * 1024, "other") }, { updateId: "kept-1" });
    const kept = (await objects(e)).names;
    expect(kept.some((n) => n.startsWith("box-other/updates/kept-1/args-"))).toBe(true);
    const otherArgs = (await rawState(e, "box-other")).state.steps["$update-kept-1"]!.input;
    const nc = await raw(e);
    nc.publish(e.names.updateSubject("box-late"), JSON.stringify({ workflowId: "box-late", name: "put", updateId: "forged-1", args: otherArgs }));
    await nc.flush();
    await waitForEventsApplied(await e.topology());
    expect((await objects(e)).names).toEqual(kept);
  });

  it("a refused update's claim-checked args are removed once its outcome is pushed out of the most recent ones", async () => {
    const e = engine();
    await e.runtime({ workflows: { box } });
    const client = await e.client();
    await client.start("box", null, { id: "box-refused" });
    await waitForState(client, "box-refused", (s) => s.steps.signal_close?.status === "waiting");
    await expect(client.update("box-refused", "put", { blob: bigText(100 * 1024, "refused"), refuse: true }, { updateId: "big-refused" })).rejects.toMatchObject({ code: "WF_UPDATE_REJECTED" });
    expect((await objects(e)).names.some((n) => n.startsWith("box-refused/updates/big-refused/args-"))).toBe(true);
    // MAX_UPDATE_RECORDS small refused updates later, its outcome is no longer kept: nothing references its args.
    for (let i = 0; i < MAX_UPDATE_RECORDS; i++) {
      await expect(client.update("box-refused", "put", { blob: "small", refuse: true }, { updateId: `small-${i}` })).rejects.toMatchObject({ code: "WF_UPDATE_REJECTED" });
    }
    expect((await rawState(e, "box-refused")).state.updates!.some((u) => u.id === "big-refused")).toBe(false);
    await waitFor("the refused update's args removed", async () => (await objects(e)).messages === 0, 20_000, 200);
    await client.signal("box-refused", "close");
    expect((await waitForState(client, "box-refused")).status).toBe("completed");
  });

  it("with a codec, the stored objects hold ciphertext", async () => {
    const e = engine();
    const config = { codec: { keys: { k1: randomBytes(32).toString("base64") }, current: "k1" } };
    await e.runtime({ workflows, activities, config });
    const client = await e.client(config);
    const result = await (await client.start("big", { bytes: 300 * 1024 }, { id: "enc-big" })).result();
    expect(sha256((result as { blob: string }).blob)).toBe(sha256(bigText(300 * 1024)));
    const nc = await raw(e);
    const store = await new Objm(nc).open(e.names.payloadsStore);
    const data = new TextDecoder().decode((await store.getBlob("enc-big/steps/make_big/1/output"))!);
    expect(JSON.parse(data)).toMatchObject({ $enc: "aes256gcm", k: "k1" });
    expect(data).not.toContain(bigText(64));
  });

  it("a 10 MiB activity output survives a SIGKILL of the runtime that produced it, and the workflow completes with the right bytes", async () => {
    const e = engine();
    const client = await e.client();
    // Runtime A runs make_big, stores the output and its completion, and dies before acking the task.
    const a = await spawnRuntime(e, "a", "after-completion-before-ack");
    await client.start("big", { bytes: 10 * MiB }, { id: "big-kill" });
    expect(await a.exited).toBe("SIGKILL");
    // Runtime B finds the task redelivered, its attempt recorded, and carries the workflow on:
    // its orchestrator reads the 10 MiB back from the Object Store (B never saw it).
    await spawnRuntime(e, "b");
    const result = (await client.result("big-kill", { signal: AbortSignal.timeout(60_000) })) as { digest: string; length: number; blob: string };
    const expected = sha256(bigText(10 * MiB));
    expect(result.length).toBe(10 * MiB);
    expect(result.digest).toBe(expected);
    expect(sha256(result.blob)).toBe(expected);

    const { bytes, state } = await rawState(e, "big-kill");
    expect(bytes).toBeLessThan(8 * 1024);
    expect(state.steps.make_big!.worker).toBe("a");
    expect(state.steps.make_big!.attempt).toBe(1);
    // One object per slot: the retry after the crash did not leave a second copy.
    expect((await objects(e)).names).toEqual(["big-kill/result", "big-kill/steps/digest/input", "big-kill/steps/make_big/1/output"]);

    // client.delete removes the objects with the workflow, and nothing of them stays in the stream.
    expect(await client.delete("big-kill")).toBe(true);
    expect(await objects(e)).toEqual({ names: [], messages: 0 });
  }, 120_000);

  it("retention removes a finished workflow's objects", async () => {
    const e = engine();
    await e.runtime({ workflows, activities, config: { retention: "1s", orchestrator: { retentionSweepInterval: "1s" } } });
    const client = await e.client();
    await (await client.start("big", { bytes: 100 * 1024 }, { id: "kept-1s" })).result();
    expect((await objects(e)).names).toHaveLength(3);
    await waitFor("the objects of kept-1s removed by retention", async () => (await objects(e)).messages === 0, 20_000, 200);
    await expect(client.describe("kept-1s")).rejects.toThrow(/no workflow with id kept-1s/);
  });

  it("limits.maxInputBytes bounds the decoded size of an input and of an activity output", async () => {
    const e = engine();
    const config = { limits: { maxInputBytes: 256 * 1024 } };
    await e.runtime({ workflows, activities, config });
    const client = await e.client(config);
    await expect(client.start("echo", { blob: bigText(300 * 1024) })).rejects.toMatchObject({ code: "WF_INPUT_TOO_LARGE" });
    const failed = await client.start("big", { bytes: 300 * 1024 }, { id: "too-big-output" });
    const err = await failed.result().catch((error: unknown) => error);
    expect(String((err as Error).message)).toMatch(/output of activity make_big cannot be recorded.*limits\.maxInputBytes/);
  });
});
