/**
 * `npm run bench`: one run, one nats-server (file store, temporary directory), every figure.
 * stdout: one JSON line per figure, then, as the very last line, the JSON summary. Progress and
 * diagnostics go to stderr. A section is appended to bench/RESULTS.md. Options: see lib/options.ts.
 * Every server and `wf run` process this run starts is stopped, by PID, whatever happens.
 */
import { scaleout } from "./scaleout.js";
import { continueAsNew } from "./continue-as-new.js";
import { cluster } from "./cluster.js";
import { join } from "node:path";
import { startNatsServer, type TestNats } from "../test/helpers/nats-server.js";
import { devLoop } from "./dev-loop.js";
import { latency } from "./latency.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { readOptions, type FigureName } from "./lib/options.js";
import { machineInfo } from "./lib/proc.js";
import { REPO_ROOT } from "./lib/runtimes.js";
import { round } from "./lib/stats.js";
import { memory } from "./memory.js";
import { metricsCost } from "./metrics-cost.js";
import { parkedTimers } from "./parked-timers.js";
import { floor } from "./floor.js";
import { inProcess } from "./in-process.js";
import { formatRows, topSelfTime } from "./profile-summary.js";
import { rawBound } from "./raw-bound.js";
import { replay } from "./replay.js";
import { appendResults, markdownSection } from "./results.js";
import { throughput } from "./throughput.js";
import { retentionFlat, listFlat, recoveryFlat, sizeLabel } from "./visibility.js";

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

async function main(): Promise<number> {
  const options = readOptions();
  const started = Date.now();
  const machine = machineInfo();
  const figures: Figure[] = [];
  const emit = (figure: Figure) => {
    figures.push(figure);
    process.stdout.write(JSON.stringify(figure) + "\n");
  };
  const wanted = (name: FigureName) => !options.skip.has(name);

  // The bench's exit hooks (here and in the nats-server helper) kill what it started.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

  let server: TestNats | undefined;
  let failed = false;
  try {
    server = await startNatsServer();
    log(`nats-server ${server.version} pid ${server.pid} at ${server.url}, store ${server.storeDir}; ${machine.cores} cores (${machine.model}), Node ${machine.node}`);
    const ctx: BenchContext = { options, natsUrl: server.url, natsPid: server.pid, natsVersion: server.version };

    const figure = async (name: string, run: () => Promise<Figure>) => {
      const t0 = Date.now();
      log(`${name}…`);
      try {
        const result = await run();
        emit(result);
        log(`${name} done in ${round((Date.now() - t0) / 1000, 1)} s`);
      } catch (err) {
        failed = true;
        log(`${name} failed: ${(err as Error)?.stack ?? err}`);
        emit({ figure: name.split(" ")[0]!, error: (err as Error)?.message ?? String(err) });
      }
    };

    if (wanted("raw_bound")) await figure("raw_bound", () => rawBound(ctx));
    if (wanted("floor")) await figure("floor", () => floor(ctx));
    if (wanted("throughput")) {
      for (const count of options.runtimes) {
        await figure(`throughput (${count} runtime${count === 1 ? "" : "s"})`, () => throughput(ctx, count));
        if (options.cpuProfDir) {
          const dirs = (figures.at(-1)?.cpu_profiles as string[] | undefined) ?? [];
          try {
            const { rows, total_ms, files } = topSelfTime(dirs, 10);
            log(`CPU profile of the runtime(s), ${files.length} file(s), ${total_ms} ms sampled, top self time:\n${formatRows(rows)}`);
            emit({ figure: "cpu_profile", runtimes: count, files, sampled_ms: total_ms, top: rows });
          } catch (err) {
            log(`no CPU profile to summarize: ${(err as Error).message}`);
          }
        }
      }
    }
    if (wanted("in_process")) await figure("in_process", () => inProcess(ctx));
    if (wanted("metrics_cost")) await figure("metrics_cost", () => metricsCost(ctx));
    if (wanted("latency")) await figure("latency", () => latency(ctx));
    if (wanted("replay")) await figure("replay", () => replay(ctx));
    if (wanted("memory")) await figure("memory", () => memory(ctx));
    if (wanted("dev_loop")) await figure("dev_loop", () => devLoop(ctx));
    if (wanted("list_flat")) await figure("list_flat", () => listFlat(ctx));
    if (wanted("recovery_flat")) await figure("recovery_flat", () => recoveryFlat(ctx));
    if (wanted("retention_flat")) await figure("retention_flat", () => retentionFlat(ctx));
    if (wanted("parked_timers")) await figure("parked_timers", () => parkedTimers(ctx));
    if (wanted("scaleout")) await figure("scaleout", () => scaleout(ctx));
    if (wanted("continue_as_new")) await figure("continue_as_new", () => continueAsNew(ctx));
    if (wanted("cluster")) await figure("cluster", () => cluster(ctx));
  } finally {
    await server?.stop().catch((err: unknown) => log(`stopping nats-server: ${(err as Error)?.message}`));
  }

  const summary = summarize(figures, { machine, natsServer: server?.version ?? "unknown", seconds: round((Date.now() - started) / 1000, 1), options });
  const resultsFile = options.resultsFile ?? join(REPO_ROOT, "bench", "RESULTS.md");
  if (process.env.BENCH_RESULTS !== "-") {
    try {
      appendResults(
        resultsFile,
        markdownSection(
          {
            date: new Date(started).toISOString(),
            machine,
            natsServer: server?.version ?? "unknown",
            quick: options.quick,
            seconds: summary.seconds as number,
            options: { N: options.n, concurrency: options.concurrency, runtimes: options.runtimes, latencyN: options.latencyN, replaySteps: options.replaySteps, memoryN: options.memoryN, finishedN: options.finishedN, timersN: options.timersN, wait: options.waitMode, ...(options.skip.size ? { skip: [...options.skip] } : {}) },
          },
          figures,
          summary,
        ),
      );
      log(`appended to ${resultsFile}`);
    } catch (err) {
      log(`could not append to ${resultsFile}: ${(err as Error).message}`);
    }
  }
  process.stdout.write(JSON.stringify(summary) + "\n");
  return failed ? 1 : 0;
}

