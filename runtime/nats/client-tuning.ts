/**
 * What we change in nats.js (v3) for speed, in one place, and why. Each change was measured with
 * `npm run bench` (bench/RESULTS.md) and replaces a method nats.js has no option for; each one
 * checks that what it replaces exists, and leaves nats.js alone otherwise (a future version may
 * have changed it: the engine then works as before, only slower). A nats.js upgrade should
 * re-check this file and re-run the bench.
 */
import { RequestOne } from "@nats-io/nats-core/internal";
import type { NatsConnection } from "@nats-io/transport-node";

/**
 * Apply the per-connection changes (and, once, the process-wide ones) to a new connection. Runtimes
 * and clients call it from connectNats; a connection made elsewhere works without it.
 */
export function tuneConnection(nc: NatsConnection): void {
  patchRequestCancel();
  coalesceWrites(nc);
}

/**
 * nats.js writes its outbound buffer to the socket one microtask after the first command of a
 * burst, so commands issued from different async continuations (a runtime's normal work: a KV
 * write here, a task publish there, an ack) each cost a socket write, and the server a read.
 * Deferring the flush to setImmediate gathers everything queued in one event-loop turn into one
 * write. Nothing waits past the end of the current turn; the order of commands is unchanged. The
 * method is replaced on the connection's protocol handler, which outlives reconnects.
 */
function coalesceWrites(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: { flushPending?: () => void } }).protocol;
  if (!protocol || typeof protocol.flushPending !== "function") return;
  const flushNow = protocol.flushPending.bind(protocol);
  let scheduled = false;
  protocol.flushPending = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
}

type RequestOneInternals = {
  timer?: { cancel(): void };
  mux: { cancel(request: unknown): void };
  deferred: { reject(err: unknown): void };
};

let requestCancelPatched = false;

/**
 * Every request (each JetStream publish and KV write is one) ends with RequestOne.cancel(), which
 * builds a new RequestError("cancelled") to reject a promise that is, after a reply, already
 * resolved: an Error with a captured stack per request, ~4 % of a runtime's CPU under load. The
 * replacement rejects with one shared error instead; a request that really is cancelled still
 * rejects with a RequestError("cancelled").
 */
function patchRequestCancel(): void {
  if (requestCancelPatched) return;
  requestCancelPatched = true;
  const proto = (RequestOne as unknown as { prototype?: { cancel?: (err?: Error) => void } } | undefined)?.prototype;
  if (!proto || typeof proto.cancel !== "function") return;
  const original = proto.cancel;
  let cancelled: Error | undefined;
  proto.cancel = function (this: RequestOneInternals, err?: Error) {
    if (typeof this.mux?.cancel !== "function" || typeof this.deferred?.reject !== "function") return original.call(this, err);
    this.timer?.cancel();
    this.mux.cancel(this);
    if (!err) {
      // Built once, through the original (so it is whatever error type nats.js uses for this).
      if (!cancelled) {
        const probe = { mux: { cancel() {} }, deferred: { reject: (e: Error) => (cancelled = e) } };
        original.call(probe);
      }
      err = cancelled;
    }
    this.deferred.reject(err);
  };
}
