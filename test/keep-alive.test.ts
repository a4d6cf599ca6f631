/**
 * Messages in hand past a short ack wait (runtime/nats/keep-alive.ts), against a real nats-server:
 * held, a message is not redelivered however long it is held; released unacked, it is redelivered
 * after one ack wait (how another runtime takes over a dead one's work); and a blocked event loop,
 * which stops the in-progress acks, is reported with what to do.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, type Consumer, type JsMsg } from "@nats-io/jetstream";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { beatOf, KeepAlive } from "../runtime/nats/keep-alive.js";
import { loadConfig, type Logger } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { sleep } from "./helpers/wait.js";

const ACK_WAIT_MS = 1_000;

let nats: TestNats;
let nc: NatsConnection;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const logger: Logger & { warnings: string[] } = {
    warnings,
    debug: () => undefined,
    info: () => undefined,
    warn: (message) => void warnings.push(message),
    error: () => undefined,
    child: () => logger,
  };
  return logger;
}

/** A stream of its own with one message, and a consumer whose ack wait is 1 s. */
async function oneMessage(name: string): Promise<Consumer> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  await jsm.consumers.add(name, { durable_name: "c", ack_policy: AckPolicy.Explicit, ack_wait: ACK_WAIT_MS * 1_000_000, max_deliver: -1 });
  await jetstream(nc).publish(`${name}.x`, "payload");
  return jetstream(nc).consumers.get(name, "c");
}

async function next(consumer: Consumer, expires = 1_000): Promise<JsMsg | undefined> {
  return (await consumer.next({ expires })) ?? undefined;
}

describe("keep-alive of messages in hand", () => {
  it("a beat is a quarter of the ack wait, at most a second", () => {
    expect(beatOf(1_000)).toBe(250);
    expect(beatOf(4_000)).toBe(1_000);
    expect(beatOf(30_000)).toBe(1_000);
  });

  it("a message held 4 ack waits is not redelivered; released unacked, it comes back after one ack wait", async () => {
    const consumer = await oneMessage("KA1");
    const keepAlive = new KeepAlive<JsMsg>({ ackWaitMs: ACK_WAIT_MS, logger: recordingLogger(), what: "messages", setting: "test.ackWait" });
    keepAlive.start();
    try {
      const msg = (await next(consumer))!;
      expect(msg.info.deliveryCount).toBe(1);
      keepAlive.hold(msg);
      // Asked for again while it is held: nothing comes (each ask waits 1 s; 4 of them span 4 ack waits).
      for (let i = 0; i < 4; i += 1) expect(await next(consumer)).toBeUndefined();
      // Released without an ack (its runtime died): JetStream hands it out again after the ack wait.
      keepAlive.release(msg);
      const releasedAt = Date.now();
      const again = await next(consumer, 3_000);
      expect(again?.info.deliveryCount).toBe(2);
      expect(Date.now() - releasedAt).toBeLessThan(ACK_WAIT_MS + 1_000);
      again!.ack();
    } finally {
      keepAlive.stop();
    }
  });

  it("a runtime set to 30 s keeps alive the messages of a consumer that another runtime set to 1 s, from the ack wait the consumer reports", async () => {
    const consumer = await oneMessage("KA4");
    const keepAlive = new KeepAlive<JsMsg>({ ackWaitMs: 30_000, logger: recordingLogger(), what: "messages", setting: "test.ackWait" });
    keepAlive.start();
    try {
      // What the worker pool and the orchestrator do once they have the consumer: its ack wait in force.
      keepAlive.observeAckWait((await consumer.info(true)).config.ack_wait! / 1_000_000);
      const msg = (await next(consumer))!;
      keepAlive.hold(msg);
      for (let i = 0; i < 3; i += 1) expect(await next(consumer)).toBeUndefined();
      keepAlive.release(msg);
      msg.ack();
    } finally {
      keepAlive.stop();
    }
  });

  it("without it, the same message is redelivered while still in hand (what the keep-alive prevents)", async () => {
    const consumer = await oneMessage("KA2");
    const msg = (await next(consumer))!;
    await sleep(ACK_WAIT_MS + 300);
    const again = await next(consumer, 2_000);
    expect(again?.info.deliveryCount).toBe(2);
    again!.ack();
    msg.ack();
  });

  it("a blocked event loop is reported, with the setting to look at", async () => {
    const consumer = await oneMessage("KA3");
    const logger = recordingLogger();
    const keepAlive = new KeepAlive<JsMsg>({ ackWaitMs: ACK_WAIT_MS, logger, what: "activity tasks", setting: "worker.ackWait" });
    keepAlive.start();
    try {
      const msg = (await next(consumer))!;
      keepAlive.hold(msg);
      await sleep(300);
      const until = Date.now() + 900; // blocks every timer: well past half an ack wait
      while (Date.now() < until) {
        /* a CPU-bound activity */
      }
      await sleep(400);
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/event loop was blocked for 0\.[6-9] s while this runtime held 1 activity tasks/);
      expect(logger.warnings[0]).toMatch(/raise worker\.ackWait/);
      keepAlive.release(msg);
      msg.ack();
    } finally {
      keepAlive.stop();
    }
  });

  it("an ack wait under a second is refused with the setting named", () => {
    expect(() => loadConfig({ env: {}, cwd: tmpdir(), overrides: { worker: { ackWait: "500ms" } } })).toThrow(/worker\.ackWait is "500ms", below the minimum of 1s/);
    expect(() => loadConfig({ env: {}, cwd: tmpdir(), overrides: { orchestrator: { ackWait: 200 } } })).toThrow(/orchestrator\.ackWait is 200, below the minimum of 1s/);
    expect(loadConfig({ env: {}, cwd: tmpdir() }).worker.ackWaitMs).toBe(4_000);
    expect(loadConfig({ env: {}, cwd: tmpdir() }).orchestrator.ackWaitMs).toBe(4_000);
  });
});
