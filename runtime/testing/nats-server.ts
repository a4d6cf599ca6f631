/**
 * A real nats-server for tests, started by jetflow/testing (createTestEnv) and by jetflow's own
 * suites (test/helpers/nats-server.ts adds clusters on top): 127.0.0.1 only, a random port unless
 * told otherwise, its config, ports file, log and (by default) JetStream store in a fresh
 * temporary directory. Servers still running when the process exits are SIGKILLed, so a crashed
 * test run leaks no process and no directory.
 */
import { spawn, execFileSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, closeSync, constants as fsConstants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { ConnectionError } from "../errors.js";

export interface TestNatsOptions {
  /** Enable JetStream (default true). */
  jetstream?: boolean;
  /** Client port (default -1: random). */
  port?: number;
  /** JetStream store directory (default: a new temporary directory, removed by stop()). */
  storeDir?: string;
  /** Cluster block: routes are full URLs such as `nats://127.0.0.1:6222`. */
  cluster?: { name: string; port: number; routes: string[] };
  /** server_name (default: a random `jetflow-test-…` name). */
  serverName?: string;
  /** Raw nats-server config appended as is, e.g. `authorization { token: "s3cret" }`. */
  extraConfig?: string;
  /** What the error says to do when no nats-server binary is found (default: NATS_SERVER_INSTALL_HINT). */
  installHint?: string;
}

export interface TestNats {
  url: string;
  port: number;
  storeDir: string;
  pid: number;
  version: string;
  /** The server's log file (what it printed: permission violations, auth failures); removed by stop(). */
  logFile: string;
  /** SIGTERM (SIGKILL after 5 s), wait for exit, remove storeDir (if created here) and temp files. */
  stop(): Promise<void>;
  /** SIGKILL, wait for exit, keep storeDir (crash tests). */
  kill(): Promise<void>;
  /** Start again on the same port and store dir; resolves when it accepts TCP connections. */
  restart(): Promise<void>;
}

export const TEST_NATS_HOST = "127.0.0.1";
const HOST = TEST_NATS_HOST;
const STARTUP_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const PORT_BUSY_RETRY_MS = 5_000;
const LOG_TAIL_LINES = 30;

// ---------------------------------------------------------------------------------------------
// Binary lookup

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export const NATS_SERVER_INSTALL_HINT =
  "Install nats-server (Debian/Ubuntu: `apt-get install nats-server`, macOS: `brew install nats-server`, " +
  "others: https://github.com/nats-io/nats-server/releases) and put it on PATH, or set NATS_SERVER_BIN to its path.";

/** NATS_SERVER_BIN, else `nats-server` on PATH, else /usr/sbin/nats-server. The message of a miss says how to install it. */
export function natsServerBinary(installHint: string = NATS_SERVER_INSTALL_HINT): string {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!isExecutable(fromEnv)) {
      throw new ConnectionError("WF_NATS_SERVER_MISSING", `NATS_SERVER_BIN=${fromEnv} is not an executable file. ${installHint}`, { hint: installHint });
    }
    return fromEnv;
  }
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, "nats-server");
    if (isExecutable(candidate)) return candidate;
  }
  if (isExecutable("/usr/sbin/nats-server")) return "/usr/sbin/nats-server";
  throw new ConnectionError("WF_NATS_SERVER_MISSING", `nats-server not found (NATS_SERVER_BIN unset, not on PATH, no /usr/sbin/nats-server). ${installHint}`, { hint: installHint });
}

const versions = new Map<string, string>();

function serverVersion(binary: string): string {
  const cached = versions.get(binary);
  if (cached !== undefined) return cached;
  // Prints e.g. "nats-server: v2.10.27".
  const out = execFileSync(binary, ["--version"], { encoding: "utf8", timeout: 10_000 }).trim();
  const match = /v?(\d+\.\d+\.\d+[^\s]*)/.exec(out);
  const version = match?.[1] ?? out;
  versions.set(binary, version);
  return version;
}

// ---------------------------------------------------------------------------------------------
// Leak protection: SIGKILL every server this process started and that is still running.

const running = new Set<ChildProcess>();
const ownedTempDirs = new Set<string>();
let exitHookInstalled = false;

