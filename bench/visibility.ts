/**
 * Does the cost of listing, of recovery and of retention follow what is running (or removed), not
 * everything that ever ran? Three figures, each comparing two namespaces of the same server that
 * differ only in how many finished workflows they hold (written by lib/dataset.ts in the
 * engine's wire format):
 *
 * - list_flat: wall time of `wf list --limit 50` (the built CLI, a process per run, as a user
 *   runs it) with N finished + 1,000 running ÷ the same with N/10 finished + 1,000 running; and
 *   the CLI's peak RSS in both. The default page is the running part (1,000 running > 50), so
 *   the 50 listed are the newest running ones in both namespaces. A process start is most of a
 *   CLI run, so the figure also gives the in-process times of the same page and of a page of
 *   finished workflows (`--status completed`, which walks end entries), undiluted.
 * - recovery_flat: CPU of this process per recovery pass (createRecovery's recover(), the
 *   pass a runtime makes after reconnecting to a restarted nats-server) with N finished + 100
 *   running ÷ 0 finished + 100 running. The pass is called directly: the restart itself only
 *   decides when it runs, and what it costs depends only on what the streams hold.
 * - retention_flat: CPU per workflow the retention sweep removes, with N finished kept ÷ N/10
 *   (retentionFlat below).
 *
 * All alternate the two namespaces run by run (medians: CLI_RUNS, IN_PROCESS_RUNS), so a noisy
 * minute on the shared machine hits both sides; both namespaces are deleted after.
 */
import { fleetLeases } from "../runtime/nats/fleet-lease.js";
import type { WorkflowClient } from "../runtime/index.js";
import type { Logger } from "../runtime/logger.js";
import { silentLogger } from "../runtime/logger.js";
import { createRecovery } from "../runtime/orchestrator/recovery.js";
import { runCli } from "./lib/cli-run.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor } from "./lib/context.js";
import { DATASET_SPACING_MS, dropNamespace, writeDataset, type DatasetSize } from "./lib/dataset.js";
import { createRetentionSweeper } from "../runtime/visibility/retention.js";
import { DEFAULT_RETENTION_MS } from "../runtime/visibility/index-keys.js";
import { cpuMeter, cpuSeconds } from "./lib/proc.js";
import { medianBy, round } from "./lib/stats.js";
import { cpuMsPerWorkflow } from "./floor.js";

/** CLI runs per namespace (each a process start, about 0.4 s). */
const CLI_RUNS = 5;
/**
 * In-process samples per namespace: a page or a recovery pass costs 10–40 ms, and one sample of
 * that varies by ±40 % on this shared machine (five single passes gave ratios from 0.78 to 1.15 between
 * two namespaces with the same running workflows), so their medians take fifteen, after three warm-ups.
 */
const IN_PROCESS_RUNS = 15;
const IN_PROCESS_WARM_UP = 3;
const PAGE = 50;
const LIST_RUNNING = 1_000;
const RECOVERY_RUNNING = 100;
/** A sample of recovery_flat is the mean of this many passes in a row (one pass: 10–30 ms of CPU). */
const PASSES_PER_SAMPLE = 4;

/** 100000 → "100k", 0 → "0": the dataset's name in figure keys. */
export const sizeLabel = (n: number): string => (n >= 1_000 && n % 1_000 === 0 ? `${n / 1_000}k` : String(n));

interface Side {
  label: string;
  size: DatasetSize;
  client: WorkflowClient;
  writeSeconds: number;
  /** When the dataset's oldest finished workflow ended. */
  firstEndedMs: number;
}

/** Both namespaces, written one after the other; `measure` gets them small first; dropped after, whatever happens. */
async function withDatasets(ctx: BenchContext, figure: string, sizes: [DatasetSize, DatasetSize], measure: (small: Side, large: Side) => Promise<Figure>): Promise<Figure> {
  const sides: Side[] = [];
  try {
    for (const [i, size] of sizes.entries()) {
      const client = await benchClient(ctx, namespaceFor(`${figure}${i}`));
      sides.push({ label: sizeLabel(size.finished), size, client, writeSeconds: NaN, firstEndedMs: NaN });
      process.stderr.write(`[bench] ${figure}: writing ${size.finished} finished + ${size.running} running workflows into namespace ${client.topology.names.namespace}…\n`);
      const written = await writeDataset(client.topology, size);
      sides[i]!.writeSeconds = written.seconds;
      sides[i]!.firstEndedMs = written.firstEndedMs;
    }
    return await measure(sides[0]!, sides[1]!);
  } finally {
    for (const side of sides) {
      await dropNamespace(side.client.topology).catch((err: unknown) => process.stderr.write(`[bench] ${figure}: could not delete namespace ${side.client.topology.names.namespace}: ${(err as Error).message}\n`));
      await side.client.close().catch(() => undefined);
    }
  }
}

