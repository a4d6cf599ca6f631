/**
 * Reading the messages of a stream that match a subject filter, in a range of sequences, and
 * counting them, with a short-lived consumer the server filters for us: the cost is the matches
 * (and the server's walk of its subject index), not the stream. Used by the visibility index,
 * whose entries are a few subjects among many states.
 *
 * An ephemeral pull consumer, not an ordered one: its creation answers with num_pending (how many
 * match from the start position), so a read knows when it has everything without waiting for a
 * fetch to time out, and a count needs no read at all. It deletes itself if we die meanwhile.
 */
import { AckPolicy, DeliverPolicy, ReplayPolicy, type ConsumerConfig } from "@nats-io/jetstream";
import { createInbox } from "@nats-io/nats-core";
import { inboxPrefixOf } from "./permissions.js";
import type { Topology } from "./topology.js";

export interface StoredMessage {
  seq: number;
  subject: string;
  data: Uint8Array;
  /** When the server stored it (epoch ms). */
  time: number;
}

export interface ReadRange {
  /** First sequence to read (default: the first). */
  fromSeq?: number;
  /** First message stored at or after this time (epoch ms); ignored when fromSeq is set. */
  fromTime?: number;
  /** Stop after this sequence (inclusive). */
  toSeq?: number;
  /** Stop after this many messages. */
  limit?: number;
}

const FETCH_BATCH = 1_000;
/** How long one pull waits for the messages it asks for (only a purge meanwhile makes it wait that long). */
const PULL_EXPIRES_MS = 250;
/** A pull the server does not answer within this long (it is gone) ends the read. */
const PULL_TIMEOUT_MS = 5_000;
/** A consumer we could not delete (we died) is removed by the server after this long. */
const INACTIVE_THRESHOLD_MS = 30_000;

async function createReader(topology: Topology, stream: string, filter: string, range: ReadRange): Promise<{ name: string; pending: number }> {
  const config: Partial<ConsumerConfig> = {
    filter_subject: filter,
    ack_policy: AckPolicy.None,
    replay_policy: ReplayPolicy.Instant,
    inactive_threshold: INACTIVE_THRESHOLD_MS * 1_000_000,
    mem_storage: true,
    num_replicas: 1,
    ...(range.fromSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, range.fromSeq) }
      : range.fromTime !== undefined
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(range.fromTime).toISOString() }
        : { deliver_policy: DeliverPolicy.All }),
  };
  const info = await topology.jsm.consumers.add(stream, config);
  return { name: info.name, pending: info.num_pending };
}

/** The number of messages matching `filter` (from `range.fromSeq`/`fromTime`, if given): counted by the server. */
export async function countMatching(topology: Topology, stream: string, filter: string, range: ReadRange = {}): Promise<number> {
  const reader = await createReader(topology, stream, filter, range);
  void topology.jsm.consumers.delete(stream, reader.name).catch(() => undefined);
  return reader.pending;
}

/** The messages matching `filter` in `range`, in stream order. */
export async function readMatching(topology: Topology, stream: string, filter: string, range: ReadRange = {}): Promise<StoredMessage[]> {
  const reader = await createReader(topology, stream, filter, range);
  const out: StoredMessage[] = [];
  try {
    let wanted = Math.min(reader.pending, range.limit ?? Infinity);
    let lastSeq = (range.fromSeq ?? 1) - 1;
    while (wanted > 0) {
      // No more than can lie before toSeq: each match has a sequence of its own.
      const room = range.toSeq === undefined || range.fromSeq === undefined ? Infinity : range.toSeq - lastSeq;
      if (room <= 0) break;
      const batch = await pullNow(topology, stream, reader.name, Math.min(wanted, FETCH_BATCH, room));
      for (const msg of batch) {
        if (range.toSeq !== undefined && msg.seq > range.toSeq) return out;
        out.push(msg);
        lastSeq = msg.seq;
        wanted -= 1;
      }
      // None within the pull's expiry: the rest was purged meanwhile.
      if (batch.length === 0) break;
    }
    return out;
  } finally {
    void topology.jsm.consumers.delete(stream, reader.name).catch(() => undefined);
  }
}

/**
 * One pull of up to `batch` messages, waiting at most PULL_EXPIRES_MS for them: the server ends
 * the request as soon as the batch is full, and the caller asks only for what it knows is there,
 * so only a purge meanwhile makes it wait. Not `no_wait`: a consumer made a moment ago may answer
 * "no messages" for ones it has not counted yet (nats-server 2.10+ counts asynchronously; seen
 * under load, a page missed running workflows). nats.js's fetch would wait out an expiry of 1 s
 * at least when a purge left fewer messages than asked.
 */
async function pullNow(topology: Topology, stream: string, consumer: string, batch: number): Promise<StoredMessage[]> {
  const inbox = createInbox(inboxPrefixOf(topology.names.namespace));
  const sub = topology.nc.subscribe(inbox, { timeout: PULL_TIMEOUT_MS });
  const out: StoredMessage[] = [];
  topology.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, JSON.stringify({ batch, expires: PULL_EXPIRES_MS * 1_000_000 }), { reply: inbox });
  try {
    for await (const msg of sub) {
      const code = msg.headers?.code ?? 0;
      if (code === 100) continue; // heartbeat or flow control
      if (code >= 400 || !msg.reply) break; // no (more) messages: the request is done
      const info = ackInfo(msg.reply);
      out.push({ seq: info.seq, subject: msg.subject, data: msg.data, time: info.time });
      if (out.length === batch) break;
    }
  } catch (err) {
    // The server did not answer within the timeout: return what came (the caller stops).
    if (!(err instanceof Error) || !/timeout/i.test(err.message)) throw err;
  } finally {
    sub.unsubscribe();
  }
  return out;
}

/** Sequence and time from a delivered message's ack subject (both formats: `$JS.ACK.<stream>.<consumer>.…` and with domain and account). */
function ackInfo(reply: string): { seq: number; time: number } {
  const t = reply.split(".");
  const at = t.length === 9 ? 5 : 7; // v1: 9 tokens; v2: $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]
  return { seq: Number(t[at]), time: Math.floor(Number(t[at + 2]) / 1e6) };
}

/**
 * The newest `limit` messages matching `filter` at or below `beforeSeq` (inclusive), newest
 * first: read in windows of sequences that grow fourfold going back, so the cost follows the
 * matches in the part of the stream looked at, not the stream.
 */
export async function readNewestMatching(topology: Topology, stream: string, filter: string, options: { beforeSeq: number; limit: number; firstSeq?: number; stopWhen?: (msg: StoredMessage) => boolean }): Promise<StoredMessage[]> {
  const firstSeq = Math.max(1, options.firstSeq ?? 1);
  const out: StoredMessage[] = [];
  let hi = options.beforeSeq;
  let window = Math.max(256, options.limit * 16);
  while (hi >= firstSeq && out.length < options.limit) {
    const lo = Math.max(firstSeq, hi - window + 1);
    const found = await readMatching(topology, stream, filter, { fromSeq: lo, toSeq: hi });
    for (let i = found.length - 1; i >= 0 && out.length < options.limit; i--) {
      const msg = found[i]!;
      if (options.stopWhen?.(msg)) return out;
      out.push(msg);
    }
    hi = lo - 1;
    window *= 4;
  }
  return out;
}
