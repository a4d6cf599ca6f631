/**
 * 7. Duplicates and reordering: while workflows run, past start and completion events (captured
 * with a plain NATS subscription on `<namespace>.workflow.>`; the completions are those of the
 * worker-only runtime, the other applies its own in-process) are published again to JetStream,
 * at random and in shuffled batches, without their Nats-Msg-Id so that JetStream stores them. The
 * orchestrator must treat every one as a no-op: each workflow completes with each step once, no
 * activity runs twice, no attempt's task is dispatched twice (an attempt run as a continuation
 * has no task message at all), and a final burst of every captured event, newest first, changes
 * no state.
 */
import type { Msg } from "@nats-io/nats-core";
import { createNames } from "../../runtime/nats/names.js";
import { readExecutions, verify } from "../lib/verify.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, startAll } from "../lib/workload.js";
import { pick, shuffle, sleep } from "../lib/util.js";

export const duplicates: Scenario = {
  id: 7,
  name: "duplicates-reordering",
  defaultN: 1000,
  quickN: 60,
  timeoutMs: 4 * 60_000,
  async run(ctx, n, options) {
    const nats = await ctx.nats();
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: "3s", orchestratorAckWait: "3s", slots: 16 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: "3s" });
    const observer = await ctx.observer(client);
    // A runtime with both roles applies its own completions in-process; a worker-only runtime
    // publishes them as events, so both paths meet duplicates.
    await Promise.all([fleet.spawn(), fleet.spawn({ role: "worker" })]);
    const names = createNames(ctx.namespace);
    const { nc, js, jsm } = client.topology;

    // Capture every start and completion as it is published.
    const captured: Array<{ subject: string; data: Uint8Array }> = [];
    const sub = nc.subscribe(`${ctx.namespace}.workflow.>`, {
      callback: (_err: Error | null, msg: Msg) => {
        const kind = names.eventKind(msg.subject);
        if (kind === "start" || kind === "completed") captured.push({ subject: msg.subject, data: msg.data });
      },
    });
    ctx.defer("capture subscription", async () => sub.unsubscribe());

    const items = orders("dup", n, { sagaShare: 0.2, retryShare: 0.2, delayMs: [5, 60] });
    const ids = items.map((i) => i.id);
    const t0 = Date.now();
    let running = true;
    let republished = 0;
    const republish = async (m: { subject: string; data: Uint8Array }) => {
      await js.publish(m.subject, m.data).then(
        () => (republished += 1),
        () => undefined,
      );
    };
    // Random duplicates all along, and now and then a shuffled batch (reordering).
    const duplicating = (async () => {
      let tick = 0;
      while (running) {
        await sleep(25);
        tick += 1;
        if (captured.length === 0) continue;
        const batch = tick % 80 === 0 ? shuffle(captured.slice(-60)) : Array.from({ length: 3 }, () => pick(captured));
        await Promise.all(batch.map(republish));
      }
    })();
    await startAll(client, items, n / (options.quick ? 6 : 20));
    const pending = await observer.waitForTerminal(ids, 120_000);
    running = false;
    await duplicating;
    const runMs = Date.now() - t0;

    // Every captured event again, newest first: nothing may change.
    const before = new Map([...observer.latest].map(([id, e]) => [id, e.revision]));
    const burst = [...captured].reverse();
    for (let i = 0; i < burst.length; i += 200) await Promise.all(burst.slice(i, i + 200).map(republish));
    await waitEventsDrained(jsm, names.eventsStream, names.orchestratorConsumer, 30_000);
    await sleep(1_000);

    const states = await observer.finalStates(ids);
    const changed = ids.filter((id) => observer.latest.get(id)?.revision !== before.get(id));
    const executions = readExecutions(ctx.markerDir);
    const verdict = verify({ expected: expectationsOf(items), states, executions, disruptions: fleet.disruptions, observer });
    const tasks = (await jsm.streams.info(names.tasksStream)).state.last_seq;
    const violations = [...verdict.violations];
    if (changed.length) violations.push(`${changed.length} state(s) changed by the final burst of duplicates, e.g. ${changed.slice(0, 3).join(", ")}`);
    if (tasks > verdict.expectedExecutions) violations.push(`${tasks} tasks dispatched for ${verdict.expectedExecutions} attempts`);
    if (verdict.extraExecutions.total > 0) violations.push(`${verdict.extraExecutions.total} activity execution(s) beyond one per attempt, with no fault but duplicates`);
    return {
      ok: verdictOk(verdict) && pending.length === 0 && violations.length === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ republishedEvents: republished }),
      capturedEvents: captured.length,
      tasksDispatched: tasks,
      statesChangedByFinalBurst: changed.length,
      runMs,
      natsServer: nats.version,
      violations,
    };
  },
};

/** Until the orchestrator consumer has nothing pending or unacknowledged. */
async function waitEventsDrained(jsm: import("@nats-io/jetstream").JetStreamManager, stream: string, consumer: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const info = await jsm.consumers.info(stream, consumer).catch(() => undefined);
    if (info && info.num_pending === 0 && info.num_ack_pending === 0) return;
    await sleep(200);
  }
}
