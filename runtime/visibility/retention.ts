/**
 * Retention: finished workflows are removed once their retention has passed (the `retention`
 * config, or the workflow type's own), with their history chunks and index entries. Running
 * workflows are never touched, however long they sleep: only end entries lead here.
 *
 * One runtime of the fleet sweeps at a time (a fleet lease, nats/fleet-lease.ts), every
 * `orchestrator.retentionSweepInterval`. End entries of one retention are in the order the
 * workflows ended, which is the order they expire: per retention in use (`idx/class.<ms>` keys),
 * the sweep reads from the oldest and stops at the first that has time left. Cost per sweep: the
 * expired workflows, plus one read per retention in use. No per-message TTL is needed, so it works
 * on nats-server 2.9 and 2.10 as on 2.11+.
 */
import type { KV } from "@nats-io/kv";
import type { Logger } from "../logger.js";
import { acquireFleetLease, releaseFleetLease } from "../nats/fleet-lease.js";
import { keyRemovalOf } from "../nats/key-removal.js";
import { readMatching } from "../nats/stream-read.js";
import type { Topology } from "../nats/topology.js";
import { isTerminal, type WorkflowState } from "../state.js";
import { decodeEntry, endSubjectOf, KEEP_FOREVER, type IndexEntry } from "./index-keys.js";
import { removeEntries, removeWorkflow, subjectsOf } from "./index-writer.js";

export const RETENTION_LEASE_KEY = "retention";
/** End entries read per step of a sweep. */
const SWEEP_BATCH = 500;

export interface RetentionSweeper {
  start(): void;
  stop(): Promise<void>;
  /** One sweep now, if this runtime gets the lease; resolves with the number of workflows removed. */
  sweep(): Promise<number>;
}

export interface RetentionOptions {
  topology: Topology;
  logger: Logger;
  /** This runtime's name in the lease. */
  holder: string;
  intervalMs: number;
  /** The engine's clock (a test's can skip ahead). */
  now?: () => number;
  /** The fleet leases bucket (nats/fleet-lease.ts). */
  leases: () => Promise<KV>;
}

export function createRetentionSweeper(options: RetentionOptions): RetentionSweeper {
  const { topology } = options;
  const logger = options.logger.child({ component: "retention" });
  const now = options.now ?? Date.now;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let stopped = false;

  async function sweepOnce(): Promise<number> {
    // Held for three intervals: a holder that dies is replaced within that.
    const lease = await acquireFleetLease(await options.leases(), RETENTION_LEASE_KEY, options.holder, options.intervalMs * 3, Date.now());
    if (!lease.held) return 0;
    const subjects = subjectsOf(topology);
    const classes = (await readMatching(topology, subjects.stream, subjects.retentionClassFilter))
      .map((msg) => Number(msg.subject.slice(msg.subject.lastIndexOf(".") + 1)))
      .filter((ms) => Number.isFinite(ms) && ms !== KEEP_FOREVER);
    let removed = 0;
    for (const retentionMs of classes) {
      for (;;) {
        if (stopped) return removed;
        const batch = await readMatching(topology, subjects.stream, subjects.endFilter({ retentionMs }), { limit: SWEEP_BATCH });
        let more = batch.length === SWEEP_BATCH;
        for (const msg of batch) {
          const entry = decodeEntry(msg.data);
          const expiresAt = entry?.expiresAt ? Date.parse(entry.expiresAt) : msg.time + retentionMs;
          if (expiresAt > now()) {
            more = false; // the rest of this retention ended later: not due either
            break;
          }
          if (await removeExpired(topology, msg, entry, logger)) removed += 1;
        }
        if (!more) break;
      }
    }
    if (removed > 0) logger.info(`removed ${removed} finished workflow(s) past their retention`);
    return removed;
  }

  function sweep(): Promise<number> {
    running ??= sweepOnce().finally(() => (running = undefined));
    return running;
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      sweep()
        .catch((err) => logger.warn(`retention sweep failed (the next one retries): ${(err as Error)?.message ?? err}`))
        .finally(schedule);
    }, options.intervalMs);
    timer.unref();
  }

  return {
    start() {
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => undefined);
      await releaseFleetLease(await options.leases(), RETENTION_LEASE_KEY, options.holder).catch(() => undefined);
    },
    sweep,
  };
}

/**
 * Remove the workflow an expired end entry stands for. The state decides: one that is gone (a
 * removal that died half way) leaves only entries to purge; one that is not this entry's (the id
 * was started again) keeps its state, and only this stale entry goes.
 */
async function removeExpired(topology: Topology, msg: { subject: string; seq: number }, entry: IndexEntry | undefined, logger: Logger): Promise<boolean> {
  const subjects = subjectsOf(topology);
  const id = entry?.id ?? subjects.idOf(msg.subject, "end");
  const stored = await topology.states.get(id);
  const state = stored && stored.operation === "PUT" && stored.length > 0 ? stored.json<WorkflowState>() : undefined;
  if (state && isTerminal(state.status) && endSubjectOf(subjects, state) === msg.subject && state.createdAt === (entry?.createdAt ?? state.createdAt)) {
    const removed = await removeWorkflow(topology, state, { stateSeq: stored!.revision, endSeq: msg.seq });
    if (removed === "written since") logger.info(`kept ${id}: its state was written again while it was being removed (the next sweep decides)`, { workflowId: id });
    return removed === "removed";
  }
  // Gone (a removal that died half way): finish it. Another run's state: only this stale entry goes.
  if (!state && entry) await removeEntries(topology, entry, msg);
  else {
    logger.warn(`an end entry of ${id} does not match its state (${state?.status ?? "no state"}, started ${state?.createdAt ?? "?"}; the entry says started ${entry?.createdAt ?? "?"}): only the entry is removed`, { workflowId: id });
    await keyRemovalOf(topology).delete(msg.seq);
  }
  return false;
}