function summarize(figures: Figure[], run: { machine: ReturnType<typeof machineInfo>; natsServer: string; seconds: number; options: ReturnType<typeof readOptions> }): Record<string, unknown> {
  const ok = (name: string, pick?: (f: Figure) => boolean) => figures.find((f) => f.figure === name && !f.error && !f.skipped && (!pick || pick(f)));
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const ratio = (a: unknown, b: unknown) => {
    const x = num(a);
    const y = num(b);
    return x !== undefined && y !== undefined && y > 0 ? round(x / y, 3) : null;
  };
  const raw = ok("raw_bound");
  const tp = figures.filter((f) => f.figure === "throughput" && !f.error);
  const tp1 = tp.find((f) => f.runtimes === 1) ?? tp[0];
  const lat = ok("latency");
  const rep = ok("replay");
  const mem = ok("memory");
  const dev = figures.find((f) => f.figure === "dev_loop");
  const list = ok("list_flat");
  const rec = ok("recovery_flat");
  const ret = ok("retention_flat");
  const timers = ok("parked_timers");
  const metricsFig = ok("metrics_cost");
  const scale = ok("scaleout");
  const floorFig = ok("floor");
  const can = ok("continue_as_new");
  const clusterFig = ok("cluster");
  const inProc = ok("in_process");
  // The in-process figure ran the floor between its own runs and samples: compare with those.
  const floorOfInProc = (inProc?.floor_interleaved as { steps_per_s?: number; p50_ms?: number; cpu_ms_per_workflow?: number } | undefined) ?? floorFig;
  const floorSteps = (f: Figure | undefined) => (f?.floor_interleaved as { steps_per_s?: number } | undefined)?.steps_per_s ?? floorFig?.steps_per_s;
  const floorRatios = {
    throughput: ratio(inProc?.steps_per_s, floorOfInProc?.steps_per_s),
    p50: ratio(inProc?.p50_ms, floorOfInProc?.p50_ms),
    cpu: ratio(inProc?.cpu_ms_per_workflow, floorOfInProc?.cpu_ms_per_workflow),
    wfRun: ratio(tp1?.steps_per_s, floorSteps(tp1)),
  };
  // The flatness targets hold at full size only (100,000 finished, 10,000 timers), as memory's at 10,000.
  const listFull = list?.finished_large === 100_000 && list.finished_small === 10_000;
  const recFull = rec?.finished_large === 100_000;
  const retFull = ret?.finished_large === 100_000;
  const timersFull = timers?.workflows === 10_000;
  // Each throughput figure ran the raw loop between its own runs: compare with those.
  const rawSteps = (f: Figure | undefined) => (f?.raw_interleaved as { steps_per_s?: number } | undefined)?.steps_per_s ?? raw?.steps_per_s;
  const interleaved = lat?.raw_interleaved as { p50_ms?: number; p99_ms?: number } | undefined;
  const rawP50 = interleaved?.p50_ms ?? raw?.p50_ms;
  const rawP99 = interleaved?.p99_ms ?? raw?.p99_ms;
  const summary: Record<string, unknown> = {
    figure: "summary",
    throughput_ratio: ratio(tp1?.steps_per_s, rawSteps(tp1)),
    // The latency figure samples the raw loop between its own samples: compare with those.
    p50_ratio: ratio(lat?.p50_ms, rawP50),
    replay_ratio: num(rep?.ratio) ?? null,
    // Against the floor (floor.ts): runtime and client in one process (in-process.ts), and one `wf run` (throughput.ts).
    floor_throughput_ratio: floorRatios.throughput,
    floor_p50_ratio: floorRatios.p50,
    floor_cpu_ratio: floorRatios.cpu,
    floor_wf_run_throughput_ratio: floorRatios.wfRun,
    rss_mb_10k_waiting: mem && mem.waiting_workflows === 10_000 ? mem.rss_mb : null,
    rss_mb_10k_waiting_settled: mem && mem.waiting_workflows === 10_000 ? (num(mem.rss_mb_settled) ?? null) : null,
  };
  if (mem && mem.waiting_workflows !== 10_000) summary[`rss_mb_${mem.waiting_workflows}_waiting`] = mem.rss_mb;
  Object.assign(summary, {
    list_flat_ratio: num(list?.ratio) ?? null,
    ...(list
      ? Object.fromEntries([list.finished_large, list.finished_small].map((n) => [`list_rss_mb_${sizeLabel(n as number)}`, num(list[`rss_mb_${sizeLabel(n as number)}`]) ?? null]))
      : { list_rss_mb_100k: null, list_rss_mb_10k: null }),
    recovery_flat_ratio: num(rec?.ratio) ?? null,
    // CPU per workflow removed by the retention sweep, 100,000 finished kept ÷ 10,000: ≤ 1.2.
    retention_flat_ratio: num(ret?.ratio) ?? null,
    parked_timers_after_finish: num(timers?.parked_timers) ?? null,
  });
  if (timers && !timersFull) summary.parked_timers_of = timers.workflows;
  for (const f of tp) summary[`throughput_ratio_${f.runtimes}rt`] = ratio(f.steps_per_s, rawSteps(f));
  Object.assign(summary, {
    // Throughput with Prometheus metrics on over the same with them off, same run (metrics-cost.ts): target ≥ 0.97.
    metrics_throughput_ratio: num(metricsFig?.ratio) ?? null,
    // CPU per workflow with 4 runtimes over 1, and the state cache hit ratio with 4 (scaleout.ts): targets ≤ 1.1, ≥ 0.99.
    scaleout_cpu_ratio: num(scale?.scaleout_cpu_ratio) ?? null,
    cache_hit_ratio_4rt: num(scale?.cache_hit_ratio_4rt) ?? null,
    // A loop that continues as new 10,000 times (continue-as-new.ts): last run over early runs, targets ≤ 1.2 each.
    can_state_size_ratio: num(can?.state_size_ratio) ?? null,
    can_step_cost_ratio: num(can?.step_cost_ratio) ?? null,
    ...(can && can.runs !== 10_000 ? { can_runs: can.runs } : {}),
    // A 3-node cluster (cluster.ts): R3 over R1 on the same servers, same run; and R3's own figures.
    r3_throughput_ratio: num(clusterFig?.r3_throughput_ratio) ?? null,
    r3_p50_ratio: num(clusterFig?.r3_p50_ratio) ?? null,
    r3_steps_per_s: num((clusterFig?.r3 as { steps_per_s?: number } | undefined)?.steps_per_s) ?? null,
    r3_p50_ms: num((clusterFig?.r3 as { p50_ms?: number } | undefined)?.p50_ms) ?? null,
    p99_ratio: ratio(lat?.p99_ms, rawP99),
    raw_steps_per_s: num(rawSteps(tp1)) ?? null,
    raw_bound_figure_steps_per_s: num(raw?.steps_per_s) ?? null,
    raw_p50_ms: num(rawP50) ?? null,
    raw_p99_ms: num(rawP99) ?? null,
    raw_bound_figure_p50_ms: num(raw?.p50_ms) ?? null,
    floor_steps_per_s: num(floorOfInProc?.steps_per_s) ?? null,
    floor_p50_ms: num(floorOfInProc?.p50_ms) ?? null,
    floor_cpu_ms_per_workflow: num(floorOfInProc?.cpu_ms_per_workflow) ?? null,
    floor_figure_steps_per_s: num(floorFig?.steps_per_s) ?? null,
    in_process_steps_per_s: num(inProc?.steps_per_s) ?? null,
    in_process_p50_ms: num(inProc?.p50_ms) ?? null,
    in_process_cpu_ms_per_workflow: num(inProc?.cpu_ms_per_workflow) ?? null,
    ...Object.fromEntries(tp.map((f) => [`jetflow_steps_per_s_${f.runtimes}rt`, f.steps_per_s])),
    ...Object.fromEntries(tp.map((f) => [`jetflow_workflows_per_s_${f.runtimes}rt`, f.workflows_per_s])),
    jetflow_p50_ms: num(lat?.p50_ms) ?? null,
    jetflow_p99_ms: num(lat?.p99_ms) ?? null,
    dev_cold_start_ms: dev && !dev.skipped ? (num(dev.cold_start_ms) ?? null) : null,
    dev_reload_ms: dev && !dev.skipped ? (num(dev.reload_ms) ?? null) : null,
    targets: {
      throughput: ratio(tp1?.steps_per_s, rawSteps(tp1)) === null ? null : ratio(tp1?.steps_per_s, rawSteps(tp1))! >= 0.7,
      p50: ratio(lat?.p50_ms, rawP50) === null ? null : ratio(lat?.p50_ms, rawP50)! <= 1.5,
      // Issue 18: in process ≥ 0.7× the floor's throughput, p50 ≤ 1.5×, CPU ≤ 1.5×; `wf run` ≥ 0.6×.
      floor_throughput: floorRatios.throughput === null ? null : floorRatios.throughput >= 0.7,
      floor_p50: floorRatios.p50 === null ? null : floorRatios.p50 <= 1.5,
      floor_cpu: floorRatios.cpu === null ? null : floorRatios.cpu <= 1.5,
      floor_wf_run_throughput: floorRatios.wfRun === null ? null : floorRatios.wfRun >= 0.6,
      replay: num(rep?.ratio) === undefined ? null : (rep!.ratio as number) <= 1.5,
      memory: mem && mem.waiting_workflows === 10_000 ? (mem.rss_mb as number) <= 150 : null,
      reload: dev && !dev.skipped && !dev.error ? (dev.reload_ms as number) <= 300 : null,
      list_flat: listFull && num(list!.ratio) !== undefined ? (list!.ratio as number) <= 1.2 : null,
      recovery_flat: recFull && num(rec!.ratio) !== undefined ? (rec!.ratio as number) <= 1.2 : null,
      retention_flat: retFull && num(ret!.ratio) !== undefined ? (ret!.ratio as number) <= 1.2 : null,
      // At most 1 % of the workflows' timers still parked once they all finished.
      metrics_cost: num(metricsFig?.ratio) === undefined ? null : (metricsFig!.ratio as number) >= 0.97,
      parked_timers: timersFull && num(timers!.parked_timers) !== undefined ? (timers!.parked_timers as number) <= 100 : null,
      continue_as_new: can && can.runs === 10_000 && num(can.state_size_ratio) !== undefined ? (can.state_size_ratio as number) <= 1.2 && (can.step_cost_ratio as number) <= 1.2 : null,
      scaleout: num(scale?.scaleout_cpu_ratio) === undefined ? null : (scale!.scaleout_cpu_ratio as number) <= 1.1 && (num(scale!.cache_hit_ratio_4rt) ?? 0) >= 0.99,
    },
    errors: figures.filter((f) => f.error).map((f) => f.figure),
    quick: run.options.quick,
    cores: run.machine.cores,
    cpu_model: run.machine.model,
    node: run.machine.node,
    nats_server: run.natsServer,
    seconds: run.seconds,
    date: new Date().toISOString(),
  });
  return summary;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`[bench] ${(err as Error)?.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
