/**
 * Recovery after NATS lost writes: re-publish what running workflows wait on and NATS no longer has.
 *
 * JetStream acknowledges a write before it reaches the disk, so a nats-server that crashed can
 * come back without writes it had acknowledged: an event's ack may have stuck while the state
 * write it caused was lost, or a consumed task may be gone while the state still waits for it.
 * Redelivery cannot repair those; re-publishing can.
 *
 * - When: only after this runtime reconnected to a different server process (its server_id
 *   changed: a restart, or another node of a cluster). A client's own reconnect to the server it
 *   had (a network blip) cannot have lost writes, and re-publishing then only made duplicates.
 * - Who: one runtime for the fleet. Every runtime that was on the server that went away drops its
 *   cached states; the pass itself is done by whoever takes the fleet lease
 *   `recovery.<that server's id>` (nats/fleet-lease.ts) and marks it done; the others wait
 *   until it is done, or take it over if its holder dies before (the lease runs out).
 * - What: the pending effects of every running workflow (outbox.ts pendingEffects) except
 *   - tasks and timers still stored in their streams (both are work queues: what is stored is
 *     pending). JetStream's duplicate window (2 minutes) cannot be relied on for them: a task
 *     older than that, re-published, is a second task, and a long activity would run twice.
 *     Deadlines are stored in batches under a batch id (timer-batches.ts), so their per-timer id
 *     never deduplicated them at all;
 *   - continued steps: they have no task message a crash could lose; their runtime keeps
 *     recording them until NATS is back, and their lease repairs them if it died (worker/leases.ts).
 *
 * Cost: the stored tasks and timers (what is running or waiting), plus the running workflows'
 * states, found through their run entries in the visibility index (visibility/index-keys.ts): a
 * state stored before the crash had its run entry stored before it, in the same stream. Finished
 * workflows cost nothing, however many there are.
 */
import type { MsgRequest } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { randomUUID } from "node:crypto";
import { acquireFleetLease, finishFleetLease } from "../nats/fleet-lease.js";
import type { Logger } from "../logger.js";
import type { Topology } from "../nats/topology.js";
import { MSG_ID, parseJson, parseTask, parseTimerBatch } from "../protocol.js";
import { pendingEffects, publishEffects, type PendingEffect } from "./outbox.js";
import { readRunningStates } from "../visibility/query.js";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Give JetStream a moment after a reconnect (stream and consumer leaders) before recovering. */
const RECOVERY_DELAY_MS = 2_000;

export interface Recovery {
  start(): void;
  stop(): void;
  /** One pass now (tests); resolves when it is done. */
  recover(reason: string): Promise<void>;
}

export interface RecoveryOptions {
  topology: Topology;
  logger: Logger;
  /** Called before a pass: cached states may hold writes the server lost. */
  beforePass(): void;
  /** This runtime's name in the fleet lease (default: a random one). */
  holder?: string;
  /** The fleet leases bucket (nats/fleet-lease.ts). */
  leases: () => Promise<KV>;
}

/** How long a recovery lease holds before another runtime may take the pass over. */
const RECOVERY_LEASE_MS = 60_000;
/** How often a runtime that did not get the lease looks whether the pass is done. */
const RECOVERY_RECHECK_MS = 5_000;

