/**
 * 3. Cluster node loss: a 3-node NATS cluster on 127.0.0.1, streams and KV with `replicas: 3`,
 * runtimes given all three URLs. The node leading the events stream is SIGKILLed mid-run and
 * brought back on the same ports and store. Every workflow completes with each step once.
 *
 * Needs nats-server 2.10 or later: before 2.9.21, compare-and-set on clustered KV buckets was not
 * serializable (see DESIGN.md), so on 2.9 the scenario is skipped with that reason.
 */
import { execFileSync } from "node:child_process";
import { natsServerBinary } from "../../test/helpers/nats-server.js";
import { createNames } from "../../runtime/nats/names.js";
import { readExecutions, verify } from "../lib/verify.js";
import { diagnoseStuck } from "../lib/diagnose.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, startAll } from "../lib/workload.js";
import { sleep } from "../lib/util.js";

export function serverVersion(): string {
  const out = execFileSync(natsServerBinary(), ["--version"], { encoding: "utf8", timeout: 10_000 });
  return /v?(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? out.trim();
}

export function atLeast(version: string, wanted: [number, number, number]): boolean {
  const parts = version.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    if ((parts[i] ?? 0) !== wanted[i]) return (parts[i] ?? 0) > wanted[i]!;
  }
  return true;
}

export const clusterNodeLoss: Scenario = {
  id: 3,
  name: "cluster-node-loss",
  defaultN: 1000,
  quickN: 60,
  timeoutMs: 6 * 60_000,
  async run(ctx, n, options) {
    const version = serverVersion();
    if (!atLeast(version, [2, 10, 0])) {
      const reason = `nats-server ${version} (${natsServerBinary()}): clustered KV compare-and-set is only serializable from 2.9.21, and this suite runs clusters on 2.10 or later; set NATS_SERVER_BIN to a 2.10 or 2.15 binary (bash scripts/fetch-nats-server.sh trixie, or sid)`;
      ctx.log(`skipped: ${reason}`);
      return { ok: true, skipped: reason, started: 0, completed: 0, lost: 0, failed: 0, duplicateStepCompletions: { total: 0, byStep: {} }, activityExecutions: 0, faultsInjected: faults({}), natsServer: version };
    }
    const ackWait = "4s";
    const cluster = await ctx.cluster(3);
    const fleet = ctx.fleet({ natsUrl: cluster.urls[0]!, natsUrls: cluster.urls, replicas: 3, workerAckWait: ackWait, orchestratorAckWait: ackWait, slots: 16 });
    const client = await ctx.client(cluster.urls, { replicas: 3, orchestratorAckWait: ackWait });
    const observer = await ctx.observer(client);
    await Promise.all([fleet.spawn(), fleet.spawn(), fleet.spawn()]);

    const items = orders("node", n, { sagaShare: 0.2, retryShare: 0.15, delayMs: [5, 80] });
    const ids = items.map((i) => i.id);
    const startSeconds = options.quick ? 8 : 25;
    const t0 = Date.now();
    const starting = startAll(client, items, n / startSeconds);

    const natsFaults: number[] = [];
    let victimName = "";
    let downMs = 0;
    const killing = (async () => {
      await sleep(startSeconds * 1000 * 0.35);
      // The leader of the events stream: losing it forces an election under load.
      const info = await client.topology.jsm.streams.info(createNames(ctx.namespace).eventsStream);
      const leader = info.cluster?.leader ?? "";
      const index = Number(/-n(\d+)$/.exec(leader)?.[1] ?? "1") - 1;
      const victim = cluster.servers[index] ?? cluster.servers[0]!;
      victimName = leader || `node ${index + 1}`;
      const killedAt = Date.now();
      natsFaults.push(killedAt);
      await victim.kill();
      ctx.log(`node ${victimName} (${victim.url}) SIGKILLed`);
      await sleep(5_000);
      await victim.restart();
      natsFaults.push(Date.now());
      downMs = Date.now() - killedAt;
      ctx.log(`node ${victimName} restarted after ${downMs} ms`);
    })();
    await Promise.all([starting, killing]);
    const pending = await observer.waitForTerminal(ids, 180_000, { onProgress: (d, t) => ctx.log(`${d}/${t} finished`) });
    const runMs = Date.now() - t0;
    await sleep(4_500);

    await diagnoseStuck(client, ctx.namespace, pending, readExecutions(ctx.markerDir), (l) => ctx.log(l));
    const states = await observer.finalStates(ids);
    const verdict = verify({ expected: expectationsOf(items), states, executions: readExecutions(ctx.markerDir), disruptions: fleet.disruptions, natsFaults, observer });
    const exited = fleet.all.filter((r) => r.hasExited()).length;
    const violations = [...verdict.violations];
    if (exited) violations.push(`${exited} runtime(s) exited instead of failing over`);
    return {
      ok: verdictOk(verdict) && pending.length === 0 && exited === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ nodeKills: 1 }),
      killedNode: victimName,
      nodeDownMs: downMs,
      runMs,
      natsServer: version,
      violations,
    };
  },
};
