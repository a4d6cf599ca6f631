/** What every figure gets: the NATS server of this run, the options, and a client factory. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, loadConfig, silentLogger, type Config, type ConfigOverrides, type WorkflowClient } from "../../runtime/index.js";
import type { BenchOptions } from "./options.js";

/** A folder without wf.config.json: the bench's own clients take only the overrides below. */
const EMPTY_CWD = mkdtempSync(join(tmpdir(), "jetflow-bench-cwd-"));
process.on("exit", () => rmSync(EMPTY_CWD, { recursive: true, force: true }));

export interface BenchContext {
  options: BenchOptions;
  natsUrl: string;
  natsPid: number;
  natsVersion: string;
}

export type Figure = { figure: string } & Record<string, unknown>;

/** The config of an in-process client or runtime of the bench: this run's server, `namespace`, `extra` on top. */
export function benchConfig(ctx: BenchContext, namespace: string, extra: ConfigOverrides = {}): Config {
  return loadConfig({ env: {}, cwd: EMPTY_CWD, overrides: { nats: { servers: [ctx.natsUrl] }, namespace, log: { level: "warn" }, ...extra } });
}

export async function benchClient(ctx: BenchContext, namespace: string): Promise<WorkflowClient> {
  return createClient({ config: benchConfig(ctx, namespace), logger: silentLogger });
}

/** A namespace no earlier figure of this run used. */
export function namespaceFor(figure: string): string {
  return `bench_${figure}_${Date.now().toString(36)}`.slice(0, 32);
}

/** The example's order input: passes validation, no simulated failures. */
export function orderInput(i: number): Record<string, unknown> {
  return { orderId: `o${i}`, amount: 42, items: [{ sku: "sku-1", qty: 2 }], email: `c${i}@example.com` };
}

export const ORDER_ACTIVITY_TYPES = ["validate_order", "charge_payment", "ship_order", "send_notification"];
export const ORDER_STEPS = 4;

/**
 * How the bounds (floor.ts, raw-bound.ts) connect: as the engine does (runtime/nats/connect.ts),
 * without the two Error objects nats.js otherwise builds per request for async stack traces. A
 * bound that paid for them would be slower than what any engine must do, and flatter the ratios.
 */
export const BOUND_CONNECTION = { noAsyncTraces: true } as const;