function killAllSync(): void {
  for (const child of running) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  running.clear();
  for (const dir of ownedTempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
  ownedTempDirs.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", killAllSync);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killAllSync();
      // If nobody else handles the signal, keep its default effect (terminate).
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// Small utilities

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function randomName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

function tailFile(path: string, lines: number, fromByte = 0): string {
  try {
    const text = readFileSync(path).subarray(fromByte).toString("utf8");
    return text.split("\n").filter((l) => l !== "").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function tcpConnects(port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    const done = (ok: boolean): void => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

interface PortsFile {
  nats?: string[];
  cluster?: string[];
  monitoring?: string[];
}

function portOf(url: string | undefined): number | undefined {
  if (url === undefined) return undefined;
  const port = Number(new URL(url).port);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

// ---------------------------------------------------------------------------------------------
// One server

interface Spawned {
  child: ChildProcess;
  exited: Promise<void>;
  hasExited: () => boolean;
}

/** The server could not start because its (fixed) port is taken: worth a retry. */
export function isPortBusyError(err: unknown): boolean {
  return err instanceof ConnectionError && err.code === "WF_NATS_SERVER_START" && /address already in use/i.test(err.message);
}

class TestNatsServer implements TestNats {
  url = "";
  port: number;
  readonly storeDir: string;
  pid = 0;
  readonly version: string;
  /** Monitoring endpoint (http://127.0.0.1:PORT), for debugging. */
  monitorUrl = "";

  private readonly binary: string;
  private readonly tempDir: string;
  private readonly ownsStoreDir: boolean;
  private readonly configPath: string;
  private readonly logPath: string;
  get logFile(): string {
    return this.logPath;
  }
  private readonly jetstream: boolean;
  private readonly serverName: string;
  private readonly cluster: { name: string; port: number; routes: string[] } | undefined;
  private readonly extraConfig: string | undefined;
  private current: Spawned | undefined;
  private stopped = false;

  constructor(options: TestNatsOptions) {
    installExitHook();
    this.binary = natsServerBinary(options.installHint);
    this.version = serverVersion(this.binary);
    this.tempDir = mkdtempSync(join(tmpdir(), "jetflow-nats-"));
    ownedTempDirs.add(this.tempDir);
    this.ownsStoreDir = options.storeDir === undefined;
    this.storeDir = options.storeDir ?? join(this.tempDir, "jetstream");
    this.configPath = join(this.tempDir, "nats-server.conf");
    this.logPath = join(this.tempDir, "nats-server.log");
    this.jetstream = options.jetstream ?? true;
    this.serverName = options.serverName ?? randomName("jetflow-test");
    this.cluster = options.cluster === undefined ? undefined : { ...options.cluster, routes: [...options.cluster.routes] };
    this.port = options.port ?? -1;
    this.extraConfig = options.extraConfig;
  }

  private writeConfig(port: number): void {
    const q = (s: string): string => JSON.stringify(s);
    const lines = [
      `server_name: ${q(this.serverName)}`,
      `host: ${q(HOST)}`,
      `port: ${port}`,
      `http: ${q(`${HOST}:-1`)}`,
      `ports_file_dir: ${q(this.tempDir)}`,
    ];
    if (this.jetstream) {
      lines.push(`jetstream {`, `  store_dir: ${q(this.storeDir)}`, `}`);
    }
    if (this.cluster !== undefined) {
      lines.push(
        `cluster {`,
        `  name: ${q(this.cluster.name)}`,
        `  host: ${q(HOST)}`,
        `  port: ${this.cluster.port}`,
        `  routes: [${this.cluster.routes.map(q).join(", ")}]`,
        `}`,
      );
    }
    if (this.extraConfig) lines.push(this.extraConfig);
    writeFileSync(this.configPath, lines.join("\n") + "\n");
  }

  private portsFilePath(pid: number): string {
    return join(this.tempDir, `nats-server_${pid}.ports`);
  }

  private spawnServer(): Spawned {
    const logFd = openSync(this.logPath, "a");
    let child: ChildProcess;
    try {
      child = spawn(this.binary, ["-c", this.configPath], { stdio: ["ignore", logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    running.add(child);
    let exited = false;
    const exitedPromise = new Promise<void>((resolve) => {
      const onGone = (): void => {
        exited = true;
        running.delete(child);
        resolve();
      };
      child.once("exit", onGone);
      child.once("error", onGone);
    });
    return { child, exited: exitedPromise, hasExited: () => exited };
  }

  /** One attempt: spawn, wait for the ports file and a TCP connect. */
  private async startOnce(port: number): Promise<void> {
    this.writeConfig(port);
    const logStart = fileSize(this.logPath);
    const spawned = this.spawnServer();
    const pid = spawned.child.pid;
    const fail = async (reason: string): Promise<never> => {
      if (!spawned.hasExited()) {
        spawned.child.kill("SIGKILL");
        await spawned.exited;
      }
      const log = tailFile(this.logPath, LOG_TAIL_LINES, logStart);
      throw new ConnectionError(
        "WF_NATS_SERVER_START",
        `nats-server ${this.version} (${this.binary}) failed to start: ${reason}\n` +
          `config ${this.configPath}, last ${LOG_TAIL_LINES} lines of ${this.logPath}:\n${log}`,
        { hint: "The log above says why; a port in use or a store directory another server holds are the usual causes." },
      );
    };
    if (pid === undefined) return fail("spawn failed");

    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let ports: PortsFile | undefined;
    while (ports === undefined) {
      if (spawned.hasExited()) return fail(`process exited (code ${String(spawned.child.exitCode)})`);
      if (Date.now() > deadline) return fail(`no ports file within ${STARTUP_TIMEOUT_MS} ms`);
      try {
        ports = JSON.parse(await readFile(this.portsFilePath(pid), "utf8")) as PortsFile;
      } catch {
        await sleep(25); // not written yet (or half written)
      }
    }
    const natsPort = portOf(ports.nats?.[0]);
    if (natsPort === undefined) return fail(`no client port in ports file: ${JSON.stringify(ports)}`);
    while (!(await tcpConnects(natsPort))) {
      if (spawned.hasExited()) return fail(`process exited (code ${String(spawned.child.exitCode)})`);
      if (Date.now() > deadline) return fail(`port ${natsPort} not accepting connections within ${STARTUP_TIMEOUT_MS} ms`);
      await sleep(25);
    }

    this.current = spawned;
    this.pid = pid;
    this.port = natsPort;
    this.url = `nats://${HOST}:${natsPort}`;
    this.monitorUrl = ports.monitoring?.[0] ?? "";
    const clusterPort = portOf(ports.cluster?.[0]);
    if (this.cluster !== undefined && clusterPort !== undefined) this.cluster.port = clusterPort;
  }

  /** Start; with a fixed port, retry for a few seconds while the port is busy. */
  async start(): Promise<void> {
    const fixedPort = this.port > 0 || (this.cluster !== undefined && this.cluster.port > 0);
    const deadline = Date.now() + PORT_BUSY_RETRY_MS;
    for (;;) {
      try {
        await this.startOnce(this.port);
        return;
      } catch (err) {
        if (!(isPortBusyError(err) && fixedPort && Date.now() < deadline)) throw err;
        await sleep(200);
      }
    }
  }

  private async terminate(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const spawned = this.current;
    this.current = undefined;
    if (spawned === undefined) return;
    if (!spawned.hasExited()) {
      spawned.child.kill(signal);
      if (signal === "SIGTERM") {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([
          spawned.exited.then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
          }),
        ]);
        clearTimeout(timer);
        if (timedOut) spawned.child.kill("SIGKILL");
      }
      await spawned.exited;
    }
    // A killed server leaves its ports file behind.
    if (spawned.child.pid !== undefined) await rm(this.portsFilePath(spawned.child.pid), { force: true });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.terminate("SIGTERM");
    await rm(this.tempDir, { recursive: true, force: true });
    ownedTempDirs.delete(this.tempDir);
    if (this.ownsStoreDir && existsSync(this.storeDir)) await rm(this.storeDir, { recursive: true, force: true });
  }

  async kill(): Promise<void> {
    await this.terminate("SIGKILL");
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error("restart() after stop(): the server's files are gone");
    await this.terminate("SIGTERM");
    await this.start(); // this.port (and the cluster port) now hold the previous ports
  }
}

/** Starts a nats-server on 127.0.0.1; resolves once it accepts TCP connections. */
export async function startNatsServer(options: TestNatsOptions = {}): Promise<TestNats> {
  const server = new TestNatsServer(options);
  try {
    await server.start();
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw err;
  }
  return server;
}
