// Starts real nats-server processes for tests (STYLE.md §10).
//
// One server: runtime/testing/nats-server.ts, which jetflow/testing ships to users too; this file
// gives it the install hint of this repository and adds clusters of routed servers on top.
// Every server listens on 127.0.0.1 only, on a random port unless told otherwise, with its
// config, ports file, log and (by default) JetStream store in a fresh temporary directory.
import { connect } from "@nats-io/transport-node";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import {
  isPortBusyError,
  natsServerBinary as findBinary,
  randomName,
  startNatsServer as startServer,
  TEST_NATS_HOST as HOST,
  type TestNats,
  type TestNatsOptions,
} from "../../runtime/testing/nats-server.js";
import { freePorts } from "./ports.js";
import { sleep } from "./wait.js";

export type { TestNats, TestNatsOptions };

/** Per attempt; startNatsCluster tries up to 3 clusters (see there). A cluster that forms does so in about 2 s. */
const CLUSTER_READY_TIMEOUT_MS = 15_000;

const INSTALL_HINT =
  "Install it with `apt-get install nats-server` (Debian/Ubuntu), or run " +
  "`bash scripts/fetch-nats-server.sh trixie` (2.10; `sid` for 2.15) and set NATS_SERVER_BIN to the path it prints last.";

/** NATS_SERVER_BIN, else `nats-server` on PATH, else /usr/sbin/nats-server. */
export function natsServerBinary(): string {
  return findBinary(INSTALL_HINT);
}

/** Starts a nats-server on 127.0.0.1; resolves once it accepts TCP connections. */
export function startNatsServer(options: TestNatsOptions = {}): Promise<TestNats> {
  return startServer({ installHint: INSTALL_HINT, ...options });
}

// ---------------------------------------------------------------------------------------------
// Cluster

async function waitForJetStream(urls: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const url of urls) {
    let lastError: unknown;
    for (;;) {
      if (Date.now() > deadline) {
        throw new Error(`JetStream not ready on ${url} within ${timeoutMs} ms: ${String(lastError)}`);
      }
      try {
        const nc = await connect({ servers: url, reconnect: false, timeout: 2_000 });
        try {
          const jsm = await jetstreamManager(nc, { timeout: 2_000 });
          await jsm.getAccountInfo();
        } finally {
          await nc.close();
        }
        break;
      } catch (err) {
        lastError = err;
        await sleep(250);
      }
    }
  }
}

/**
 * Until a stream of `replicas` replicas can be placed: a meta leader answers before it knows every
 * peer, and a test's first R3 stream then failed with "no suitable peers for placement" (seen on
 * 2.15.1, once in a CI run). A probe stream (in memory) is made and deleted.
 */
async function waitForPlacement(urls: string[], replicas: number, deadline: number): Promise<void> {
  const nc = await connect({ servers: urls, reconnect: false, timeout: 2_000 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2_000 });
    const name = `placement_probe_${Math.random().toString(36).slice(2, 10)}`;
    for (;;) {
      try {
        await jsm.streams.add({ name, subjects: [`${name}.>`], num_replicas: replicas, storage: StorageType.Memory });
        await jsm.streams.delete(name);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`a stream of ${replicas} replicas could not be placed in time: ${String(err)}`);
        await sleep(250);
      }
    }
  } finally {
    await nc.close();
  }
}

/**
 * Starts `size` routed nodes on 127.0.0.1, each with JetStream and its own store dir; resolves
 * when all accept connections, JetStream (meta leader) answers on every node, and a stream of
 * `size` replicas can be placed.
 */
export async function startNatsCluster(
  size: number,
): Promise<{ servers: TestNats[]; urls: string[]; stop(): Promise<void> }> {
  if (!Number.isInteger(size) || size < 1) throw new Error(`cluster size must be a positive integer, got ${size}`);
  let lastError: unknown;
  // Cluster ports are picked before the servers start; retry if another process took one meanwhile.
  for (let attempt = 0; attempt < 3; attempt++) {
    const clusterName = randomName("jetflow-cluster");
    const clusterPorts = await freePorts(size);
    const results = await Promise.allSettled(
      clusterPorts.map((clusterPort, i) =>
        startNatsServer({
          jetstream: true,
          serverName: `${clusterName}-n${i + 1}`,
          cluster: {
            name: clusterName,
            port: clusterPort,
            routes: clusterPorts.filter((p) => p !== clusterPort).map((p) => `nats://${HOST}:${p}`),
          },
        }),
      ),
    );
    const servers = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const stop = async (): Promise<void> => {
      await Promise.all(servers.map((s) => s.stop()));
    };
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure !== undefined) {
      await stop();
      lastError = failure.reason;
      if (isPortBusyError(failure.reason)) continue;
      throw failure.reason;
    }
    const urls = servers.map((s) => s.url);
    try {
      const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
      await waitForJetStream(urls, CLUSTER_READY_TIMEOUT_MS);
      if (size > 1) await waitForPlacement(urls, size, deadline);
    } catch (err) {
      // About one fresh 3-node cluster in six (seen on 2.10.27, on an idle machine) answers
      // "JetStream system temporarily unavailable" for good: its nodes never elect a meta leader.
      // The cause is not found yet (the configs are those that form a cluster the other times);
      // a new cluster on new ports forms. Only the harness retries: no test asserts on formation.
      await stop();
      lastError = err;
      process.stderr.write(`startNatsCluster: attempt ${attempt + 1} did not form (${(err as Error).message}); starting a new cluster\n`);
      continue;
    }
    return { servers, urls, stop };
  }
  throw lastError;
}
