/**
 * Many workflows written straight into NATS in the engine's wire format, for the figures that
 * need 100,000 finished ones (list_flat, recovery_flat, retention_flat): through the engine that would take
 * minutes. The writes go through the engine's own encoders (serializeState, entryOf,
 * endSubjectOf, indexStart, publishEffects), so the format cannot drift from what a runtime writes.
 *
 * A finished workflow leaves the states stream as the engine leaves it: its run entry, a running
 * state, then the terminal state (which replaces it: history 1) and its end entry, in that order
 * on one connection; the run entries are then purged, as indexEnd does one by one after each end.
 * So the stream has the engine's layout, sequence gaps included (the reads of the visibility
 * index walk sequence windows). One purge of every run entry stands in for 100,000 single
 * purges, which is why running workflows are written after the finished ones: they start later.
 * The first finished workflow goes through indexEnd itself (its end entry, the retention class,
 * and its clean-up purges).
 *
 * A running workflow is written as a start is: its run entry (indexStart), then its state with
 * kv.create, then what it waits on (publishEffects): nine in ten wait on an activity whose task
 * is in the tasks stream, one in ten on a signal (nothing to publish).
 */
import type { Topology } from "../../runtime/nats/topology.js";
import { pendingEffects, publishEffects } from "../../runtime/orchestrator/outbox.js";
import { serializeState } from "../../runtime/orchestrator/state-store.js";
import { TERMINAL_STATUSES, type WorkflowState, type WorkflowStatus } from "../../runtime/state.js";
import { endSubjectOf, entryOf } from "../../runtime/visibility/index-keys.js";
import { indexEnd, indexStart, subjectsOf } from "../../runtime/visibility/index-writer.js";
import { countWorkflows } from "../../runtime/visibility/query.js";

export const DATASET_WORKFLOW = "bench_order";
/** Workflows written at once: each is several publishes in flight, each acked by JetStream. */
const BATCH = 1_000;
/** Finished workflows ended this far apart, the newest just before the running ones started. */
export const DATASET_SPACING_MS = 500;
/** How long after its start a finished workflow of the dataset ended. */
const RUN_MS = 200;

export interface DatasetSize {
  finished: number;
  running: number;
}

const encoder = new TextEncoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

function baseState(id: string, createdAtMs: number, input: unknown): WorkflowState {
  const createdAt = new Date(createdAtMs).toISOString();
  return {
    v: 2,
    id,
    workflow: DATASET_WORKFLOW,
    status: "running",
    input,
    createdAt,
    updatedAt: createdAt,
    bundle: "bench-dataset",
    kind: "code",
    steps: {},
    journal: [],
  };
}

/** The i-th finished workflow, as it was while running and as it ended: 9 in 10 completed, the rest failed or cancelled. */
function finishedStates(i: number, createdAtMs: number): { running: WorkflowState; ended: WorkflowState } {
  const input = { orderId: `o${i}`, amount: 42, items: [{ sku: "sku-1", qty: 2 }] };
  const running = baseState(`done-${i}`, createdAtMs, input);
  const scheduledAt = running.createdAt;
  running.steps.validate = { seq: 0, kind: "activity", activity: "validate_order", status: "scheduled", attempt: 1, maxAttempts: 4, input, timeoutMs: 60_000, scheduledAt };
  const endedAt = new Date(createdAtMs + RUN_MS).toISOString();
  const status: WorkflowStatus = i % 10 === 9 ? (i % 20 === 19 ? "cancelled" : "failed") : "completed";
  const ended: WorkflowState = { ...running, status, updatedAt: endedAt, completedAt: endedAt, journal: ["validate"] };
  ended.steps = { validate: { ...running.steps.validate!, status: "completed", output: { valid: true }, startedAt: scheduledAt, finishedAt: endedAt, worker: "bench-dataset" } };
  if (status === "completed") ended.result = { orderId: `o${i}`, ok: true };
  else ended.error = status === "failed" ? { message: "card declined", type: "ActivityFailure" } : { message: "cancelled by the bench", type: "CancelledError" };
  return { running, ended };
}