/** `runs` rounds of `sample` on each side, alternating which goes first, after `warmUp` unmeasured ones each. */
async function alternate<T>(small: Side, large: Side, runs: { runs: number; warmUp: number }, sample: (side: Side) => Promise<T>): Promise<Map<Side, T[]>> {
  for (let i = 0; i < runs.warmUp; i++) {
    await sample(small);
    await sample(large);
  }
  const out = new Map<Side, T[]>([
    [small, []],
    [large, []],
  ]);
  for (let round = 0; round < runs.runs; round++) {
    for (const side of round % 2 === 0 ? [small, large] : [large, small]) out.get(side)!.push(await sample(side));
  }
  return out;
}

const median = (values: number[]): number => medianBy(values, (v) => v);
const ratio = (a: number, b: number): number => round(a / b, 3);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function listFlat(ctx: BenchContext): Promise<Figure> {
  const large = ctx.options.finishedN;
  const sizes: [DatasetSize, DatasetSize] = [
    { finished: Math.round(large / 10), running: LIST_RUNNING },
    { finished: large, running: LIST_RUNNING },
  ];
  return withDatasets(ctx, "list", sizes, async (small, big) => {
    const cli = await alternate(small, big, { runs: CLI_RUNS, warmUp: 1 }, async (side) => {
      const run = await runCli(["list", "--limit", String(PAGE)], { natsUrl: ctx.natsUrl, namespace: side.client.topology.names.namespace });
      const listed = run.stdout.split("\n").filter((line) => line.startsWith("run-")).length;
      if (listed !== PAGE) throw new Error(`wf list --limit ${PAGE} in namespace ${side.client.topology.names.namespace} printed ${listed} running workflows, expected ${PAGE}:\n${run.stdout.slice(0, 2_000)}`);
      return run;
    });
    const inProcess = { runs: IN_PROCESS_RUNS, warmUp: IN_PROCESS_WARM_UP };
    const page = await alternate(small, big, inProcess, (side) => timed(() => side.client.listPage({}, { limit: PAGE })));
    const finishedPage = await alternate(small, big, inProcess, async (side) =>
      timed(async () => {
        const { workflows } = await side.client.listPage({ status: "completed" }, { limit: PAGE });
        if (workflows.length !== PAGE) throw new Error(`a page of completed workflows in namespace ${side.client.topology.names.namespace} held ${workflows.length}, expected ${PAGE}`);
      }),
    );
    const cliMs = (side: Side) => median(cli.get(side)!.map((r) => r.wallMs));
    const rssMb = (side: Side) => median(cli.get(side)!.map((r) => r.maxRssMb));
    const figure: Figure = {
      figure: "list_flat",
      ratio: ratio(cliMs(big), cliMs(small)),
      running: LIST_RUNNING,
      finished_small: small.size.finished,
      finished_large: big.size.finished,
      command: `wf list --limit ${PAGE}`,
      runs: CLI_RUNS,
      in_process_runs: IN_PROCESS_RUNS,
    };
    for (const side of [small, big]) {
      figure[`cli_ms_${side.label}`] = round(cliMs(side), 1);
      figure[`cli_ms_all_${side.label}`] = cli.get(side)!.map((r) => round(r.wallMs, 1));
      figure[`rss_mb_${side.label}`] = round(rssMb(side), 1);
    }
    for (const side of [small, big]) figure[`in_process_page_ms_${side.label}`] = round(median(page.get(side)!), 1);
    figure.in_process_page_ratio = ratio(median(page.get(big)!), median(page.get(small)!));
    for (const side of [small, big]) figure[`in_process_completed_page_ms_${side.label}`] = round(median(finishedPage.get(side)!), 1);
    figure.in_process_completed_page_ratio = ratio(median(finishedPage.get(big)!), median(finishedPage.get(small)!));
    for (const side of [small, big]) figure[`write_s_${side.label}`] = round(side.writeSeconds, 1);
    figure.notes = "wall time from spawn to exit of `node dist/cli/wf.js list --limit 50` (median of 5, alternating the namespaces); peak RSS is the CLI's own resourceUsage().maxRSS at exit; the page is the 50 newest of the 1,000 running; in_process_* are client.listPage in the bench process (default page, and --status completed; median of 15)";
    return figure;
  });
}

