/**
 * One NATS connection per runtime or client. A runtime started before NATS is up waits (and says
 * so once, then every 30 s); once connected, the client reconnects forever on its own.
 */
import { connect, type NatsConnection, type ConnectionOptions } from "@nats-io/transport-node";
import pRetry, { AbortError } from "p-retry";
import type { NatsConnectionConfig } from "../config.js";
import { ConnectionError } from "../errors.js";
import type { Logger } from "../logger.js";
import { tuneConnection } from "./client-tuning.js";
import { authenticatorOf, explainRefusal, redactUrl, redactUrls } from "./credentials.js";
import { inboxPrefixOf } from "./permissions.js";
import { ipIdentityCheck, probeTls, TLS_CONNECT_TIMEOUT_MS, usesTls } from "./tls.js";

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
  /**
   * The namespace this connection works in: its reply inboxes are `_INBOX_<namespace>.…`, so a
   * user permitted one namespace's inboxes sees no replies of another's (nats/permissions.ts).
   */
  namespace?: string;
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
  const authenticator = authenticatorOf(config);
  if (authenticator) options.authenticator = authenticator;
  if (usesTls(config)) {
    options.tls = {
      ...(config.tls?.ca ? { caFile: config.tls.ca } : {}),
      ...(config.tls?.cert ? { certFile: config.tls.cert } : {}),
      ...(config.tls?.key ? { keyFile: config.tls.key } : {}),
      ...ipIdentityCheck(config.servers),
    };
  }
  return options;
}

export async function connectNats(config: NatsConnectionConfig, options: ConnectOptions): Promise<NatsConnection> {
  const { logger } = options;
  const where = config.servers.map(redactUrl).join(",");
  const connectOptions = connectionOptions(config, options.name);
  connectOptions.inboxPrefix = inboxPrefixOf(options.namespace ?? "");
  if (!options.waitForServer && options.connectTimeoutMs !== undefined) connectOptions.timeout = options.connectTimeoutMs;
  // A TLS refusal can look like a hanging server (tls.ts): give up on the attempt sooner, then probe.
  if (usesTls(config)) connectOptions.timeout = Math.min(connectOptions.timeout ?? TLS_CONNECT_TIMEOUT_MS, TLS_CONNECT_TIMEOUT_MS);
  let lastLogged = 0;
  const nc = await pRetry(
    async () => {
      try {
        return await connect(connectOptions);
      } catch (err) {
        // Credentials and certificates will not fix themselves: fail at once, even in a runtime
        // that waits for its server.
        let refusal = explainRefusal(err, config, where);
        if (!refusal && usesTls(config)) {
          const tlsError = await probeTls(config, ipIdentityCheck(config.servers));
          if (tlsError) refusal = explainRefusal(tlsError, config, where);
        }
        if (refusal) throw new AbortError(refusal);
        const message = redactUrls((err as Error).message ?? String(err));
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
  if (lastLogged) logger.info(`connected to NATS at ${redactUrl(nc.getServer())}`, { component: "nats" });
  tuneConnection(nc);
  void watchStatus(nc, logger);
  return nc;
}


async function watchStatus(nc: NatsConnection, logger: Logger): Promise<void> {
  for await (const status of nc.status()) {
    switch (status.type) {
      case "disconnect":
        logger.warn(`disconnected from NATS at ${redactUrl(status.server)}; reconnecting`, { component: "nats" });
        break;
      case "reconnect":
        logger.info(`reconnected to NATS at ${redactUrl(status.server)}`, { component: "nats" });
        break;
      case "error":
        logger.warn(`NATS error: ${redactUrls(status.error.message)}`, { component: "nats" });
        break;
      default:
        break;
    }
  }
}
