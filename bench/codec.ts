/**
 * The payload boundary's cost (runtime/payloads/): the same workload in one process (runtime +
 * client on one nats-server), with payloads untouched (`limits.inlinePayloadBytes` 0, no codec),
 * with the default claim check (64 KiB, no codec: payloads measured, none large), and with the
 * AES-256-GCM codec. The modes alternate, and each figure is the median of its runs, so all see
 * the same minutes of a shared machine. Not part of `npm run bench` (one more minute there):
 *
 *   NATS_SERVER_BIN=… node --import tsx bench/codec.ts          # BENCH_N (1000), BENCH_CONCURRENCY (200), BENCH_ROUNDS (3)
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, createRuntime, loadConfig, type WorkflowContext } from "../runtime/index.js";
import { startNatsServer } from "../test/helpers/nats-server.js";

const N = Number(process.env.BENCH_N ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const key = randomBytes(32).toString("base64");

const order = async (ctx: WorkflowContext, input: { id: string; items: Array<{ sku: string; qty: number }> }) => {
  const reserved = await ctx.activity<{ ok: boolean; items: number }>("reserve", input);
  const charged = await ctx.activity<{ receipt: string }>("charge", { id: input.id, amount: reserved.items * 100 });
  const shipped = await ctx.activity<{ tracking: string }>("ship", { id: input.id, receipt: charged.receipt });
  return { id: input.id, receipt: charged.receipt, tracking: shipped.tracking };
};
const activities = {
  reserve: async (input: { items: unknown[] }) => ({ ok: true, items: input.items.length }),
  charge: async (input: { id: string }) => ({ receipt: `r-${input.id}` }),
  ship: async (input: { id: string }) => ({ tracking: `t-${input.id}` }),
};

type Mode = "plain" | "claim-check" | "codec";
const MODES: Mode[] = ["plain", "claim-check", "codec"];

async function run(url: string, mode: Mode, round: number): Promise<number> {
  const namespace = `cb_${mode.replace("-", "")}_${round}_${process.pid % 10000}`;
  const config = loadConfig({
    env: {},
    cwd: mkdtempSync(join(tmpdir(), "jetflow-codec-bench-")),
    overrides: {
      nats: { servers: [url] },
      namespace,
      log: { level: "error" },
      limits: { inlinePayloadBytes: mode === "plain" ? 0 : 64 * 1024 },
      ...(mode === "codec" ? { codec: { keys: { k1: key }, current: "k1" } } : {}),
    },
  });
  const runtime = await createRuntime({ config, workflows: { order }, activities });
  await runtime.start();
  const client = await createClient({ config });
  try {
    const input = (i: number) => ({ id: `o-${i}`, items: Array.from({ length: 5 }, (_, k) => ({ sku: `sku-${k}`, qty: k + 1 })) });
    let next = 0;
    const one = async () => {
      for (let i = next++; i < N; i = next++) await (await client.start("order", input(i), { id: `o-${round}-${i}` })).result();
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, one));
    return N / ((performance.now() - t0) / 1000);
  } finally {
    await client.close();
    await runtime.stop("bench");
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const server = await startNatsServer();
try {
  const results: Record<Mode, number[]> = { plain: [], "claim-check": [], codec: [] };
  await run(server.url, "plain", -1); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of MODES) {
      const rate = await run(server.url, mode, round);
      results[mode].push(rate);
      process.stderr.write(`[codec bench] round ${round + 1} ${mode}: ${rate.toFixed(0)} workflows/s\n`);
    }
  }
  const summary = Object.fromEntries(MODES.map((m) => [m, Math.round(median(results[m]))]));
  process.stdout.write(
    JSON.stringify({ figure: "codec", n: N, concurrency: CONCURRENCY, rounds: ROUNDS, workflows_per_s: summary, claim_check_ratio: +(summary["claim-check"]! / summary.plain!).toFixed(3), codec_ratio: +(summary.codec! / summary.plain!).toFixed(3) }) + "\n",
  );
} finally {
  await server.stop();
}
