/**
 * Removing one key of the states bucket (its one message: the bucket keeps history 1) by its
 * sequence: a read of the key's last message, then a delete of that sequence. Not a purge with a
 * subject filter: nats-server 2.9 and 2.10 carry one out by looking through the stream's blocks
 * from the key's onwards, so removing a key written long ago (what retention removes, the run
 * entry of a workflow that slept for days) costs in proportion to everything written since.
 * Measured on 2.10.27: purging 20,000 old keys one by one cost the server 74 µs each with 10,000
 * messages stored and 810-910 µs with 40,000, where the read and the delete cost 22-24 µs at
 * either size (bench/probes/removal-ops.mts; 2.15 finds the subject at once: 18-22 µs for a
 * purge too); the retention sweep's CPU per removed workflow went from 1.32× with 100,000
 * finished kept against 10,000 to 0.96× (bench figure retention_flat).
 *
 * Also exact where a purge is not: a delete of the sequence that was read leaves a message
 * written to the key since (an entry rewritten by a repair) in place; a purge would take it too.
 *
 * The fire-and-forget form (`removeLater`) is the end of every workflow (its run entry): the read
 * is published with this process's own reply subject, and one subscription deletes whatever
 * sequence comes back, so a removal costs two messages and no promise, timer or round trip of
 * its own. A lost one leaves a stale entry, which its next reader repairs (visibility/query.ts).
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";
import { inboxPrefixOf } from "./permissions.js";
import type { Topology } from "./topology.js";

const API = "$JS.API";
/** A delete of a sequence that holds no message: 10037, or (2.9.10 and others) "message delete failed" (10057) saying so. */
const MSG_DELETE_FAILED = 10057;

const isNoMessage = (error: unknown): boolean =>
  error instanceof JetStreamApiError && (error.code === JetStreamApiCodes.NoMessageFound || (error.code === MSG_DELETE_FAILED && /no message found/i.test(error.message)));

export interface KeyRemoval {
  /** Remove the message stored at `seq`, not waited for (a reader that found a stale entry knows where it is). */
  deleteLater(seq: number): void;
  /** Remove a key's message, not waited for. */
  removeLater(subject: string): void;
  /** Remove the message stored at `seq`; resolves once it is gone: true, or false when it was not there. */
  delete(seq: number): Promise<boolean>;
  /** Remove a key's message; resolves once it is gone (or was not there). */
  remove(subject: string): Promise<void>;
}

const byTopology = new WeakMap<Topology, KeyRemoval>();

/** The states bucket's key removal on this topology's connection (one reply subscription each). */
export function keyRemovalOf(topology: Topology): KeyRemoval {
  let removal = byTopology.get(topology);
  if (!removal) {
    // A bucket on a cluster answers reads through its leader only (topology.ts: no direct gets).
    const direct = (topology.states as Partial<{ direct: boolean }>).direct === true;
    byTopology.set(topology, (removal = createKeyRemoval(topology.nc, topology.jsm, `KV_${topology.names.statesBucket}`, { direct, inboxPrefix: inboxPrefixOf(topology.names.namespace) })));
  }
  return removal;
}

export function createKeyRemoval(nc: NatsConnection, jsm: JetStreamManager, stream: string, options: { direct: boolean; inboxPrefix: string }): KeyRemoval {
  const encoder = new TextEncoder();
  let replies: { subject: string; subscription: Subscription } | undefined;

  const deleteLater = (seq: number): void => {
    try {
      nc.publish(`${API}.STREAM.MSG.DELETE.${stream}`, encoder.encode(JSON.stringify({ seq, no_erase: true })));
    } catch {
      /* connection closing: the entry stays, and its next reader repairs it */
    }
  };

  async function deleteNow(seq: number): Promise<boolean> {
    try {
      return await jsm.streams.deleteMessage(stream, seq, false);
    } catch (error) {
      // Replaced or removed since it was read: what the key holds now is not this removal's to take.
      if (isNoMessage(error)) return false;
      throw error;
    }
  }

  /** The answer to a read of a key's last message: a direct get's headers, or a message get's JSON. */
  const seqOfAnswer = (msg: Msg): number | undefined => {
    const header = msg.headers?.get("Nats-Sequence");
    if (header) return Number(header);
    if (msg.data.length === 0) return undefined; // a direct get's 404: nothing there
    try {
      const seq = (msg.json() as { message?: { seq?: unknown } }).message?.seq;
      return typeof seq === "number" ? seq : undefined;
    } catch {
      return undefined;
    }
  };

  const replySubject = (): string => {
    if (!replies) {
      const subject = createInbox(options.inboxPrefix);
      const subscription = nc.subscribe(subject, {
        callback: (error, msg) => {
          if (error) return;
          const seq = seqOfAnswer(msg);
          if (seq !== undefined && Number.isSafeInteger(seq) && seq > 0) deleteLater(seq);
        },
      });
      replies = { subject, subscription };
    }
    return replies.subject;
  };

  return {
    deleteLater,
    removeLater(subject) {
      try {
        const reply = replySubject();
        if (options.direct) nc.publish(`${API}.DIRECT.GET.${stream}.${subject}`, undefined, { reply });
        else nc.publish(`${API}.STREAM.MSG.GET.${stream}`, encoder.encode(JSON.stringify({ last_by_subj: subject })), { reply });
      } catch {
        /* connection closing: as above */
      }
    },
    delete: deleteNow,
    async remove(subject) {
      const stored = options.direct ? await jsm.direct.getMessage(stream, { last_by_subj: subject }) : await jsm.streams.getMessage(stream, { last_by_subj: subject });
      if (stored) await deleteNow(stored.seq);
    },
  };
}
