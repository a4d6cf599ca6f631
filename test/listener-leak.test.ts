/**
 * No listener piles up on a signal that lives as long as the runtime. The worker's slot waits
 * (activity slots per pull loop, and the bound on completions recorded at once, whose signal never
 * aborts) added one abort listener per waiter: a dozen finished activities waiting to be recorded
 * printed MaxListenersExceededWarning, and the listeners lived as long as their waits.
 */
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { Slots } from "../runtime/worker/slots.js";

describe("slot waits", () => {
  it("many waiters on one long-lived signal share one abort listener, removed when the last wait ends", async () => {
    const slots = new Slots(1);
    const lifetime = new AbortController().signal; // never aborted, like the runtime's
    await slots.acquireUpTo(1, lifetime);
    const waits = Array.from({ length: 50 }, () => slots.acquireUpTo(1, lifetime));
    expect(getEventListeners(lifetime, "abort")).toHaveLength(1);
    for (let i = 0; i < 50; i++) slots.release(1);
    expect(await Promise.all(waits)).toEqual(Array(50).fill(1));
    expect(getEventListeners(lifetime, "abort")).toHaveLength(0);
  });

  it("an abort still rejects every waiter on that signal, and only those", async () => {
    const slots = new Slots(1);
    await slots.acquireUpTo(1, new AbortController().signal);
    const stop = new AbortController();
    const other = new AbortController().signal;
    const stopped = Array.from({ length: 20 }, () => slots.acquireUpTo(1, stop.signal));
    const kept = slots.acquireUpTo(1, other);
    stop.abort(new Error("stopping"));
    for (const wait of stopped) await expect(wait).rejects.toThrow("stopping");
    slots.release(1);
    expect(await kept).toBe(1);
    expect(getEventListeners(other, "abort")).toHaveLength(0);
  });

  it("a wait on a signal already aborted is a rejected promise, not a throw at the call", async () => {
    const slots = new Slots(4);
    const stop = new AbortController();
    stop.abort(new Error("stopping"));
    let wait: Promise<number> | undefined;
    expect(() => (wait = slots.acquireUpTo(1, stop.signal, true))).not.toThrow();
    await expect(wait).rejects.toThrow("stopping");
    expect(slots.available).toBe(4);
  });
});
