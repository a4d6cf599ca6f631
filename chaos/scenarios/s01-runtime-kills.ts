/**
 * 1. Runtime kills: order_processing workflows (and a share of order_saga, some with a retry)
 * across 3 runtimes; every 1 to 3 s one runtime, chosen at random, is SIGKILLed and a new one
 * started. Every workflow completes; no step is recorded as completed twice; every step ran after
 * all its dependencies; activities ran more than once only where a kill landed.
 */
import { readExecutions, verify } from "../lib/verify.js";
import { diagnoseStuck } from "../lib/diagnose.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, primitives, startAll } from "../lib/workload.js";
import { pick, randomBetween, sleep } from "../lib/util.js";
import { checkChaosSchedule, startChaosSchedule } from "../lib/schedule-check.js";

export const runtimeKills: Scenario = {
  id: 1,
  name: "runtime-kills",
  defaultN: 1000,
  quickN: 80,
  timeoutMs: 6 * 60_000,
  async run(ctx, n, options) {
    // The default ack waits: the stall a kill causes (`takeovers` in the result) is what a user gets.
    const ackWait = "default";
    const nats = await ctx.nats();
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: ackWait, orchestratorAckWait: ackWait, slots: 16 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: ackWait });
    const observer = await ctx.observer(client);
    await Promise.all([fleet.spawn(), fleet.spawn(), fleet.spawn()]);
    fleet.supervise(3, 200);

    // Orders, and a fifth as many of the primitives: parents with children, continue-as-new loops, cancelled orders.
    const items = [...orders("kill", n, { sagaShare: 0.2, retryShare: 0.15, delayMs: [5, 80] }), ...primitives("kill-p", Math.ceil(n / 5), { delayMs: [5, 80] })];
    const ids = items.map((i) => i.id);
    const rate = options.quick ? 25 : 40;
    const startSeconds = n / rate;
    ctx.log(`starting ${n} workflows at ${rate}/s over ${startSeconds.toFixed(0)} s, killing a runtime every 1-3 s`);
    // A schedule ticking every second through the kills (lib/schedule-check.ts).
    await startChaosSchedule(client);
    const t0 = Date.now();
    let startsDone = false;
    const starting = startAll(client, items, rate).finally(() => {
      startsDone = true;
    });

    // Kill while workflows are being started and run, then let the fleet finish.
    const killUntil = t0 + startSeconds * 1000 + (options.quick ? 3_000 : 8_000);
    const maxKills = options.quick ? 8 : 60;
    let kills = 0;
    const killing = (async () => {
      while (kills < maxKills && Date.now() < killUntil) {
        await sleep(randomBetween(1_000, 3_000));
        if (startsDone && ids.every((id) => observer.isTerminal(id))) break;
        const ready = fleet.live().filter((h) => h.readyAt > 0);
        if (ready.length === 0) continue;
        const victim = pick(ready);
        kills += 1;
        await fleet.kill(victim);
      }
    })();
    await Promise.all([starting, killing]);
    ctx.log(`${kills} runtime(s) killed; waiting for every workflow to finish`);
    const pending = await observer.waitForTerminal(ids, 180_000, { onProgress: (d, t) => ctx.log(`${d}/${t} finished`) });
    const runMs = Date.now() - t0;
    await sleep(3_500); // let redelivered tasks of finished workflows run, so every execution is counted
    fleet.stopSupervising();

    await diagnoseStuck(client, ctx.namespace, pending, readExecutions(ctx.markerDir), (l) => ctx.log(l));
    const schedule = await checkChaosSchedule(client, observer, 60_000);
    const states = await observer.finalStates(ids);
    const verdict = verify({ expected: expectationsOf(items), states, executions: readExecutions(ctx.markerDir), disruptions: fleet.disruptions, observer });
    return {
      ok: verdictOk(verdict) && pending.length === 0 && schedule.violations.length === 0,
      scheduleTicks: schedule.ticks,
      ...verdictFigures(verdict),
      faultsInjected: faults({ runtimeKills: kills }),
      runtimesStarted: fleet.spawned,
      workflowsPerSecond: Math.round((n / runMs) * 1000 * 10) / 10,
      natsServer: nats.version,
      violations: [...verdict.violations, ...schedule.violations],
    };
  },
};
