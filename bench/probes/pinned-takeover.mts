/**
 * Probe for issue 18 (not a bench figure): how fast a pinned consumer priority group (nats-server
 * 2.11+) hands a partition to another client, against a KV lease renewed every second. Two
 * connections pull from one consumer of a work-queue stream with `priority_policy:
 * pinned_client`; a publisher sends a message every 20 ms. Printed per round:
 * - pinned: which connection got the messages while both pulled (one only, or both);
 * - closed: ms from closing the pinned connection (what the server sees of a SIGKILL) to the
 *   other's first message;
 * - hung: ms from the pinned client stopping to pull and ack (a stuck process, connection open) to
 *   the other's first message: bounded by `priority_timeout`.
 *   NATS_SERVER_BIN=.nats/sid/usr/sbin/nats-server node --import tsx bench/probes/pinned-takeover.mts
 * A KV lease renewed every second with a 4 s expiry takes over 3-4 s after either (the last renewal
 * plus the expiry), whatever the server version: the fallback for 2.9 and 2.10.
 * Measured 2026-12-03 (2.15.1, priority_timeout 4 s, 3 rounds): one connection got every message
 * while both pulled; takeover 3,979-4,005 ms after the pinned connection closed and 3,963-3,971 ms
 * after it stopped pulling. The server does not unpin on a closed connection: it waits out
 * priority_timeout either way, so a pinned group fails over no faster than a KV lease.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, type ConsumerMessages } from "@nats-io/jetstream";
import { startNatsServer } from "../../test/helpers/nats-server.js";

const PRIORITY_TIMEOUT_MS = Number(process.env.PRIORITY_TIMEOUT_MS ?? 4_000);
const server = await startNatsServer();
console.log(`nats-server ${server.version}, priority_timeout ${PRIORITY_TIMEOUT_MS} ms`);
const admin = await connect({ servers: server.url });
const jsm = await jetstreamManager(admin);

async function pull(nc: NatsConnection, stream: string, label: string, got: Array<{ who: string; at: number }>): Promise<ConsumerMessages> {
  const consumer = await jetstream(nc).consumers.get(stream, "owner");
  const messages = await consumer.consume({ max_messages: 10, expires: 2_000, group: "p" } as Parameters<typeof consumer.consume>[0]);
  void (async () => {
    for await (const m of messages) {
      got.push({ who: label, at: Date.now() });
      m.ack();
    }
  })().catch(() => undefined);
  return messages;
}

async function round(mode: "closed" | "hung", i: number): Promise<void> {
  const stream = `P${mode}${i}`;
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], retention: RetentionPolicy.Workqueue });
  await jsm.consumers.add(stream, {
    durable_name: "owner",
    ack_policy: AckPolicy.Explicit,
    ack_wait: 4_000_000_000,
    priority_groups: ["p"],
    priority_policy: "pinned_client",
    priority_timeout: PRIORITY_TIMEOUT_MS * 1_000_000,
  });
  const got: Array<{ who: string; at: number }> = [];
  const a = await connect({ servers: server.url });
  const b = await connect({ servers: server.url });
  const aMessages = await pull(a, stream, "a", got);
  await new Promise((r) => setTimeout(r, 200));
  await pull(b, stream, "b", got);
  const js = jetstream(admin);
  let n = 0;
  const publishing = setInterval(() => void js.publish(`${stream}.e`, String(n++)).catch(() => undefined), 20);
  await new Promise((r) => setTimeout(r, 1_500));
  const before = new Set(got.map((g) => g.who));
  const pinned = got[0]?.who ?? "none";
  const stoppedAt = Date.now();
  if (pinned === "a") {
    if (mode === "closed") await a.close();
    else aMessages.stop();
  } else {
    console.log(`round ${i}: b was pinned first; skipping`);
  }
  const other = pinned === "a" ? "b" : "a";
  const deadline = Date.now() + PRIORITY_TIMEOUT_MS + 10_000;
  while (!got.some((g) => g.who === other && g.at > stoppedAt) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const first = got.find((g) => g.who === other && g.at > stoppedAt);
  clearInterval(publishing);
  console.log(`round ${i} ${mode}: while both pulled, messages went to ${[...before].join("+")}; takeover ${first ? first.at - stoppedAt : "none"} ms`);
  await Promise.allSettled([a.close(), b.close()]);
}

for (let i = 0; i < 3; i++) {
  await round("closed", i);
  await round("hung", i);
}
await admin.close();
await server.stop();
