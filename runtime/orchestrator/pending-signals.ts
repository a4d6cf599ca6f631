/**
 * Signals to a workflow id that has no state yet: a signal sent just before a (delayed) start, or
 * applied by one runtime before another has stored the start. They are kept in the
 * WORKFLOW_PENDING_SIGNALS bucket, key `<id>`, until the workflow starts, and then re-published as
 * ordinary signal events; a key expires 24 h after its last write (PENDING_SIGNAL_RETENTION_MS), so
 * signals to ids that never start do not accumulate.
 *
 * No signal is lost between the two: the signal path writes the key, then reads the state again
 * (applying the signal to it if it now exists). A start does not read the bucket: every runtime
 * listens to it (PendingSignalsListener), the start path looks in that listener's set of ids after
 * it wrote the state, and the listener, on each key it is told of, reads that workflow's state and
 * releases the key if the state exists. Whichever comes second sees the other: a start that looked
 * before the listener heard of the key wrote its state before the listener reads it. A start costs no read
 * (it cost one per start, for a key that almost never exists); a held signal costs one state read
 * per runtime. Deliveries twice over are harmless: a signal's id makes the second a duplicate.
 */
import type { KV } from "@nats-io/kv";
import { RevisionConflictError } from "../errors.js";
import type { Topology } from "../nats/topology.js";
import { encode, type SignalMessage } from "../protocol.js";
import { isWrongLastSequence } from "./state-store.js";

/** Signals kept for one id at most; more are dead-lettered (nobody is reading them). */
export const MAX_PENDING_SIGNALS = 100;

interface PendingInbox {
  signals: Array<SignalMessage & { signalId: string }>;
}

async function read(kv: KV, id: string): Promise<{ inbox: PendingInbox; revision: number } | undefined> {
  const entry = await kv.get(id);
  if (!entry || entry.operation !== "PUT" || entry.length === 0) return undefined;
  return { inbox: entry.json<PendingInbox>(), revision: entry.revision };
}

/** Keep `signal` for `id` until it starts. "full": MAX_PENDING_SIGNALS are waiting already. */
export async function holdSignal(kv: KV, signal: SignalMessage & { signalId: string }): Promise<"held" | "full"> {
  for (let attempt = 1; attempt <= 20; attempt++) {
    const current = await read(kv, signal.workflowId);
    const signals = current?.inbox.signals ?? [];
    if (signals.some((s) => s.signalId === signal.signalId)) return "held";
    if (signals.length >= MAX_PENDING_SIGNALS) return "full";
    const value = JSON.stringify({ signals: [...signals, signal] } satisfies PendingInbox);
    try {
      if (current) await kv.update(signal.workflowId, value, current.revision);
      else await kv.create(signal.workflowId, value);
      return "held";
    } catch (err) {
      if (!isWrongRevision(err)) throw err;
    }
  }
  throw new RevisionConflictError(`pending signals of ${signal.workflowId}`);
}

/**
 * After `id`'s state was stored: re-publish the signals held for it as signal events (a new
 * Nats-Msg-Id `<id>/pending-signal/<signalId>`: the original's may still be in the duplicate
 * window), then delete the key, only if no signal was added meanwhile (else once more).
 */
export async function releasePendingSignals(topology: Topology, id: string): Promise<number> {
  let released = 0;
  for (let attempt = 1; attempt <= 20; attempt++) {
    const current = await read(topology.pendingSignals, id);
    if (!current) return released;
    for (const signal of current.inbox.signals) {
      await topology.js.publish(topology.names.signalSubject(id, signal.name), encode(signal), { msgID: `${id}/pending-signal/${signal.signalId}` });
    }
    released = current.inbox.signals.length;
    try {
      await topology.pendingSignals.purge(id, { previousSeq: current.revision });
      return released;
    } catch (err) {
      if (!isWrongRevision(err)) throw err;
    }
  }
  throw new RevisionConflictError(`pending signals of ${id}`);
}

/** A lost CAS: kv.update on a changed key, kv.create on an existing one, a purge of a changed one. */
function isWrongRevision(err: unknown): boolean {
  return isWrongLastSequence(err) || /key exists/i.test((err as Error)?.message ?? "");
}

/**
 * The ids that have signals held, as this runtime knows them; and for each key it hears of, a
 * release if its workflow has started meanwhile (see the top of this file).
 *
 * It listens to the bucket's subjects with a core NATS subscription (every write of a key is a
 * message on `$KV.<bucket>.<key>`), on the connection the orchestrator writes states with: a key
 * written before a state is created reaches this runtime before that create's acknowledgement, so
 * the start path, which looks after its create, cannot miss it. What it could not hear (before it
 * started, while disconnected) it lists from the bucket at start and after each reconnect: as
 * many keys as signals are held. (Not a KV watch: nats.js's watcher re-creates its consumer after
 * a server restart and lets a timeout of that escape as an unhandled rejection, which ended
 * runtimes in chaos scenario 2.)
 */
export class PendingSignalsListener {
  private readonly ids = new Set<string>();
  private sub: { unsubscribe(): void } | undefined;
  private stopped = false;

  constructor(
    private readonly topology: Topology,
    private readonly onError: (message: string) => void,
  ) {}

  async start(): Promise<void> {
    this.stopped = false;
    const prefix = `$KV.${this.topology.names.pendingSignalsBucket}.`;
    this.sub = this.topology.nc.subscribe(`${prefix}>`, {
      callback: (_err, msg) => {
        const id = msg.subject.slice(prefix.length);
        const operation = msg.headers?.get("KV-Operation");
        if (operation === "DEL" || operation === "PURGE") {
          this.ids.delete(id);
          return;
        }
        this.ids.add(id);
        void this.releaseIfStarted(id);
      },
    });
    await this.topology.nc.flush();
    await this.listHeld();
    void (async () => {
      for await (const status of this.topology.nc.status()) {
        if (this.stopped) return;
        if (status.type === "reconnect") await this.listHeld();
      }
    })().catch(() => undefined);
  }

  /** Signals may be held for `id` (then the start path releases them). */
  has(id: string): boolean {
    return this.ids.has(id);
  }

  stop(): void {
    this.stopped = true;
    this.sub?.unsubscribe();
    this.ids.clear();
  }

  /** Every key held now (missed while not listening), each checked against its workflow's state. */
  private async listHeld(): Promise<void> {
    const bucket = this.topology.names.pendingSignalsBucket;
    const prefix = `$KV.${bucket}.`;
    try {
      const info = await this.topology.jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}>` });
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        const id = subject.slice(prefix.length);
        this.ids.add(id);
        void this.releaseIfStarted(id);
      }
    } catch (err) {
      this.onError(`listing the signals held for workflows not started yet failed (a start of one reads them anyway after its next redelivery): ${(err as Error)?.message ?? err}`);
    }
  }

  private async releaseIfStarted(id: string): Promise<void> {
    try {
      const state = await this.topology.states.get(id);
      if (state && state.operation === "PUT" && state.length > 0) await releasePendingSignals(this.topology, id);
    } catch (err) {
      this.onError(`releasing the signals held for ${id} failed (its next start or redelivery retries): ${(err as Error)?.message ?? err}`);
    }
  }
}
