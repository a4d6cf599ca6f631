/**
 * TLS details nats.js leaves out: checking a certificate issued for an IP address, and why a TLS
 * connection failed when nats.js does not say.
 *
 * nats.js 3.4 loses the TLS alert a server sends after the handshake (TLS 1.3 servers check the
 * client certificate then: "certificate required", "unknown ca"), and its connect attempt just
 * times out, which looks like a server that is not up. After such a failure, this module repeats
 * the handshake itself (INFO, STARTTLS-style upgrade, CONNECT, PING) with the same files and
 * returns the TLS error the server answered with, if any. It runs only after a failed connect.
 */
import { readFileSync } from "node:fs";
import { connect as tcpConnect, isIP } from "node:net";
import { checkServerIdentity, connect as tlsConnect, type ConnectionOptions as TlsConnectionOptions, type PeerCertificate } from "node:tls";
import type { NatsConnectionConfig } from "../config.js";

const PROBE_TIMEOUT_MS = 3_000;
/** Connect timeout of one attempt over TLS (nats.js: 20 s), so a swallowed refusal is probed within seconds. */
export const TLS_CONNECT_TIMEOUT_MS = 5_000;

export const usesTls = (config: NatsConnectionConfig): boolean => Boolean(config.tls) || config.servers.some((s) => /^tls:\/\//i.test(s));

/**
 * nats.js 3.4 sends no TLS server name for a server given by IP address, so Node checks the
 * server's certificate against "localhost" and refuses a certificate issued for the IP. When the
 * configured servers are IP addresses, the certificate must instead list one of them (as an IP
 * SAN); its signature is checked against nats.tls.ca as usual.
 */
export function ipIdentityCheck(servers: string[]): { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined } {
  const ips = servers.flatMap((s) => {
    try {
      const host = new URL(/^[a-z]+:\/\//i.test(s) ? s : `nats://${s}`).hostname.replace(/^\[|\]$/g, "");
      return isIP(host) ? [host] : [];
    } catch {
      return [];
    }
  });
  if (ips.length === 0) return {};
  return {
    checkServerIdentity(host, cert) {
      if (host !== "localhost" && host !== "") return checkServerIdentity(host, cert);
      const errors = ips.map((ip) => checkServerIdentity(ip, cert));
      return errors.includes(undefined) ? undefined : (errors[0] ?? undefined);
    },
  };
}


/** The TLS error of the first server that gives one, or undefined (TLS works, or the server cannot be reached at all). */
export async function probeTls(config: NatsConnectionConfig, identity: Pick<TlsConnectionOptions, "checkServerIdentity">): Promise<Error | undefined> {
  for (const server of config.servers) {
    const error = await probeOne(server, config, identity).catch(() => undefined);
    if (error) return error;
  }
  return undefined;
}

function readFiles(config: NatsConnectionConfig): TlsConnectionOptions {
  const tls = config.tls ?? {};
  return {
    ...(tls.ca ? { ca: readFileSync(tls.ca) } : {}),
    ...(tls.cert ? { cert: readFileSync(tls.cert) } : {}),
    ...(tls.key ? { key: readFileSync(tls.key) } : {}),
  };
}

function probeOne(server: string, config: NatsConnectionConfig, identity: Pick<TlsConnectionOptions, "checkServerIdentity">): Promise<Error | undefined> {
  const url = new URL(/^[a-z]+:\/\//i.test(server) ? server : `nats://${server}`);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 4222);
  const files = readFiles(config);
  return new Promise((resolve) => {
    let settled = false;
    const socket = tcpConnect({ host, port });
    const done = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(() => done(undefined), PROBE_TIMEOUT_MS);
    socket.once("error", () => done(undefined));
    let info = "";
    const onInfo = (chunk: Buffer) => {
      info += chunk.toString("latin1");
      if (!info.includes("\r\n")) return;
      socket.off("data", onInfo);
      if (!/"tls_(required|available)":\s*true/.test(info)) return done(undefined);
      const secure = tlsConnect({ socket, ...files, ...identity, ...(identity.checkServerIdentity ? {} : { servername: host }) });
      secure.once("error", (err) => done(err));
      secure.once("secureConnect", () => {
        if (!secure.authorized && secure.authorizationError) return done(secure.authorizationError);
        // The server checks a client certificate after the handshake (TLS 1.3): its verdict
        // arrives as an alert on our first read.
        secure.write('CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n');
      });
      secure.on("data", () => done(undefined));
      secure.once("close", () => done(undefined));
    };
    socket.on("data", onInfo);
  });
}
