/**
 * `wf dev` needs a NATS server: use the one NATS_URL names if it answers, else start
 * `nats-server -js` at that address with its store under .wf/nats, and stop it on exit.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdirSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { delimiter, join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { ConnectionError } from "../errors.js";
import type { Logger } from "../logger.js";

export interface DevNats {
  url: string;
  /** True when this process started the server. */
  started: boolean;
  stop(): Promise<void>;
}

export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = [env.NATS_SERVER_BIN, ...(env.PATH ?? "").split(delimiter).map((d) => d && join(d, "nats-server")), "/usr/sbin/nats-server", "/usr/local/bin/nats-server"];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  return undefined;
}

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
    throw new ConnectionError("WF_NATS_SERVER_MISSING", `no NATS server answers at ${url}, and nats-server is not installed to start one`, {
      hint: "Install it (Debian/Ubuntu: `sudo apt-get install nats-server`; macOS: `brew install nats-server`), or set NATS_URL to a running server.",
    });
  }
  const parsed = new URL(url.includes("://") ? url : `nats://${url}`);
  const host = parsed.hostname === "localhost" ? "127.0.0.1" : parsed.hostname;
  const port = Number(parsed.port || 4222);
  mkdirSync(options.storeDir, { recursive: true });
  // A process group of its own: Ctrl-C in the terminal reaches wf dev only, which stops its runtime
  // first (in-flight activities finish and report) and then this server.
  const child: ChildProcess = spawn(binary, ["-js", "-a", host, "-p", String(port), "-sd", options.storeDir], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let log = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4_000);
  });
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(host, port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new ConnectionError("WF_NATS_SERVER_START", `could not start ${binary} at ${host}:${port}: ${log.trim().split("\n").slice(-3).join(" | ")}`, {
        hint: "Is the port in use by something that is not NATS? Set NATS_URL to another address.",
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  options.logger.info(`started nats-server (JetStream, store ${options.storeDir}) at nats://${host}:${port}`, { component: "dev" });
  return {
    url: `nats://${host}:${port}`,
    started: true,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
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
