/**
 * An activity attempt's abort state (worker/attempt.ts): its AbortSignal is made only when the
 * activity reads ctx.signal, and must then say what an eager one would have said.
 */
import { describe, expect, it } from "vitest";
import { Attempt } from "../runtime/worker/attempt.js";

describe("Attempt", () => {
  it("a signal read after the abort is aborted, with the attempt's reason", () => {
    const attempt = new Attempt("wf", "step", undefined);
    const reason = new Error("timed out");
    attempt.abort(reason);
    attempt.abort(new Error("later")); // the first abort wins
    expect(attempt.signal.aborted).toBe(true);
    expect(attempt.signal.reason).toBe(reason);
  });

  it("a signal read before the abort fires its listeners, then the race rejects with the reason", async () => {
    const attempt = new Attempt("wf", "step", undefined);
    const order: string[] = [];
    attempt.signal.addEventListener("abort", () => order.push("activity saw it"));
    const raced = attempt.race(new Promise<never>(() => undefined)).catch((err: unknown) => (order.push("race rejected"), err));
    const reason = new Error("cancelled");
    attempt.abort(reason);
    expect(await raced).toBe(reason);
    expect(order).toEqual(["activity saw it", "race rejected"]);
  });

  it("the race settles with the activity when it ends first; a later abort changes nothing", async () => {
    const attempt = new Attempt("wf", "step", undefined);
    await expect(attempt.race(Promise.resolve(42))).resolves.toBe(42);
    attempt.abort(new Error("late"));
    await expect(attempt.race(Promise.resolve(1))).rejects.toThrow("late");
  });
});
