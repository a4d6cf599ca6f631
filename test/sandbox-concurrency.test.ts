/**
 * Code workflows from functions/ run in several sandboxes so that activations of different
 * workflows overlap; within a workflow, Date and Math.random must still answer for its own
 * activation, the same on every replay.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildFunctions } from "../runtime/bundle/build.js";
import { createClient, createRuntime, loadConfig, type WorkflowState } from "../runtime/index.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

let nats: TestNats;
let dir: string;
beforeAll(async () => {
  nats = await startNatsServer();
  dir = mkdtempSync(join(tmpdir(), "jetflow-sandboxes-"));
  mkdirSync(join(dir, "functions", "activities"), { recursive: true });
  mkdirSync(join(dir, "functions", "workflows"), { recursive: true });
  writeFileSync(join(dir, "functions", "activities", "a.ts"), `export async function heads() { return "H"; }\nexport async function tails() { return "T"; }\nexport async function pause(ms: number) { await new Promise((r) => setTimeout(r, ms)); return ms; }\n`);
  // Which activity runs depends on Math.random(); the clock is checked against ctx.now() after each await.
  writeFileSync(
    join(dir, "functions", "workflows", "coin.ts"),
    `export async function coins(ctx: any, input: { flips: number }) {
  const out: string[] = [];
  let clockOk = true;
  for (let i = 0; i < input.flips; i++) {
    out.push(await ctx.activity(Math.random() < 0.5 ? "heads" : "tails"));
    if (i === 1) await ctx.activity("pause", 300);
    clockOk &&= Date.now() === ctx.now() && new Date().getTime() === ctx.now();
  }
  return { out: out.join(""), clockOk };
}
`,
  );
});
afterAll(async () => {
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("30 concurrent code workflows keep their own clock and random sequence, also across a replay", async () => {
  const config = loadConfig({ env: {}, cwd: dir, overrides: { nats: { servers: [nats.url] }, namespace: "sandboxes", log: { level: "warn" }, worker: { slots: 64, shutdownGrace: "5s" } } });
  const bundle = await buildFunctions(join(dir, "functions"));
  const first = await createRuntime({ config, bundle });
  await first.start();
  const client = await createClient({ config });
  try {
    const ids = Array.from({ length: 30 }, (_, i) => `coins-${i}`);
    await Promise.all(ids.map((id) => client.start("coins", { flips: 6 }, { id })));
    // Stop the runtime while the workflows wait on "pause": the next one must replay them.
    await new Promise((r) => setTimeout(r, 150));
    await first.stop();
    const second = await createRuntime({ config, bundle });
    await second.start();
    try {
      const states: WorkflowState[] = [];
      for (const id of ids) {
        await client.result(id, { signal: AbortSignal.timeout(20_000) }).catch(() => undefined);
        states.push(await client.describe(id));
      }
      for (const state of states) {
        expect(state.status, `${state.id}: ${state.error?.message}`).toBe("completed");
        expect((state.result as { clockOk: boolean }).clockOk).toBe(true);
      }
      // Different ids, different sequences: the flips are not all alike.
      expect(new Set(states.map((s) => (s.result as { out: string }).out)).size).toBeGreaterThan(5);
    } finally {
      await second.stop();
    }
  } finally {
    await client.close();
  }
});
