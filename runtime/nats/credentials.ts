/**
 * How a runtime or client proves who it is to NATS, and what it says when NATS says no.
 *
 * Secrets (passwords, tokens, NKey seeds, the seed inside a .creds file) go into the nats.js
 * options and nowhere else: every message built here names the config key to fix, never its
 * value, and server URLs are shown with any user:password@ part masked (redactUrl).
 */
import { readFileSync } from "node:fs";
import { credsAuthenticator, nkeyAuthenticator, type Authenticator } from "@nats-io/nats-core";
import type { NatsConnectionConfig } from "../config.js";
import { ConnectionError } from "../errors.js";

/** `nats://user:secret@host:4222` → `nats://user:***@host:4222`; `nats://token@host` → `nats://***@host`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(":");
    return `${scheme}${colon >= 0 ? `${userinfo.slice(0, colon)}:***` : "***"}@`;
  });
}

/** Every URL in a text (an error message from nats.js may quote one) with its credentials masked. */
export function redactUrls(text: string): string {
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s@/]*@/gi, (match) => redactUrl(match));
}

/** The authenticator for an NKey seed or a .creds file, if the config names one. */
export function authenticatorOf(config: NatsConnectionConfig): Authenticator | undefined {
  if (config.creds) {
    return credsAuthenticator(readSecretFile(config.creds, "nats.creds", "NATS_CREDS", "a .creds file (`nsc generate creds`)"));
  }
  if (config.nkeySeed || config.nkeyFile) {
    const seed = config.nkeySeed ?? new TextDecoder().decode(readSecretFile(config.nkeyFile!, "nats.nkeyFile", "NATS_NKEY_FILE", "a file holding an NKey seed")).trim();
    if (!/^SU[A-Z2-7]{56}$/.test(seed)) {
      const key = config.nkeySeed ? "nats.nkeySeed" : `nats.nkeyFile (${config.nkeyFile})`;
      throw new ConnectionError("WF_NATS_NKEY", `${key} does not hold a user NKey seed (58 characters starting with "SU")`, {
        hint: "Generate one with `nk -gen user` (its public key, U…, goes into the server's `nkey:` list) and put the seed in the file nats.nkeyFile names.",
      });
    }
    return nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  return undefined;
}

function readSecretFile(path: string, key: string, env: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = key === "nats.creds" ? "WF_NATS_CREDS" : "WF_NATS_NKEY";
    throw new ConnectionError(code, `cannot read ${key} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: `Check ${key} in wf.config.json or ${env}: it must be the path of ${what}, readable by this process.`,
    });
  }
}

/** When the user JWT of a .creds file expires (epoch seconds), if it says; never throws. */
function credsExpiry(path: string): number | undefined {
  try {
    const text = readFileSync(path, "utf8");
    const jwt = /-----BEGIN NATS USER JWT-----\s*([A-Za-z0-9_.-]+)\s*------END NATS USER JWT------/.exec(text)?.[1];
    const payload = jwt?.split(".")[1];
    if (!payload) return undefined;
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown };
    return typeof claims.exp === "number" ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}

/** Which configured credential the server refused, by its config keys. */
function credentialKeys(config: NatsConnectionConfig): string {
  if (config.creds) return `nats.creds (${config.creds})`;
  if (config.nkeySeed) return "nats.nkeySeed";
  if (config.nkeyFile) return `nats.nkeyFile (${config.nkeyFile})`;
  if (config.token) return "nats.token";
  if (config.user || config.password) return "nats.user/nats.password";
  if (config.servers.some((s) => /^[a-z][a-z0-9+.-]*:\/\/[^@/]+@/i.test(s))) return "the user:password@ of nats.servers (NATS_URL)";
  return "";
}

const TLS_UNTRUSTED = /self[- ]signed|unable to (verify|get local issuer)|certificate (has expired|is not yet valid|signature failure)|ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate|Hostname\/IP does not match|CERT_/i;
/** Alerts the server sends about our certificate (OpenSSL's wording, and Node's ERR_SSL_*_ALERT_* codes). */
const TLS_CLIENT_CERT = /alert (unknown ca|certificate required|bad certificate|certificate unknown|handshake failure|access denied)|_ALERT_/i;

/**
 * A connection error that retrying cannot fix (credentials, certificates) as a coded
 * ConnectionError naming the cause and the key to change; undefined for anything else (a server
 * not up yet, a network blip), which the caller may retry.
 */
export function explainRefusal(err: unknown, config: NatsConnectionConfig, where: string): ConnectionError | undefined {
  const raw = redactUrls(describeError(err));
  const name = (err as Error)?.name ?? "";
  const refused = (code: string, message: string, hint: string) => new ConnectionError(code, message, { hint, cause: err });

  if (TLS_CLIENT_CERT.test(raw)) {
    const cert = config.tls?.cert;
    return refused(
      "WF_NATS_TLS",
      `NATS at ${where} refused the TLS handshake (${raw}): ` + (cert ? `it does not accept the client certificate in nats.tls.cert (${cert})` : "it requires a client certificate (mutual TLS) and nats.tls.cert/nats.tls.key are not set"),
      "Set nats.tls.cert and nats.tls.key (NATS_TLS_CERT, NATS_TLS_KEY) to a client certificate signed by a CA the server's `tls { ca_file }` trusts.",
    );
  }
  if (TLS_UNTRUSTED.test(raw) && !/authorization/i.test(raw)) {
    const ca = config.tls?.ca;
    return refused(
      "WF_NATS_TLS",
      `the TLS certificate of NATS at ${where} is not trusted (${raw})` + (ca ? `: it is not signed by the CA in nats.tls.ca (${ca}), or not issued for this host` : ": no nats.tls.ca is set"),
      "Set nats.tls.ca (NATS_TLS_CA) to the CA certificate (PEM) that signed the server's certificate, and connect by a name or IP the certificate lists.",
    );
  }
  if (/tls|ssl|certificate/i.test(raw)) {
    return refused(
      "WF_NATS_TLS",
      `TLS with NATS at ${where} failed: ${raw}`,
      "Check nats.tls.ca, nats.tls.cert and nats.tls.key (NATS_TLS_*), and that the server's URL is the one its certificate names (a tls:// URL needs a server with a `tls {}` block).",
    );
  }
  const authError = name === "AuthorizationError" || name === "UserAuthenticationExpiredError" || /authorization violation|authentication|auth(entication)? (required|timeout)|permissions violation/i.test(raw);
  if (!authError) return undefined;

  const keys = credentialKeys(config);
  if (config.creds) {
    const exp = credsExpiry(config.creds);
    if (/expired/i.test(raw) || (exp !== undefined && exp * 1000 <= Date.now())) {
      return refused(
        "WF_NATS_AUTH_EXPIRED",
        `NATS at ${where} refused the user in ${keys}: its JWT expired` + (exp !== undefined ? ` at ${new Date(exp * 1000).toISOString()}` : ""),
        "Issue new credentials (`nsc generate creds`, or your operator's tooling) and point nats.creds (NATS_CREDS) at the new file.",
      );
    }
    return refused(
      "WF_NATS_AUTH",
      `NATS at ${where} refused the user in ${keys} (${raw}): the user was revoked (the account JWT's revocations), or its account is not one this server's operator trusts`,
      "Check that the account is pushed to the server's resolver and the user is not revoked (`nsc describe account`), or issue new credentials; then fix nats.creds (NATS_CREDS).",
    );
  }
  if (/expired/i.test(raw)) {
    return refused("WF_NATS_AUTH_EXPIRED", `NATS at ${where} refused ${keys || "the connection"}: authentication expired (${raw})`, `Renew the credential and update ${keys || "the nats.* auth keys"}.`);
  }
  if (!keys) {
    return refused(
      "WF_NATS_AUTH_REQUIRED",
      `NATS at ${where} requires authentication and none is configured (${raw})`,
      "Set one of nats.user + nats.password, nats.token, nats.nkeyFile or nats.creds (or NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_FILE, NATS_CREDS) to what the server expects.",
    );
  }
  return refused(
    "WF_NATS_AUTH",
    `NATS at ${where} refused the credentials in ${keys} (${raw})`,
    `Check ${keys} in wf.config.json or the NATS_* environment variables against the server's authorization block (the value is not shown here).`,
  );
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const parts = [err.message];
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === "string") parts.push(code);
  let cause = err.cause;
  for (let depth = 0; cause instanceof Error && depth < 3; depth++, cause = cause.cause) {
    if (!parts.includes(cause.message)) parts.push(cause.message);
    const c = (cause as NodeJS.ErrnoException).code;
    if (typeof c === "string" && !parts.includes(c)) parts.push(c);
  }
  return parts.filter(Boolean).join(": ");
}
