/**
 * A fleet of jetflow runtimes in child processes (test/fixtures/runtime-process.ts with the chaos
 * function set), which the scenarios SIGKILL, SIGTERM or let crash by PID. Only processes spawned
 * here are ever signalled. Each child exits on its own when this process goes away (its stdin
 * closes) and after `maxLifetime`; an exit hook SIGKILLs whatever is left.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { RuntimeProcessOptions } from "../../test/fixtures/runtime-process.js";
import { log, sleep } from "./util.js";
import { onLines } from "../../test/helpers/wait.js";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "..", "..");
const fixture = join(repoRoot, "test", "fixtures", "runtime-process.ts");
const READY_TIMEOUT_MS = 60_000;
const OUTPUT_LINES = 300;

// ---------------------------------------------------------------------------------------------
// Leak protection: every child of every fleet, SIGKILLed by PID when this process exits.

const allChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", killAllChildrenSync);
}

export function killAllChildrenSync(): void {
  for (const child of allChildren) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  allChildren.clear();
}

// ---------------------------------------------------------------------------------------------

export type DisruptionKind = "sigkill" | "sigterm" | "crash";

/** A runtime that went away, or was told to: what explains an activity running again. */
export interface Disruption {
  pid: number;
  kind: DisruptionKind;
  /** When the harness sent the signal, or when it saw the unrequested exit. */
  at: number;
  exitedAt?: number;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

export interface RuntimeHandle {
  pid: number;
  name: string;
  startedAt: number;
  readyAt: number;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  hasExited(): boolean;
  /** Set when the harness signalled it. */
  signalled?: { signal: NodeJS.Signals; at: number };
}

export type FleetOptions = Omit<RuntimeProcessOptions, "natsUrl"> & { natsUrl?: string };

export class Fleet {
  readonly all: RuntimeHandle[] = [];
  readonly disruptions: Disruption[] = [];
  private counter = 0;
  private closed = false;
  private supervising: { target: number; maxRespawns: number; respawns: number } | undefined;
  private respawning = 0;

  constructor(
    readonly scenario: string,
    readonly base: FleetOptions,
  ) {
    installExitHook();
  }

  live(): RuntimeHandle[] {
    return this.all.filter((h) => !h.hasExited());
  }

  /** Runtimes that ever started (pids), for reports. */
  get spawned(): number {
    return this.all.length;
  }

