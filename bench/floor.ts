/**
 * The floor: what any engine must do to record each step of a workflow durably in NATS, and
 * nothing more. One process, one connection, no queue, no events:
 *
 *   per workflow: kv.create of a small state (id, type, status, input, outputs)
 *   per step:     run the activity in place (the example's order activities, as order_processing
 *                 calls them: the input and the outputs of the steps before), then one kv.update
 *                 (CAS on the revision it holds) of the state with that step's output
 *
 * Four steps per workflow, the last write marks it completed. Unlike the raw bound (raw-bound.ts),
 * the create is part of the workflow and timed, and nothing is published: where the raw bound
 * measures a queue-based engine's messages, the floor measures the one write per step that no
 * design can skip. Its end is seen in-process (the last update's acknowledgement).
 */
import { Kvm, type KV } from "@nats-io/kv";
import { jetstream, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import * as orders from "../functions/activities/orders.js";
import type { ActivityContext } from "../runtime/workflow-api.js";
import type { BenchContext, Figure } from "./lib/context.js";
import { BOUND_CONNECTION, ORDER_STEPS, orderInput } from "./lib/context.js";
import { measureBound, meteredRun, type MeteredRun } from "./lib/bound.js";
import { medianBy, round, runPool, withTimeout } from "./lib/stats.js";

/** order_processing's steps in order: name = activity type, each depending on the one before. */
const STEPS = ["validate_order", "charge_payment", "ship_order", "send_notification"] as const;
const enc = new TextEncoder();

interface FloorState {
  id: string;
  workflow: string;
  status: "running" | "completed";
  input: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

type Activity = (input: never, ctx: ActivityContext) => Promise<unknown>;
const activities = orders as unknown as Record<(typeof STEPS)[number], Activity>;
const NEVER_ABORTED = new AbortController().signal;
const NO_LOG: ActivityContext["log"] = { debug() {}, info() {}, warn() {}, error() {} };

/** The floor's loop, connected: workflows can be run on it until close(). */
export interface FloorLoop {
  /** One workflow, start to end; resolves with the ms it took. */
  run(id: string): Promise<number>;
  /** `n` workflows, `concurrency` in flight; resolves with the seconds they took. */
  timedRun(tag: string, n: number, concurrency: number): Promise<number>;
  close(): Promise<void>;
}

export async function startFloorLoop(natsUrl: string): Promise<FloorLoop> {
  const nc = await connect({ servers: natsUrl, name: "bench floor", ...BOUND_CONNECTION });
  try {
    const bucket = `floor${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    // As the engine's WORKFLOW_STATES: one value per key, file storage, one replica.
    const kv: KV = await new Kvm(jetstream(nc)).create(bucket, { history: 1, storage: StorageType.File, replicas: 1 });
    const write = (state: FloorState) => enc.encode(JSON.stringify(state));

    const run = async (id: string): Promise<number> => {
      const t0 = performance.now();
      const input = orderInput(0);
      let state: FloorState = { id, workflow: "order_processing", status: "running", input, outputs: {} };
      let revision = await kv.create(id, write(state));
      for (let i = 0; i < STEPS.length; i++) {
        const step = STEPS[i]!;
        const ctx: ActivityContext = { workflowId: id, workflow: state.workflow, activityId: step, activityType: step, attempt: 1, idempotencyKey: `${id}/${step}`, signal: NEVER_ABORTED, heartbeat() {}, log: NO_LOG };
        // The DAG's input shape: the workflow's input and the outputs of the steps before.
        const output = await activities[step]({ ...state.input, ...state.outputs } as never, ctx);
        state = { ...state, status: i === STEPS.length - 1 ? "completed" : "running", outputs: { ...state.outputs, [step]: output } };
        revision = await kv.update(id, write(state), revision);
      }
      return performance.now() - t0;
    };
    return {
      run,
      async timedRun(tag, n, concurrency) {
        const t0 = performance.now();
        await withTimeout(runPool(n, concurrency, async (i) => void (await run(`${tag}-${i}`))), 300_000, "floor run");
        return (performance.now() - t0) / 1000;
      },
      async close() {
        await nc.drain().catch(() => nc.close());
      },
    };
  } catch (err) {
    await nc.close();
    throw err;
  }
}

/** CPU-ms per workflow of a timed run: this process's and nats-server's (cpuMeter's output). */
export function cpuMsPerWorkflow(cpu: Record<string, number>, workflows: number, processes: string[] = ["bench_process", "nats_server"]): number {
  const seconds = processes.reduce((sum, name) => sum + (cpu[`${name}_cpu_s`] ?? NaN), 0);
  return round((seconds * 1000) / workflows, 3);
}

/** A timed run of the floor, metered (lib/bound.ts). */
export const meteredFloorRun = (floor: FloorLoop, ctx: BenchContext, tag: string): Promise<MeteredRun> => meteredRun(floor, ctx, tag);

/** The floor figure: throughput at the throughput figures' concurrency (warm-up, then the median of 5 runs), CPU per workflow, 4-step latency one at a time. */
export async function floor(ctx: BenchContext): Promise<Figure> {
  const { n } = ctx.options;
  const loop = await startFloorLoop(ctx.natsUrl);
  try {
    const { reps, fields } = await measureBound(ctx, loop, ORDER_STEPS, (tag) => loop.run(tag), 20);
    const medianCpu = (processes?: string[]) => medianBy(reps.map((r) => cpuMsPerWorkflow(r.cpu, n, processes)), (x) => x);
    return {
      figure: "floor",
      ...fields,
      // The median of the runs' CPU per workflow (this process + nats-server), and each side's.
      cpu_ms_per_workflow: medianCpu(),
      process_cpu_ms_per_workflow: medianCpu(["bench_process"]),
      nats_server_cpu_ms_per_workflow: medianCpu(["nats_server"]),
      // One create and one CAS per step, and nothing else.
      durable_writes_per_step: round((ORDER_STEPS + 1) / ORDER_STEPS, 3),
    };
  } finally {
    await loop.close();
  }
}
