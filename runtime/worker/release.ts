/**
 * Releases are not crashes. worker.maxDeliveries counts the deliveries of a task that ended with
 * no answer (its runtime died or hung). JetStream's delivery count also counts every NAK, and a
 * worker NAKs a task it could not record (a KV hiccup: a leader election of a few seconds), is
 * shutting down, or has no code for: five such releases in a row would fail a healthy step with
 * ActivityCrashLoopError.
 *
 * So before a worker NAKs a task it releases, it records the release in the KV bucket
 * WORKFLOW_RELEASES: key `<task stream sequence>.<delivery number>` (one key per release, no read
 * needed). Only when a task's delivery count passes worker.maxDeliveries does a worker list that
 * task's keys and subtract them: the cost is paid by tasks at the limit, never by the others.
 * Keys expire after a week (a task older than that counts its releases as crashes again).
 *
 * Why not re-publish the task with a count in a header instead: the copy and the original are two
 * messages, and a NATS fault between publishing one and acking the other runs the activity twice
 * (the chaos suite's NATS kills showed it). A NAK keeps one message. If the release cannot be
 * recorded (NATS unreachable), it is NAK'd anyway and counts as a delivery: rarely, and on the
 * side of stopping a loop.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { StorageType } from "@nats-io/jetstream";
import type { Config } from "../config.js";
import type { Topology } from "../nats/topology.js";

const RELEASES_MAX_AGE_MS = 7 * 86_400_000;
/**
 * A release waits this long at most for its record, then NAKs anyway. Short on purpose: the
 * delivery is no longer kept alive, and a NAK sent after its ack wait passed would hit the
 * redelivery that another worker is running, which then runs twice (the chaos suite's NATS kills
 * showed it with a 2 s bound).
 */
const RECORD_TIMEOUT_MS = 250;

/** What the worker pool needs of a task's message (a subset of JsMsg). */
export interface ReleasableDelivery {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly redelivered: boolean;
  readonly info: { deliveryCount: number };
  ack(): void;
  /** Release the task (redelivered after `delayMs`), recording first that this was no crash. */
  nak(delayMs?: number): void;
  working(): void;
  /** Deliveries so far that ended without an answer: JetStream's count minus recorded releases. */
  crashes(): Promise<number>;
}

export interface TaskReleaser {
  wrap(msg: JsMsg): ReleasableDelivery;
  /** Resolves when every release in flight is recorded and NAK'd (stop() waits for it). */
  settled(): Promise<void>;
}

/** The WORKFLOW_RELEASES bucket, created when missing (a provisioned namespace has it: runtime/provision.ts). */
export function openReleases(topology: Topology, config: Pick<Config, "replicas" | "storage">): Promise<KV> {
  return new Kvm(topology.js).create(topology.names.releasesBucket, {
    history: 1,
    ttl: RELEASES_MAX_AGE_MS,
    replicas: config.replicas,
    storage: config.storage === "memory" ? StorageType.Memory : StorageType.File,
  });
}

export function createTaskReleaser(options: { topology: Topology; config: Pick<Config, "replicas" | "storage"> }): TaskReleaser {
  const { topology, config } = options;
  const inFlight = new Set<Promise<void>>();
  let bucket: Promise<KV> | undefined;

  function releases(): Promise<KV> {
    bucket ??= openReleases(topology, config);
    bucket.catch(() => (bucket = undefined)); // opened again next time
    return bucket;
  }
  releases().catch(() => undefined); // opened before the first release needs it

  async function release(msg: JsMsg, delayMs: number | undefined): Promise<void> {
    try {
      msg.working();
      const record = releases().then((kv) => kv.put(`${msg.seq}.${msg.info.deliveryCount}`, ""));
      await Promise.race([record, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), RECORD_TIMEOUT_MS).unref())]);
    } catch {
      /* not recorded: this release counts as a delivery */
    }
    try {
      msg.nak(delayMs);
    } catch {
      /* connection gone: redelivered after the ack wait */
    }
  }

  return {
    wrap(msg) {
      let settled = false;
      return {
        subject: msg.subject,
        data: msg.data,
        redelivered: msg.redelivered,
        info: msg.info,
        ack() {
          if (settled) return;
          settled = true;
          msg.ack();
        },
        nak(delayMs) {
          if (settled) return;
          settled = true;
          const p = release(msg, delayMs);
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        },
        working() {
          if (!settled) msg.working();
        },
        async crashes() {
          const deliveries = msg.info.deliveryCount;
          let released = 0;
          try {
            const kv = await releases();
            for await (const key of await kv.keys(`${msg.seq}.*`)) {
              if (Number(key.slice(key.indexOf(".") + 1)) < deliveries) released += 1;
            }
          } catch {
            /* cannot tell: count every earlier delivery as a crash */
          }
          return Math.max(0, deliveries - 1 - released);
        },
      };
    },
    async settled() {
      await Promise.allSettled([...inFlight]);
    },
  };
}