  /** Start one runtime; resolves when it printed READY. */
  async spawn(overrides: Partial<FleetOptions> = {}, label = "rt"): Promise<RuntimeHandle> {
    if (this.closed) throw new Error(`fleet ${this.scenario} is closed`);
    const options: RuntimeProcessOptions = {
      functions: "chaos",
      exitWithParent: true,
      maxLifetime: "20m",
      // CHAOS_LOG_LEVEL=info (with CHAOS_KEEP=1, which keeps each runtime's whole log in the
      // scenario's directory) explains a failed run after the fact.
      logLevel: process.env.CHAOS_LOG_LEVEL ?? "warn",
      ...this.base,
      ...overrides,
      natsUrl: overrides.natsUrl ?? this.base.natsUrl ?? overrides.natsUrls?.[0] ?? this.base.natsUrls?.[0] ?? "",
    } as RuntimeProcessOptions;
    const name = `${label}${++this.counter}`;
    const proc = spawn(process.execPath, ["--import", "tsx", fixture, JSON.stringify(options)], {
      cwd: repoRoot,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, JETFLOW_CRASH_POINT: "", JETFLOW_CRASH_PROBABILITY: "" },
    });
    if (proc.pid === undefined) throw new Error(`could not spawn runtime ${name}`);
    allChildren.add(proc);
    const output: string[] = [];
    // (A stream, not a synchronous write per line: the harness times what the runtimes do.)
    const logFile = process.env.CHAOS_KEEP === "1" ? createWriteStream(join(options.markerDir, `${name}-${proc.pid}.log`), { flags: "a" }) : undefined;
    const push = (line: string) => {
      if (logFile && !logFile.writableEnded) logFile.write(`${Date.now()} ${line}\n`); // (lines may still come after the exit)
      output.push(line);
      if (output.length > OUTPUT_LINES) output.splice(0, output.length - OUTPUT_LINES);
    };
    let exited = false;
    const exitedPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolvePromise) => {
      proc.once("exit", (code, signal) => {
        exited = true;
        allChildren.delete(proc);
        push(`(exited: code ${String(code)}, signal ${String(signal)})`);
        logFile?.end();
        resolvePromise({ code, signal, at: Date.now() });
      });
    });
    const handle: RuntimeHandle = { pid: proc.pid, name, startedAt: Date.now(), readyAt: 0, output, exited: exitedPromise, hasExited: () => exited };
    this.all.push(handle);
    proc.stdin!.on("error", () => undefined); // the child may be gone when we close its stdin

    let ready: () => void = () => undefined;
    const readyPromise = new Promise<void>((r) => (ready = r));
    const collect = (stream: NodeJS.ReadableStream, label: string) =>
      onLines(stream, (line) => {
        push(`${label} ${line}`);
        if (label === "out" && line.trim() === "READY") ready();
      });
    collect(proc.stdout!, "out");
    collect(proc.stderr!, "err");

    // An exit the harness did not ask for (a crash point, process.exit in an activity).
    void exitedPromise.then((exit) => {
      if (!handle.signalled) this.disruptions.push({ pid: handle.pid, kind: "crash", at: exit.at, exitedAt: exit.at, exit: { code: exit.code, signal: exit.signal } });
      else {
        const d = this.disruptions.find((x) => x.pid === handle.pid && x.kind !== "crash");
        if (d) {
          d.exitedAt = exit.at;
          d.exit = { code: exit.code, signal: exit.signal };
        }
      }
      this.onExit();
    });

    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      readyPromise.then(() => "ready" as const),
      exitedPromise.then(() => "exited" as const),
      new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), READY_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (outcome !== "ready") {
      if (outcome === "timeout") await this.kill(handle);
      throw new Error(`runtime ${name} (pid ${handle.pid}) did not print READY (${outcome}):\n${output.slice(-40).join("\n")}`);
    }
    handle.readyAt = Date.now();
    return handle;
  }

  /** SIGKILL by PID (a child spawned here) and wait until it is gone. */
  async kill(handle: RuntimeHandle): Promise<void> {
    if (!handle.hasExited()) {
      const at = Date.now();
      handle.signalled = { signal: "SIGKILL", at };
      this.disruptions.push({ pid: handle.pid, kind: "sigkill", at });
      try {
        process.kill(handle.pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await handle.exited;
  }

  /** SIGTERM by PID; resolves with the exit and how long it took. SIGKILL after `timeoutMs`. */
  async terminate(handle: RuntimeHandle, timeoutMs = 30_000): Promise<{ ms: number; code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    const at = Date.now();
    if (handle.hasExited()) {
      const exit = await handle.exited;
      return { ms: 0, code: exit.code, signal: exit.signal, timedOut: false };
    }
    handle.signalled = { signal: "SIGTERM", at };
    this.disruptions.push({ pid: handle.pid, kind: "sigterm", at });
    process.kill(handle.pid, "SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([handle.exited, new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)))]);
    clearTimeout(timer);
    if (result === "timeout") {
      try {
        process.kill(handle.pid, "SIGKILL");
      } catch {
        // gone
      }
      const exit = await handle.exited;
      return { ms: Date.now() - at, code: exit.code, signal: exit.signal, timedOut: true };
    }
    return { ms: result.at - at, code: result.code, signal: result.signal, timedOut: false };
  }

  /**
   * Keep `target` runtimes alive: every exit (a kill, a SIGTERM, a crash) is followed by a new
   * runtime, at most `maxRespawns` times in all.
   */
  supervise(target: number, maxRespawns: number): void {
    this.supervising = { target, maxRespawns, respawns: 0 };
  }

  stopSupervising(): void {
    this.supervising = undefined;
  }

  get respawns(): number {
    return this.supervising?.respawns ?? 0;
  }

  private onExit(): void {
    const s = this.supervising;
    if (!s || this.closed) return;
    const missing = s.target - this.live().length - this.respawning;
    for (let i = 0; i < missing && s.respawns < s.maxRespawns; i++) {
      s.respawns += 1;
      this.respawning += 1;
      void (async () => {
        for (let attempt = 1; attempt <= 3 && !this.closed; attempt++) {
          try {
            await this.spawn();
            return;
          } catch (err) {
            log(this.scenario, `respawn failed (attempt ${attempt}): ${(err as Error).message.split("\n")[0]}`);
            await sleep(1_000);
          }
        }
      })().finally(() => {
        this.respawning -= 1;
      });
    }
  }

  /** Wait until `count` runtimes are live (after crashes and respawns). */
  async waitLive(count: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.live().filter((h) => h.readyAt > 0).length < count) {
      if (Date.now() > deadline) throw new Error(`fleet ${this.scenario}: ${count} live runtimes not reached within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** SIGKILL every runtime still running and wait for them; stops supervision first. */
  async close(): Promise<void> {
    this.closed = true;
    this.supervising = undefined;
    await Promise.all(
      this.all.map(async (h) => {
        if (h.hasExited()) return;
        try {
          process.kill(h.pid, "SIGKILL");
        } catch {
          // gone
        }
        await h.exited;
      }),
    );
  }

  /** The last lines of every runtime's output, for a failure report. */
  dump(maxRuntimes = 4, lines = 40): string {
    return this.all
      .slice(-maxRuntimes)
      .map((h) => `--- runtime ${h.name} (pid ${h.pid}):\n${h.output.slice(-lines).join("\n")}`)
      .join("\n");
  }
}
