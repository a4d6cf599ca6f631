/**
 * A schedule through the faults of a scenario: every `--every 1s` tick between the first and the
 * last must have started exactly one workflow (tick ids are `<scheduleId>.<tick>`: a tick fired
 * twice starts the same id, so a doubled tick cannot hide; a lost tick shows as a gap), and each
 * of those workflows must complete.
 */
import type { WorkflowClient } from "../../runtime/index.js";
import type { StateObserver } from "./observer.js";
import { DEFAULT_SCHEDULER_ACK_WAIT_MS } from "../../runtime/nats/topology.js";

export const CHAOS_SCHEDULE = { id: "chaos-tick", everyMs: 1_000 };

export async function startChaosSchedule(client: WorkflowClient): Promise<void> {
  await client.schedules.create(CHAOS_SCHEDULE.id, { workflow: "pending_delay", input: { mode: "sleep", delay: "10ms" }, every: CHAOS_SCHEDULE.everyMs, overlap: "allow-all", catchupWindow: "5m" });
}

/** Pause the schedule, wait for its workflows, and say what broke: gaps between ticks, runs that did not complete. */
export async function checkChaosSchedule(client: WorkflowClient, observer: StateObserver, timeoutMs: number): Promise<{ ticks: number; violations: string[] }> {
  // A runtime killed while it held the schedule's next tick gives it back only after the
  // scheduler consumer's ack wait (10 s); the ticks missed meanwhile then run as catch-up. Wait
  // until the chain is due in the future again, so the check sees that catch-up, not the gap
  // before it (a quick run can end inside that window: CI saw 1 tick in a 12 s run).
  const caughtUpBy = Date.now() + DEFAULT_SCHEDULER_ACK_WAIT_MS + 20_000;
  for (;;) {
    const next = (await client.schedules.describe(CHAOS_SCHEDULE.id)).state.nextTick;
    if (next && Date.parse(next) > Date.now() - CHAOS_SCHEDULE.everyMs) break;
    if (Date.now() > caughtUpBy) break; // the gaps below will say what was lost
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await client.schedules.pause(CHAOS_SCHEDULE.id);
  const ids: string[] = [];
  for await (const summary of client.list({ where: { scheduleId: CHAOS_SCHEDULE.id } })) ids.push(summary.id);
  const violations: string[] = [];
  if (ids.length < 3) violations.push(`schedule ${CHAOS_SCHEDULE.id}: only ${ids.length} tick workflow(s)`);
  const ticks = ids.map((id) => Date.parse(id.slice(CHAOS_SCHEDULE.id.length + 1).replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/, "$1-$2-$3T$4:$5:$6"))).sort((a, b) => a - b);
  for (let i = 1; i < ticks.length; i++) {
    const gap = ticks[i]! - ticks[i - 1]!;
    if (gap !== CHAOS_SCHEDULE.everyMs) violations.push(`schedule ${CHAOS_SCHEDULE.id}: ${gap === 0 ? "a tick twice" : `${gap / CHAOS_SCHEDULE.everyMs - 1} tick(s) lost`} after ${new Date(ticks[i - 1]!).toISOString()}`);
  }
  const pending = await observer.waitForTerminal(ids, timeoutMs);
  for (const id of pending) violations.push(`schedule ${CHAOS_SCHEDULE.id}: tick workflow ${id} did not finish`);
  const states = await observer.finalStates(ids);
  for (const [id, state] of states) if (state && state.status !== "completed") violations.push(`schedule ${CHAOS_SCHEDULE.id}: tick workflow ${id} ended ${state.status}`);
  return { ticks: ids.length, violations: violations.slice(0, 10) };
}
