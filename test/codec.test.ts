/**
 * Payload encryption (runtime/payloads/codec.ts): what a user would check. Payloads round-trip
 * start → activity → result decoded; a plain NATS reader of the states bucket sees ciphertext
 * for payloads and clear text for the rest; keys rotate; a missing key is a coded error naming
 * it; a custom codec works; `wf show` / `wf list` read with the key and say so without it.
 */
import { randomBytes } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { listDeadLetters } from "../runtime/dead-letters.js";
import { describe, expect, it } from "vitest";
import { CodecError, createClient, createRuntime, ENCRYPTED_PLACEHOLDER, type EncodedPayload, type PayloadCodec, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { showCommand } from "../cli/commands/show.js";
import { listCommand } from "../cli/commands/list.js";
import { useEngines, waitFor, waitForState, type Engine } from "./fixtures/engine/harness.js";

const engine = useEngines();

const key = () => randomBytes(32).toString("base64");
const SECRET = "card-4242-4242";

const order = async (ctx: WorkflowContext, input: { card: string }) => {
  const charge = await ctx.activity<{ receipt: string }>("charge", { card: input.card });
  const note = await ctx.waitForSignal<{ note: string }>("approve");
  return { receipt: charge.receipt, note: note.note };
};
const activities = {
  charge: async (input: { card: string }) => {
    if (input.card !== SECRET) throw new Error(`activity got ${JSON.stringify(input)}`);
    return { receipt: `paid with ${input.card}` };
  },
};
const failing = async (ctx: WorkflowContext, input: { card: string }) => ctx.activity("explode", input, { retry: { maxRetries: 0 } });
const failingActivities = {
  explode: async (input: { card: string }) => {
    throw new Error(`declined ${input.card}`);
  },
};

async function rawState(e: Engine, id: string): Promise<{ text: string; state: WorkflowState }> {
  const nc = await connect({ servers: e.url });
  try {
    const kv = await new Kvm(nc).open(e.names.statesBucket);
    const entry = await kv.get(id);
    return { text: entry!.string(), state: entry!.json<WorkflowState>() };
  } finally {
    await nc.close();
  }
}

const codecConfig = (keys: Record<string, string>, current: string) => ({ codec: { keys, current } });

/** Run a `wf` command in this process against the engine, with `env` set: its exit code and what it printed. */
async function runCli(e: Engine, command: typeof showCommand, positionals: string[], env: Record<string, string>, values: Record<string, unknown> = {}): Promise<{ code: number; text: string }> {
  const out: string[] = [];
  const original = process.stdout.write.bind(process.stdout);
  const saved = { ...process.env };
  Object.assign(process.env, { NATS_URL: e.url, WF_NAMESPACE: e.namespace, WF_LOG_LEVEL: "error" }, env);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await command({ positionals, values: { nats: e.url, namespace: e.namespace, ...values } } as never);
    return { code, text: out.join("") };
  } finally {
    process.stdout.write = original;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

/** A notebook: updates add notes (a validator refuses "bad" ones), queries find them; "close" ends it. */
const notebook = async (ctx: WorkflowContext) => {
  const notes: string[] = [];
  ctx.handleQuery("find", (prefix: string) => notes.filter((n) => n.startsWith(prefix)));
  ctx.handleQuery("fail", (why: string) => {
    throw new Error(`refused ${why}`);
  });
  ctx.handleUpdate("add", async (note: string) => {
    notes.push(note);
    return { count: notes.length, last: note };
  }, {
    validate: (note: string) => {
      if (note.startsWith("bad")) throw new Error(`not storing ${note}`);
    },
  });
  await ctx.waitForSignal("close");
  return notes.length;
};

/** Every message on every subject of the server (JetStream API, KV and Object Store writes, request replies), as text. */
async function wiretap(e: Engine): Promise<{ messages: Array<{ subject: string; text: string }>; close(): Promise<void> }> {
  const nc = await connect({ servers: e.url });
  const messages: Array<{ subject: string; text: string }> = [];
  nc.subscribe(">", {
    callback: (_err, msg) => {
      messages.push({ subject: msg.subject, text: new TextDecoder().decode(msg.data) });
    },
  });
  await nc.flush();
  return { messages, close: () => nc.close() };
}

describe("payload codec (AES-256-GCM)", () => {
  it("round-trips start → activity → signal → result, while the raw state holds ciphertext for payloads and clear text for the rest", async () => {
    const e = engine();
    const config = codecConfig({ k1: key() }, "k1");
    await e.runtime({ workflows: { order }, activities, config });
    const client = await e.client(config);
    const handle = await client.start("order", { card: SECRET }, { id: "enc-1", memo: { owner: SECRET } });
    await waitForState(client, "enc-1", (s) => s.steps.signal_approve !== undefined);
    await handle.signal("approve", { note: `ok ${SECRET}` });
    expect(await handle.result()).toEqual({ receipt: `paid with ${SECRET}`, note: `ok ${SECRET}` });

    const { text, state } = await rawState(e, "enc-1");
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain("paid with");
    // Clear: status, ids, step names, times, types.
    expect(state.status).toBe("completed");
    expect(state.id).toBe("enc-1");
    expect(Object.keys(state.steps).sort()).toEqual(["charge", "signal_approve"]);
    expect(typeof state.createdAt).toBe("string");
    // Encrypted: input, result, memo, the activity's input and output, the signal's payload.
    for (const value of [state.input, state.result, state.memo, state.steps.charge!.input, state.steps.charge!.output, state.steps.signal_approve!.output]) {
      expect(value).toMatchObject({ $enc: "aes256gcm", k: "k1" });
    }
    // describe() decodes.
    const described = await client.describe("enc-1");
    expect(described.input).toEqual({ card: SECRET });
    expect(described.memo).toEqual({ owner: SECRET });
    expect(described.steps.charge!.output).toEqual({ receipt: `paid with ${SECRET}` });
  });

  it("encrypts error messages and stacks; the client decodes them and the workflow code sees them", async () => {
    const e = engine();
    const config = codecConfig({ k1: key() }, "k1");
    await e.runtime({ workflows: { failing }, activities: failingActivities, config });
    const client = await e.client(config);
    const handle = await client.start("failing", { card: SECRET }, { id: "enc-err" });
    const err = await handle.result().catch((error: unknown) => error);
    expect(String((err as Error).message)).toContain(`declined ${SECRET}`);
    const { text, state } = await rawState(e, "enc-err");
    expect(text).not.toContain(SECRET);
    expect(state.status).toBe("failed");
    expect(state.error!.message).toBe("[encoded error]"); // the type stays clear, the message is in the envelope
    expect(state.error!.type).toBeTruthy();
    expect(state.steps.explode!.error!.type).toBe("Error");
    expect(state.steps.explode!.error!.message).not.toContain(SECRET);
    const described = await client.describe("enc-err");
    expect(described.steps.explode!.error!.message).toBe(`declined ${SECRET}`);
    expect(described.error!.message).toContain(`declined ${SECRET}`);
  });

  it("rotation: a new current key encrypts, the old key still decrypts workflows written with it", async () => {
    const e = engine();
    const k1 = key();
    const k2 = key();
    const before = codecConfig({ k1 }, "k1");
    const rt = await e.runtime({ workflows: { order }, activities, config: before });
    const oldClient = await e.client(before);
    await oldClient.start("order", { card: SECRET }, { id: "rot-1" });
    await waitForState(oldClient, "rot-1", (s) => s.steps.signal_approve !== undefined);
    await e.stopRuntime(rt);

    const after = codecConfig({ k1, k2 }, "k2");
    await e.runtime({ workflows: { order }, activities, config: after });
    const client = await e.client(after);
    await client.signal("rot-1", "approve", { note: "rotated" });
    expect(await client.result("rot-1")).toEqual({ receipt: `paid with ${SECRET}`, note: "rotated" });
    const { state } = await rawState(e, "rot-1");
    expect(state.input).toMatchObject({ k: "k1" }); // written before the rotation
    expect(state.steps.signal_approve!.output).toMatchObject({ k: "k2" });
    expect(state.result).toMatchObject({ k: "k2" });

    await client.start("order", { card: SECRET }, { id: "rot-2" });
    await waitForState(client, "rot-2", (s) => s.steps.charge?.status === "completed");
    expect((await rawState(e, "rot-2")).state.input).toMatchObject({ k: "k2" });
  });

  it("a missing key is a coded error naming the key id and codec.keys; without any codec, describe can mark what it cannot read", async () => {
    const e = engine();
    const config = codecConfig({ k1: key() }, "k1");
    await e.runtime({ workflows: { order }, activities, config });
    const writer = await e.client(config);
    await writer.start("order", { card: SECRET }, { id: "miss-1" });
    await writer.signal("miss-1", "approve", { note: "n" });
    await writer.result("miss-1");

    const otherKey = await e.client(codecConfig({ k9: key() }, "k9"));
    const wrong = await otherKey.result("miss-1").catch((err: unknown) => err);
    expect(wrong).toBeInstanceOf(CodecError);
    expect((wrong as CodecError).code).toBe("WF_CODEC_KEY_UNKNOWN");
    expect((wrong as CodecError).message).toContain('"k1"');
    expect((wrong as CodecError).hint).toContain("codec.keys");

    const noCodec = await e.client();
    const none = await noCodec.describe("miss-1").catch((err: unknown) => err);
    expect((none as CodecError).code).toBe("WF_CODEC_NOT_CONFIGURED");
    expect((none as CodecError).hint).toContain("codec.keys");
    const marked = await noCodec.describe("miss-1", { undecodable: "mark" });
    expect(marked.status).toBe("completed");
    expect(marked.input).toBe(ENCRYPTED_PLACEHOLDER);
    expect(marked.result).toBe(ENCRYPTED_PLACEHOLDER);

    // Same id, other key material: the authentication tag does not match.
    const sameIdOtherKey = await e.client(codecConfig({ k1: key() }, "k1"));
    expect(((await sameIdOtherKey.result("miss-1").catch((err: unknown) => err)) as CodecError).code).toBe("WF_CODEC_DECRYPT_FAILED");
  });

  it("a bad codec config is refused at load with the key named", async () => {
    const e = engine();
    expect(() => e.config({ codec: { keys: { k1: "short" }, current: "k1" } })).not.toThrow(); // convict accepts the shape
    await expect(e.client({ codec: { keys: { k1: "short" }, current: "k1" } })).rejects.toMatchObject({ code: "WF_CODEC_CONFIG_INVALID", message: expect.stringContaining("codec.keys.k1") });
    expect(() => e.config({ codec: { keys: { k1: key() }, current: "k2" } })).toThrow(/codec\.current/);
  });

  it("a custom codec (a KMS stand-in) encodes and decodes every payload", async () => {
    const e = engine();
    let encoded = 0;
    const kms: PayloadCodec = {
      name: "test-kms",
      async encode(plaintext) {
        encoded += 1;
        return { $enc: "test-kms", blob: Buffer.from(plaintext).reverse().toString("base64") };
      },
      async decode(envelope: EncodedPayload) {
        return new Uint8Array(Buffer.from(String(envelope.blob), "base64").reverse());
      },
    };
    const rt = await createRuntime({ config: e.config(), workflows: { order }, activities, codec: kms });
    await rt.start();
    const client = await createClient({ config: e.config(), codec: kms });
    try {
      await client.start("order", { card: SECRET }, { id: "kms-1" });
      await waitForState(client, "kms-1", (s) => s.steps.signal_approve !== undefined);
      await client.signal("kms-1", "approve", { note: "kms" });
      expect(await client.result("kms-1")).toEqual({ receipt: `paid with ${SECRET}`, note: "kms" });
      const { text, state } = await rawState(e, "kms-1");
      expect(text).not.toContain(SECRET);
      expect(state.input).toMatchObject({ $enc: "test-kms" });
      expect(encoded).toBeGreaterThanOrEqual(5); // input, activity input, output, signal, result
    } finally {
      await client.close();
      await rt.stop("test end");
    }
  });

  it("query args and answers, update args and outcomes are ciphertext on the wire and in the state; clients with the key get them decoded, a client without it a coded error", async () => {
    const e = engine();
    const k1 = key();
    const config = codecConfig({ k1 }, "k1");
    const keyed = await e.runtime({ workflows: { notebook }, config: { ...config, orchestrator: { cacheSize: 0 } } });
    const client = await e.client(config);
    await client.start("notebook", null, { id: "nb-1" });
    await waitForState(client, "nb-1", (s) => s.steps.signal_close?.status === "waiting");
    const tap = await wiretap(e);
    const big = `${SECRET} ${"x".repeat(100 * 1024)}`;
    try {
      // Decoded round trips (the runtime replays the workflow for each: no cache).
      expect(await client.update("nb-1", "add", `note ${SECRET}`, { updateId: "u-secret" })).toEqual({ count: 1, last: `note ${SECRET}` });
      await expect(client.update("nb-1", "add", `bad ${SECRET}`, { updateId: "u-bad" })).rejects.toMatchObject({ code: "WF_UPDATE_REJECTED", message: expect.stringContaining(`not storing bad ${SECRET}`) });
      expect(await client.query("nb-1", "find", `note ${SECRET}`)).toEqual([`note ${SECRET}`]);
      await expect(client.query("nb-1", "fail", SECRET)).rejects.toMatchObject({ code: "WF_QUERY_FAILED", message: expect.stringContaining(`refused ${SECRET}`) });
      // A large update goes through the claim check, both ways (its args, and its result, which repeats them).
      expect(await client.update("nb-1", "add", big, { updateId: "u-big" })).toEqual({ count: 2, last: big });
    } finally {
      await tap.close();
    }

    // On the wire: nothing in clear, on any subject; the query's request and reply and the update's message are envelopes.
    expect(tap.messages.filter((m) => m.text.includes(SECRET)).map((m) => m.subject)).toEqual([]);
    const queries = tap.messages.filter((m) => m.subject === e.names.querySubject("nb-1")).map((m) => JSON.parse(m.text) as { name: string; args: unknown });
    expect(queries.map((q) => q.name)).toEqual(["find", "fail"]);
    for (const q of queries) expect(q.args).toMatchObject({ $enc: "aes256gcm", k: "k1" });
    const replies = tap.messages.filter((m) => m.subject.startsWith("_INBOX") && m.text.startsWith('{"ok"')).map((m) => JSON.parse(m.text) as { ok: boolean; result?: unknown; error?: { message: string; encoded?: unknown } });
    expect(replies.find((r) => r.ok)!.result).toMatchObject({ $enc: "aes256gcm" });
    expect(replies.find((r) => !r.ok)!.error).toMatchObject({ message: "[encoded error]", encoded: { $enc: "aes256gcm" } });
    const updates = tap.messages.filter((m) => m.subject === e.names.updateSubject("nb-1")).map((m) => JSON.parse(m.text) as { updateId: string; args: unknown });
    expect([...new Set(updates.map((u) => u.updateId))]).toEqual(["u-secret", "u-bad", "u-big"]); // published, then delivered to the orchestrator
    expect(updates.find((u) => u.updateId === "u-secret")!.args).toMatchObject({ $enc: "aes256gcm", k: "k1" });
    expect(updates.find((u) => u.updateId === "u-big")!.args).toMatchObject({ $ref: expect.stringMatching(/nb-1\/updates\/u-big\/args-[0-9a-f]{16}$/) });

    // At rest: the update's step and every outcome are ciphertext (or a reference to it); names, ids and status are clear.
    const { text, state } = await rawState(e, "nb-1");
    expect(text).not.toContain(SECRET);
    expect(state.steps["$update-u-secret"]).toMatchObject({ kind: "update", update: { id: "u-secret", name: "add" }, input: { $enc: "aes256gcm", k: "k1" } });
    expect(state.steps["$update-u-big"]!.input).toMatchObject({ $ref: expect.any(String) });
    const outcome = (id: string) => state.updates!.find((u) => u.id === id)!;
    expect(outcome("u-secret")).toMatchObject({ ok: true, name: "add", result: { $enc: "aes256gcm", k: "k1" } });
    expect(outcome("u-bad")).toMatchObject({ ok: false, rejected: true, error: { message: "[encoded error]", code: "WF_UPDATE_REJECTED", encoded: { $enc: "aes256gcm" } } });
    expect(outcome("u-big").result).toMatchObject({ $ref: expect.stringContaining("nb-1/updates/u-big/result") });
    // describe() decodes them.
    const described = await client.describe("nb-1");
    expect(described.steps["$update-u-secret"]!.input).toBe(`note ${SECRET}`);
    expect(described.updates!.find((u) => u.id === "u-big")!.result).toEqual({ count: 2, last: big });
    expect(described.updates!.find((u) => u.id === "u-bad")!.error!.message).toBe(`not storing bad ${SECRET}`);

    // A client without the key: each answer says the key is missing (the update was applied: its outcome is what it cannot read).
    const noKey = await e.client();
    await expect(noKey.query("nb-1", "find", "note")).rejects.toMatchObject({ code: "WF_CODEC_NOT_CONFIGURED", hint: expect.stringContaining("codec.keys") });
    await expect(noKey.update("nb-1", "add", "plain note", { updateId: "u-plain" })).rejects.toMatchObject({ code: "WF_CODEC_NOT_CONFIGURED", message: expect.stringContaining('"k1"') });
    // What it sent in clear is encrypted at rest all the same.
    expect((await rawState(e, "nb-1")).state.steps["$update-u-plain"]!.input).toMatchObject({ $enc: "aes256gcm" });
    expect(await client.query("nb-1", "find", "plain")).toEqual(["plain note"]);
    // wf show: the outcomes decoded with the key; marked without it.
    const withKey = await runCli(e, showCommand, ["nb-1"], { WF_CODEC_KEYS: JSON.stringify({ k1 }), WF_CODEC_CURRENT: "k1" });
    expect(withKey.code).toBe(0);
    expect(withKey.text).toContain(`→ {"count":1,"last":"note ${SECRET}"}`);
    expect(withKey.text).toContain(`rejected: Error: not storing bad ${SECRET}`);
    expect(withKey.text).toContain("update add");
    const without = await runCli(e, showCommand, ["nb-1"], {});
    expect(without.code).toBe(0);
    expect(without.text).not.toContain(SECRET);
    expect(without.text).toContain("u-secret  add  → \"[encrypted; configure codec.keys to read]\"");

    // A runtime without the key cannot read an encrypted query (nor the workflow): its answer says so.
    await e.stopRuntime(keyed);
    await e.runtime({ workflows: { notebook } });
    await expect(client.query("nb-1", "find", "note")).rejects.toMatchObject({ code: "WF_CODEC_NOT_CONFIGURED", message: expect.stringContaining("no codec is configured here") });
  });

  it("an update whose args do not decrypt is refused (the workflow goes on), not retried until the workflow fails", async () => {
    const e = engine();
    const config = codecConfig({ k1: key() }, "k1");
    await e.runtime({ workflows: { notebook }, config });
    const client = await e.client(config);
    const topology = await e.topology();
    await client.start("notebook", null, { id: "nb-forged" });
    await waitForState(client, "nb-forged", (s) => s.steps.signal_close?.status === "waiting");
    // Anyone allowed to publish updates, without the key: an envelope that names k1 but is not its ciphertext.
    const forged = { workflowId: "nb-forged", name: "add", updateId: "forged-1", args: { $enc: "aes256gcm", k: "k1", iv: "AAAAAAAAAAAAAAAA", ct: "AAAA", tag: "AAAAAAAAAAAAAAAAAAAAAA==" } };
    await topology.js.publish(topology.names.updateSubject("nb-forged"), JSON.stringify(forged), { msgID: "nb-forged/update/forged-1" });
    await expect(client.update("nb-forged", "add", "ignored", { updateId: "forged-1" })).rejects.toMatchObject({
      code: "WF_CODEC_DECRYPT_FAILED",
      message: expect.stringContaining('the arguments of update "add" cannot be decoded here'),
    });
    const state = await client.describe("nb-forged");
    expect(state.status).toBe("running");
    expect(state.steps["$update-forged-1"]).toBeUndefined();
    expect(await client.update("nb-forged", "add", "real")).toEqual({ count: 1, last: "real" });
  });

  it("a signal whose payload does not decrypt is a dead letter (the workflow goes on), not a wait that fails the workflow", async () => {
    const e = engine();
    const config = codecConfig({ k1: key() }, "k1");
    await e.runtime({ workflows: { notebook }, config });
    const client = await e.client(config);
    const topology = await e.topology();
    await client.start("notebook", null, { id: "nb-forged-signal" });
    await waitForState(client, "nb-forged-signal", (s) => s.steps.signal_close?.status === "waiting");
    const forged = { workflowId: "nb-forged-signal", name: "close", signalId: "forged-s1", payload: { $enc: "aes256gcm", k: "k1", iv: "AAAAAAAAAAAAAAAA", ct: "AAAA", tag: "AAAAAAAAAAAAAAAAAAAAAA==" } };
    await topology.js.publish(topology.names.signalSubject("nb-forged-signal", "close"), JSON.stringify(forged));
    const letter = await waitFor("the forged signal's dead letter", async () => (await listDeadLetters(topology, { reason: "invalid_event" })).letters.find((l) => l.workflowId === "nb-forged-signal"), 10_000);
    expect(letter.message).toMatch(/signal close to nb-forged-signal: its payload cannot be decoded here/);
    const state = await client.describe("nb-forged-signal");
    expect(state.status).toBe("running");
    expect(state.steps.signal_close?.status).toBe("waiting");
    await client.signal("nb-forged-signal", "close", "real");
    expect(await client.result("nb-forged-signal", { signal: AbortSignal.timeout(10_000) })).toBe(0);
  });

  it("wf show and wf list decode with the key, and say so without it, without crashing", async () => {
    const e = engine();
    const k1 = key();
    const config = codecConfig({ k1 }, "k1");
    await e.runtime({ workflows: { order }, activities, config });
    const client = await e.client(config);
    await client.start("order", { card: SECRET }, { id: "cli-1" });
    await client.signal("cli-1", "approve", { note: "cli" });
    await client.result("cli-1");

    const run = (command: typeof showCommand, positionals: string[], env: Record<string, string>) => runCli(e, command, positionals, env);
    const withKey = await run(showCommand, ["cli-1"], { WF_CODEC_KEYS: JSON.stringify({ k1 }), WF_CODEC_CURRENT: "k1" });
    expect(withKey.code).toBe(0);
    expect(withKey.text).toContain(SECRET);
    expect(withKey.text).not.toContain("encrypted");

    const without = await run(showCommand, ["cli-1"], {});
    expect(without.code).toBe(0);
    expect(without.text).not.toContain(SECRET);
    expect(without.text).toContain("encrypted; configure codec.keys");
    expect(without.text).toContain("completed");

    const list = await run(listCommand, [], {});
    expect(list.code).toBe(0);
    expect(list.text).toContain("cli-1");
  });
});
