// Credentials for tests of authenticated NATS: a private CA with server and client certificates
// (openssl), and an operator/account/user hierarchy of NKeys and JWTs (@nats-io/nkeys,
// @nats-io/jwt) with the server config that trusts it. Everything is made fresh in a temp dir.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccount, createOperator, createUser, type KeyPair } from "@nats-io/nkeys";
import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";

export interface Pki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing the server knows, and a client certificate it signed. */
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=jetflow test ${name}`]);
}

function makeCert(dir: string, ca: string, name: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
  openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`]);
}

/** A private CA, a server certificate for 127.0.0.1, a client certificate, and a second, unrelated CA. */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "jetflow-pki-"));
  makeCa(dir, "ca");
  makeCa(dir, "other-ca");
  makeCert(dir, "ca", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  makeCert(dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
  makeCert(dir, "other-ca", "other-client", "extendedKeyUsage=clientAuth\n");
  const p = (f: string) => join(dir, f);
  return {
    dir,
    ca: p("ca.pem"),
    serverCert: p("server.pem"),
    serverKey: p("server.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    otherCa: p("other-ca.pem"),
    otherClientCert: p("other-client.pem"),
    otherClientKey: p("other-client.key"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** nats-server `tls {}` block: TLS required; with `verify`, a client certificate signed by the CA too. */
export function tlsBlock(pki: Pki, verify: boolean): string {
  const q = JSON.stringify;
  return `tls {\n  cert_file: ${q(pki.serverCert)}\n  key_file: ${q(pki.serverKey)}\n  ca_file: ${q(pki.ca)}\n  verify: ${verify}\n  timeout: 2\n}`;
}

export interface UserCreds {
  publicKey: string;
  /** The .creds file's text (JWT + seed). */
  creds: string;
}

export interface OperatorSetup {
  /** Server config: operator, system account, MEMORY resolver preloaded with the accounts. */
  serverConfig(options?: { revoke?: string[] }): Promise<string>;
  /** A user of the (JetStream-enabled) application account; `expiresAt` in epoch seconds. */
  user(name: string, options?: { expiresAt?: number; permissions?: { pub?: { allow?: string[] }; sub?: { allow?: string[] } } }): Promise<UserCreds>;
}

/** An operator, a system account and an application account with JetStream, made in the test. */
export function makeOperator(): OperatorSetup {
  const operator: KeyPair = createOperator();
  const system: KeyPair = createAccount();
  const account: KeyPair = createAccount();
  return {
    async serverConfig(options = {}) {
      const now = Math.floor(Date.now() / 1000);
      const operatorJwt = await encodeOperator("jetflow-test", operator, { system_account: system.getPublicKey() });
      const systemJwt = await encodeAccount("SYS", system, {}, { signer: operator });
      const revocations = Object.fromEntries((options.revoke ?? []).map((key) => [key, now + 1]));
      const accountJwt = await encodeAccount(
        "APP",
        account,
        { limits: { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1, conn: -1, subs: -1, data: -1, payload: -1 }, ...(options.revoke ? { revocations } : {}) },
        { signer: operator },
      );
      const q = JSON.stringify;
      return [
        `operator: ${q(operatorJwt)}`,
        `system_account: ${q(system.getPublicKey())}`,
        `resolver: MEMORY`,
        `resolver_preload: {`,
        `  ${system.getPublicKey()}: ${q(systemJwt)}`,
        `  ${account.getPublicKey()}: ${q(accountJwt)}`,
        `}`,
      ].join("\n");
    },
    async user(name, options = {}) {
      const user = createUser();
      const jwt = await encodeUser(name, user, account, options.permissions ?? {}, options.expiresAt !== undefined ? { exp: options.expiresAt } : {});
      return { publicKey: user.getPublicKey(), creds: new TextDecoder().decode(fmtCreds(jwt, user)) };
    },
  };
}
