/**
 * Recovery after NATS lost writes (runtime/orchestrator/recovery.ts): it re-publishes only the
 * tasks and timers that are gone from their streams, never a second copy of one still stored (the
 * duplicate window cannot catch a task older than 2 minutes: the tests shrink it to show that),
 * and it runs only after a reconnect to a different server process, not after a client's own
 * reconnect to the server it had.
 */
import { fleetLeases } from "../runtime/nats/fleet-lease.js";
import { describe, expect, it } from "vitest";
import { createClient, createRuntime, type ActivityContext, type Logger, type WorkflowContext } from "../runtime/index.js";
import { createRecovery } from "../runtime/orchestrator/recovery.js";
import type { Topology } from "../runtime/nats/topology.js";
import { startNatsServer } from "./helpers/nats-server.js";
import { Engine, sleep, useEngines, waitFor, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();

/** Workflow `held`: one activity that runs until release(), with a deadline (a batched timer). */
function heldWorkflow() {
  const runs: number[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const activities = {
    hold: async (_: unknown, ctx: ActivityContext) => {
      runs.push(ctx.attempt);
      await released;
      return "held";
    },
  };
  const held = async (ctx: WorkflowContext<typeof activities>) => ctx.activities.hold(null);
  return { runs, release, activities, workflows: { held } };
}

/** A duplicate window far shorter than the test: a re-published copy would be stored as a new message. */
async function shrinkDuplicateWindows(topology: Topology): Promise<void> {
  for (const stream of [topology.names.tasksStream, topology.names.timersStream]) {
    const { config } = await topology.jsm.streams.info(stream);
    await topology.jsm.streams.update(stream, { ...config, duplicate_window: 100_000_000 }); // 100 ms, in ns
  }
  await sleep(300);
}

const lastSeq = async (topology: Topology, stream: string) => (await topology.jsm.streams.info(stream)).state.last_seq;

function capturingLogger(lines: string[]): Logger {
  const logger: Logger = {
    debug: (message) => void lines.push(message),
    info: (message) => void lines.push(message),
    warn: (message) => void lines.push(message),
    error: (message) => void lines.push(message),
    child: () => logger,
  };
  return logger;
}

describe("recovery after lost writes", () => {
  it("re-publishes only the tasks and timers that are gone from their streams", async () => {
    const e: Engine = engine();
    const { runs, release, activities, workflows } = heldWorkflow();
    await e.runtime({ workflows, activities, config: { defaults: { workflowTimeout: "1h" } } });
    const client = await e.client();
    const topology = client.topology;
    const handle = await client.start("held", null, { id: "recover-1" });
    await waitFor("the activity to start", () => runs.length === 1, 10_000);
    await shrinkDuplicateWindows(topology);
    const recovery = createRecovery({ topology, logger: capturingLogger([]), beforePass: () => undefined, leases: () => fleetLeases(topology, { replicas: 1, storage: "file" }) });
    const tasks = await lastSeq(topology, topology.names.tasksStream);
    const timers = await lastSeq(topology, topology.names.timersStream);

    // Everything the workflow waits on is still stored: nothing is published again.
    await recovery.recover("a test");
    expect(await lastSeq(topology, topology.names.tasksStream)).toBe(tasks);
    expect(await lastSeq(topology, topology.names.timersStream)).toBe(timers);
    await sleep(300);
    expect(runs).toEqual([1]);

    // The server "lost" the task and the deadline: both are published again, and the task runs.
    await topology.jsm.streams.purge(topology.names.tasksStream);
    await topology.jsm.streams.purge(topology.names.timersStream);
    await recovery.recover("a test");
    expect(await lastSeq(topology, topology.names.tasksStream)).toBe(tasks + 1);
    expect(await lastSeq(topology, topology.names.timersStream)).toBe(timers + 1);
    await waitFor("the re-published task to run", () => runs.length === 2, 10_000);
    release();
    expect(await handle.result({ signal: AbortSignal.timeout(10_000) })).toBe("held");
    expect((await waitForState(client, "recover-1")).status).toBe("completed");
    expect(runs).toEqual([1, 1]);
  });

  it("runs after a reconnect to a restarted server, not after a client's own reconnect", async () => {
    const nats = await startNatsServer();
    const lines: string[] = [];
    const { runs, release, activities, workflows } = heldWorkflow();
    const e = new Engine(nats.url);
    const runtime = await createRuntime({ config: e.config({ log: { level: "debug" } }), workflows, activities, logger: capturingLogger(lines) });
    const client = await createClient({ config: e.config() });
    try {
      await runtime.start();
      await client.start("held", null, { id: "recover-2" });
      await waitFor("the activity to start", () => runs.length === 1, 10_000);
      await shrinkDuplicateWindows(client.topology);
      const recovered = () => lines.filter((l) => l.includes("re-published the lost commands"));

      // The runtime's connection drops and comes back to the same server: nothing was lost.
      await runtime.topology.nc.reconnect();
      await waitFor("the reconnect", () => lines.some((l) => l.includes("reconnected to the same nats-server")), 10_000);
      await sleep(2_500); // a recovery would run 2 s after the reconnect
      expect(recovered()).toEqual([]);

      // The server restarts (a new process, a new server_id): the runtime recovers, and finds
      // the task still stored.
      await nats.kill();
      await nats.restart();
      await waitFor("a recovery pass", () => recovered().length === 1, 20_000);
      release();
      await waitForState(client, "recover-2", undefined, 20_000);
    } finally {
      release();
      await runtime.stop("test end");
      await client.close();
      await nats.stop();
    }
  });

  it("is done once for the fleet after a server restart: one runtime takes the lease, the others skip", async () => {
    const nats = await startNatsServer();
    const { runs, release, activities, workflows } = heldWorkflow();
    const e = new Engine(nats.url);
    const logs: string[][] = [[], [], []];
    const runtimes = await Promise.all(
      logs.map((lines, i) => createRuntime({ config: e.config({ worker: { id: `fleet-${i}` } }), workflows, activities, logger: capturingLogger(lines) })),
    );
    const client = await createClient({ config: e.config() });
    try {
      await Promise.all(runtimes.map((r) => r.start()));
      await client.start("held", null, { id: "recover-fleet" });
      await waitFor("the activity to start", () => runs.length === 1, 10_000);
      await nats.kill();
      await nats.restart();
      const passes = () => logs.map((lines) => lines.filter((l) => l.includes("re-published the lost commands")).length);
      const skips = () => logs.map((lines) => lines.filter((l) => l.includes("recovery was done for the fleet by")).length);
      await waitFor("every runtime to have recovered or skipped", () => passes().every((p, i) => p + skips()[i]! === 1), 30_000);
      expect(passes().reduce((a, b) => a + b, 0)).toBe(1);
      expect(skips().reduce((a, b) => a + b, 0)).toBe(2);
      release();
      await waitForState(client, "recover-fleet", undefined, 20_000);
    } finally {
      release();
      await Promise.all(runtimes.map((r) => r.stop("test end")));
      await client.close();
      await nats.stop();
    }
  });
});
