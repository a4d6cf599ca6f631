/**
 * Every way NATS authenticates a connection, against a real nats-server that demands it: user and
 * password, token, NKey, a .creds file of an operator-mode server (operator, account and user
 * JWTs made here), TLS with a private CA, and mutual TLS. For the client and for `wf run`.
 * Refusals (wrong password, expired or revoked user, untrusted certificate, no credentials) are
 * coded ConnectionErrors that name the config key to fix, end `wf run` instead of a retry loop,
 * and never print the secret.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createUser } from "@nats-io/nkeys";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionError, createClient, createRuntime, loadConfig, type WorkflowContext } from "../runtime/index.js";
import { makeOperator, makePki, tlsBlock, type Pki } from "./helpers/auth.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WF = fileURLToPath(new URL("../dist/cli/wf.js", import.meta.url));

const PASSWORD = "pw-Zq83-secret";
const TOKEN = "tok-Hh51-secret";

const echo = { echo: async (ctx: WorkflowContext, input: string) => ctx.activity("shout", input) };
const shout = { shout: async (input: string) => input.toUpperCase() };

let dir: string;
let pki: Pki;
const servers: TestNats[] = [];
const nkeyUser = createUser();
const NKEY_SEED = new TextDecoder().decode(nkeyUser.getSeed());
const operator = makeOperator();
let goodCreds: string;
let expiredCreds: string;
let revokedCreds: string;
let revokedSeed: string;
const nats: Record<string, TestNats> = {};

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

async function server(name: string, extraConfig: string): Promise<TestNats> {
  const s = await startNatsServer({ extraConfig });
  servers.push(s);
  nats[name] = s;
  return s;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jetflow-auth-"));
  pki = makePki();
  const good = await operator.user("app");
  const expired = await operator.user("old", { expiresAt: Math.floor(Date.now() / 1000) - 60 });
  const revoked = await operator.user("gone");
  goodCreds = file("app.creds", good.creds);
  expiredCreds = file("old.creds", expired.creds);
  revokedCreds = file("gone.creds", revoked.creds);
  revokedSeed = /SU[A-Z2-7]{56}/.exec(revoked.creds)![0];
  await Promise.all([
    server("user", `authorization { user: "app", password: "${PASSWORD}" }`),
    server("token", `authorization { token: "${TOKEN}" }`),
    server("nkey", `authorization { users: [ { nkey: "${nkeyUser.getPublicKey()}" } ] }`),
    operator.serverConfig({ revoke: [revoked.publicKey] }).then((conf) => server("creds", conf)),
    server("tls", tlsBlock(pki, false)),
    server("mtls", tlsBlock(pki, true)),
  ]);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  pki?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The nats.* part of a config for each mode, and the same as environment variables for `wf run`. */
function modes(): Record<string, { nats: Record<string, unknown>; env: Record<string, string> }> {
  const url = (name: string) => nats[name]!.url;
  const tlsUrl = (name: string) => url(name).replace("nats://", "tls://");
  return {
    "user/password": { nats: { servers: [url("user")], user: "app", password: PASSWORD }, env: { NATS_URL: url("user"), NATS_USER: "app", NATS_PASSWORD: PASSWORD } },
    token: { nats: { servers: [url("token")], token: TOKEN }, env: { NATS_URL: url("token"), NATS_TOKEN: TOKEN } },
    nkey: { nats: { servers: [url("nkey")], nkeyFile: file("user.nk", NKEY_SEED + "\n") }, env: { NATS_URL: url("nkey"), NATS_NKEY_SEED: NKEY_SEED } },
    ".creds (operator mode)": { nats: { servers: [url("creds")], creds: goodCreds }, env: { NATS_URL: url("creds"), NATS_CREDS: goodCreds } },
    "TLS, private CA": { nats: { servers: [tlsUrl("tls")], tls: { ca: pki.ca } }, env: { NATS_URL: tlsUrl("tls"), NATS_TLS_CA: pki.ca } },
    "mutual TLS": {
      nats: { servers: [tlsUrl("mtls")], tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } },
      env: { NATS_URL: tlsUrl("mtls"), NATS_TLS_CA: pki.ca, NATS_TLS_CERT: pki.clientCert, NATS_TLS_KEY: pki.clientKey },
    },
  };
}

