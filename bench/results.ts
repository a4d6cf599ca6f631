/** The markdown section each run appends to bench/RESULTS.md. */
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import type { Figure } from "./lib/context.js";
import type { MachineInfo } from "./lib/proc.js";
import { sizeLabel } from "./visibility.js";

const HEADER = `# Benchmark results

Appended by \`npm run bench\` (bench/run.ts), one section per run; the newest is at the end.
All figures of a section come from the same run, against the same nats-server (file store,
temporary directory), so ratios are fair on a noisy machine. The runtime(s) run as separate
\`wf run\` processes; the bench process (client), the runtimes and nats-server share the cores.

- **raw bound**: a hand-written loop doing only a step's JetStream work (acked task publish to a
  work queue, consume + ack, acked completion publish to a second work queue, consume, KV CAS
  update, ack); 4 steps per "workflow"; KV key created before the clock starts, end seen
  in-process. See bench/raw-bound.ts.
- **floor**: what any engine must do to record each step durably: one process, a \`kv.create\` of a
  small state per workflow, then per step the activity run in place and one \`kv.update\` (CAS on
  the revision) with its output; no queue, no events. See bench/floor.ts.
- **throughput**: order_processing (4-step DAG) workflows, start → terminal state seen by the client.
- **in process**: the same with runtime and client in the bench process (createRuntime + createClient).
- **latency**: one workflow at a time, start → terminal state seen by the client.
- **replay**: ms per step around step 10 vs around the last step of a 200-activity code workflow.
- **memory**: RSS of one runtime holding N workflows that sleep for an hour.
- **list flat**: \`wf list --limit 50\` wall time with 100,000 finished + 1,000 running ÷ with 10,000 + 1,000.
- **recovery flat**: CPU of one recovery pass with 100,000 finished + 100 running ÷ with 0 + 100.
- **parked timers**: timers still parked once 10,000 workflows with a 10-minute timeout completed.
- **continue-as-new**: one workflow id continuing as new 10,000 times, one activity per run: state
  size and ms per run at the end against the start. See bench/continue-as-new.ts.

Targets (issue 5): throughput ≥ 0.7× raw; p50 ≤ 1.5× raw; replay ratio ≤ 1.5; ≤ 150 MB for 10,000
waiting workflows; reload ≤ 300 ms. Against the floor (issue 18): in process ≥ 0.7× its throughput,
p50 ≤ 1.5×, CPU per workflow ≤ 1.5×; one \`wf run\` ≥ 0.6× its throughput. Visibility: list and recovery ratios ≤ 1.2; ≤ 100 parked timers
(1 %) after 10,000 finished. Continue-as-new (issue 13): state size and ms per run ratios ≤ 1.2.
`;

const label = (n: unknown): string => sizeLabel(Number(n));
const fmt = (v: unknown, unit = ""): string => (typeof v === "number" && Number.isFinite(v) ? `${v}${unit}` : "—");

function find(figures: Figure[], name: string, extra?: (f: Figure) => boolean): Figure | undefined {
  return figures.find((f) => f.figure === name && !f.error && !f.skipped && (!extra || extra(f)));
}

export interface RunInfo {
  date: string;
  machine: MachineInfo;
  natsServer: string;
  quick: boolean;
  seconds: number;
  options: Record<string, unknown>;
}

