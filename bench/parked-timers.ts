/**
 * Parked timers after finish: N workflows with a 10-minute workflow timeout and one quick
 * activity, through a real runtime in this process (createRuntime + createClient). Once every one
 * has completed (and two more seconds), what is still parked in WORKFLOW_TIMERS: its messages,
 * the timers consumer's ack-pending count (a parked timer is a NAK'd message), and the timers
 * those messages carry (a batch message on timerBatchSubject carries many: protocol.ts
 * parseTimerBatch). Every one of them belongs to a finished workflow: the figure is what a fleet
 * keeps paying for (storage, ack-pending slots, a delivery at the deadline) after the work is done.
 */
import type { MsgRequest } from "@nats-io/jetstream";
import { createRuntime, defineWorkflow, silentLogger, type Runtime, type WorkflowContext } from "../runtime/index.js";
import { MSG_ID, parseJson, parseTimerBatch } from "../runtime/protocol.js";
import type { Topology } from "../runtime/nats/topology.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, benchConfig, namespaceFor } from "./lib/context.js";
import { dropNamespace } from "./lib/dataset.js";
import { round, runPool, sleep, withTimeout } from "./lib/stats.js";

const WORKFLOW_TIMEOUT = "10m";
const START_CONCURRENCY = 256;
const SETTLE_MS = 2_000;

const activities = { bench_quick: async (n: number) => n + 1 };
const workflows = {
  bench_deadline: defineWorkflow(async (ctx: WorkflowContext<typeof activities>, n: number) => ctx.activity<number>("bench_quick", n), { timeout: WORKFLOW_TIMEOUT }),
};

/** Every message in the timers stream, one read each (a work queue: what is stored is pending), as recovery reads them. */
async function storedTimers(topology: Topology): Promise<{ messages: number; batches: number; timers: number }> {
  const stream = topology.names.timersStream;
  const info = await topology.jsm.streams.info(stream);
  let messages = 0;
  let batches = 0;
  let timers = 0;
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; ) {
    // STREAM.MSG.GET takes next_by_subj (nats-server 2.9+); nats.js v3 types it on direct gets only.
    const msg = await topology.jsm.streams.getMessage(stream, { seq, next_by_subj: ">" } as unknown as MsgRequest);
    if (!msg) break;
    messages += 1;
    if (msg.header?.get("Nats-Msg-Id")?.startsWith(MSG_ID.timerBatch(""))) {
      batches += 1;
      timers += parseTimerBatch(parseJson(msg.data)).timers.length;
    } else timers += 1;
    seq = msg.seq + 1;
  }
  return { messages, batches, timers };
}

export async function parkedTimers(ctx: BenchContext): Promise<Figure> {
  const n = ctx.options.timersN;
  const namespace = namespaceFor("timers");
  const client = await benchClient(ctx, namespace);
  let runtime: Runtime | undefined;
  try {
    runtime = await createRuntime({
      config: benchConfig(ctx, namespace, ctx.options.slots ? { worker: { slots: ctx.options.slots } } : {}),
      workflows,
      activities,
      logger: silentLogger,
    });
    await runtime.start();
    const t0 = performance.now();
    await withTimeout(runPool(n, START_CONCURRENCY, async (i) => void (await client.start("bench_deadline", i, { id: `deadline-${i}` }))), 300_000, `starting ${n} workflows`);
    let completed = 0;
    await withTimeout(
      (async () => {
        while ((completed = await client.count({ status: "completed" })) < n) await sleep(250);
      })(),
      300_000,
      `${n} workflows completing (${completed} so far)`,
    );
    const allCompletedS = (performance.now() - t0) / 1000;
    const notCompleted = await client.count({ status: ["failed", "cancelled", "timed_out", "running"] });
    await sleep(SETTLE_MS);

    const { names, jsm } = client.topology;
    const [stream, consumer, stored] = await Promise.all([jsm.streams.info(names.timersStream), jsm.consumers.info(names.timersStream, names.timersConsumer), storedTimers(client.topology)]);
    return {
      figure: "parked_timers",
      workflows: n,
      workflow_timeout: WORKFLOW_TIMEOUT,
      completed,
      not_completed: notCompleted,
      timer_messages: stream.state.messages,
      timers_ack_pending: consumer.num_ack_pending,
      parked_timers: stored.timers,
      batch_messages: stored.batches,
      single_timer_messages: stored.messages - stored.batches,
      parked_share: round(stored.timers / n, 4),
      all_completed_after_s: round(allCompletedS, 2),
      notes: `every workflow completed, then ${SETTLE_MS / 1000} s more; parked_timers counts the timers inside the stored messages (a batch carries several); all belong to finished workflows`,
    };
  } finally {
    await runtime?.stop("bench figure done").catch(() => undefined);
    await dropNamespace(client.topology).catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}
