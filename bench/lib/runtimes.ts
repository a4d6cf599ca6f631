/**
 * `wf run` processes for the figures: spawned from the built CLI (dist/cli/wf.js) with the repo
 * root as cwd, so they read wf.config.json and bundle functions/ (or WF_FUNCTIONS_DIR) exactly
 * as a user's runtime does. Each one is tracked by PID and always stopped: SIGTERM, then SIGKILL;
 * an exit hook SIGKILLs any that are left if the bench itself dies.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { JetStreamManager } from "@nats-io/jetstream";
import { createNames } from "../../runtime/nats/names.js";
import { sleep } from "./stats.js";
import { statusMb } from "./proc.js";

export const REPO_ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const WF_CLI = join(REPO_ROOT, "dist", "cli", "wf.js");

export interface RuntimeProcessOptions {
  natsUrl: string;
  namespace: string;
  /** Folder with activities/ and workflows/ (WF_FUNCTIONS_DIR); default the repo's functions/. */
  functionsDir?: string;
  slots?: number | undefined;
  /** Write a V8 CPU profile into <cpuProfDir>/<label>/ when the process exits. */
  cpuProfDir?: string | undefined;
  label: string;
  /** wf arguments (default ["run"]) and working directory (default the repo root). */
  args?: string[];
  cwd?: string;
  /** Called with every line the process writes (stdout and stderr). */
  onLine?: (line: string) => void;
  /** More environment (WF_METRICS_PORT, say). */
  env?: Record<string, string>;
}

export interface RuntimeProcess {
  pid: number;
  label: string;
  /** The last lines the process wrote (stderr and stdout), for error messages. */
  output(): string;
  exited(): boolean;
  rssMb(): number | undefined;
  hwmMb(): number | undefined;
  /** SIGTERM; SIGKILL after graceMs. Resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let hookInstalled = false;

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  });
}

export function spawnRuntime(options: RuntimeProcessOptions): RuntimeProcess {
  if (!existsSync(WF_CLI)) throw new Error(`${WF_CLI} does not exist: run \`npm run build\` first (npm run bench does)`);
  installExitHook();
  const env: NodeJS.ProcessEnv = { ...process.env, NATS_URL: options.natsUrl, WF_NAMESPACE: options.namespace, WF_LOG_LEVEL: "warn" };
  delete env.WF_CONFIG; // the repo's wf.config.json, as `wf run` in the repo would use
  delete env.NODE_OPTIONS; // tsx's loader is the bench's business, not the runtime's
  if (options.functionsDir) env.WF_FUNCTIONS_DIR = options.functionsDir;
  else delete env.WF_FUNCTIONS_DIR;
  if (options.slots !== undefined) env.WF_WORKER_SLOTS = String(options.slots);
  Object.assign(env, options.env ?? {});
  const nodeArgs = options.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", join(options.cpuProfDir, options.label)] : [];
  const child = spawn(process.execPath, [...nodeArgs, WF_CLI, ...(options.args ?? ["run"])], { cwd: options.cwd ?? REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid === undefined) throw new Error(`could not spawn ${WF_CLI} run`);
  live.add(child);
  let tail: string[] = [];
  const collect = (chunk: Buffer) => {
    const lines = chunk.toString("utf8").split("\n").filter(Boolean);
    if (options.onLine) for (const line of lines) options.onLine(line);
    tail.push(...lines);
    if (tail.length > 40) tail = tail.slice(-40);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  let gone = false;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once("exit", () => {
      gone = true;
      live.delete(child);
      resolve();
    });
  });
  const pid = child.pid;
  return {
    pid,
    label: options.label,
    output: () => tail.join("\n"),
    exited: () => gone,
    rssMb: () => statusMb(pid, "VmRSS"),
    hwmMb: () => statusMb(pid, "VmHWM"),
    async stop(graceMs = 15_000) {
      if (gone) return;
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* gone */
      }
      const timedOut = await Promise.race([exitedPromise.then(() => false), sleep(graceMs).then(() => true)]);
      if (timedOut && !gone) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* gone */
        }
        await exitedPromise;
      }
    },
  };
}

/**
 * Resolves once every runtime pulls: the orchestrator consumer and the consumer of each given
 * activity type have at least `count` waiting pull requests (one per runtime). Fails early when a
 * runtime exits, with its last output.
 */
export async function waitUntilPulling(
  jsm: JetStreamManager,
  namespace: string,
  activityTypes: string[],
  runtimes: RuntimeProcess[],
  timeoutMs = 60_000,
): Promise<void> {
  const names = createNames(namespace);
  const wanted: Array<[string, string]> = [
    [names.eventsStream, names.orchestratorConsumer],
    ...activityTypes.map((t): [string, string] => [names.tasksStream, names.activityConsumer(t)]),
  ];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const rt of runtimes) {
      if (rt.exited()) throw new Error(`runtime ${rt.label} (pid ${rt.pid}) exited during startup:\n${rt.output()}`);
    }
    let ready = true;
    for (const [stream, consumer] of wanted) {
      try {
        const info = await jsm.consumers.info(stream, consumer);
        if ((info.num_waiting ?? 0) < runtimes.length) ready = false;
      } catch {
        ready = false; // not created yet
      }
      if (!ready) break;
    }
    if (ready) return;
    if (Date.now() > deadline) {
      throw new Error(`runtimes ${runtimes.map((r) => r.label).join(", ")} not pulling within ${timeoutMs / 1000} s; last output:\n${runtimes.map((r) => r.output()).join("\n")}`);
    }
    await sleep(50);
  }
}

export async function stopAll(runtimes: RuntimeProcess[]): Promise<void> {
  await Promise.all(runtimes.map((r) => r.stop()));
}
