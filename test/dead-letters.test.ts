/**
 * `wf dead-letters list|show|replay|discard` (issue 16), the real CLI against a real nats-server
 * and a runtime: a start that is not JSON is dead-lettered and listed, filtered by reason, shown
 * and discarded; a refused start replayed runs its workflow; pages go newest first with a cursor;
 * a letter whose body was cut is never replayed; bad arguments are usage errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type WorkflowClient } from "../runtime/client/client.js";
import { loadConfig } from "../runtime/config.js";
import { recordDeadLetter } from "../runtime/dead-letters.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import type { WorkflowContext } from "../runtime/workflow-api.js";
import { makeProject, useSuiteNats, wf, type Env } from "./fixtures/function-host/harness.js";
import { waitFor } from "./helpers/wait.js";

const { server, envFor } = useSuiteNats();
const logger = createConsoleLogger({ level: "silent" });
const greet = async (ctx: WorkflowContext, input: { name: string }) => ({ hello: input.name });

let env: Env;
let runtime: Runtime;
let client: WorkflowClient;

beforeAll(async () => {
  env = envFor("deadletters");
  const config = loadConfig({ env: {}, overrides: { nats: { servers: [server().url] }, namespace: env.WF_NAMESPACE, log: { level: "silent" } } });
  runtime = await createRuntime({ config, logger, workflows: { greet }, activities: {} });
  await runtime.start();
  client = await createClient({ config, logger });
});

afterAll(async () => {
  await client?.close();
  await runtime?.stop("test done");
});

const dl = (...args: string[]) => wf(["dead-letters", ...args], { cwd: makeProject({}), env });
const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
/** What the orchestrator records when it refuses a start of a type no code has. */
const refusedStart = (id: string, data = encode({ id, input: { name: id } })) =>
  recordDeadLetter(client.topology, logger, { reason: "unknown_workflow", message: `workflow type "greet" is not in the loaded code`, subject: client.topology.names.startSubject("greet"), data, workflowId: id });

const seqs = (stdout: string) => stdout.split("\n").filter(Boolean).filter((l) => /^\s*\d+\s/.test(l)).map((l) => Number(l.trim().split(/\s+/)[0]));

describe("wf dead-letters", () => {
  it("lists a start that was not JSON with its reason, filters by reason, shows it, and discards it", async () => {
    await client.topology.js.publish(client.topology.names.startSubject("greet"), "{this is not json");
    const listed = await waitFor("the dead letter", async () => {
      const res = await dl("list", "--reason", "invalid_json");
      return res.stdout.includes("invalid_json") ? res : undefined;
    });
    expect(listed.code).toBe(0);
    const [seq] = seqs(listed.stdout);
    expect(seq).toBeGreaterThan(0);
    expect((await dl("list", "--reason", "input_too_large")).stdout).toContain("no dead letters");

    const shown = await dl("show", String(seq));
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain("invalid_json");
    expect(shown.stdout).toContain(`subject: ${client.topology.names.startSubject("greet")}`);
    expect(shown.stdout).toContain("{this is not json");
    const json = JSON.parse((await dl("show", String(seq), "--json")).stdout);
    expect(json).toMatchObject({ seq, reason: "invalid_json", body: "{this is not json", truncated: false, bytes: 17 });

    expect((await dl("discard", String(seq))).stdout).toContain(`dead letter ${seq} discarded`);
    expect(seqs((await dl("list")).stdout)).not.toContain(seq);
    expect((await dl("discard", String(seq))).stdout).toContain("already gone");
    const gone = await dl("show", String(seq));
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(new RegExp(`no dead letter ${seq}`));
    expect(gone.stderr).toMatch(/hint: It was replayed, discarded or expired/);
  });

  it("replays a refused start: the workflow it carried runs, and the letter is gone", async () => {
    await refusedStart("dl-replay-1");
    const [seq] = seqs((await dl("list", "--reason", "unknown_workflow")).stdout);
    const replayed = await dl("replay", String(seq));
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(replayed.stdout).toContain(`dead letter ${seq} published again to ${client.topology.names.startSubject("greet")}`);
    expect(await client.result("dl-replay-1", { signal: AbortSignal.timeout(15_000) })).toEqual({ hello: "dl-replay-1" });
    expect(seqs((await dl("list")).stdout)).not.toContain(seq);
    const again = await dl("replay", String(seq));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`no dead letter ${seq}`);
  });

  it("pages newest first with --limit and --cursor, and --json gives the page", async () => {
    for (const id of ["dl-page-1", "dl-page-2", "dl-page-3"]) await refusedStart(id);
    const first = JSON.parse((await dl("list", "--reason", "unknown_workflow", "--limit", "2", "--json")).stdout) as { letters: Array<{ workflowId: string; seq: number }>; cursor?: string };
    expect(first.letters.map((l) => l.workflowId)).toEqual(["dl-page-3", "dl-page-2"]);
    expect(first.cursor).toBeDefined();
    const text = await dl("list", "--reason", "unknown_workflow", "--limit", "2");
    expect(text.stdout).toContain(`next: --cursor ${first.cursor}`);
    const second = JSON.parse((await dl("list", "--reason", "unknown_workflow", "--limit", "2", "--cursor", first.cursor!, "--json")).stdout) as typeof first;
    expect(second.letters.map((l) => l.workflowId)).toEqual(["dl-page-1"]);
    expect(second.cursor).toBeUndefined();
  });

  it("refuses to replay a letter whose body was cut at 64 KiB", async () => {
    await refusedStart("dl-big-1", encode({ id: "dl-big-1", input: { name: "x".repeat(70 * 1024) } }));
    const page = JSON.parse((await dl("list", "--reason", "unknown_workflow", "--limit", "1", "--json")).stdout) as { letters: Array<{ seq: number; truncated: boolean }> };
    expect(page.letters[0]!.truncated).toBe(true);
    const res = await dl("replay", String(page.letters[0]!.seq));
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cannot be replayed as it was/);
    expect(res.stderr).toMatch(/hint: Publish a corrected message yourself/);
  });

  it("bad arguments are usage errors (exit 64)", async () => {
    for (const args of [["frobnicate"], ["replay"], ["show", "abc"], ["list", "--reason", "nope"], ["list", "--limit", "0"]]) {
      const res = await dl(...args);
      expect(res.code, args.join(" ")).toBe(64);
      expect(res.stderr).toMatch(/hint: /);
    }
  });
});
