/**
 * The web UI's API and how it is served (issue 16), without a browser: read-only mode refuses
 * every action with 403 and a coded error; a token, when set, is required on every API call (and
 * taken from ?token= for the event stream); a non-loopback host without a token refuses to start,
 * and a tokenless UI answers loopback names only and no cross-site action. `wf ui` refuses the
 * same way; `wf dev` prints its UI's URL; `wf run` serves it when ui.port is set.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type WorkflowClient } from "../runtime/client/client.js";
import { loadConfig, type Config } from "../runtime/config.js";
import { UiError } from "../runtime/errors.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import { createUiServer, type UiServer } from "../runtime/ui/server.js";
import type { WorkflowContext } from "../runtime/workflow-api.js";
import { freePort, makeProject, spawnWf, useSuiteNats, wf } from "./fixtures/function-host/harness.js";
import { request } from "node:http";

const { server, envFor } = useSuiteNats();
const logger = createConsoleLogger({ level: "warn" });

const gate = async (ctx: WorkflowContext) => ctx.waitForSignal("open");

let config: Config;
let runtime: Runtime;
let client: WorkflowClient;
const servers: UiServer[] = [];

beforeAll(async () => {
  config = loadConfig({ env: {}, overrides: { nats: { servers: [server().url] }, namespace: "uiapi", log: { level: "warn" } } });
  runtime = await createRuntime({ config, logger, workflows: { gate }, activities: {} });
  await runtime.start();
  client = await createClient({ config, logger });
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  await client?.close();
  await runtime?.stop("test done");
});

async function serve(options: { readOnly?: boolean; token?: string; host?: string } = {}): Promise<UiServer> {
  const ui = createUiServer({ client, config, port: 0, logger, ...options });
  await ui.start();
  servers.push(ui);
  return ui;
}

async function call(ui: UiServer, path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}) {
  const res = await fetch(new URL(path, ui.url), {
    method: init.method ?? "GET",
    headers: { ...(init.body !== undefined ? { "Content-Type": "application/json" } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text.startsWith("{") ? (JSON.parse(text) as Record<string, any>) : undefined, text };
}

/** A raw request with a Host header of our choosing (fetch does not let one set it). */
function withHost(ui: UiServer, path: string, host: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, ui.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, headers: { Host: host } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("web UI API", () => {
  it("read-only: shows everything, refuses every action with 403 WF_UI_READ_ONLY, and the workflow keeps running", async () => {
    await client.start("gate", null, { id: "ro-1" });
    const ui = await serve({ readOnly: true });
    const info = await call(ui, "/api/info");
    expect(info.json).toMatchObject({ readOnly: true, namespace: "uiapi" });
    const list = await call(ui, "/api/workflows?status=running");
    expect(list.status).toBe(200);
    expect(list.json!.workflows.map((w: { id: string }) => w.id)).toContain("ro-1");
    for (const [path, body] of [
      ["/api/workflows/ro-1/cancel", {}],
      ["/api/workflows/ro-1/terminate", {}],
      ["/api/workflows/ro-1/signal", { name: "open", payload: 1 }],
      ["/api/dead-letters/1/replay", {}],
      ["/api/dead-letters/1/discard", {}],
    ] as const) {
      const res = await call(ui, path, { method: "POST", body });
      expect(res.status, path).toBe(403);
      expect(res.json!.error).toMatchObject({ code: "WF_UI_READ_ONLY" });
      expect(res.json!.error.message).toMatch(/read-only/);
    }
    expect((await client.describe("ro-1")).status).toBe("running");
    // The same server without read-only acts.
    const rw = await serve();
    expect((await call(rw, "/api/workflows/ro-1/signal", { method: "POST", body: { name: "open", payload: "yes" } })).status).toBe(200);
    expect(await client.result("ro-1", { signal: AbortSignal.timeout(10_000) })).toBe("yes");
  });

  it("with a token: every API call needs it (401 WF_UI_UNAUTHORIZED without or with a wrong one); the page itself loads", async () => {
    const ui = await serve({ token: "s3cret-token" });
    for (const headers of [{}, { Authorization: "Bearer wrong" }, { Authorization: "s3cret-token" }] as Array<Record<string, string>>) {
      const res = await call(ui, "/api/workflows", { headers });
      expect(res.status).toBe(401);
      expect(res.json!.error.code).toBe("WF_UI_UNAUTHORIZED");
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
    expect((await call(ui, "/api/workflows/x/cancel", { method: "POST", body: {} })).status).toBe(401);
    expect((await call(ui, "/api/workflows", { headers: { Authorization: "Bearer s3cret-token" } })).status).toBe(200);
    // The event stream takes it from the query (EventSource sends no headers).
    await client.start("gate", null, { id: "tok-1" });
    // The stream follows a state that exists (404 until the runtime applied the start, which a loaded machine takes its time to do).
    for (let tries = 0; !(await client.describe("tok-1").then(() => true, () => false)); tries++) {
      if (tries > 200) throw new Error("workflow tok-1 was not started within 10 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await call(ui, "/api/workflows/tok-1/events")).status).toBe(401);
    const events = await fetch(new URL("/api/workflows/tok-1/events?token=s3cret-token", ui.url), { signal: AbortSignal.timeout(10_000) });
    expect(events.status).toBe(200);
    expect(events.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = events.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toMatch(/^event: state\ndata: \{.*"id":"tok-1"/);
    await reader.cancel();
    const page = await call(ui, "/");
    expect(page.status).toBe(200);
    expect(page.text).toContain('<div id="app">');
  });

  it("a non-loopback host without a token refuses to start (WF_UI_TOKEN_REQUIRED); with one it starts", async () => {
    let error: unknown;
    try {
      createUiServer({ client, config, host: "0.0.0.0", port: 0, logger });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(UiError);
    expect(error).toMatchObject({ code: "WF_UI_TOKEN_REQUIRED" });
    expect((error as UiError).hint).toMatch(/ui\.token/);
    const ui = await serve({ host: "0.0.0.0", token: "t" });
    expect((await call(ui, "/api/info", { headers: { Authorization: "Bearer t" } })).status).toBe(200);
  });

  it("without a token: answers loopback host names only, and refuses an action from another origin", async () => {
    const ui = await serve();
    expect((await withHost(ui, "/api/info", "evil.example:8233")).status).toBe(403);
    expect((await withHost(ui, "/api/info", `localhost:${new URL(ui.url).port}`)).status).toBe(200);
    await client.start("gate", null, { id: "origin-1" });
    const res = await call(ui, "/api/workflows/origin-1/cancel", { method: "POST", body: {}, headers: { Origin: "http://evil.example" } });
    expect(res.status).toBe(403);
    expect(res.json!.error.code).toBe("WF_UI_FORBIDDEN_HOST");
    // A form post (no JSON) is no action either.
    const form = await fetch(new URL("/api/workflows/origin-1/cancel", ui.url), { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "a=b" });
    expect(form.status).toBe(400);
    expect((await client.describe("origin-1")).status).toBe("running");
  });

  it("answers a workflow that does not exist with 404 and its code, and a bad filter with 400", async () => {
    const ui = await serve();
    const missing = await call(ui, "/api/workflows/no-such-id");
    expect(missing.status).toBe(404);
    expect(missing.json!.error.code).toBe("WF_WORKFLOW_NOT_FOUND");
    const bad = await call(ui, "/api/workflows?since=yesterday-ish");
    expect(bad.status).toBe(400);
    expect(bad.json!.error.code).toBe("WF_INVALID_FILTER");
  });
});

describe("serving the UI from the CLI", () => {
  const helloProject = () => makeProject({ "activities/greet.ts": "activities/greet.v1.ts", "workflows/hello.ts": "workflows/hello.ts" });

  it("wf ui on a non-loopback host without ui.token exits 1 with the coded error's message and hint", async () => {
    const env = envFor("uicli");
    const res = await wf(["ui", "--host", "0.0.0.0", "--port", "0"], { cwd: makeProject({}), env });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/not loopback, without a token/);
    expect(res.stderr).toMatch(/hint: Set ui\.token/);
  });

  it("wf ui --read-only serves the page and a read-only API, and prints its URL", async () => {
    const env = envFor("uiro");
    const ui = spawnWf("wf ui", ["ui", "--port", "0", "--read-only"], { cwd: makeProject({}), env });
    const line = await ui.waitFor("jetflow UI");
    const url = /http:\/\/[^\s]+/.exec(line)![0];
    expect(line).toContain("read-only");
    const info = (await (await fetch(new URL("/api/info", url))).json()) as { readOnly: boolean };
    expect(info.readOnly).toBe(true);
    expect(await ui.stop("SIGINT")).toBe(0);
  });

  it("wf dev prints its UI's URL at start, and the UI answers there", async () => {
    const env = envFor("uidev");
    const dev = spawnWf("wf dev", ["dev"], { cwd: helloProject(), env });
    const line = await dev.waitFor(/^UI\s+http/m);
    await dev.waitFor("loaded");
    const url = /http:\/\/[^\s]+/.exec(line)![0];
    const list = await fetch(new URL("/api/workflows", url));
    expect(list.status).toBe(200);
    expect(await dev.stop("SIGINT")).toBe(0);
  });

  it("wf run serves the UI when ui.port is set, and not otherwise", async () => {
    const port = await freePort();
    const env = { ...envFor("uirun"), WF_UI_PORT: String(port) };
    const run = spawnWf("wf run", ["run"], { cwd: helloProject(), env });
    await run.waitFor(`web UI on http://127.0.0.1:${port}/`, { stream: "stderr" });
    const info = await fetch(`http://127.0.0.1:${port}/api/info`);
    expect(info.status).toBe(200);
    expect(await run.stop("SIGINT")).toBe(0);
    const plain = spawnWf("wf run", ["run", "--print-config"], { cwd: helloProject(), env: envFor("uirun2") });
    await plain.exited;
    expect(JSON.parse(plain.stdout).config.ui).toMatchObject({ port: 0, host: "127.0.0.1", readOnly: false });
  });
});
