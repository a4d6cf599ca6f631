/**
 * Drain-then-stop for a pull subscription (a `consume()` or `fetch()` of nats.js v3).
 *
 * A plain `stop()` unsubscribes at once: a message the server sent before it saw the unsubscribe
 * is dropped by the client and waits out its ack wait before anyone else gets it. Draining first
 * delivers those to the iterator (whose loop hands them back), then stops. nats.js has no option
 * for it: the subscription is the iterator's private `sub` field, reached here and nowhere else
 * (checked on @nats-io/jetstream 3.4; without the field the stop is a plain stop, only slower to
 * hand messages on). Bounded: with NATS unreachable, the drain's flush would wait for a reconnect.
 */
const DEFAULT_DRAIN_TIMEOUT_MS = 2_000;

export async function drainThenStop(messages: { stop(): void } | undefined, timeoutMs = DEFAULT_DRAIN_TIMEOUT_MS): Promise<void> {
  if (!messages) return;
  const drained = (messages as unknown as { sub?: { drain(): Promise<void> } }).sub?.drain().catch(() => undefined);
  if (drained) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([drained, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }
  messages.stop();
}
