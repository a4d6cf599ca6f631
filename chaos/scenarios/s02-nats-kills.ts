/**
 * 2. NATS kills: one nats-server with a file store is SIGKILLed twice mid-run and restarted on the
 * same port and store directory. The runtimes are never restarted: they reconnect by themselves,
 * and every workflow completes with each step once.
 */
import { readExecutions, verify } from "../lib/verify.js";
import { diagnoseStuck } from "../lib/diagnose.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, primitives, startAll } from "../lib/workload.js";
import { randomBetween, sleep } from "../lib/util.js";

export const natsKills: Scenario = {
  id: 2,
  name: "nats-kills",
  defaultN: 1000,
  quickN: 80,
  timeoutMs: 5 * 60_000,
  async run(ctx, n, options) {
    const ackWait = "3s";
    const nats = await ctx.nats();
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: ackWait, orchestratorAckWait: ackWait, slots: 16 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: ackWait });
    const observer = await ctx.observer(client);
    const runtimes = await Promise.all([fleet.spawn(), fleet.spawn()]);

    // Orders, and a fifth as many of the primitives: parents with children, continue-as-new loops, cancelled orders.
    const items = [...orders("nats", n, { sagaShare: 0.2, retryShare: 0.15, delayMs: [5, 80] }), ...primitives("nats-p", Math.ceil(n / 5), { delayMs: [5, 80] })];
    const ids = items.map((i) => i.id);
    const startSeconds = options.quick ? 8 : 25;
    const t0 = Date.now();
    const starting = startAll(client, items, n / startSeconds);

    // Two SIGKILLs of the server, each followed by a restart on the same port and store.
    const natsFaults: number[] = [];
    const outages: number[] = [];
    const killing = (async () => {
      for (const at of [0.25, 0.65]) {
        const due = t0 + at * startSeconds * 1000;
        await sleep(Math.max(0, due - Date.now()));
        const killedAt = Date.now();
        natsFaults.push(killedAt);
        await nats.kill();
        ctx.log(`nats-server SIGKILLed`);
        await sleep(randomBetween(1_000, 2_500));
        await nats.restart();
        natsFaults.push(Date.now());
        outages.push(Date.now() - killedAt);
        ctx.log(`nats-server restarted after ${Date.now() - killedAt} ms`);
      }
    })();
    await Promise.all([starting, killing]);
    const pending = await observer.waitForTerminal(ids, 180_000, { onProgress: (d, t) => ctx.log(`${d}/${t} finished`) });
    const runMs = Date.now() - t0;
    await sleep(3_500);

    await diagnoseStuck(client, ctx.namespace, pending, readExecutions(ctx.markerDir), (l) => ctx.log(l));
    const states = await observer.finalStates(ids);
    const verdict = verify({ expected: expectationsOf(items), states, executions: readExecutions(ctx.markerDir), disruptions: fleet.disruptions, natsFaults, observer });
    const restarted = runtimes.filter((r) => r.hasExited()).length;
    const violations = [...verdict.violations];
    if (restarted) violations.push(`${restarted} runtime(s) exited instead of reconnecting`);
    return {
      ok: verdictOk(verdict) && pending.length === 0 && restarted === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ natsKills: outages.length }),
      natsOutagesMs: outages,
      runtimesExited: restarted,
      runMs,
      natsServer: nats.version,
      violations,
    };
  },
};
