import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { natsServerBinary, startNatsCluster, startNatsServer } from "./nats-server.js";
import type { TestNats } from "./nats-server.js";

const enc = new TextEncoder();

async function withConnection<T>(url: string, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: url });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

describe("natsServerBinary", () => {
  it("finds a binary whose version can be read", async () => {
    expect(natsServerBinary()).toMatch(/nats-server$/);
    const nats = await startNatsServer({ jetstream: false });
    try {
      expect(nats.version).toMatch(/^\d+\.\d+\.\d+/);
    } finally {
      await nats.stop();
    }
  });

  it("says how to install nats-server when NATS_SERVER_BIN points nowhere", () => {
    const saved = process.env.NATS_SERVER_BIN;
    process.env.NATS_SERVER_BIN = "/nonexistent/nats-server";
    try {
      expect(() => natsServerBinary()).toThrow(/apt-get install nats-server.*fetch-nats-server\.sh/s);
    } finally {
      if (saved === undefined) delete process.env.NATS_SERVER_BIN;
      else process.env.NATS_SERVER_BIN = saved;
    }
  });
});

describe("startNatsServer", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startNatsServer({ jetstream: true });
  });
  afterAll(() => nats.stop());

  it("listens on a random port on 127.0.0.1, not the default 4222", () => {
    expect(nats.port).toBeGreaterThan(0);
    expect(nats.port).not.toBe(4222);
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    expect(nats.pid).toBeGreaterThan(0);
  });

  it("accepts a connection and JetStream stores and returns a message", async () => {
    await withConnection(nats.url, async (nc) => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "BASIC", subjects: ["basic.>"] });
      const ack = await jetstream(nc).publish("basic.one", enc.encode("hello"));
      expect(ack.stream).toBe("BASIC");
      const msg = await jsm.streams.getMessage("BASIC", { seq: ack.seq });
      expect(msg?.subject).toBe("basic.one");
      expect(msg?.string()).toBe("hello");
    });
  });

  it("keeps file-store data across kill() and restart() on the same port", async () => {
    const port = nats.port;
    const pid = nats.pid;
    const seq = await withConnection(nats.url, async (nc) => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "DURABLE", subjects: ["durable.>"], storage: "file" });
      const ack = await jetstream(nc).publish("durable.x", enc.encode("survives"));
      return ack.seq;
    });

    await nats.kill();
    expect(existsSync(nats.storeDir)).toBe(true);
    await nats.restart();

    expect(nats.port).toBe(port);
    expect(nats.pid).not.toBe(pid);
    await withConnection(nats.url, async (nc) => {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info("DURABLE");
      expect(info.state.messages).toBe(1);
      const msg = await jsm.streams.getMessage("DURABLE", { seq });
      expect(msg?.string()).toBe("survives");
    });
  });

  it("restart() of a running server also keeps the port and data", async () => {
    const port = nats.port;
    await nats.restart();
    expect(nats.port).toBe(port);
    await withConnection(nats.url, async (nc) => {
      const info = await (await jetstreamManager(nc)).streams.info("DURABLE");
      expect(info.state.messages).toBe(1);
    });
  });
});

describe("stop()", () => {
  it("ends the server and removes the store dir it created", async () => {
    const nats = await startNatsServer();
    await withConnection(nats.url, async (nc) => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "GONE", subjects: ["gone"] });
      await jetstream(nc).publish("gone", enc.encode("x"));
    });
    expect(existsSync(nats.storeDir)).toBe(true);

    await nats.stop();

    expect(existsSync(nats.storeDir)).toBe(false);
    expect(() => process.kill(nats.pid, 0)).toThrow();
    await expect(connect({ servers: nats.url, reconnect: false, timeout: 1_000 })).rejects.toThrow();
    await nats.stop(); // idempotent
  });
});

describe("startNatsCluster", () => {
  it("runs a 3-node JetStream cluster that keeps accepting writes with one node down", async () => {
    const cluster = await startNatsCluster(3);
    try {
      expect(cluster.servers).toHaveLength(3);
      expect(new Set(cluster.urls).size).toBe(3);
      expect(new Set(cluster.servers.map((s) => s.storeDir)).size).toBe(3);

      await withConnection(cluster.urls.join(","), async (nc) => {
        const jsm = await jetstreamManager(nc);
        const created = await jsm.streams.add({ name: "R3", subjects: ["r3.>"], num_replicas: 3 });
        expect(created.config.num_replicas).toBe(3);
        const js = jetstream(nc);
        const first = await js.publish("r3.a", enc.encode("one"));
        expect(first.seq).toBe(1);
      });

      // Kill a node the client is not connected to: the remaining two still form a quorum.
      await cluster.servers[2]!.kill();

      await withConnection(cluster.urls.slice(0, 2).join(","), async (nc) => {
        // If the killed node led the stream (or the meta group), a new leader takes a few
        // seconds to be elected: retry until then.
        const jsm = await jetstreamManager(nc, { checkAPI: false });
        const js = jetstream(nc);
        let second: Awaited<ReturnType<typeof js.publish>> | undefined;
        const deadline = Date.now() + 30_000;
        while (second === undefined) {
          try {
            second = await js.publish("r3.b", enc.encode("two"), { timeout: 2_000 });
          } catch (err) {
            if (Date.now() > deadline) throw err;
          }
        }
        expect(second.seq).toBe(2);
        const msg = await jsm.streams.getMessage("R3", { seq: 2 });
        expect(msg?.string()).toBe("two");
      });
    } finally {
      await cluster.stop();
    }
  });
});