export function createRecovery(options: RecoveryOptions): Recovery {
  const { topology, logger } = options;
  let stopped = false;
  let running = false;
  let again = false;
  let serverId = topology.nc.info?.server_id;

  async function recover(reason: string): Promise<void> {
    if (stopped) return;
    if (running) {
      again = true; // NATS went away again during this pass: one more after it
      return;
    }
    running = true;
    let workflows = 0;
    let skipped = 0;
    try {
      options.beforePass();
      const stored = await storedEffectIds(topology).catch((err: unknown) => {
        logger.warn(`cannot list the stored tasks and timers (${(err as Error)?.message ?? err}); re-publishing every pending one (duplicates within 2 minutes are dropped)`);
        return new Set<string>();
      });
      for (const { state } of await readRunningStates(topology)) {
        if (stopped) break;
        const pending = pendingEffects(state, { skipContinued: true });
        const missing = pending.filter((effect) => !stored.has(effectId(state.id, effect, state.steps[effect.kind === "task" ? effect.step : ""]?.attempt, state.run)));
        skipped += pending.length - missing.length;
        if (missing.length === 0) continue;
        await publishEffects(topology, state, missing);
        workflows += 1;
      }
      logger.info(`after ${reason}: re-published the lost commands of ${workflows} running workflow(s) (${skipped} still stored)`);
    } catch (err) {
      logger.warn(`re-publishing pending commands after ${reason} failed: ${(err as Error)?.message ?? err}`);
    } finally {
      running = false;
      if (again) {
        again = false;
        setTimeout(() => void recover(reason), RECOVERY_DELAY_MS).unref();
      }
    }
  }

  const holder = options.holder ?? `recovery-${randomUUID().slice(0, 8)}`;

  /** The pass for the fleet after `gone` went away: ours if we get the lease, else wait for whoever has it. */
  async function recoverForFleet(reason: string, gone: string): Promise<void> {
    options.beforePass(); // every runtime: its cache may hold writes the server lost
    const key = `recovery.${gone.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    while (!stopped) {
      let lease;
      try {
        lease = await acquireFleetLease(await options.leases(), key, holder, RECOVERY_LEASE_MS);
      } catch (err) {
        logger.warn(`cannot take the recovery lease yet (${(err as Error)?.message ?? err}); retrying`);
        await sleep(RECOVERY_RECHECK_MS);
        continue;
      }
      if (lease.held) {
        await recover(reason);
        await finishFleetLease(await options.leases(), key, holder, lease.revision);
        return;
      }
      if (lease.record?.done) {
        logger.info(`after ${reason}: recovery was done for the fleet by ${lease.record.holder}`);
        return;
      }
      await sleep(RECOVERY_RECHECK_MS);
    }
  }

  return {
    recover,
    start() {
      stopped = false;
      void (async () => {
        for await (const status of topology.nc.status()) {
          if (stopped) return;
          if (status.type !== "reconnect") continue;
          const now = topology.nc.info?.server_id;
          if (now !== undefined && now === serverId) {
            logger.debug("reconnected to the same nats-server: nothing can have been lost, no recovery");
            continue;
          }
          const gone = serverId ?? `unknown-${now}`;
          serverId = now;
          setTimeout(() => void recoverForFleet("a reconnect to a restarted or other nats-server", gone), RECOVERY_DELAY_MS).unref();
        }
      })();
    },
    stop() {
      stopped = true;
    },
  };
}

/** The Nats-Msg-Id an effect is published under (outbox.ts). */
function effectId(workflowId: string, effect: PendingEffect, attempt: number | undefined, run: number | undefined): string {
  // A child's start is not looked for: published again, it is a no-op in the child (children.ts).
  if (effect.kind !== "task" && effect.kind !== "timer") return "";
  return effect.kind === "task" ? MSG_ID.task(workflowId, effect.step, attempt ?? 0, run) : MSG_ID.timer(workflowId, effect.timer.key);
}

/**
 * The ids of every task and timer still stored: both streams are work queues, so what they hold
 * is pending. One read per stored message (the next one by sequence, skipping deleted ones).
 * Tasks count by their body (its step and attempt), batched timers by the
 * per-timer id of each timer they carry.
 */
async function storedEffectIds(topology: Topology): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const stream of [topology.names.tasksStream, topology.names.timersStream]) {
    const info = await topology.jsm.streams.info(stream);
    let seq = info.state.first_seq;
    const last = info.state.last_seq;
    while (info.state.messages > 0 && seq <= last) {
      // STREAM.MSG.GET takes next_by_subj (nats-server 2.9+); nats.js v3 types it on direct gets only.
      const msg = await topology.jsm.streams.getMessage(stream, { seq, next_by_subj: ">" } as unknown as MsgRequest);
      if (!msg) break;
      const id = msg.header?.get("Nats-Msg-Id");
      if (stream === topology.names.tasksStream) {
        // By the body: the id a task was published under is the body's own (outbox.ts), and the body is the truth.
        try {
          const task = parseTask(parseJson(msg.data));
          ids.add(MSG_ID.task(task.workflowId, task.step, task.attempt, task.run));
        } catch {
          /* not a task we can read: the worker dead-letters it */
        }
      } else if (id && id.startsWith(MSG_ID.timerBatch(""))) {
        try {
          for (const timer of parseTimerBatch(parseJson(msg.data)).timers) ids.add(MSG_ID.timer(timer.workflowId, timer.key));
        } catch {
          /* not a batch we can read: the timer service dead-letters it */
        }
      } else if (id) ids.add(id);
      seq = msg.seq + 1;
    }
  }
  return ids;
}
