/** Connecting to NATS: authentication from config, a clear error when it is refused, and a runtime started before NATS. */
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ConnectionError, createClient, createRuntime, loadConfig, type WorkflowContext } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WF = fileURLToPath(new URL("../dist/cli/wf.js", import.meta.url));
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const echo = { echo: async (ctx: WorkflowContext, input: string) => ctx.activity("shout", input) };
const shout = { shout: async (input: string) => input.toUpperCase() };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe("authentication", () => {
  it("connects with a token or user/password from config, and names the problem when refused", async () => {
    const tokenServer = await startNatsServer({ extraConfig: `authorization { token: "s3cret" }` });
    cleanups.push(() => tokenServer.stop());
    const good = loadConfig({ env: {}, overrides: { nats: { servers: [tokenServer.url], token: "s3cret" }, namespace: "auth1", log: { level: "warn" } } });
    const runtime = await createRuntime({ config: good, workflows: echo, activities: shout });
    await runtime.start();
    cleanups.push(() => runtime.stop());
    const client = await createClient({ config: good });
    cleanups.push(() => client.close());
    expect(await (await client.start("echo", "hi")).result({ signal: AbortSignal.timeout(10_000) })).toBe("HI");

    const bad = loadConfig({ env: {}, overrides: { nats: { servers: [tokenServer.url], token: "wrong" }, namespace: "auth1" } });
    const refused = await createClient({ config: bad }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectionError);
    expect((refused as ConnectionError).code).toBe("WF_NATS_AUTH");
    expect((refused as ConnectionError).message).toContain(tokenServer.url);
    expect((refused as ConnectionError).hint).toContain("token");

    const userServer = await startNatsServer({ extraConfig: `authorization { user: "app", password: "pw" }` });
    cleanups.push(() => userServer.stop());
    const userConfig = loadConfig({ env: { NATS_USER: "app", NATS_PASSWORD: "pw" }, overrides: { nats: { servers: [userServer.url] }, namespace: "auth2" } });
    const userClient = await createClient({ config: userConfig });
    cleanups.push(() => userClient.close());
    await expect(userClient.describe("nothing-here")).rejects.toThrow(/no workflow with id nothing-here/);
  });

  it("a client with no server to talk to says where it looked and how to start one", async () => {
    const port = await freePort();
    const config = loadConfig({ env: {}, overrides: { nats: { servers: [`nats://127.0.0.1:${port}`] } } });
    const error = (await createClient({ config }).catch((e: unknown) => e)) as ConnectionError;
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.code).toBe("WF_NATS_UNREACHABLE");
    expect(error.message).toContain(`127.0.0.1:${port}`);
    expect(error.hint).toContain("nats-server -js");
  });
});

describe("a runtime started before NATS", () => {
  it("waits, says so, and serves workflows once NATS is up", async () => {
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, NATS_URL: `nats://127.0.0.1:${port}`, WF_NAMESPACE: "early", WF_LOG_LEVEL: "info" };
    delete env.WF_CONFIG;
    const child = spawn(process.execPath, [WF, "run"], { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
    cleanups.push(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    let log = "";
    const seen = (text: string, timeoutMs: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`never saw "${text}" in:\n${log}`)), timeoutMs);
        const check = () => {
          if (log.includes(text)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stderr!.on("data", (chunk: Buffer) => {
          log += chunk.toString();
          check();
        });
        check();
      });
    await seen("is not reachable yet; waiting for it", 15_000);
    const nats: TestNats = await startNatsServer({ port });
    cleanups.push(() => nats.stop());
    await seen("ready", 30_000);
    expect(log).toContain(`connected to NATS at`);
    const client = await createClient({ config: loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: "early" } }) });
    cleanups.push(() => client.close());
    const handle = await client.start("order_processing", { orderId: "early-1", amount: 5, items: [{ sku: "a", qty: 1 }], email: "e@example.com" });
    expect(Object.keys((await handle.result({ signal: AbortSignal.timeout(15_000) })) as object)).toHaveLength(4);
  });
});
