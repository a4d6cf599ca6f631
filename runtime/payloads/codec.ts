/**
 * Payload codecs: what turns a user payload's bytes into an envelope before it reaches NATS, and
 * back. The built-in one is AES-256-GCM with named keys (`codec.keys`, `codec.current`); a custom
 * codec (a KMS, envelope encryption, compression) implements the same two calls. The envelope
 * format is part of the wire contract (docs/protocol.md, "Payload envelopes").
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { CodecError } from "../errors.js";

/** A payload as a codec left it: `$enc` names the codec; the rest is the codec's own JSON. */
export interface EncodedPayload {
  $enc: string;
  [field: string]: unknown;
}

/**
 * A codec of payload bytes (the UTF-8 JSON text of one payload). `encode` must return an
 * envelope whose `$enc` names it; `decode` gets back every envelope whose `$enc` is `name`.
 * Both may be slow (a KMS round trip): they run outside workflow code, never during replay's
 * activations.
 */
export interface PayloadCodec {
  readonly name: string;
  encode(plaintext: Uint8Array): Promise<EncodedPayload>;
  decode(envelope: EncodedPayload): Promise<Uint8Array>;
}

export const AES_GCM_CODEC = "aes256gcm";
const KEY_BYTES = 32;
const IV_BYTES = 12;

export interface AesGcmCodecOptions {
  /** Key id → base64 of 32 random bytes (`openssl rand -base64 32`). */
  keys: Readonly<Record<string, string>>;
  /** The key that encrypts; every key in `keys` decrypts. */
  current: string;
}

/**
 * `{"$enc":"aes256gcm","k":"<key id>","iv":"<12 bytes, base64>","ct":"<base64>","tag":"<16 bytes, base64>"}`.
 * A fresh random IV per payload (at 2^32 payloads per key, rotate: NIST SP 800-38D's bound for
 * random IVs). Rotation: add a key, make it current; envelopes name their key, so older ones
 * still decrypt as long as their key stays in `codec.keys`.
 */
export function createAesGcmCodec(options: AesGcmCodecOptions): PayloadCodec {
  const keys = new Map<string, Buffer>();
  for (const [id, text] of Object.entries(options.keys)) keys.set(id, parseKey(id, text));
  const current = keys.get(options.current);
  if (!current) {
    throw new CodecError("WF_CODEC_CONFIG_INVALID", `codec.current is ${JSON.stringify(options.current)}, which is not a key id of codec.keys (${[...keys.keys()].join(", ") || "none"})`, {
      hint: 'Set codec.current to the id of the key that should encrypt, e.g. { "codec": { "keys": { "k2": "<base64>" }, "current": "k2" } }.',
    });
  }
  return {
    name: AES_GCM_CODEC,
    async encode(plaintext) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", current, iv);
      const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return { $enc: AES_GCM_CODEC, k: options.current, iv: iv.toString("base64"), ct: ct.toString("base64"), tag: cipher.getAuthTag().toString("base64") };
    },
    async decode(envelope) {
      const id = typeof envelope.k === "string" ? envelope.k : "";
      const key = keys.get(id);
      if (!key) {
        throw new CodecError("WF_CODEC_KEY_UNKNOWN", `a payload is encrypted with key ${JSON.stringify(id)}, which is not in codec.keys (${[...keys.keys()].join(", ") || "none"})`, {
          hint: `Add key "${id}" to codec.keys (keep retired keys there, only codec.current moves on rotation).`,
        });
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(String(envelope.iv), "base64"));
        decipher.setAuthTag(Buffer.from(String(envelope.tag), "base64"));
        return new Uint8Array(Buffer.concat([decipher.update(Buffer.from(String(envelope.ct), "base64")), decipher.final()]));
      } catch (err) {
        throw new CodecError("WF_CODEC_DECRYPT_FAILED", `a payload encrypted with key "${id}" does not decrypt with codec.keys.${id} (${(err as Error).message})`, {
          hint: `codec.keys.${id} holds another key than the one that encrypted it, or the payload was altered: restore the original key for id "${id}".`,
          cause: err,
        });
      }
    },
  };
}

function parseKey(id: string, text: string): Buffer {
  const key = typeof text === "string" && /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, "base64") : Buffer.alloc(0);
  if (key.length !== KEY_BYTES) {
    throw new CodecError("WF_CODEC_CONFIG_INVALID", `codec.keys.${id} must be the base64 of ${KEY_BYTES} bytes (AES-256), got ${key.length ? `${key.length} bytes` : "no valid base64"}`, {
      hint: "Generate one with `openssl rand -base64 32` (or node -e \"console.log(crypto.randomBytes(32).toString('base64'))\").",
    });
  }
  return key;
}

/** The codec a config describes: AES-256-GCM when codec.keys is set, none otherwise. */
export function codecFromConfig(codec: { keys: Readonly<Record<string, string>>; current: string }): PayloadCodec | undefined {
  if (Object.keys(codec.keys).length === 0) return undefined;
  return createAesGcmCodec(codec);
}

export const isEncoded = (value: unknown): value is EncodedPayload =>
  typeof value === "object" && value !== null && !Array.isArray(value) && typeof (value as { $enc?: unknown }).$enc === "string";
