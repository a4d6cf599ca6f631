/**
 * Continuation leases: which runtime runs a continued step, and whether it still does.
 *
 * A continued step has no task message of its own; its lease is the unacked message of the task
 * that began its chain (docs/protocol.md, "Continuations"), and its state records both the
 * runtime instance that holds it (`continued`) and that task (`lease`). When the lease's task is
 * seen again (redelivered because its runtime died, or because a restarted nats-server forgot it
 * was delivered, or as a copy published again), the runtime that sees it must re-publish the
 * continued step only if its holder no longer runs it: re-publishing a step that is still running
 * runs it twice, and every later step of the chain with it (a "shadow chain"). So it asks the
 * holder, over core NATS request/reply, on a subject only that runtime listens on:
 * - "held": the holder runs (or is about to run) the step: leave it; the message handled here
 *   goes back to JetStream (NAK with a delay) instead of being acked, because it may be the very
 *   lease, and the holder acks it when its chain ends;
 * - "free": the holder answered that it does not hold it, or no one listens on its subject (it
 *   ended: a SIGKILLed process's subscription goes with its connection): re-publish the step;
 * - "unknown": no answer in time (NATS busy, a partition): as "held", asked again later.
 * A step whose state has no `lease` (written before it existed) may be re-published by any repair.
 * Cost: one request per continued step of the repaired workflow, only on a repair (rare).
 */
import { NoRespondersError, RequestError } from "@nats-io/nats-core";
import { randomBytes } from "node:crypto";
import type { Topology } from "../nats/topology.js";
import { pendingEffects, type Effect } from "../orchestrator/outbox.js";
import type { LeaseRef, WorkflowState } from "../state.js";

export type LeaseStatus = "held" | "free" | "unknown";

/** How long a holder has to answer; past it the lease counts as "unknown" (asked again later). */
const LEASE_QUERY_TIMEOUT_MS = 2_000;

export interface Leases {
  /** This runtime's id in `continued`: its worker.id and a per-process suffix, a subject token. */
  readonly instance: string;
  /** This runtime now runs continued step `step` of `workflowId` (until release()). */
  hold(workflowId: string, step: string): void;
  release(workflowId: string, step: string): void;
  /** Whether `holder` still runs that continued step; this runtime answers for itself directly. */
  status(holder: string, workflowId: string, step: string): Promise<LeaseStatus>;
  start(): void;
  stop(): void;
}

interface LeaseQuery {
  workflowId: string;
  step: string;
}

export function createLeases(topology: Topology, workerId: string): Leases {
  // worker.id may hold dots and other characters a subject token cannot; two runtimes may even
  // share one: the suffix makes the holder of a lease one process.
  const instance = `${workerId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64)}-${randomBytes(4).toString("hex")}`;
  const held = new Map<string, number>();
  const key = (workflowId: string, step: string) => `${workflowId}\u0000${step}`;
  let subscription: { unsubscribe(): void } | undefined;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  return {
    instance,
    hold(workflowId, step) {
      const k = key(workflowId, step);
      held.set(k, (held.get(k) ?? 0) + 1);
    },
    release(workflowId, step) {
      const k = key(workflowId, step);
      const n = (held.get(k) ?? 0) - 1;
      if (n > 0) held.set(k, n);
      else held.delete(k);
    },
    async status(holder, workflowId, step) {
      if (holder === instance) return held.has(key(workflowId, step)) ? "held" : "free";
      try {
        const reply = await topology.nc.request(topology.names.leaseSubject(holder), encoder.encode(JSON.stringify({ workflowId, step } satisfies LeaseQuery)), {
          timeout: LEASE_QUERY_TIMEOUT_MS,
        });
        return decoder.decode(reply.data) === "held" ? "held" : "free";
      } catch (err) {
        return isNoResponders(err) ? "free" : "unknown";
      }
    },
    start() {
      subscription = topology.nc.subscribe(topology.names.leaseSubject(instance), {
        callback: (_err, msg) => {
          try {
            const query = JSON.parse(decoder.decode(msg.data)) as LeaseQuery;
            msg.respond(held.has(key(String(query.workflowId), String(query.step))) ? "held" : "free");
          } catch {
            /* not a query of ours: no answer, the asker treats the lease as unknown */
          }
        },
      });
    },
    stop() {
      // After this, askers get "no responders" and re-publish: call it only once this runtime
      // runs no continued step any more (or has released their leases).
      subscription?.unsubscribe();
      subscription = undefined;
    },
  };
}

function isNoResponders(err: unknown): boolean {
  if (err instanceof NoRespondersError) return true;
  if (err instanceof RequestError) return err.isNoResponders();
  return err instanceof Error && err.cause instanceof NoRespondersError;
}

/**
 * What a repair publishes for a workflow, seen through task `lease` (the message being handled):
 * every effect the state waits on, except continued steps, which it publishes only when their
 * lease is that task and their holder no longer runs them. `held`: a continued step leased by
 * that task still runs; the message must go back to JetStream rather than be acked.
 */
export async function repairEffects(
  state: WorkflowState,
  lease: LeaseRef | undefined,
  status: (holder: string, workflowId: string, step: string) => Promise<LeaseStatus>,
): Promise<{ effects: Effect[]; held: boolean }> {
  const effects = pendingEffects(state, { skipContinued: true });
  let held = false;
  for (const [name, step] of Object.entries(state.steps)) {
    if (step.status !== "scheduled" || !step.continued) continue;
    if (step.lease && !(lease && step.lease.step === lease.step && step.lease.attempt === lease.attempt)) continue; // its own lease repairs it
    if ((await status(step.continued, state.id, name)) === "free") effects.push({ kind: "task", step: name });
    else held = true;
  }
  return { effects, held };
}
