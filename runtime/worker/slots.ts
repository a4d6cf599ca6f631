/** A counting semaphore with FIFO waiters: the worker's activity slots. */
export class Slots {
  private free: number;
  private readonly waiters: Array<{ max: number; resolve: (granted: number) => void }> = [];

  constructor(readonly total: number) {
    this.free = total;
  }

  get available(): number {
    return this.free;
  }

  get inUse(): number {
    return this.total - this.free;
  }

  /** Wait until at least one slot is free, then take up to `max`. `first`: ahead of every waiter. */
  acquireUpTo(max: number, signal: AbortSignal, first = false): Promise<number> {
    signal.throwIfAborted();
    if (this.free > 0 && this.waiters.length === 0) return Promise.resolve(this.take(max));
    return new Promise((resolve, reject) => {
      // The signal lives as long as the runtime: the listener must go when the wait ends.
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(signal.reason);
        }
      };
      const waiter = {
        max,
        resolve: (granted: number) => {
          signal.removeEventListener("abort", onAbort);
          resolve(granted);
        },
      };
      if (first) this.waiters.unshift(waiter);
      else this.waiters.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  release(count: number): void {
    this.free += count;
    while (this.free > 0 && this.waiters.length > 0) {
      const waiter = this.waiters.shift()!;
      waiter.resolve(this.take(waiter.max));
    }
  }

  private take(max: number): number {
    const granted = Math.max(1, Math.min(max, this.free));
    this.free -= granted;
    return granted;
  }
}