/** A logger that keeps what the recovery pass says it did (its one info line). */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = { ...silentLogger, lines, info: (message: string) => void lines.push(message), warn: (message: string) => void lines.push(`warn: ${message}`) };
  return { ...logger, child: () => logger };
}

export async function recoveryFlat(ctx: BenchContext): Promise<Figure> {
  const sizes: [DatasetSize, DatasetSize] = [
    { finished: 0, running: RECOVERY_RUNNING },
    { finished: ctx.options.finishedN, running: RECOVERY_RUNNING },
  ];
  return withDatasets(ctx, "recovery", sizes, async (small, big) => {
    const passes = await alternate(small, big, { runs: IN_PROCESS_RUNS, warmUp: IN_PROCESS_WARM_UP }, async (side) => {
      const logger = recordingLogger();
      const recovery = createRecovery({ topology: side.client.topology, logger, beforePass: () => undefined, leases: () => fleetLeases(side.client.topology, { replicas: 1, storage: "file" }) });
      const natsBefore = cpuSeconds(ctx.natsPid);
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < PASSES_PER_SAMPLE; i++) await recovery.recover("the bench's recovery_flat figure");
      const wallMs = (performance.now() - t0) / PASSES_PER_SAMPLE;
      const used = process.cpuUsage(cpu);
      const natsAfter = cpuSeconds(ctx.natsPid);
      const said = logger.lines.at(-1) ?? "";
      const counts = /re-published the lost commands of (\d+) running workflow\(s\) \((\d+) still stored\)/.exec(said);
      if (logger.lines.length !== PASSES_PER_SAMPLE || !counts) throw new Error(`the recovery passes in namespace ${side.client.topology.names.namespace} did not report what they did: "${logger.lines.join("; ")}"`);
      return {
        cpuMs: (used.user + used.system) / 1_000 / PASSES_PER_SAMPLE,
        wallMs,
        natsCpuMs: natsBefore !== undefined && natsAfter !== undefined ? ((natsAfter - natsBefore) * 1_000) / PASSES_PER_SAMPLE : NaN,
        republished: Number(counts[1]),
        stored: Number(counts[2]),
      };
    });
    const cpuMs = (side: Side) => median(passes.get(side)!.map((p) => p.cpuMs));
    const figure: Figure = {
      figure: "recovery_flat",
      ratio: ratio(cpuMs(big), cpuMs(small)),
      running: RECOVERY_RUNNING,
      finished_small: small.size.finished,
      finished_large: big.size.finished,
      runs: IN_PROCESS_RUNS,
      passes_per_run: PASSES_PER_SAMPLE,
    };
    for (const side of [small, big]) {
      const sample = passes.get(side)!;
      figure[`cpu_ms_${side.label}`] = round(cpuMs(side), 2);
      figure[`cpu_ms_all_${side.label}`] = sample.map((p) => round(p.cpuMs, 1));
      figure[`wall_ms_${side.label}`] = round(median(sample.map((p) => p.wallMs)), 1);
      // /proc counts in 10 ms ticks: a rough figure for the server's side of a pass.
      figure[`nats_server_cpu_ms_${side.label}`] = round(median(sample.map((p) => p.natsCpuMs)), 1);
      figure[`republished_workflows_${side.label}`] = sample.at(-1)!.republished;
      figure[`effects_still_stored_${side.label}`] = sample.at(-1)!.stored;
      figure[`write_s_${side.label}`] = round(side.writeSeconds, 1);
    }
    figure.notes =
      "CPU (user + system) of the bench process during createRecovery(...).recover(), the pass a runtime runs after reconnecting to a restarted nats-server, called directly (no restart: what the pass costs depends on what the streams hold, not on why it runs); 9 in 10 running workflows wait on a task still in the tasks stream, 1 in 10 on a signal; median of 15 alternating runs, each the mean of 4 passes in a row (one pass is 10–30 ms of CPU and varied from 8 to 40 ms from pass to pass on this machine)";
    return figure;
  });
}

