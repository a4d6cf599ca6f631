/**
 * 10. Many pending delays: 10,000 workflows wait, half on a durable 1-hour sleep, half on a
 * 1-hour retry backoff (their first attempt failed). Fresh order_processing workflows, one at a
 * time, must finish within 2x the idle latency: the p50 of 50 before the 10,000 start, and of 50
 * while they wait.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { WorkflowClient } from "../../runtime/index.js";
import { createNames } from "../../runtime/nats/names.js";
import type { PendingDelayInput } from "../../test/fixtures/crash-functions.js";
import { faults, type Scenario } from "../lib/scenario.js";
import { readExecutions } from "../lib/verify.js";
import { orders, startAll, type WorkItem } from "../lib/workload.js";
import { percentile, round, sleep, waitFor } from "../lib/util.js";

const FRESH = 50;

export const pendingDelays: Scenario = {
  id: 10,
  name: "pending-delays",
  defaultN: 10_000,
  quickN: 1_000,
  timeoutMs: 8 * 60_000,
  async run(ctx, n) {
    const nats = await ctx.nats();
    const names = createNames(ctx.namespace);
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: "10s", orchestratorAckWait: "10s", slots: 16 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: "10s" });
    await Promise.all([fleet.spawn(), fleet.spawn()]);

    // Warm up (code paths, connections), then the idle figure.
    await latencies(client, "warm", 10);
    const idle = await latencies(client, "idle", FRESH);
    ctx.log(`idle: p50 ${idle.p50} ms, p99 ${idle.p99} ms`);

    const pending: WorkItem[] = Array.from({ length: n }, (_, i) => ({
      id: `wait-${i}`,
      workflow: "pending_delay",
      input: { mode: i % 2 === 0 ? "sleep" : "retry", delay: "1h" } satisfies PendingDelayInput,
      expectation: { workflow: "pending_delay", status: "completed" as const },
    }));
    const t0 = Date.now();
    await startAll(client, pending);
    const parked = await waitParked(client.topology.jsm, names, n, 300_000);
    const parkMs = Date.now() - t0;
    ctx.log(`${n} workflows started and parked in ${parkMs} ms (${parked} timers parked)`);

    const loaded = await latencies(client, "loaded", FRESH);
    ctx.log(`with ${n} waiting: p50 ${loaded.p50} ms, p99 ${loaded.p99} ms`);

    // Spot check: the waiting workflows are waiting, on the step they should.
    const sample = pending.filter((_, i) => i % Math.max(1, Math.floor(n / 200)) === 0);
    let wrong = 0;
    for (const item of sample) {
      const state = await client.describe(item.id);
      const step = Object.values(state.steps)[0];
      const mode = (item.input as PendingDelayInput).mode;
      if (state.status !== "running" || !step || step.status !== (mode === "sleep" ? "waiting" : "retrying")) wrong += 1;
    }
    const ratio = loaded.p50 / idle.p50;
    const violations: string[] = [];
    if (ratio > 2) violations.push(`p50 with ${n} waiting workflows is ${round(ratio, 2)}x the idle p50 (limit 2x)`);
    if (wrong) violations.push(`${wrong} of ${sample.length} sampled waiting workflows are not waiting on their sleep / retry`);
    if (idle.failed + loaded.failed) violations.push(`${idle.failed + loaded.failed} fresh workflow(s) did not complete`);
    return {
      ok: violations.length === 0,
      // The fresh workflows; the n waiting ones are expected to stay running (waitingAsExpected).
      started: 2 * FRESH + 10,
      completed: idle.completed + loaded.completed + 10,
      waitingAsExpected: sample.length - wrong === sample.length ? n : `${sample.length - wrong}/${sample.length} sampled`,
      lost: idle.failed + loaded.failed,
      failed: 0,
      duplicateStepCompletions: { total: 0, byStep: {} },
      activityExecutions: readExecutions(ctx.markerDir).filter((e) => e.event === "start").length,
      faultsInjected: faults({ pendingDelays: n }),
      waitingWorkflows: n,
      startAndParkMs: parkMs,
      timersParked: parked,
      idleLatencyMs: { p50: idle.p50, p99: idle.p99 },
      loadedLatencyMs: { p50: loaded.p50, p99: loaded.p99 },
      p50Ratio: round(ratio, 2),
      natsServer: nats.version,
      violations,
    };
  },
};

/** One fresh order_processing workflow at a time, start to terminal state seen by the client. */
async function latencies(client: WorkflowClient, label: string, count: number): Promise<{ p50: number; p99: number; completed: number; failed: number }> {
  const times: number[] = [];
  let failed = 0;
  for (const item of orders(`fresh-${label}`, count)) {
    const t = performance.now();
    try {
      const handle = await client.start(item.workflow, item.input, { id: item.id });
      await handle.result({ signal: AbortSignal.timeout(30_000) });
      times.push(performance.now() - t);
    } catch {
      failed += 1;
    }
  }
  return { p50: round(percentile(times, 50)), p99: round(percentile(times, 99)), completed: times.length, failed };
}

/** Until every start is applied and every waiting workflow's timer is parked; returns the timers parked. */
async function waitParked(jsm: JetStreamManager, names: ReturnType<typeof createNames>, n: number, timeoutMs: number): Promise<number> {
  return waitFor(
    `${n} workflows to park their timers`,
    async () => {
      const events = await jsm.consumers.info(names.eventsStream, names.orchestratorConsumer);
      const timers = await jsm.consumers.info(names.timersStream, names.timersConsumer);
      const tasks = await jsm.streams.info(names.tasksStream);
      const idle = events.num_pending === 0 && events.num_ack_pending === 0 && tasks.state.messages === 0 && timers.num_pending === 0;
      return idle && timers.num_ack_pending >= n ? timers.num_ack_pending : undefined;
    },
    timeoutMs,
    1_000,
  ).then(async (v) => {
    await sleep(1_000);
    return v;
  });
}
