/**
 * Removing one key of the states bucket (its one message: the bucket keeps history 1) by its
 * sequence: a read of the key's last message, then a delete of that sequence. Not a purge with a
 * subject filter: nats-server 2.9 and 2.10 carry one out by looking through every block of the
 * stream, so its cost grows with everything the bucket holds, finished workflows kept for
 * retention included. Measured on 2.10.27 (bench/probes/removal-ops.mts): a purge of one subject
 * cost the server 74 µs with 10,000 messages stored and 810-910 µs with 40,000; the read and the
 * delete 22-24 µs at either size (2.15 looks the subject up: 18-22 µs for a purge too).
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

export interface KeyRemoval {
  /** Remove the message stored at `seq`, not waited for (a reader that found a stale entry knows where it is). */
  deleteLater(seq: number): void;
  /** Remove a key's message, not waited for. */
  removeLater(subject: string): void;
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
    async remove(subject) {
      const stored = options.direct ? await jsm.direct.getMessage(stream, { last_by_subj: subject }) : await jsm.streams.getMessage(stream, { last_by_subj: subject });
      if (!stored) return;
      try {
        await jsm.streams.deleteMessage(stream, stored.seq, false);
      } catch (error) {
        // Replaced or removed since the read: what is there now is not this removal's to take.
        if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound)) throw error;
      }
    },
  };
}
