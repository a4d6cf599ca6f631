/**
 * Dev loop: `wf dev` cold start (spawn → first workflow result) and save-to-live reload (an
 * activity file saved → the first workflow that runs the new code). Skipped, with a JSON line
 * saying so, while the CLI has no `dev` command. It runs on a copy of functions/ in a temporary
 * project, so the repository's files are never edited.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchContext, Figure } from "./lib/context.js";
import { benchClient, namespaceFor, orderInput } from "./lib/context.js";
import { REPO_ROOT, spawnRuntime, WF_CLI, type RuntimeProcess } from "./lib/runtimes.js";
import { percentile, round, sleep, withTimeout } from "./lib/stats.js";

const RELOADS = 3;
const SETTLE_MS = 500;
const RELOAD_TIMEOUT_MS = 10_000;

export function devCommandExists(): boolean {
  try {
    const help = execFileSync(process.execPath, [WF_CLI, "--help"], { encoding: "utf8", timeout: 15_000 });
    return /^\s+dev\s/m.test(help);
  } catch (err) {
    const out = String((err as { stdout?: unknown }).stdout ?? "");
    return /^\s+dev\s/m.test(out);
  }
}

export async function devLoop(ctx: BenchContext): Promise<Figure> {
  if (!devCommandExists()) return { figure: "dev_loop", skipped: true, reason: "`wf dev` does not exist yet (not in `wf --help`)" };
  const namespace = namespaceFor("dev");
  const project = mkdtempSync(join(tmpdir(), "jetflow-bench-dev-"));
  const runtimes: RuntimeProcess[] = [];
  const client = await benchClient(ctx, namespace);
  try {
    cpSync(join(REPO_ROOT, "functions"), join(project, "functions"), { recursive: true });
    writeFileSync(join(project, "wf.config.json"), JSON.stringify({ namespace }) + "\n");
    const activities = join(project, "functions", "activities", "orders.ts");
    const original = readFileSync(activities, "utf8");
    if (!original.includes("is on its way")) throw new Error(`${activities} no longer contains the text the reload probe edits ("is on its way")`);

    let seq = 0;
    const runOnce = async () => {
      const handle = await client.start("order_processing", orderInput(seq), { id: `dev-${seq++}` });
      return (await withTimeout(handle.result(), 30_000, `workflow dev-${seq - 1}`)) as Record<string, { message?: string }>;
    };

    // wf dev prints "↻ reloaded <version> in <n>ms" when the saved code is live.
    const reported: number[] = [];
    let onReload: (() => void) | undefined;
    const logFile = process.env.BENCH_DEV_LOG; // every line wf dev writes, for debugging this figure
    const onLine = (line: string) => {
      if (logFile) appendFileSync(logFile, line + "\n");
      const m = /reloaded \S+ in (\d+)ms/.exec(line.replace(/\x1b\[[0-9;]*m/g, ""));
      if (m) {
        reported.push(Number(m[1]));
        onReload?.();
      }
    };
    const t0 = performance.now();
    runtimes.push(spawnRuntime({ natsUrl: ctx.natsUrl, namespace, label: "dev", args: ["dev"], cwd: project, onLine }));
    await runOnce();
    const coldStartMs = performance.now() - t0;
    // Give the file watcher its initial scan before the first save (a save during it can be lost).
    await sleep(SETTLE_MS);

    const toReloaded: number[] = [];
    const toResult: number[] = [];
    let missed = 0;
    for (let i = 0; i < RELOADS; i++) {
      const marker = `[bench reload ${i}]`;
      const reloaded = new Promise<boolean>((resolve) => {
        onReload = () => resolve(true);
        setTimeout(() => resolve(false), RELOAD_TIMEOUT_MS).unref();
      });
      writeFileSync(activities, original.replace("is on its way", `is on its way ${marker}`));
      const saved = performance.now();
      if (!(await reloaded)) {
        missed += 1;
        continue;
      }
      toReloaded.push(performance.now() - saved);
      // The first workflow started now must run the new code.
      for (let tries = 0; ; tries++) {
        if (runtimes[0]!.exited()) throw new Error(`wf dev exited:\n${runtimes[0]!.output()}`);
        const result = await runOnce();
        if (result.send_notification?.message?.includes(marker)) {
          toResult.push(performance.now() - saved);
          break;
        }
        if (tries >= 20) throw new Error(`wf dev said it reloaded, but workflows still run the old code (${tries + 1} tried)`);
      }
      await sleep(SETTLE_MS);
    }
    if (toReloaded.length === 0) throw new Error(`no save was picked up within ${RELOAD_TIMEOUT_MS / 1000} s (${RELOADS} tries); wf dev output:\n${runtimes[0]!.output()}`);
    return {
      figure: "dev_loop",
      cold_start_ms: round(coldStartMs, 1),
      reload_ms: round(percentile(toReloaded, 50), 1),
      reload_samples_ms: toReloaded.map((r) => round(r, 1)),
      save_to_result_ms: round(percentile(toResult, 50), 1),
      reported_reload_ms: reported,
      missed_saves: missed,
      note: "cold start = spawn → first workflow result; reload = file saved → wf dev prints '↻ reloaded' (median); save_to_result = saved → result of the first workflow started after the reload, which must run the new code",
    };
  } finally {
    await client.close().catch(() => undefined);
    await Promise.all(runtimes.map((r) => r.stop()));
    rmSync(project, { recursive: true, force: true });
  }
}
