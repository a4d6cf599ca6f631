/**
 * One NATS connection per runtime or client. A runtime started before NATS is up waits (and says
 * so once, then every 30 s); once connected, the client reconnects forever on its own.
 */
import { readFileSync } from "node:fs";
import { connect, type NatsConnection, type ConnectionOptions } from "@nats-io/transport-node";
import { credsAuthenticator } from "@nats-io/nats-core";
import pRetry, { AbortError } from "p-retry";
import type { NatsConnectionConfig } from "../config.js";
import { ConnectionError } from "../errors.js";
import type { Logger } from "../logger.js";
import { tuneConnection } from "./client-tuning.js";

export type { NatsConnection };

export interface ConnectOptions {
  /** Connection name shown by `nats server report connections`. */
  name: string;
  logger: Logger;
  /** Keep trying until NATS answers (runtimes). When false, fail after the first refusal (CLI). */
  waitForServer?: boolean;
  signal?: AbortSignal;
  /**
   * Fail fast (CLI commands): give up on a server that accepts the TCP connection but does not
   * speak NATS within this many milliseconds (nats.js waits 20 s by default). Only with
   * waitForServer false; runtimes keep the default.
   */
  connectTimeoutMs?: number;
}

export function connectionOptions(config: NatsConnectionConfig, name: string): ConnectionOptions {
  const options: ConnectionOptions = {
    servers: config.servers,
    name,
    maxReconnectAttempts: -1,
    // A runtime keeps running through NATS restarts and reconnects forever.
    reconnectTimeWait: 500,
    // nats.js otherwise builds two Error objects per request to keep async stack traces: about a
    // sixth of a runtime's CPU under load (bench/RESULTS.md).
    noAsyncTraces: true,
  };
  if (config.user) options.user = config.user;
  if (config.password) options.pass = config.password;
  if (config.token) options.token = config.token;
  if (config.creds) {
    try {
      options.authenticator = credsAuthenticator(readFileSync(config.creds));
    } catch (err) {
      throw new ConnectionError("WF_NATS_CREDS", `cannot read NATS credentials file ${config.creds}: ${(err as Error).message}`, {
        hint: "Check nats.creds in wf.config.json or NATS_CREDS.",
      });
    }
  }
  if (config.tls) {
    options.tls = {
      ...(config.tls.ca ? { caFile: config.tls.ca } : {}),
      ...(config.tls.cert ? { certFile: config.tls.cert } : {}),
      ...(config.tls.key ? { keyFile: config.tls.key } : {}),
    };
  }
  return options;
}

export async function connectNats(config: NatsConnectionConfig, options: ConnectOptions): Promise<NatsConnection> {
  const { logger } = options;
  const where = config.servers.join(",");
  const connectOptions = connectionOptions(config, options.name);
  if (!options.waitForServer && options.connectTimeoutMs !== undefined) connectOptions.timeout = options.connectTimeoutMs;
  let lastLogged = 0;
  const nc = await pRetry(
    async () => {
      try {
        return await connect(connectOptions);
      } catch (err) {
        const message = (err as Error).message ?? String(err);
        if (/auth|permission|tls|certificate/i.test(message)) {
          // Credentials will not fix themselves: fail at once.
          throw new AbortError(
            new ConnectionError("WF_NATS_AUTH", `NATS at ${where} refused the connection: ${message}`, {
              hint: "Check nats.user/password/token/creds/tls in wf.config.json or the NATS_* environment variables.",
              cause: err,
            }),
          );
        }
        throw new ConnectionError("WF_NATS_UNREACHABLE", `cannot reach NATS at ${where}: ${message}`, {
          hint: options.waitForServer
            ? "Start one with `nats-server -js` (Debian: apt-get install nats-server), or set NATS_URL."
            : "Is NATS running there? `wf dev` starts one for development (or run `nats-server -js`); else point NATS_URL or --nats at yours.",
          cause: err,
        });
      }
    },
    {
      retries: options.waitForServer ? Infinity : 0,
      minTimeout: 250,
      maxTimeout: 2_000,
      ...(options.signal ? { signal: options.signal } : {}),
      onFailedAttempt: ({ error, attemptNumber }) => {
        if (!options.waitForServer) return;
        const now = Date.now();
        if (attemptNumber === 1 || now - lastLogged > 30_000) {
          lastLogged = now;
          logger.warn(`NATS at ${where} is not reachable yet; waiting for it (${error.message})`, { component: "nats" });
        }
      },
    },
  );
  if (lastLogged) logger.info(`connected to NATS at ${nc.getServer()}`, { component: "nats" });
  tuneConnection(nc);
  void watchStatus(nc, logger);
  return nc;
}


async function watchStatus(nc: NatsConnection, logger: Logger): Promise<void> {
  for await (const status of nc.status()) {
    switch (status.type) {
      case "disconnect":
        logger.warn(`disconnected from NATS at ${status.server}; reconnecting`, { component: "nats" });
        break;
      case "reconnect":
        logger.info(`reconnected to NATS at ${status.server}`, { component: "nats" });
        break;
      case "error":
        logger.warn(`NATS error: ${status.error.message}`, { component: "nats" });
        break;
      default:
        break;
    }
  }
}
