/**
 * Payload encryption (runtime/payloads/codec.ts): what a user would check. Payloads round-trip
 * start → activity → result decoded; a plain NATS reader of the states bucket sees ciphertext
 * for payloads and clear text for the rest; keys rotate; a missing key is a coded error naming
 * it; a custom codec works; `wf show` / `wf list` read with the key and say so without it.
 */
import { randomBytes } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { CodecError, createClient, createRuntime, ENCRYPTED_PLACEHOLDER, type EncodedPayload, type PayloadCodec, type WorkflowContext, type WorkflowState } from "../runtime/index.js";
import { showCommand } from "../cli/commands/show.js";
import { listCommand } from "../cli/commands/list.js";
import { useEngines, waitForState, type Engine } from "./fixtures/engine/harness.js";

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

  it("wf show and wf list decode with the key, and say so without it, without crashing", async () => {
    const e = engine();
    const k1 = key();
    const config = codecConfig({ k1 }, "k1");
    await e.runtime({ workflows: { order }, activities, config });
    const client = await e.client(config);
    await client.start("order", { card: SECRET }, { id: "cli-1" });
    await client.signal("cli-1", "approve", { note: "cli" });
    await client.result("cli-1");

    const run = async (command: typeof showCommand, positionals: string[], env: Record<string, string>) => {
      const out: string[] = [];
      const original = process.stdout.write.bind(process.stdout);
      const saved = { ...process.env };
      Object.assign(process.env, { NATS_URL: e.url, WF_NAMESPACE: e.namespace, WF_LOG_LEVEL: "error" }, env);
      process.stdout.write = ((chunk: string | Uint8Array) => {
        out.push(String(chunk));
        return true;
      }) as typeof process.stdout.write;
      try {
        const code = await command({ positionals, values: { nats: e.url, namespace: e.namespace } } as never);
        return { code, text: out.join("") };
      } finally {
        process.stdout.write = original;
        for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
        Object.assign(process.env, saved);
      }
    };
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
