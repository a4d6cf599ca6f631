/**
 * Claim check: a payload larger than `limits.inlinePayloadBytes` is stored as an object in the
 * namespace's WORKFLOW_PAYLOADS Object Store, and the message or state carries a small reference
 * instead: `{"$ref":"obj:<bucket>/<name>","bytes":N,"sha256":"<hex>"}` (docs/protocol.md).
 *
 * Names are derived from where the payload sits (`<workflow id>/steps/<step>/<attempt>/output`,
 * …; payloads.ts), never random: a retry after a crash overwrites the object it wrote before
 * instead of leaking a second one, and removing a workflow finds its objects from its state.
 */
import { createHash } from "node:crypto";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { ObjectStore } from "@nats-io/obj";
import { CodecError } from "../errors.js";

export interface PayloadRef {
  $ref: string;
  /** Size of the stored object (the payload's JSON, or its codec envelope's). */
  bytes: number;
  /** Hex SHA-256 of the stored object, checked when it is read back. */
  sha256: string;
}

export const isRef = (value: unknown): value is PayloadRef =>
  typeof value === "object" && value !== null && !Array.isArray(value) && typeof (value as { $ref?: unknown }).$ref === "string" && (value as { $ref: string }).$ref.startsWith("obj:");

export interface ClaimCheck {
  readonly bucket: string;
  put(name: string, data: Uint8Array): Promise<PayloadRef>;
  get(ref: PayloadRef): Promise<Uint8Array>;
  /** Remove objects by name, and the markers a delete leaves, so nothing of them stays in the stream. Missing ones are skipped. */
  remove(names: Iterable<string>): Promise<void>;
}

export const sha256Hex = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

export function createClaimCheck(store: ObjectStore, bucket: string, jsm: JetStreamManager): ClaimCheck {
  const stream = `OBJ_${bucket}`;
  return {
    bucket,
    async put(name, data) {
      // ObjectStore.put under an existing name writes the new chunks, then the new meta, then
      // purges the old chunks: a repeated put (a retried attempt) replaces, never adds.
      await store.putBlob({ name }, data);
      return { $ref: `obj:${bucket}/${name}`, bytes: data.length, sha256: sha256Hex(data) };
    },
    async get(ref) {
      const name = nameOf(ref, bucket);
      const data = await store.getBlob(name);
      if (!data) {
        throw new CodecError("WF_PAYLOAD_MISSING", `payload object ${name} is not in Object Store ${bucket} (referenced as ${ref.$ref})`, {
          hint: "It was removed with its workflow (retention, wf delete), or the bucket was deleted. A workflow whose payload is gone cannot continue: start it again.",
        });
      }
      if (sha256Hex(data) !== ref.sha256) {
        throw new CodecError("WF_PAYLOAD_MISSING", `payload object ${name} in ${bucket} does not match its reference (sha256 differs)`, {
          hint: "The object was overwritten by another payload of the same name; start the workflow again.",
        });
      }
      return data;
    },
    async remove(names) {
      await Promise.all(
        [...new Set(names)].map(async (name) => {
          const info = await store.info(name).catch(() => null);
          if (!info) return;
          // ObjectStore.delete leaves a meta marker per deleted name for ever; purging the meta
          // subject too keeps the stream's size to what is stored now (checked on @nats-io/obj 3.4).
          await jsm.streams.purge(stream, { filter: `$O.${bucket}.C.${info.nuid}` });
          await jsm.streams.purge(stream, { filter: `$O.${bucket}.M.${metaToken(name)}` });
        }),
      );
    },
  };
}

/** The meta subject's token of a name: @nats-io/obj's Base64UrlPaddedCodec of the name as a latin1 string (our names are ASCII). */
const metaToken = (name: string): string => Buffer.from(name, "latin1").toString("base64").replace(/\+/g, "-").replace(/\//g, "_");

/** The object name a reference to `bucket` holds; undefined for anything else (not a reference, another bucket). */
export function objectNameOf(value: unknown, bucket: string): string | undefined {
  const prefix = `obj:${bucket}/`;
  return isRef(value) && value.$ref.startsWith(prefix) ? value.$ref.slice(prefix.length) : undefined;
}

function nameOf(ref: PayloadRef, bucket: string): string {
  const name = objectNameOf(ref, bucket);
  if (name === undefined) {
    throw new CodecError("WF_PAYLOAD_MISSING", `payload reference ${ref.$ref} names another bucket than this namespace's ${bucket}`, {
      hint: "Read it with a client of the namespace that wrote it (config `namespace`).",
    });
  }
  return name;
}
