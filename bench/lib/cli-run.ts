/**
 * One run of the built CLI (`node dist/cli/wf.js …`), as a user types it in the repo: wall time
 * from spawn to exit, its stdout, and its peak RSS. The peak comes from the process itself: a
 * module loaded with `--import` writes `process.resourceUsage().maxRSS` (kB) to a file at exit,
 * which /proc cannot give once the process is gone.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, WF_CLI } from "./runtimes.js";

const RSS_DIR = mkdtempSync(join(tmpdir(), "jetflow-bench-rss-"));
process.on("exit", () => rmSync(RSS_DIR, { recursive: true, force: true }));

const MAX_RSS_HOOK = `data:text/javascript,${encodeURIComponent(
  `import { writeFileSync } from "node:fs"; process.on("exit", () => writeFileSync(process.env.BENCH_MAX_RSS_FILE, String(process.resourceUsage().maxRSS)));`,
)}`;

export interface CliRun {
  wallMs: number;
  maxRssMb: number;
  stdout: string;
}

let runs = 0;

export async function runCli(args: string[], env: { natsUrl: string; namespace: string }, timeoutMs = 60_000): Promise<CliRun> {
  const rssFile = join(RSS_DIR, `run-${++runs}`);
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NATS_URL: env.natsUrl, WF_NAMESPACE: env.namespace, WF_LOG_LEVEL: "warn", BENCH_MAX_RSS_FILE: rssFile };
  delete childEnv.WF_CONFIG;
  delete childEnv.NODE_OPTIONS; // tsx's loader is the bench's, not the CLI's
  const t0 = performance.now();
  const child = spawn(process.execPath, ["--import", MAX_RSS_HOOK, WF_CLI, ...args], { cwd: REPO_ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const timer = setTimeout(() => {
    if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (exitCode) => resolve(exitCode));
  }).finally(() => clearTimeout(timer));
  const wallMs = performance.now() - t0;
  if (code !== 0) throw new Error(`wf ${args.join(" ")} exited with ${code ?? "a signal"} after ${Math.round(wallMs)} ms:\n${stderr.slice(-2_000)}`);
  const maxRssKb = Number(readFileSync(rssFile, "utf8"));
  rmSync(rssFile, { force: true });
  return { wallMs, maxRssMb: maxRssKb / 1024, stdout };
}