/** The i-th running workflow: waiting on an activity whose task is stored, or (1 in 10) on a signal. */
function runningState(i: number, createdAtMs: number): WorkflowState {
  const input = { orderId: `r${i}`, amount: 42 };
  const state = baseState(`run-${i}`, createdAtMs, input);
  if (i % 10 === 0) state.steps.approval = { seq: 0, kind: "signal", signal: "approved", status: "waiting", attempt: 0, scheduledAt: state.createdAt };
  else state.steps.charge = { seq: 0, kind: "activity", activity: "bench_dataset_charge", status: "scheduled", attempt: 1, maxAttempts: 4, input, timeoutMs: 60_000, scheduledAt: state.createdAt };
  return state;
}

async function inBatches(total: number, write: (i: number) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < total; start += BATCH) {
    const writes: Array<Promise<unknown>> = [];
    for (let i = start; i < Math.min(total, start + BATCH); i++) writes.push(write(i));
    await Promise.all(writes);
  }
}

/**
 * Write `size.finished` finished and `size.running` running workflows into the (empty) namespace
 * of `topology`; resolves once every write is acked and the counts read back from the index match.
 */
export async function writeDataset(topology: Topology, size: DatasetSize): Promise<{ seconds: number; firstEndedMs: number }> {
  const t0 = performance.now();
  const subjects = subjectsOf(topology);
  const now = Date.now();
  const firstCreated = now - 60_000 - size.finished * DATASET_SPACING_MS;

  if (size.finished > 0) {
    const first = finishedStates(0, firstCreated);
    await indexStart(topology, first.running);
    await topology.states.create(first.running.id, serializeState(first.running));
    await topology.states.put(first.ended.id, serializeState(first.ended));
    await indexEnd(topology, first.ended);
    await inBatches(size.finished - 1, (j) => {
      const { running, ended } = finishedStates(j + 1, firstCreated + (j + 1) * DATASET_SPACING_MS);
      // One connection, so the server stores them in this order, as the engine's awaited writes are.
      return Promise.all([
        indexStart(topology, running),
        topology.js.publish(subjects.state(running.id), serializeState(running)),
        topology.js.publish(subjects.state(ended.id), serializeState(ended)),
        topology.js.publish(endSubjectOf(subjects, ended), json(entryOf(ended))),
      ]);
    });
    await topology.jsm.streams.purge(subjects.stream, { filter: subjects.runFilter() });
  }

  await inBatches(size.running, async (i) => {
    const state = runningState(i, now - (size.running - i) * 10);
    await indexStart(topology, state);
    await topology.states.create(state.id, serializeState(state));
    await publishEffects(topology, state, pendingEffects(state));
  });

  await checkDataset(topology, size);
  return { seconds: (performance.now() - t0) / 1000, firstEndedMs: firstCreated + RUN_MS };
}

/** The index counts what was written (countWorkflows: the server counts the entries' subjects). */
async function checkDataset(topology: Topology, size: DatasetSize): Promise<void> {
  const [running, finished] = await Promise.all([countWorkflows(topology, { status: "running" }), countWorkflows(topology, { status: [...TERMINAL_STATUSES] })]);
  if (running !== size.running || finished !== size.finished) {
    throw new Error(`dataset in namespace "${topology.names.namespace}": the index counts ${finished} finished and ${running} running workflows, ${size.finished} and ${size.running} were written`);
  }
}

/** Delete every stream, bucket and object store of `namespace` (a dataset is large: no later figure should pay for it). */
export async function dropNamespace(topology: Topology): Promise<void> {
  const ns = topology.names.namespace;
  if (!ns) throw new Error("dropNamespace: refusing to drop the default namespace");
  const mine = (name: string) => [`${ns}_`, `KV_${ns}_`, `OBJ_${ns}_`].some((prefix) => name.startsWith(prefix));
  const names: string[] = [];
  for await (const name of topology.jsm.streams.names()) if (mine(name)) names.push(name);
  await Promise.all(names.map((name) => topology.jsm.streams.delete(name)));
}