export function markdownSection(info: RunInfo, figures: Figure[], summary: Record<string, unknown>): string {
  const rows: string[][] = [];
  const raw = find(figures, "raw_bound");
  if (raw) {
    rows.push(["raw bound: throughput", `${fmt(raw.steps_per_s)} steps/s (${fmt(raw.workflows_per_s)} wf/s, ${raw.concurrency} in flight)`, "—"]);
    rows.push(["raw bound: 4 steps in sequence", `p50 ${fmt(raw.p50_ms, " ms")}, p99 ${fmt(raw.p99_ms, " ms")}`, "—"]);
  }
  const floor = find(figures, "floor");
  if (floor) {
    rows.push([
      "floor: throughput",
      `${fmt(floor.steps_per_s)} steps/s (${fmt(floor.workflows_per_s)} wf/s, ${floor.concurrency} in flight); ${fmt(floor.cpu_ms_per_workflow)} CPU-ms per workflow (process ${fmt(floor.process_cpu_ms_per_workflow)}, nats-server ${fmt(floor.nats_server_cpu_ms_per_workflow)})`,
      "—",
    ]);
    rows.push(["floor: 4 steps in sequence", `p50 ${fmt(floor.p50_ms, " ms")}, p99 ${fmt(floor.p99_ms, " ms")}`, "—"]);
  }
  for (const tp of figures.filter((f) => f.figure === "throughput" && !f.error)) {
    const interleaved = tp.raw_interleaved as { steps_per_s?: number } | undefined;
    const rawSteps = interleaved?.steps_per_s ?? (raw?.steps_per_s as number | undefined);
    const ratio = rawSteps ? Math.round(((tp.steps_per_s as number) / rawSteps) * 100) / 100 : undefined;
    rows.push([
      `jetflow throughput, ${tp.runtimes} \`wf run\``,
      `${fmt(tp.steps_per_s)} steps/s, ${fmt(tp.workflows_per_s)} wf/s${ratio !== undefined ? ` — **${ratio}× raw**` : ""}${interleaved ? ` (raw runs interleaved: ${fmt(interleaved.steps_per_s)} steps/s)` : ""}` +
        (tp.durable_writes_per_step !== undefined ? `; ${fmt(tp.durable_writes_per_step)} durable writes per step (raw: 3)` : ""),
      "≥ 0.7× raw",
    ]);
    const floorRun = tp.floor_interleaved as { steps_per_s?: number } | undefined;
    if (floorRun?.steps_per_s) {
      rows.push([
        `jetflow throughput, ${tp.runtimes} \`wf run\`, against the floor`,
        `**${Math.round(((tp.steps_per_s as number) / floorRun.steps_per_s) * 100) / 100}× floor** (floor runs interleaved: ${fmt(floorRun.steps_per_s)} steps/s); ${fmt(tp.cpu_ms_per_workflow)} CPU-ms per workflow (runtimes ${fmt(tp.runtime_cpu_ms_per_workflow)})`,
        tp.runtimes === 1 ? "≥ 0.6× floor" : "—",
      ]);
    }
  }
  const inProc = find(figures, "in_process");
  if (inProc) {
    const f = inProc.floor_interleaved as { steps_per_s: number; p50_ms: number; cpu_ms_per_workflow: number };
    const r = (a: unknown, b: number) => (typeof a === "number" && b > 0 ? Math.round((a / b) * 100) / 100 : "—");
    rows.push([
      "jetflow in process (runtime + client), throughput",
      `${fmt(inProc.steps_per_s)} steps/s — **${r(inProc.steps_per_s, f.steps_per_s)}× floor** (floor runs interleaved: ${fmt(f.steps_per_s)} steps/s)`,
      "≥ 0.7× floor",
    ]);
    rows.push(["jetflow in process, 4 steps in sequence", `p50 ${fmt(inProc.p50_ms, " ms")}, p99 ${fmt(inProc.p99_ms, " ms")} — **p50 ${r(inProc.p50_ms, f.p50_ms)}× floor** (floor samples interleaved: p50 ${fmt(f.p50_ms, " ms")})`, "p50 ≤ 1.5× floor"]);
    rows.push([
      "jetflow in process, CPU per workflow",
      `${fmt(inProc.cpu_ms_per_workflow)} CPU-ms (process ${fmt(inProc.process_cpu_ms_per_workflow)}, nats-server ${fmt(inProc.nats_server_cpu_ms_per_workflow)}) — **${r(inProc.cpu_ms_per_workflow, f.cpu_ms_per_workflow)}× floor** (floor: ${fmt(f.cpu_ms_per_workflow)})`,
      "≤ 1.5× floor",
    ]);
  }
  const lat = find(figures, "latency");
  if (lat) {
    const interleaved = lat.raw_interleaved as { p50_ms?: number; p99_ms?: number } | undefined;
    const rawP50 = interleaved?.p50_ms ?? (raw?.p50_ms as number | undefined);
    const ratio = rawP50 ? Math.round(((lat.p50_ms as number) / rawP50) * 100) / 100 : undefined;
    const api = lat.result_api as { p50_ms?: number; p99_ms?: number } | undefined;
    rows.push([
      "jetflow latency (4-step workflow)",
      `p50 ${fmt(lat.p50_ms, " ms")}, p99 ${fmt(lat.p99_ms, " ms")}${ratio !== undefined ? ` — **p50 ${ratio}× raw**` : ""}${interleaved ? ` (raw samples interleaved: p50 ${fmt(interleaved.p50_ms, " ms")})` : ""}; with handle.result(): p50 ${fmt(api?.p50_ms, " ms")}`,
      "p50 ≤ 1.5× raw",
    ]);
  }
  const rep = find(figures, "replay");
  if (rep) rows.push([`replay (${rep.steps} sequential activities)`, `${fmt(rep.ms_per_step_at_10, " ms")}/step at 10, ${fmt(rep.ms_per_step_late, " ms")}/step at ${rep.steps} — **${fmt(rep.ratio, "×")}**`, "≤ 1.5×"]);
  const mem = find(figures, "memory");
  if (mem) rows.push([`memory (${mem.waiting_workflows} sleeping workflows)`, `**${fmt(mem.rss_mb, " MB")} RSS** 3 s after all were waiting (idle ${fmt(mem.idle_rss_mb, " MB")}, peak ${fmt(mem.peak_rss_mb, " MB")}); ${fmt(mem.rss_mb_settled, " MB")} after ${fmt(mem.settled_after_s, " s")}`, "≤ 150 MB at 10,000"]);
  const dev = figures.find((f) => f.figure === "dev_loop");
  if (dev) rows.push(["dev loop", dev.skipped ? `skipped: ${dev.reason}` : dev.error ? `error: ${dev.error}` : `cold start ${fmt(dev.cold_start_ms, " ms")}, **reload ${fmt(dev.reload_ms, " ms")}** (save → "reloaded"), save → first new result ${fmt(dev.save_to_result_ms, " ms")}`, "reload ≤ 300 ms"]);
  const list = find(figures, "list_flat");
  if (list) {
    const [small, large] = [label(list.finished_small), label(list.finished_large)];
    rows.push([
      `wf list --limit 50, ${fmt(list.finished_large)} vs ${fmt(list.finished_small)} finished (+ ${fmt(list.running)} running)`,
      `${fmt(list[`cli_ms_${large}`], " ms")} vs ${fmt(list[`cli_ms_${small}`], " ms")} — **${fmt(list.ratio, "×")}**; peak RSS ${fmt(list[`rss_mb_${large}`], " MB")} vs ${fmt(list[`rss_mb_${small}`], " MB")}; in process: page ${fmt(list.in_process_page_ratio, "×")}, completed page ${fmt(list.in_process_completed_page_ratio, "×")}`,
      "≤ 1.2×",
    ]);
  }
  const rec = find(figures, "recovery_flat");
  if (rec) {
    const [small, large] = [label(rec.finished_small), label(rec.finished_large)];
    rows.push([`recovery pass CPU, ${fmt(rec.finished_large)} vs ${fmt(rec.finished_small)} finished (+ ${fmt(rec.running)} running)`, `${fmt(rec[`cpu_ms_${large}`], " ms")} vs ${fmt(rec[`cpu_ms_${small}`], " ms")} — **${fmt(rec.ratio, "×")}**`, "≤ 1.2×"]);
  }
  const ret = find(figures, "retention_flat");
  if (ret) {
    const [small, large] = [label(ret.finished_small), label(ret.finished_large)];
    rows.push([
      `retention sweep, CPU per removed workflow, ${fmt(ret.finished_large)} vs ${fmt(ret.finished_small)} finished kept`,
      `${fmt(ret[`cpu_ms_per_removal_${large}`], " ms")} vs ${fmt(ret[`cpu_ms_per_removal_${small}`], " ms")} — **${fmt(ret.ratio, "×")}** (nats-server ${fmt(ret[`nats_server_cpu_ms_per_removal_${large}`], " ms")} vs ${fmt(ret[`nats_server_cpu_ms_per_removal_${small}`], " ms")})`,
      "≤ 1.2×",
    ]);
  }
  const timers = find(figures, "parked_timers");
  if (timers) rows.push([`timers parked after ${fmt(timers.workflows)} workflows (${timers.workflow_timeout} timeout) finished`, `**${fmt(timers.parked_timers)} timers** in ${fmt(timers.timer_messages)} messages (${fmt(timers.timers_ack_pending)} ack pending)`, "≤ 1 % (100 at 10,000)"]);
  const can = find(figures, "continue_as_new");
  if (can) {
    rows.push([`continue-as-new ${fmt(can.runs)} times: state size, last run ÷ run 100`, `${fmt(can.state_bytes_last_run, " B")} vs ${fmt(can.state_bytes_run_100, " B")} — **${fmt(can.state_size_ratio, "×")}**`, "≤ 1.2×"]);
    rows.push([`continue-as-new ${fmt(can.runs)} times: ms per run, last ${fmt(can.window_runs)} ÷ first ${fmt(can.window_runs)}`, `${fmt(can.late_ms_per_run, " ms")} vs ${fmt(can.early_ms_per_run, " ms")} — **${fmt(can.step_cost_ratio, "×")}**`, "≤ 1.2×"]);
  }
  const scale = find(figures, "scaleout");
  if (scale) {
    const sides = (scale.sides as Array<{ runtimes: number; cpu_ms_per_workflow: number; cache_hit_ratio: number | null }> | undefined) ?? [];
    const side = (count: number) => sides.find((x) => x.runtimes === count);
    rows.push([
      "scale-out: CPU per workflow, 4 `wf run` ÷ 1 (a step, a sleep, a signal, a step)",
      `${fmt(side(4)?.cpu_ms_per_workflow, " ms")} vs ${fmt(side(1)?.cpu_ms_per_workflow, " ms")} — **${fmt(scale.scaleout_cpu_ratio, "×")}**; state cache hit ratio with 4: ${fmt(scale.cache_hit_ratio_4rt)} (with 1: ${fmt(side(1)?.cache_hit_ratio ?? undefined)})`,
      "≤ 1.1×, hits ≥ 0.99",
    ]);
  }
  const cluster = find(figures, "cluster");
  if (cluster) {
    type Side = { steps_per_s: number; p50_ms: number; cpu_ms_per_workflow: number };
    const [r3, r1] = [cluster.r3 as Side, cluster.r1 as Side];
    rows.push([
      "3-node cluster, in process: R3 against R1 on the same servers",
      `R3 ${fmt(r3.steps_per_s, " steps/s")}, p50 ${fmt(r3.p50_ms, " ms")}, ${fmt(r3.cpu_ms_per_workflow, " CPU-ms")} per workflow; R1 ${fmt(r1.steps_per_s, " steps/s")}, p50 ${fmt(r1.p50_ms, " ms")}, ${fmt(r1.cpu_ms_per_workflow, " CPU-ms")} — **${fmt(cluster.r3_throughput_ratio, "×")}** throughput, p50 ${fmt(cluster.r3_p50_ratio, "×")}`,
      "reported",
    ]);
  }
  for (const f of figures.filter((f) => f.error)) rows.push([`${f.figure} (error)`, String(f.error).split("\n")[0]!.slice(0, 200), ""]);

  const m = info.machine;
  return [
    "",
    `## ${info.date}${info.quick ? " (BENCH_QUICK smoke run)" : ""}`,
    "",
    `Machine: ${m.cores} cores (${m.model}), ${m.memory_gb} GB, ${m.platform}; Node ${m.node}; nats-server ${info.natsServer}, file store. ` +
      `Options: ${Object.entries(info.options).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : String(v)}`).join(", ")}. Run took ${info.seconds} s.`,
    "",
    "| figure | result | target |",
    "| --- | --- | --- |",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
    "Summary: `" + JSON.stringify(summary) + "`",
    "",
  ].join("\n");
}

export function appendResults(file: string, section: string): void {
  if (!existsSync(file)) writeFileSync(file, HEADER);
  appendFileSync(file, section);
}