/** Sweeps per namespace in retention_flat, after one warm-up each; each removes the next REMOVED_PER_SWEEP oldest. */
const RETENTION_SWEEPS = 3;
const REMOVED_PER_SWEEP = 500;

/**
 * retention_flat: does removing a finished workflow cost more when the bucket keeps more? The
 * retention sweep (createRetentionSweeper's sweep(), what one runtime of the fleet runs every
 * `orchestrator.retentionSweepInterval`) on a clock set so that the next REMOVED_PER_SWEEP oldest
 * workflows are due, in a namespace of N finished and one of N/10, alternating: CPU per removed
 * workflow of this process and nats-server together, N ÷ N/10 (target ≤ 1.2, as the other flat
 * figures'). The oldest keys are the ones a removal takes, which is where a purge filtered on a
 * subject costs nats-server 2.9 and 2.10 the most (nats/key-removal.ts).
 */
export async function retentionFlat(ctx: BenchContext): Promise<Figure> {
  const large = ctx.options.finishedN;
  const sizes: [DatasetSize, DatasetSize] = [
    { finished: Math.round(large / 10), running: 0 },
    { finished: large, running: 0 },
  ];
  return withDatasets(ctx, "retention", sizes, async (small, big) => {
    const swept = new Map<Side, number>();
    const sweeps = await alternate(small, big, { runs: RETENTION_SWEEPS, warmUp: 1 }, async (side) => {
      const topology = side.client.topology;
      const done = swept.get(side) ?? 0;
      // Due: the oldest `done + REMOVED_PER_SWEEP` (the dataset's workflows ended DATASET_SPACING_MS apart, from its first).
      const clock = side.firstEndedMs + DEFAULT_RETENTION_MS + (done + REMOVED_PER_SWEEP - 1) * DATASET_SPACING_MS + DATASET_SPACING_MS / 2;
      const sweeper = createRetentionSweeper({ topology, logger: silentLogger, holder: "bench", intervalMs: 60_000, now: () => clock, leases: () => fleetLeases(topology, { replicas: 1, storage: "file" }) });
      const meter = cpuMeter({ nats_server: ctx.natsPid });
      const removed = await sweeper.sweep();
      const cpu = meter();
      await sweeper.stop();
      if (removed !== REMOVED_PER_SWEEP) throw new Error(`a retention sweep in namespace ${topology.names.namespace} removed ${removed} workflows, expected ${REMOVED_PER_SWEEP}`);
      swept.set(side, done + removed);
      return { cpu, removed };
    });
    const cpuMs = (side: Side, processes?: string[]) => median(sweeps.get(side)!.map((r) => cpuMsPerWorkflow(r.cpu, r.removed, processes)));
    const figure: Figure = {
      figure: "retention_flat",
      ratio: ratio(cpuMs(big), cpuMs(small)),
      finished_small: small.size.finished,
      finished_large: big.size.finished,
      removed_per_sweep: REMOVED_PER_SWEEP,
      sweeps: RETENTION_SWEEPS,
    };
    for (const side of [small, big]) {
      figure[`cpu_ms_per_removal_${side.label}`] = cpuMs(side);
      figure[`nats_server_cpu_ms_per_removal_${side.label}`] = cpuMs(side, ["nats_server"]);
      figure[`cpu_ms_per_removal_all_${side.label}`] = sweeps.get(side)!.map((r) => cpuMsPerWorkflow(r.cpu, r.removed));
    }
    figure.notes = "retention sweeps (createRetentionSweeper().sweep() on a clock that makes the next 500 oldest due), medians of 3 per namespace alternating, after one warm-up each; CPU is this process's and nats-server's (/proc, 10 ms ticks)";
    return figure;
  });
}
