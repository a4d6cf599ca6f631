/**
 * `wf dev` and `npm run example` need a NATS server: use the one NATS_URL names if it answers, else
 * start `nats-server -js` at that address with its store under .wf/nats, and stop it on exit.
 *
 * The server must not outlive the process that started it, however that process ends (SIGKILL, a
 * closed terminal, a crash): no exit hook runs then. So nats-server is not our child but the child
 * of a small watchdog process whose stdin is a pipe from us. The kernel closes that pipe when we
 * die, for any reason; the watchdog reads EOF, stops nats-server (SIGTERM, SIGKILL after 5 s) and
 * exits. The watchdog runs in a session of its own, so Ctrl-C in the terminal reaches only us: we
 * stop the runtime first (in-flight activities finish and report), then close the pipe.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { delimiter, join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { ConnectionError } from "../errors.js";
import type { Logger } from "../logger.js";

export interface DevNats {
  url: string;
  /** True when this process started the server. */
  started: boolean;
  /** The nats-server's pid and its watchdog's, when this process started the server. */
  pid?: number;
  watchdogPid?: number;
  stop(): Promise<void>;
}

export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  // An explicit NATS_SERVER_BIN is the one to use: a wrong one is an error, not a reason to pick another.
  if (env.NATS_SERVER_BIN) return isExecutable(env.NATS_SERVER_BIN) ? env.NATS_SERVER_BIN : undefined;
  const candidates = [...(env.PATH ?? "").split(delimiter).map((d) => d && join(d, "nats-server")), "/usr/sbin/nats-server", "/usr/local/bin/nats-server"];
  return candidates.find((candidate) => candidate && isExecutable(candidate)) || undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The one-line command that installs nats-server on this platform. */
export function natsInstallHint(platform: NodeJS.Platform = process.platform, exists: (path: string) => boolean = existsSync): string {
  if (platform === "darwin") return "brew install nats-server";
  if (platform === "win32") return "put nats-server.exe (from the NATS project's releases) on PATH, or set NATS_SERVER_BIN to it";
  const sudo = typeof process.getuid === "function" && process.getuid() === 0 ? "" : "sudo ";
  if (exists("/usr/bin/apt-get")) return `${sudo}apt-get install -y nats-server`;
  if (exists("/usr/bin/dnf")) return `${sudo}dnf install -y nats-server`;
  if (exists("/sbin/apk")) return `${sudo}apk add nats-server`;
  if (exists("/usr/bin/pacman")) return `${sudo}pacman -S nats-server`;
  return "install nats-server with your package manager, or set NATS_SERVER_BIN to its path";
}

/**
 * The watchdog (run with `node -e`, so it needs no file on disk and works from sources and dist
 * alike): spawns nats-server with the arguments it is given, prints its pid, and stops it on EOF or
 * SIGTERM on stdin. It exits when nats-server exits, with its code.
 */
const WATCHDOG = `
process.title = "jetflow-nats-watchdog";
const { spawn } = require("node:child_process");
const [binary, ...args] = process.argv.slice(1);
// Its log passes through us: once our parent is gone, writes to that pipe fail, and nats-server
// would die of SIGPIPE mid-shutdown instead of closing its store cleanly.
const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
process.stderr.on("error", () => {});
child.stderr.on("data", (chunk) => { try { process.stderr.write(chunk); } catch {} });
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  child.kill("SIGTERM");
  setTimeout(() => child.kill("SIGKILL"), 5000).unref();
};
child.once("spawn", () => process.stdout.write("pid " + child.pid + "\\n"));
child.once("error", (err) => { process.stderr.write(String(err.message) + "\\n"); process.exit(127); });
child.once("exit", (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
process.stdin.on("data", () => {});
process.stdin.once("end", stop);
process.stdin.once("error", stop);
process.once("SIGTERM", stop);
process.once("SIGINT", () => {});
process.once("SIGHUP", () => {});
`;

export async function ensureDevNats(servers: string[], options: { storeDir: string; logger: Logger }): Promise<DevNats> {
  const url = servers[0] ?? "nats://localhost:4222";
  try {
    const nc = await connect({ servers, timeout: 1_500 });
    await nc.close();
    return { url, started: false, stop: async () => {} };
  } catch {
    /* nothing answers: start one */
  }
  const binary = findNatsServer();
  if (!binary) {
    const why = process.env.NATS_SERVER_BIN ? `NATS_SERVER_BIN=${process.env.NATS_SERVER_BIN} is not an executable file` : "nats-server is not installed";
    throw new ConnectionError("WF_NATS_SERVER_MISSING", `no NATS server answers at ${url}, and ${why} to start one`, {
      hint: `Install it: \`${natsInstallHint()}\`; or set NATS_URL to a running server with JetStream.`,
    });
  }
  const parsed = new URL(url.includes("://") ? url : `nats://${url}`);
  const host = parsed.hostname === "localhost" ? "127.0.0.1" : parsed.hostname;
  const port = Number(parsed.port || 4222);
  mkdirSync(options.storeDir, { recursive: true });
  const args = ["-js", "-a", host, "-p", String(port), "-sd", options.storeDir];
  const watchdog: ChildProcess = spawn(process.execPath, ["-e", WATCHDOG, binary, ...args], { stdio: ["pipe", "pipe", "pipe"], detached: true });
  // Our ends of the pipes must not keep the event loop alive: the pipe only has to exist.
  for (const stream of [watchdog.stdin, watchdog.stdout, watchdog.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
  watchdog.unref();
  let log = "";
  let pid: number | undefined;
  watchdog.stderr?.on("data", (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4_000);
  });
  watchdog.stdout?.on("data", (chunk: Buffer) => {
    const match = /pid (\d+)/.exec(chunk.toString());
    if (match) pid = Number(match[1]);
  });
  const exited = new Promise<void>((resolve) => watchdog.once("exit", () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(host, port)) || pid === undefined) {
    if (watchdog.exitCode !== null || watchdog.signalCode !== null || Date.now() > deadline) {
      watchdog.kill("SIGTERM");
      throw new ConnectionError("WF_NATS_SERVER_START", `could not start ${binary} at ${host}:${port}: ${log.trim().split("\n").slice(-3).join(" | ")}`, {
        hint: "Is the port in use by something that is not NATS? Set NATS_URL to another address.",
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  options.logger.info(`started nats-server (JetStream, store ${options.storeDir}, pid ${pid}) at nats://${host}:${port}`, { component: "dev" });
  return {
    url: `nats://${host}:${port}`,
    started: true,
    pid,
    ...(watchdog.pid === undefined ? {} : { watchdogPid: watchdog.pid }),
    async stop() {
      if (watchdog.exitCode !== null || watchdog.signalCode !== null) return;
      // Hold the event loop until the server is gone, so that "stopped" means the port is free.
      watchdog.ref();
      watchdog.stdin?.end();
      await exited;
    },
  };
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
