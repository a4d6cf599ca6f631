/**
 * 4. Heartbeats: a 10 s activity that calls ctx.heartbeat() every second, on workers whose task
 * ack wait is 3 s. While its runtime lives it is never redelivered (one execution each); when its
 * runtime is SIGKILLed, it is redelivered within about the ack wait and completes on another one.
 */
import { readExecutions, verify } from "../lib/verify.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, startAll, type WorkItem } from "../lib/workload.js";
import { sleep, waitFor } from "../lib/util.js";
import type { HeartbeatJobInput } from "../../test/fixtures/crash-functions.js";

const ACK_WAIT_MS = 3_000;

function jobs(prefix: string, count: number, input: HeartbeatJobInput): WorkItem[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${i}`,
    workflow: "heartbeat_job",
    input,
    expectation: { workflow: "heartbeat_job", status: "completed" as const },
  }));
}

export const heartbeats: Scenario = {
  id: 4,
  name: "heartbeats",
  defaultN: 4,
  quickN: 2,
  timeoutMs: 3 * 60_000,
  async run(ctx, n) {
    const nats = await ctx.nats();
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: ACK_WAIT_MS, orchestratorAckWait: "3s", slots: 32 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: "3s" });
    const observer = await ctx.observer(client);
    await Promise.all([fleet.spawn(), fleet.spawn()]);
    const input: HeartbeatJobInput = { durationMs: 10_000, heartbeatMs: 1_000 };

    // First, alive: n jobs run to the end where they started (10 s: three ack waits and more).
    const alive = jobs("hb-alive", n, input);
    // Then, killed: n jobs whose runtime is SIGKILLed 4 s into the activity (past the first ack wait).
    const killed = jobs("hb-killed", n, input);
    const t0 = Date.now();
    await startAll(client, alive);
    const aliveStuck = await observer.waitForTerminal(alive.map((j) => j.id), 40_000);
    if (aliveStuck.length) throw new Error(`heartbeat jobs did not finish while every runtime lived: ${aliveStuck.join(", ")}`);
    await startAll(client, killed);
    const firstStarts = await waitFor(
      "every killed-phase job to start",
      () => {
        const starts = readExecutions(ctx.markerDir).filter((e) => e.event === "start" && e.workflowId.startsWith("hb-killed"));
        return new Set(starts.map((e) => e.workflowId)).size === n ? starts : undefined;
      },
      20_000,
      50,
    );
    await sleep(4_000);
    // The runtime running the first killed-phase job goes; a fresh one takes its place.
    const victimPid = firstStarts[0]!.pid;
    const victim = fleet.live().find((h) => h.pid === victimPid);
    if (!victim) throw new Error(`runtime ${victimPid} running ${firstStarts[0]!.workflowId} is not one of ours`);
    const killedAt = Date.now();
    await fleet.kill(victim);
    await fleet.spawn();
    ctx.log(`runtime ${victimPid} SIGKILLed mid-activity`);

    const ids = [...alive, ...killed].map((j) => j.id);
    const pending = await observer.waitForTerminal(ids, 60_000);
    const runMs = Date.now() - t0;
    await sleep(ACK_WAIT_MS + 500);
    const executions = readExecutions(ctx.markerDir);
    const states = await observer.finalStates(ids);
    const verdict = verify({ expected: expectationsOf([...alive, ...killed]), states, executions, disruptions: fleet.disruptions, observer });

    // Every job whose runtime lived ran once; every job of the killed runtime ran again elsewhere, soon.
    const violations = [...verdict.violations];
    let redeliveredWhileAlive = 0;
    const redeliveryMs: number[] = [];
    for (const id of ids) {
      const starts = executions.filter((e) => e.workflowId === id && e.event === "start").sort((a, b) => a.at - b.at);
      const first = starts[0];
      if (!first) continue;
      const finishedBeforeKill = executions.some((e) => e.workflowId === id && e.pid === first.pid && e.event === "done" && e.at <= killedAt);
      if (first.pid !== victimPid || finishedBeforeKill) {
        if (starts.length !== 1) {
          redeliveredWhileAlive += starts.length - 1;
          violations.push(`${id}: ran ${starts.length} times although its runtime ${first.pid} lived (heartbeats did not hold the task)`);
        }
        continue;
      }
      const again = starts.find((e) => e.pid !== victimPid);
      if (!again) {
        violations.push(`${id}: its runtime was killed and it never ran elsewhere`);
        continue;
      }
      redeliveryMs.push(again.at - killedAt);
      if (again.at - killedAt > ACK_WAIT_MS + 2_500) violations.push(`${id}: redelivered ${again.at - killedAt} ms after the kill (ack wait ${ACK_WAIT_MS} ms)`);
      const state = states.get(id);
      const worker = state?.steps.heartbeat_step?.worker ?? "";
      if (worker.endsWith(`-${victimPid}`)) violations.push(`${id}: completed by the killed runtime?`);
    }
    return {
      ok: verdictOk(verdict) && pending.length === 0 && violations.length === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ runtimeKills: 1 }),
      activityMs: input.durationMs,
      heartbeatMs: input.heartbeatMs,
      ackWaitMs: ACK_WAIT_MS,
      redeliveredWhileAlive,
      jobsOnKilledRuntime: redeliveryMs.length,
      redeliveryAfterKillMs: redeliveryMs,
      runMs,
      natsServer: nats.version,
      violations,
    };
  },
};
