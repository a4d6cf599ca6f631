/**
 * Queries (orchestrator/queries.ts): ctx.handleQuery in workflow code, client.query / `wf query`
 * from outside, answered by a runtime that replays the workflow from its journal. Real nats-server.
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import type { WorkflowContext } from "../runtime/index.js";
import { resultSignal, useEngines, waitForState } from "./fixtures/engine/harness.js";

const engine = useEngines();
const repoRoot = resolve(import.meta.dirname, "..");

const activities = { work: async (n: number) => n * 10 };

/** Works through `total` items, one activity each, then sleeps an hour (or waits for "finish"). */
async function progress(ctx: WorkflowContext, input: { total: number; wait?: "sleep" | "signal" }) {
  let done = 0;
  let last: number | undefined;
  ctx.handleQuery("progress", () => ({ done, total: input.total, last }));
  ctx.handleQuery("echo", (args: { say: string }) => `${args.say}, at ${done}`);
  ctx.handleQuery("sneaky", () => ctx.activity("work", 1));
  ctx.handleQuery("swallow", () => {
    ctx.sleep("1s").catch(() => undefined);
    return "looks harmless";
  });
  ctx.handleQuery("broken", () => {
    throw new Error("handler bug");
  });
  for (let i = 0; i < input.total; i++) {
    last = (await ctx.activity("work", i)) as number;
    done += 1;
  }
  if (input.wait === "signal") await ctx.waitForSignal("finish");
  else if (input.wait === "sleep") await ctx.sleep("1h");
  return { done };
}

