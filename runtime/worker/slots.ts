/** A counting semaphore with FIFO waiters: the worker's activity slots. */
interface Waiter {
  max: number;
  resolve: (granted: number) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
}

export class Slots {
  private free: number;
  private readonly waiters: Waiter[] = [];
  /**
   * One abort listener per signal, however many wait on it. The signals live as long as the
   * runtime (the pull loops' stop, the recording bound's never-aborted one): a listener per waiter
   * put a dozen on one signal under load (Node's MaxListenersExceededWarning), and any path that
   * missed a removal would have kept them for good.
   */
  private readonly watched = new Map<AbortSignal, { onAbort: () => void; waiters: Set<Waiter> }>();

  constructor(readonly total: number) {
    this.free = total;
  }

  get available(): number {
    return this.free;
  }

  get inUse(): number {
    return this.total - this.free;
  }

  /**
   * Wait until at least one slot is free, then take up to `max`. `first`: ahead of every waiter.
   * An aborted signal rejects the promise; it never throws at the call: a caller that hands the
   * rejection to a handler (a continued step released at shutdown, worker/pool.ts) would otherwise
   * see the throw in its own caller, half way through what it was doing.
   */
  acquireUpTo(max: number, signal: AbortSignal, first = false): Promise<number> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.free > 0 && this.waiters.length === 0) return Promise.resolve(this.take(max));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { max, resolve, reject, signal };
      if (first) this.waiters.unshift(waiter);
      else this.waiters.push(waiter);
      this.watch(waiter);
    });
  }

  release(count: number): void {
    this.free += count;
    while (this.free > 0 && this.waiters.length > 0) {
      const waiter = this.waiters.shift()!;
      this.unwatch(waiter);
      waiter.resolve(this.take(waiter.max));
    }
  }

  private watch(waiter: Waiter): void {
    let entry = this.watched.get(waiter.signal);
    if (!entry) {
      const signal = waiter.signal;
      const waiters = new Set<Waiter>();
      const onAbort = () => {
        this.watched.delete(signal);
        for (const w of waiters) {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          w.reject(signal.reason);
        }
      };
      entry = { onAbort, waiters };
      this.watched.set(signal, entry);
      signal.addEventListener("abort", onAbort, { once: true });
    }
    entry.waiters.add(waiter);
  }

  /** The wait ended: the signal's listener goes with its last waiter. */
  private unwatch(waiter: Waiter): void {
    const entry = this.watched.get(waiter.signal);
    if (!entry) return;
    entry.waiters.delete(waiter);
    if (entry.waiters.size > 0) return;
    this.watched.delete(waiter.signal);
    waiter.signal.removeEventListener("abort", entry.onAbort);
  }

  private take(max: number): number {
    const granted = Math.max(1, Math.min(max, this.free));
    this.free -= granted;
    return granted;
  }
}
