/**
 * The quick start, end to end through the real CLI: `wf run` as a child process, then
 * `wf start order_processing --wait`, `wf show`, `wf list`. Runs on nats-server 2.9 and 2.10 in CI.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { replayHistory } from "../runtime/testing/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WF = fileURLToPath(new URL("../dist/cli/wf.js", import.meta.url));
const ORDER = { orderId: "o-1", amount: 42, items: [{ sku: "a", qty: 1 }], email: "x@example.com" };

let nats: TestNats;
let runtime: ChildProcess;
let env: NodeJS.ProcessEnv;

function wf(...args: string[]) {
  return run(process.execPath, [WF, ...args], { cwd: ROOT, env, timeout: 30_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

beforeAll(async () => {
  if (!existsSync(WF)) throw new Error(`${WF} is missing: run \`npm run build\` (npm test does it first)`);
  nats = await startNatsServer();
  env = { ...process.env, NATS_URL: nats.url, WF_NAMESPACE: `smoke${process.pid}`, WF_LOG_LEVEL: "info", WORKER_ID: "smoke-runtime" };
  delete env.WF_CONFIG;
  runtime = spawn(process.execPath, [WF, "run"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`wf run did not get ready:\n${log}`)), 30_000);
    runtime.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    runtime.once("exit", (code) => reject(new Error(`wf run exited with ${code}:\n${log}`)));
  });
});

afterAll(async () => {
  if (runtime && runtime.exitCode === null) {
    const exited = new Promise((r) => runtime.once("exit", r));
    runtime.kill("SIGTERM");
    await exited;
  }
  await nats?.stop();
});

describe("wf CLI against a running wf run", () => {
  it("start --wait prints the four steps' outputs", async () => {
    const { code, stdout, stderr } = await wf("start", "order_processing", "--input", JSON.stringify(ORDER), "--wait");
    expect(stderr).toContain("completed");
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(Object.keys(result)).toEqual(["validate_order", "charge_payment", "ship_order", "send_notification"]);
    expect(result.ship_order.trackingNumber).toBe("TRK-o-1");
    expect(result.send_notification.to).toBe("x@example.com");
  });

  it("show prints the status and a line per step; list finds it", async () => {
    const started = await wf("start", "order_saga", "--id", "smoke-saga-1", "--input", JSON.stringify({ ...ORDER, simulateFailures: { charge_payment: 1 } }), "--wait", "--json");
    expect(started.code).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ id: "smoke-saga-1", status: "completed", result: { orderId: "o-1", trackingNumber: "TRK-o-1" } });
    const show = await wf("show", "smoke-saga-1");
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/smoke-saga-1\s+order_saga\s+completed/);
    expect(show.stdout).toMatch(/charge_payment\s+completed\s+2\/4/);
    const list = await wf("list", "--status", "completed", "--json");
    expect(JSON.parse(list.stdout).workflows.map((w: { id: string }) => w.id)).toContain("smoke-saga-1");
  });

  it("start --attr, list --where/--since/--count/--cursor, and delete", async () => {
    for (const [id, customer] of [["attr-1", "c-7"], ["attr-2", "c-8"], ["attr-3", "c-7"]]) {
      const started = await wf("start", "order_processing", "--id", id!, "--attr", `customer=${customer}`, "--attr", "priority=2", "--input", JSON.stringify(ORDER), "--wait");
      expect(started.code).toBe(0);
    }
    const found = await wf("list", "--where", "customer=c-7", "--where", "priority=2");
    expect(found.code).toBe(0);
    expect(found.stdout.split("\n").filter((l) => l.startsWith("attr-")).map((l) => l.split(/\s+/)[0])).toEqual(["attr-3", "attr-1"]);
    expect(found.stdout).toContain("customer=c-7");
    expect((await wf("list", "--where", 'priority="2"', "--count")).stdout.trim()).toBe("0"); // the string "2" is not the number 2
    expect((await wf("list", "--where", "customer=c-7", "--count")).stdout.trim()).toBe("2");
    expect((await wf("list", "--since", "1h", "--workflow", "order_processing", "--status", "completed", "--count")).stdout.trim()).not.toBe("0");
    const first = await wf("list", "--where", "customer=c-7", "--limit", "1", "--json");
    const page = JSON.parse(first.stdout);
    expect(page.workflows.map((w: { id: string }) => w.id)).toEqual(["attr-3"]);
    const second = await wf("list", "--where", "customer=c-7", "--limit", "1", "--cursor", page.cursor, "--json");
    expect(JSON.parse(second.stdout).workflows.map((w: { id: string }) => w.id)).toEqual(["attr-1"]);
    const show = await wf("show", "attr-2");
    expect(show.stdout).toMatch(/search attributes: customer=c-8 \(string\)\s+priority=2 \(number\)/);
    expect(show.stdout).toMatch(/kept until \d{4}-/);
    const deleted = await wf("delete", "attr-2");
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toContain("deleted attr-2");
    expect((await wf("show", "attr-2")).code).not.toBe(0);
    const bad = await wf("list", "--where", "customer");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--where "customer" is not name=value/);
  });

  it("show --history exports the journal in the replay-test format, and it replays on functions/", async () => {
    const started = await wf("start", "order_saga", "--id", "smoke-saga-history", "--input", JSON.stringify(ORDER), "--wait");
    expect(started.code).toBe(0);
    const exported = await wf("show", "smoke-saga-history", "--history");
    expect(exported.code).toBe(0);
    const history = JSON.parse(exported.stdout);
    expect(history).toMatchObject({ format: "jetflow-history", version: 1, state: { id: "smoke-saga-history", status: "completed" } });
    expect(history.state.journal).toEqual(["validate_order", "charge_payment", "ship_order", "send_notification"]);
    await expect(replayHistory(history, { functionsDir: join(ROOT, "functions") })).resolves.toMatchObject({ workflowId: "smoke-saga-history" });
  });

  it("a failed workflow exits non-zero and says why", async () => {
    const { code, stderr } = await wf("start", "order_processing", "--input", JSON.stringify({ ...ORDER, amount: 1_000_000 }), "--wait");
    expect(code).toBe(2);
    expect(stderr).toContain("failed");
    expect(stderr).toContain("exceeds the limit");
  });

  it("bad usage names the problem and the fix", async () => {
    const badJson = await wf("start", "order_processing", "--input", "{nope");
    expect(badJson.code).not.toBe(0);
    expect(badJson.stderr).toContain("--input is not valid JSON");
    expect(badJson.stderr).toContain("hint:");
    const badId = await wf("show", "no spaces allowed");
    expect(badId.code).toBe(1);
    expect(badId.stderr).toContain("is not valid");
    const missing = await wf("show", "does-not-exist");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no workflow with id does-not-exist");
  });
});

describe("wf CLI without a NATS to talk to", () => {
  const commands = [
    ["start", "order_processing", "--input", "{}", "--wait"],
    ["show", "some-id"],
    ["list"],
    ["signal", "some-id", "go"],
    ["cancel", "some-id"],
  ];

  async function against(url: string) {
    const noNats = { ...env, NATS_URL: url };
    return Promise.all(
      commands.map(async (args) => {
        const t0 = Date.now();
        const r = await run(process.execPath, [WF, ...args], { cwd: ROOT, env: noNats, timeout: 30_000 }).then(
          () => ({ code: 0, stderr: "" }),
          (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
        );
        return { args, ms: Date.now() - t0, ...r };
      }),
    );
  }

  it("nothing listening: each command fails at once with the URL and a hint", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const { port } = s.address() as AddressInfo;
        s.close(() => resolve(port));
      });
    });
    for (const r of await against(`nats://127.0.0.1:${port}`)) {
      expect(r.code, r.args.join(" ")).toBe(1);
      expect(r.stderr).toContain(`cannot reach NATS at nats://127.0.0.1:${port}`);
      expect(r.stderr).toContain("hint: Is NATS running there? `wf dev` starts one");
      expect(r.ms, r.args.join(" ")).toBeLessThan(10_000);
    }
  });

  it("something listening that never speaks NATS: each command gives up within seconds, not nats.js's 20 s", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket)); // accepts, says nothing
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      for (const r of await against(`nats://127.0.0.1:${port}`)) {
        expect(r.code, r.args.join(" ")).toBe(1);
        expect(r.stderr).toContain(`cannot reach NATS at nats://127.0.0.1:${port}`);
        expect(r.ms, r.args.join(" ")).toBeLessThan(12_000);
      }
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});
