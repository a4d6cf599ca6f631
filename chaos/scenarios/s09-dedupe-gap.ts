/**
 * 9. The dedupe gap. JetStream forgets the Nats-Msg-Id of a work-queue message once it is
 * consumed and deleted and the server restarts; an outbox re-publish after that enqueues the task
 * again. The scenario builds exactly that:
 *
 *   1. a worker-only runtime W, and "doomed" orchestrator-only runtimes that SIGKILL themselves at
 *      "after-dispatch-before-ack": each applies one completion (state written, next task
 *      published) and dies before acking it;
 *   2. W runs those tasks: consumed, completion published, acked, deleted from the work queue;
 *   3. nats-server is restarted (same port and store): the duplicate table forgets those tasks;
 *   4. once the unacked events' ack wait has passed, a healthy orchestrator starts: the events
 *      come back first (redeliveries before new messages), are found already applied, and their
 *      pending effects are published again: the consumed tasks are enqueued a second time.
 *
 * The activity then runs twice (at-least-once: the documented gap), but exactly one completion
 * is recorded per step attempt, and every workflow completes with each step once.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { createNames } from "../../runtime/nats/names.js";
import { readCrashes, readExecutions, verify } from "../lib/verify.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, startAll } from "../lib/workload.js";
import { sleep, waitFor } from "../lib/util.js";
import type { Fleet, RuntimeHandle } from "../lib/fleet.js";

const ORCHESTRATOR_ACK_WAIT_MS = 8_000;

export const dedupeGap: Scenario = {
  id: 9,
  name: "dedupe-gap",
  defaultN: 100,
  quickN: 30,
  timeoutMs: 4 * 60_000,
  async run(ctx, n, options) {
    const nats = await ctx.nats();
    const names = createNames(ctx.namespace);
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: "3s", orchestratorAckWait: ORCHESTRATOR_ACK_WAIT_MS, slots: 16 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: ORCHESTRATOR_ACK_WAIT_MS });
    const observer = await ctx.observer(client);
    const jsm = client.topology.jsm;
    await fleet.spawn({ role: "worker" }, "worker");

    const items = orders("gap", n, { delayMs: [5, 20] });
    const ids = items.map((i) => i.id);
    const t0 = Date.now();
    await startAll(client, items);

    // 1-2. Doomed orchestrators, all at once (a later one would take the earlier ones'
    // redelivered events and close their gap before the restart), each dying at its first
    // applied completion; one that gets none in 15 s is SIGKILLed.
    const doomed = await Promise.all(Array.from({ length: options.quick ? 3 : 5 }, () => spawnDoomed(fleet)));
    await Promise.all(
      doomed.map(async (h) => {
        if (!h) return;
        const gone = await Promise.race([h.exited.then(() => true), sleep(15_000).then(() => false)]);
        if (!gone) await fleet.kill(h);
      }),
    );
    const crashes = readCrashes(ctx.markerDir).length;
    ctx.log(`${crashes} doomed orchestrator(s) died after a dispatch, before the ack`);
    await waitTasksConsumed(jsm, names.tasksStream, 30_000);

    // 3. Restart NATS: the duplicate table now forgets every consumed task.
    const restartAt = Date.now();
    await nats.restart();
    ctx.log(`nats-server restarted`);

    // 4. After the unacked events' ack wait, a healthy orchestrator.
    await sleep(ORCHESTRATOR_ACK_WAIT_MS + 1_500);
    await fleet.spawn({ role: "orchestrator" }, "orchestrator");
    const pending = await observer.waitForTerminal(ids, 90_000);
    const runMs = Date.now() - t0;
    await sleep(3_500);

    const executions = readExecutions(ctx.markerDir);
    const states = await observer.finalStates(ids);
    const verdict = verify({ expected: expectationsOf(items), states, executions, disruptions: fleet.disruptions, natsFaults: [restartAt], observer });
    // Re-runs of one attempt whose second run started after the restart, on a runtime that lived: the gap.
    const gapReruns = countGapReruns(executions, restartAt);
    const violations = [...verdict.violations];
    if (crashes === 0) violations.push("no doomed orchestrator reached the crash point: the scenario did not exercise the gap");
    return {
      ok: verdictOk(verdict) && pending.length === 0 && violations.length === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ orchestratorCrashesAfterDispatch: crashes, natsRestarts: 1 }),
      dedupeGapReruns: gapReruns,
      completionsRecordedPerAttempt: verdict.duplicateStepCompletions.total === 0 ? 1 : "more than 1",
      runMs,
      natsServer: nats.version,
      violations,
    };
  },
};

/** An orchestrator-only runtime that SIGKILLs itself at its first "after-dispatch-before-ack". */
async function spawnDoomed(fleet: Fleet): Promise<RuntimeHandle | undefined> {
  try {
    return await fleet.spawn({ role: "orchestrator", crashPoint: "after-dispatch-before-ack", crashProbability: 1 }, "doomed");
  } catch {
    return undefined; // it died before saying READY: that is what it is for
  }
}

/** Until the work queue is empty and no task is unacknowledged: every dispatched task ran and was deleted. */
async function waitTasksConsumed(jsm: JetStreamManager, stream: string, timeoutMs: number): Promise<void> {
  await waitFor(
    "the worker to consume every dispatched task",
    async () => {
      const info = await jsm.streams.info(stream);
      if (info.state.messages !== 0) return undefined;
      for await (const c of jsm.consumers.list(stream)) if (c.num_ack_pending > 0 || c.num_pending > 0) return undefined;
      return true;
    },
    timeoutMs,
    200,
  );
}

function countGapReruns(executions: ReturnType<typeof readExecutions>, restartAt: number): number {
  const runs = new Map<string, number[]>();
  for (const e of executions) {
    if (e.event !== "start") continue;
    const k = `${e.key}#${e.attempt}`;
    runs.set(k, [...(runs.get(k) ?? []), e.at]);
  }
  let count = 0;
  for (const times of runs.values()) if (times.length > 1 && times.some((t) => t > restartAt)) count += 1;
  return count;
}
