/**
 * A 3-node NATS cluster: throughput and latency of jetflow with every stream and bucket on 3
 * replicas (R3: a write is acknowledged once two nodes stored it), against the same with 1
 * replica on the same cluster, in one process as the in_process figure (createRuntime and
 * createClient, the repo's functions/, order_processing).
 *
 * The two sides run in namespaces of their own on the same three servers and alternate (R1, R3,
 * R1, R3 …), so both see the same minutes of a shared machine; each figure is the median of its
 * side's runs. CPU per workflow is this process's plus the three nats-servers'. On one machine
 * the three nodes share its cores and a loopback network, so R3 here pays the replication's CPU
 * and none of a real network's round trips: a lower bound of its cost.
 */
import { startNatsCluster } from "../test/helpers/nats-server.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { namespaceFor, ORDER_STEPS } from "./lib/context.js";
import { cpuMeter } from "./lib/proc.js";
import { startRepoEngine, type RepoEngine } from "./lib/repo-engine.js";
import { medianBy, round, runPool, summarize, withTimeout } from "./lib/stats.js";
import { cpuMsPerWorkflow } from "./floor.js";

const RUNS = 3;
const WARM_UP = 100;

interface Side {
  replicas: 1 | 3;
  engine: RepoEngine;
  reps: Array<{ seconds: number; cpu: Record<string, number> }>;
  samples: number[];
}

export async function cluster(ctx: BenchContext): Promise<Figure> {
  const { n, concurrency, latencyN, waitMode, slots } = ctx.options;
  const nodes = await startNatsCluster(3);
  const sides: Side[] = [];
  try {
    for (const replicas of [1, 3] as const) {
      sides.push({ replicas, engine: await startRepoEngine({ servers: nodes.urls, namespace: namespaceFor(`r${replicas}`), replicas, waitMode, slots }), reps: [], samples: [] });
    }
    const serverPids = Object.fromEntries(nodes.servers.map((s, i) => [`nats_${i + 1}`, s.pid]));
    for (const side of sides) await withTimeout(runPool(WARM_UP, concurrency, async (i) => void (await side.engine.one(`warm-${i}`))), 120_000, `R${side.replicas} warm-up`);
    for (let rep = 0; rep < RUNS; rep++) {
      for (const side of sides) {
        const meter = cpuMeter(serverPids);
        const t0 = performance.now();
        await withTimeout(runPool(n, concurrency, async (i) => void (await side.engine.one(`r${rep}-${i}`))), 600_000, `R${side.replicas} run`);
        side.reps.push({ seconds: (performance.now() - t0) / 1000, cpu: meter() });
      }
    }
    const samplesEach = Math.max(20, Math.round(latencyN / 2));
    for (let i = 0; i < samplesEach; i++) for (const side of sides) side.samples.push(await side.engine.one(`l-${i}`));

    const processes = ["bench_process", ...Object.keys(serverPids)];
    const figureOf = (side: Side) => {
      const median = medianBy(side.reps, (r) => r.seconds);
      return {
        steps_per_s: round((n * ORDER_STEPS) / median.seconds, 1),
        workflows_per_s: round(n / median.seconds, 1),
        repetitions_steps_per_s: side.reps.map((r) => round((n * ORDER_STEPS) / r.seconds, 1)),
        p50_ms: summarize(side.samples).p50_ms,
        p99_ms: summarize(side.samples).p99_ms,
        cpu_ms_per_workflow: medianBy(side.reps.map((r) => cpuMsPerWorkflow(r.cpu, n, processes)), (x) => x),
        nats_servers_cpu_ms_per_workflow: medianBy(side.reps.map((r) => cpuMsPerWorkflow(r.cpu, n, processes.slice(1))), (x) => x),
      };
    };
    const [r1, r3] = sides.map(figureOf) as [ReturnType<typeof figureOf>, ReturnType<typeof figureOf>];
    return {
      figure: "cluster",
      workflow: "order_processing",
      nodes: 3,
      workflows: n,
      concurrency,
      r3,
      r1,
      r3_throughput_ratio: round(r3.steps_per_s / r1.steps_per_s, 3),
      r3_p50_ratio: round(r3.p50_ms / r1.p50_ms, 3),
      r3_cpu_ratio: round(r3.cpu_ms_per_workflow / r1.cpu_ms_per_workflow, 3),
    };
  } finally {
    for (const side of sides) await side.engine.close();
    await nodes.stop();
  }
}
