/**
 * Removing one key of a KV bucket by sequence (runtime/nats/key-removal.ts), against a real
 * nats-server, on a bucket that answers direct gets (one replica) and on one that does not (what a
 * clustered bucket is, topology.ts): the fire-and-forget removal, the awaited one, and a delete of
 * a sequence that was replaced since it was read, which leaves the key's new value in place.
 * In the smoke set (test/smoke*.test.ts), so CI runs it on nats-server 2.9.10 too: servers answer
 * a delete of a missing sequence differently (10037, or 10057 saying "no message found").
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeyRemoval } from "../runtime/nats/key-removal.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

let nats: TestNats;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe.each([
  { direct: true, label: "direct gets" },
  { direct: false, label: "no direct gets (a clustered bucket)" },
])("key removal, $label", ({ direct }) => {
  it("removes keys by sequence, later or now, and a replaced key keeps its new value", async () => {
    const bucket = `KR_${direct ? "D" : "M"}`;
    const kv = await new Kvm(nc).create(bucket, { history: 1, allow_direct: direct });
    const stream = `KV_${bucket}`;
    expect((await jsm.streams.info(stream)).config.allow_direct).toBe(direct);
    const subject = (key: string) => `$KV.${bucket}.${key}`;
    const removal = createKeyRemoval(nc, jsm, stream, { direct, inboxPrefix: "_INBOX" });
    for (const key of ["a", "b", "c", "d", "e"]) await kv.put(key, key);

    removal.removeLater(subject("a"));
    removal.removeLater(subject("missing")); // nothing there: nothing happens
    await removal.remove(subject("b"));
    await removal.remove(subject("missing"));
    expect(await kv.get("b")).toBeNull();
    await waitFor("a removed", async () => (await kv.get("a")) === null, 5_000);

    // A sequence read before the key was written again: its delete leaves the new value.
    const old = (await kv.get("c"))!.revision;
    await kv.put("c", "c2");
    expect(await removal.delete(old)).toBe(false);
    expect((await kv.get("c"))?.string()).toBe("c2");
    expect(await removal.delete((await kv.get("c"))!.revision)).toBe(true);
    expect(await kv.get("c")).toBeNull();

    removal.deleteLater((await kv.get("d"))!.revision);
    await waitFor("d removed", async () => (await kv.get("d")) === null, 5_000);
    // Removed, not marked: the stream holds only what is left.
    expect((await jsm.streams.info(stream)).state.messages).toBe(1);
    expect((await kv.get("e"))?.string()).toBe("e");
  });
});