describe("queries", () => {
  it("answers from the workflow's own variables while it sleeps, with args, on a runtime that replays it (no cache), and after it ended", async () => {
    const e = engine();
    await e.runtime({ workflows: { progress }, activities, config: { orchestrator: { cacheSize: 0 } } });
    const client = await e.client();
    await client.start("progress", { total: 3, wait: "sleep" }, { id: "q-sleep" });
    await waitForState(client, "q-sleep", (s) => s.steps.sleep?.status === "waiting");
    expect(await client.query("q-sleep", "progress")).toEqual({ done: 3, total: 3, last: 20 });
    expect(await client.query("q-sleep", "echo", { say: "hello" })).toBe("hello, at 3");

    const handle = await client.start("progress", { total: 2 }, { id: "q-done" });
    await handle.result(resultSignal());
    expect(await client.query("q-done", "progress")).toEqual({ done: 2, total: 2, last: 10 });
  });

  it("a query whose args are an object reference is refused: queries are never claim-checked, so no query makes a runtime read a stored object", async () => {
    const e = engine();
    await e.runtime({ workflows: { progress }, activities });
    const client = await e.client();
    const handle = await client.start("progress", { total: 1 }, { id: "q-ref" });
    await handle.result(resultSignal());
    const { nc, names } = await e.topology();
    const ref = { $ref: `obj:${names.payloadsStore}/q-ref/input`, bytes: 10, sha256: "0".repeat(64) };
    const reply = (await nc.request(names.querySubject("q-ref"), JSON.stringify({ workflowId: "q-ref", name: "echo", args: ref }), { timeout: 5_000 })).json<{ ok: boolean; error: { code: string; message: string } }>();
    expect(reply).toMatchObject({ ok: false, error: { code: "WF_PAYLOAD_MISSING", message: expect.stringContaining("queries are never claim-checked") } });
  });

  it("a handler that tries an effect, or throws, fails that query with a coded error, and the workflow is untouched", async () => {
    const e = engine();
    await e.runtime({ workflows: { progress }, activities });
    const client = await e.client();
    await client.start("progress", { total: 1, wait: "signal" }, { id: "q-effect" });
    const before = await waitForState(client, "q-effect", (s) => Object.values(s.steps).some((step) => step.kind === "signal" && step.status === "waiting"));
    await expect(client.query("q-effect", "sneaky")).rejects.toMatchObject({ code: "WF_QUERY_EFFECT", message: expect.stringMatching(/call an activity/) });
    await expect(client.query("q-effect", "swallow")).rejects.toMatchObject({ code: "WF_QUERY_EFFECT" });
    // The refusal names what was running: a query's handler (an update's validator says so instead: updates.test.ts).
    await expect(client.query("q-effect", "sneaky")).rejects.toMatchObject({ message: expect.stringMatching(/^the handler of query "sneaky" of workflow progress .*a query handler can only read/) });
    await expect(client.query("q-effect", "broken")).rejects.toMatchObject({ code: "WF_QUERY_FAILED", message: expect.stringMatching(/handler bug/) });
    await expect(client.query("q-effect", "nope")).rejects.toMatchObject({ code: "WF_UNKNOWN_QUERY", message: expect.stringMatching(/known: broken, echo, progress, sneaky, swallow/) });
    const after = await client.describe("q-effect");
    expect(after.updatedAt).toBe(before.updatedAt);
    expect(Object.keys(after.steps).sort()).toEqual(Object.keys(before.steps).sort());
    // It goes on as if nothing was asked.
    await client.signal("q-effect", "finish");
    expect((await waitForState(client, "q-effect")).result).toEqual({ done: 1 });
  });

  it("an unknown id and a namespace without runtimes give coded errors", async () => {
    const e = engine();
    const client = await e.client();
    await expect(client.query("nobody", "progress", undefined, { timeout: "2s" })).rejects.toMatchObject({ code: "WF_NO_QUERY_RESPONDER" });
    await e.runtime({ workflows: { progress }, activities });
    await expect(client.query("nobody", "progress")).rejects.toMatchObject({ code: "WF_WORKFLOW_NOT_FOUND" });
  });

  it("wf query prints the answer as JSON, and a bad --args says how to quote it", async () => {
    const e = engine();
    await e.runtime({ workflows: { progress }, activities });
    const client = await e.client();
    await client.start("progress", { total: 2, wait: "signal" }, { id: "q-cli" });
    await waitForState(client, "q-cli", (s) => Object.values(s.steps).some((step) => step.kind === "signal" && step.status === "waiting"));
    // Not spawnSync: the runtime that answers runs in this process.
    const wf = (...args: string[]) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, [resolve(repoRoot, "dist/cli/wf.js"), ...args, "--nats", e.url, "--namespace", e.namespace], { cwd: repoRoot, encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) =>
          done({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const ok = await wf("query", "q-cli", "progress");
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ done: 2, total: 2, last: 10 });
    const bad = await wf("query", "q-cli", "echo", "--args", "{nope");
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--args is not valid JSON/);
  });
  it("with a payload codec, a query and an update see decoded values (the state holds them encrypted), across a replay", async () => {
    const e = engine();
    const codec = { codec: { keys: { k1: randomBytes(32).toString("base64") }, current: "k1" } };
    async function secretive(ctx: WorkflowContext, input: { secret: string }) {
      const seen: string[] = [];
      ctx.handleQuery("secret", () => input.secret);
      ctx.handleQuery("seen", () => seen);
      ctx.handleUpdate("tell", async (word: string) => {
        seen.push(`${word}:${(await ctx.activity("work", 1)) as number}`);
        return seen.length;
      });
      await ctx.waitForSignal("finish");
      return seen;
    }
    await e.runtime({ workflows: { secretive }, activities, config: { ...codec, orchestrator: { cacheSize: 0 } } });
    const client = await e.client(codec);
    await client.start("secretive", { secret: "hunter2" }, { id: "q-codec" });
    await waitForState(client, "q-codec", (s) => Object.values(s.steps).some((step) => step.kind === "signal" && step.status === "waiting"));
    const raw = await (await e.topology()).states.get("q-codec");
    expect(new TextDecoder().decode(raw!.value)).not.toContain("hunter2");
    expect(await client.query("q-codec", "secret")).toBe("hunter2");
    expect(await client.update("q-codec", "tell", "psst")).toBe(1);
    // A second update replays the first (no cache): its handler gets its argument decoded again.
    expect(await client.update("q-codec", "tell", "again")).toBe(2);
    expect(await client.query("q-codec", "seen")).toEqual(["psst:10", "again:10"]);
  });
});
