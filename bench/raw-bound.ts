/**
 * The raw-JetStream bound: a hand-written loop doing only what one durable workflow step must do,
 * with the same @nats-io v3 client the engine uses, on the same server:
 *
 *   orchestrator: publish the task (acked, Nats-Msg-Id) to a work-queue stream
 *   worker:       consume it (pull consumer, consume()), publish the completion (acked, Nats-Msg-Id)
 *                 to a second work-queue stream, ack the task
 *   orchestrator: consume the completion, CAS-update the workflow's KV key (kv.update with the
 *                 revision it holds in memory), publish the next task (or finish), ack
 *
 * A "workflow" is four such steps in sequence. Its KV key is created before the clock starts and
 * its end is seen in-process (no result watch): the bound is deliberately strict. Everything runs
 * in this process on one connection, as a runtime does.
 */
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type ConsumerMessages } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import type { BenchContext, Figure } from "./lib/context.js";
import { BOUND_CONNECTION } from "./lib/context.js";
import { measureBound } from "./lib/bound.js";
import { runPool, withTimeout } from "./lib/stats.js";

const STEPS = 4;
export { THROUGHPUT_RUNS, THROUGHPUT_WARM_UP } from "./lib/bound.js";
const CONSUME_MAX = 256; // like the engine's orchestrator consumer (2 × its concurrency)
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface RawState {
  id: string;
  step: number;
  outputs: Record<string, unknown>;
}

/** The raw loop, set up and running: workflows of four steps can be run on it until close(). */
export interface RawLoop {
  /** Create the workflow's KV key (untimed). */
  prepare(id: string): Promise<{ state: RawState; revision: number }>;
  /** Run four steps; resolves with the ms they took. */
  run(id: string, prepared: { state: RawState; revision: number }): Promise<number>;
  /** One latency sample: prepare (untimed), then run. */
  sample(id: string): Promise<number>;
  /** `n` workflows, `concurrency` in flight, their keys created first (untimed); resolves with the seconds the runs took. */
  timedRun(tag: string, n: number, concurrency: number): Promise<number>;
  close(): Promise<void>;
}

export async function startRawLoop(natsUrl: string): Promise<RawLoop> {
  const nc = await connect({ servers: natsUrl, name: "bench raw bound", ...BOUND_CONNECTION });
  const prefix = `raw${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const subjects = { task: `${prefix}.tasks`, done: `${prefix}.done` };
  const consumers: ConsumerMessages[] = [];
  const close = async () => {
    for (const c of consumers) c.stop();
    await nc.drain().catch(() => nc.close());
  };
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const stream = (name: string, subject: string) =>
      jsm.streams.add({ name, subjects: [`${subject}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File, num_replicas: 1, duplicate_window: 120_000_000_000 });
    await stream(`${prefix}_TASKS`, subjects.task);
    await stream(`${prefix}_DONE`, subjects.done);
    const consumer = (streamName: string) =>
      jsm.consumers.add(streamName, { durable_name: "c", ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: 30_000_000_000, max_ack_pending: 20_000 });
    await consumer(`${prefix}_TASKS`);
    await consumer(`${prefix}_DONE`);
    const kv = await new Kvm(js).create(`${prefix}_STATES`, { history: 1, storage: StorageType.File, replicas: 1 });

    // In-memory view of each workflow the orchestrator side holds (as the engine's cache does).
    const live = new Map<string, { state: RawState; revision: number; done: () => void; fail: (e: unknown) => void }>();

    const publishTask = (id: string, step: number, input: unknown) =>
      js.publish(`${subjects.task}.t`, enc.encode(JSON.stringify({ workflowId: id, step, attempt: 1, input })), { msgID: `${id}/${step}/1` });

    const worker = await (await js.consumers.get(`${prefix}_TASKS`, "c")).consume({ max_messages: CONSUME_MAX });
    const orchestrator = await (await js.consumers.get(`${prefix}_DONE`, "c")).consume({ max_messages: CONSUME_MAX });
    consumers.push(worker, orchestrator);

    void (async () => {
      for await (const msg of worker) {
        void (async () => {
          const task = JSON.parse(dec.decode(msg.data)) as { workflowId: string; step: number; attempt: number; input: unknown };
          const output = { ok: true, step: task.step }; // the trivial activity
          const completion = { workflowId: task.workflowId, step: task.step, attempt: task.attempt, ok: true, output, finishedAt: new Date().toISOString() };
          await js.publish(`${subjects.done}.${task.workflowId}`, enc.encode(JSON.stringify(completion)), { msgID: `${task.workflowId}/${task.step}/${task.attempt}/c` });
          msg.ack();
        })().catch((err) => live.get(JSON.parse(dec.decode(msg.data)).workflowId)?.fail(err));
      }
    })();

    void (async () => {
      for await (const msg of orchestrator) {
        void (async () => {
          const event = JSON.parse(dec.decode(msg.data)) as { workflowId: string; step: number; output: unknown };
          const w = live.get(event.workflowId);
          if (!w) return msg.ack();
          const state: RawState = { ...w.state, step: event.step, outputs: { ...w.state.outputs, [`step${event.step}`]: event.output } };
          w.revision = await kv.update(state.id, JSON.stringify(state), w.revision);
          w.state = state;
          if (event.step < STEPS) await publishTask(state.id, event.step + 1, state.outputs);
          msg.ack();
          if (event.step === STEPS) w.done();
        })().catch((err) => live.get(JSON.parse(dec.decode(msg.data)).workflowId)?.fail(err));
      }
    })();

    const prepare = async (id: string) => {
      const state: RawState = { id, step: 0, outputs: {} };
      const revision = await kv.create(id, JSON.stringify(state));
      return { state, revision };
    };
    const run = (id: string, prepared: { state: RawState; revision: number }): Promise<number> =>
      new Promise<number>((resolve, reject) => {
        const t0 = performance.now();
        live.set(id, {
          ...prepared,
          done: () => {
            live.delete(id);
            resolve(performance.now() - t0);
          },
          fail: reject,
        });
        publishTask(id, 1, {}).catch(reject);
      });
    return {
      prepare,
      run,
      async sample(id) {
        return withTimeout(run(id, await prepare(id)), 30_000, "raw bound latency sample");
      },
      async timedRun(tag, n, concurrency) {
        const prepared = new Map<number, { state: RawState; revision: number }>();
        await runPool(n, 256, async (i) => void prepared.set(i, await prepare(`${tag}-${i}`)));
        const t0 = performance.now();
        await withTimeout(
          runPool(n, concurrency, (i) => run(`${tag}-${i}`, prepared.get(i)!).then(() => undefined)),
          300_000,
          "raw loop run",
        );
        return (performance.now() - t0) / 1000;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export async function rawBound(ctx: BenchContext): Promise<Figure> {
  const loop = await startRawLoop(ctx.natsUrl);
  try {
    const { fields } = await measureBound(ctx, loop, STEPS, (tag) => loop.sample(tag));
    return { figure: "raw_bound", ...fields, durable_writes_per_step: 3 };
  } finally {
    await loop.close();
  }
}