function config(natsConfig: Record<string, unknown>, namespace: string) {
  return loadConfig({ env: {}, overrides: { nats: natsConfig, namespace, log: { level: "warn" } } });
}

async function refusal(natsConfig: Record<string, unknown>): Promise<ConnectionError> {
  const error = await createClient({ config: config(natsConfig, "refused") }).then(
    async (client) => {
      await client.close();
      throw new Error("connected, but should have been refused");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectionError);
  return error as ConnectionError;
}

/** Runs `wf run` with these NATS_* variables; resolves with its exit code and everything it printed, or "ready" once it serves. */
function wfRun(env: Record<string, string>, until: "ready" | "exit"): Promise<{ code: number | null; output: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, WF_NAMESPACE: `wfrun${Math.random().toString(36).slice(2, 8)}`, WF_LOG_LEVEL: "info", ...env };
  delete childEnv.WF_CONFIG;
  for (const key of Object.keys(childEnv)) if (key.startsWith("NATS_") && key !== "NATS_SERVER_BIN" && !(key in env)) delete childEnv[key];
  const child = spawn(process.execPath, [WF, "run"], { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`wf run neither ${until === "ready" ? "became ready" : "exited"} within 40 s:\n${output}`));
    }, 40_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (until === "ready" && / ready: role all/.test(output)) {
        clearTimeout(timer);
        child.once("close", (code) => resolve({ code, output }));
        child.kill("SIGTERM");
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    // "close", not "exit": a process can exit before its pipes' last chunks are read, and a refusal
    // printed just before exiting would be lost (seen in CI: exit code 1 with no output at all).
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("every auth mode, against a server that demands it", () => {
  it.each(["user/password", "token", "nkey", ".creds (operator mode)", "TLS, private CA", "mutual TLS"])("%s: a runtime and a client run a workflow", async (mode) => {
    const cfg = config(modes()[mode]!.nats, `m${mode.length}`);
    const runtime = await createRuntime({ config: cfg, workflows: echo, activities: shout });
    await runtime.start();
    try {
      const client = await createClient({ config: cfg });
      try {
        expect(await (await client.start("echo", mode)).result({ signal: AbortSignal.timeout(15_000) })).toBe(mode.toUpperCase());
      } finally {
        await client.close();
      }
    } finally {
      await runtime.stop();
    }
  });

  it("`wf run` serves in every mode, and prints none of the secrets", async () => {
    const all = modes();
    const runs = await Promise.all(Object.entries(all).map(async ([mode, { env }]) => ({ mode, ...(await wfRun(env, "ready")) })));
    for (const run of runs) {
      expect(run.output, run.mode).toMatch(/ ready: role all/);
      for (const secret of [PASSWORD, TOKEN, NKEY_SEED]) expect(run.output, run.mode).not.toContain(secret);
    }
  });
});

describe("refusals name the cause and the key to fix", () => {
  it("a wrong password, a wrong token, an unknown NKey", async () => {
    const wrongPassword = await refusal({ servers: [nats.user!.url], user: "app", password: "not-the-password" });
    expect(wrongPassword.code).toBe("WF_NATS_AUTH");
    expect(wrongPassword.message).toContain("nats.user/nats.password");
    expect(wrongPassword.message).not.toContain("not-the-password");

    const wrongToken = await refusal({ servers: [nats.token!.url], token: "not-the-token" });
    expect(wrongToken.code).toBe("WF_NATS_AUTH");
    expect(wrongToken.message).toContain("nats.token");
    expect(wrongToken.message).not.toContain("not-the-token");

    const stranger = new TextDecoder().decode(createUser().getSeed());
    const unknownNkey = await refusal({ servers: [nats.nkey!.url], nkeySeed: stranger });
    expect(unknownNkey.code).toBe("WF_NATS_AUTH");
    expect(unknownNkey.message).toContain("nats.nkeySeed");
    expect(unknownNkey.message).not.toContain(stranger);
  });

  it("a password in the server URL is masked in the error", async () => {
    const url = nats.user!.url.replace("nats://", "nats://app:wrong-Url-pass@");
    const error = await refusal({ servers: [url] });
    expect(error.code).toBe("WF_NATS_AUTH");
    expect(`${error.message} ${error.hint}`).not.toContain("wrong-Url-pass");
    expect(error.message).toContain("nats://app:***@127.0.0.1");
  });

  it("an expired user JWT and a revoked one", async () => {
    const expired = await refusal({ servers: [nats.creds!.url], creds: expiredCreds });
    expect(expired.code).toBe("WF_NATS_AUTH_EXPIRED");
    expect(expired.message).toContain("nats.creds");
    expect(expired.message).toMatch(/expired at \d{4}-/);

    const revoked = await refusal({ servers: [nats.creds!.url], creds: revokedCreds });
    expect(revoked.code).toBe("WF_NATS_AUTH");
    expect(revoked.message).toContain("nats.creds");
    expect(revoked.message).toContain("revoked");
    expect(revoked.message).not.toContain(revokedSeed);
  });

  it("an untrusted server certificate, and a client certificate the server does not accept", async () => {
    const tlsUrl = nats.tls!.url.replace("nats://", "tls://");
    const noCa = await refusal({ servers: [tlsUrl] });
    expect(noCa.code).toBe("WF_NATS_TLS");
    expect(noCa.hint).toContain("nats.tls.ca");
    const otherCa = await refusal({ servers: [tlsUrl], tls: { ca: pki.otherCa } });
    expect(otherCa.code).toBe("WF_NATS_TLS");
    expect(otherCa.message).toContain("nats.tls.ca");

    const mtlsUrl = nats.mtls!.url.replace("nats://", "tls://");
    const noCert = await refusal({ servers: [mtlsUrl], tls: { ca: pki.ca } });
    expect(noCert.code).toBe("WF_NATS_TLS");
    expect(noCert.message).toContain("nats.tls.cert");
    const wrongCert = await refusal({ servers: [mtlsUrl], tls: { ca: pki.ca, cert: pki.otherClientCert, key: pki.otherClientKey } });
    expect(wrongCert.code).toBe("WF_NATS_TLS");
    expect(wrongCert.message).toContain("nats.tls.cert");
  });

  it("an anonymous connection to a server that requires auth is refused", async () => {
    for (const name of ["user", "token", "nkey", "creds"]) {
      const anonymous = await refusal({ servers: [nats[name]!.url] });
      expect(anonymous.code, name).toBe("WF_NATS_AUTH_REQUIRED");
      expect(anonymous.hint, name).toContain("nats.creds");
    }
  });

  it("`wf run` ends with the cause instead of retrying, without printing the secret", async () => {
    const cases: Array<{ env: Record<string, string>; says: RegExp; secret?: string }> = [
      { env: { NATS_URL: nats.user!.url, NATS_USER: "app", NATS_PASSWORD: "wrong-Run-pass" }, says: /refused the credentials in nats\.user\/nats\.password/, secret: "wrong-Run-pass" },
      { env: { NATS_URL: nats.user!.url.replace("nats://", "nats://app:wrong-Url-pass@") }, says: /nats:\/\/app:\*\*\*@127\.0\.0\.1/, secret: "wrong-Url-pass" },
      { env: { NATS_URL: nats.token!.url, NATS_TOKEN: "wrong-Run-token" }, says: /nats\.token/, secret: "wrong-Run-token" },
      { env: { NATS_URL: nats.creds!.url, NATS_CREDS: expiredCreds }, says: /JWT expired at/ },
      { env: { NATS_URL: nats.creds!.url, NATS_CREDS: revokedCreds }, says: /revoked/, secret: revokedSeed },
      { env: { NATS_URL: nats.tls!.url.replace("nats://", "tls://"), NATS_TLS_CA: pki.otherCa }, says: /not trusted.*nats\.tls\.ca/ },
      { env: { NATS_URL: nats.mtls!.url.replace("nats://", "tls://"), NATS_TLS_CA: pki.ca }, says: /requires a client certificate.*nats\.tls\.cert/ },
      { env: { NATS_URL: nats.nkey!.url }, says: /requires authentication and none is configured/ },
    ];
    const runs = await Promise.all(cases.map(async (c) => ({ ...c, ...(await wfRun(c.env, "exit")) })));
    for (const run of runs) {
      expect(run.code, run.output).toBe(1);
      expect(run.output).toMatch(run.says);
      expect(run.output).not.toMatch(/not reachable yet/);
      if (run.secret) expect(run.output).not.toContain(run.secret);
    }
  });
});
