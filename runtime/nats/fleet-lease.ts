/**
 * Fleet leases: "one runtime of the fleet does this", for work every runtime could do but only
 * one should (the retention sweep, recovery after a nats-server restart). A lease is a key in the
 * KV bucket WORKFLOW_LEASES holding who has it and until when; it is taken and renewed by
 * compare-and-set, so two runtimes never both hold it, and a holder that died loses it when its
 * time runs out (another takes it then). Keys nobody writes for a day expire with the bucket's TTL.
 *
 * (Not the continuation leases of worker/leases.ts: those are task messages a runtime holds.)
 */
import { StorageType } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { isWrongLastSequence } from "../orchestrator/state-store.js";
import { FLEET_LEASE_RETENTION_MS, type Topology } from "./topology.js";

const buckets = new WeakMap<Topology, Promise<KV>>();

/**
 * The WORKFLOW_LEASES bucket, made on first use: only runtimes take fleet leases, so a client (a
 * `wf` command) does not pay a bucket round trip at start for it.
 */
export function fleetLeases(topology: Topology, options: { replicas: number; storage: "file" | "memory" }): Promise<KV> {
  const storage = options.storage === "memory" ? StorageType.Memory : StorageType.File;
  let bucket = buckets.get(topology);
  if (!bucket) {
    bucket = new Kvm(topology.js).create(topology.names.leasesBucket, {
      replicas: options.replicas,
      history: 1,
      storage,
      // A lease nobody renewed for a day is long gone (a recovery's, say): the key goes too.
      ttl: FLEET_LEASE_RETENTION_MS,
      allow_direct: false, // a lease is taken on what the leader says
    });
    bucket.catch(() => buckets.delete(topology)); // made again on the next use
    buckets.set(topology, bucket);
  }
  return bucket;
}

export interface FleetLeaseRecord {
  holder: string;
  /** Epoch ms: held until then, unless renewed. */
  until: number;
  /** Set when the leased job is finished for good (a recovery pass): nobody needs to take it again. */
  done?: boolean;
}

export type LeaseVerdict = { held: true; revision: number } | { held: false; record: FleetLeaseRecord | undefined };

/**
 * Take `key` for `holder` for `ttlMs`, or renew it if `holder` has it already. Refused while
 * another holder's time runs, or once the job is done.
 */
export async function acquireFleetLease(kv: KV, key: string, holder: string, ttlMs: number, now = Date.now()): Promise<LeaseVerdict> {
  const record: FleetLeaseRecord = { holder, until: now + ttlMs };
  const entry = await kv.get(key);
  if (!entry || entry.operation !== "PUT" || entry.length === 0) {
    try {
      return { held: true, revision: await kv.create(key, JSON.stringify(record)) };
    } catch (err) {
      if (isWrongLastSequence(err) || /exists/i.test((err as Error).message)) return { held: false, record: await read(kv, key) };
      throw err;
    }
  }
  const current = entry.json<FleetLeaseRecord>();
  if (current.done || (current.holder !== holder && current.until > now)) return { held: false, record: current };
  try {
    return { held: true, revision: await kv.update(key, JSON.stringify(record), entry.revision) };
  } catch (err) {
    if (isWrongLastSequence(err)) return { held: false, record: await read(kv, key) };
    throw err;
  }
}

/** Record that the leased job is done (only by its holder, by CAS). */
export async function finishFleetLease(kv: KV, key: string, holder: string, revision: number): Promise<void> {
  const record: FleetLeaseRecord = { holder, until: 0, done: true };
  await kv.update(key, JSON.stringify(record), revision).catch(() => undefined);
}

/** Let it go now (a runtime that stops), so another need not wait out its time. */
export async function releaseFleetLease(kv: KV, key: string, holder: string): Promise<void> {
  const entry = await kv.get(key).catch(() => null);
  if (!entry || entry.operation !== "PUT" || entry.length === 0) return;
  const current = entry.json<FleetLeaseRecord>();
  if (current.holder !== holder || current.done) return;
  await kv.update(key, JSON.stringify({ ...current, until: 0 }), entry.revision).catch(() => undefined);
}

async function read(kv: KV, key: string): Promise<FleetLeaseRecord | undefined> {
  const entry = await kv.get(key).catch(() => null);
  return entry && entry.operation === "PUT" && entry.length > 0 ? entry.json<FleetLeaseRecord>() : undefined;
}
