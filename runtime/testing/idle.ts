/**
 * When is a test engine idle? When every started workflow waits: no event is waiting for the
 * orchestrator, no activity step is scheduled or running, and no timer is due. Time skipping
 * moves the clock only then, so `client.start()` followed at once by `env.skipTime()` skips the
 * workflow's sleep, not the steps before it.
 *
 * Read in this order, the snapshot misses nothing: the orchestrator acks an event only after
 * writing the state it leads to, so an event gone from the events stream before the stream info
 * is in the states read after it; and everything that can produce an event later (a running
 * activity, a due timer) is visible in those states as a scheduled step or a due time.
 *
 * Unapplied events are counted in the events stream (a work queue: an event leaves it when the
 * orchestrator acks it), not by the orchestrator consumer's num_pending: nats-server 2.10 and
 * later count a new message into num_pending asynchronously, so right after a publish is acked
 * the consumer can still say 0 (seen in 11 of 300 publishes on 2.15.1), and a `start` followed at
 * once by `skipTime` skipped over a workflow that did not exist yet.
 */
import type { Topology } from "../nats/topology.js";
import { readRunningStates } from "../visibility/query.js";
import type { WorkflowState } from "../state.js";

export interface EngineSnapshot {
  /** Why the engine is not idle (the first reason found); undefined when it is. */
  busy: string | undefined;
  /** Running workflows (blocked ones excluded: they wait for new code, not for time). */
  running: number;
  /** Earliest time (epoch ms, the engine's clock) a running workflow's timer is due: a retry backoff, a sleep, a deadline. */
  nextTimerAt: number | undefined;
  /** Every running workflow waits on timers only (none on a signal): what auto time skipping needs. */
  timersOnly: boolean;
}

export async function engineSnapshot(topology: Topology, now: number): Promise<EngineSnapshot> {
  const { names } = topology;
  const events = await topology.jsm.streams.info(names.eventsStream);
  const unapplied = events.state.messages;
  const states = await readStates(topology);
  const snapshot: EngineSnapshot = { busy: unapplied > 0 ? `${unapplied} event(s) not yet applied by the orchestrator` : undefined, running: 0, nextTimerAt: undefined, timersOnly: true };
  for (const state of states) {
    if (state.status !== "running" || state.blocked) continue;
    snapshot.running += 1;
    const due: number[] = [];
    if (state.deadline) due.push(Date.parse(state.deadline));
    for (const [name, step] of Object.entries(state.steps)) {
      if (step.status === "scheduled") snapshot.busy ??= `workflow ${state.id}: step "${name}" (${step.activity ?? step.kind}, attempt ${step.attempt}) is scheduled or running`;
      else if (step.status === "retrying" && step.nextAttemptAt) due.push(Date.parse(step.nextAttemptAt));
      else if (step.status === "waiting" && step.kind === "sleep" && step.fireAt) due.push(Date.parse(step.fireAt));
      else if (step.status === "waiting" && step.kind === "signal") snapshot.timersOnly = false;
    }
    for (const time of due) {
      if (time <= now) snapshot.busy ??= `workflow ${state.id}: a timer due at ${new Date(time).toISOString()} has not fired yet`;
      if (snapshot.nextTimerAt === undefined || time < snapshot.nextTimerAt) snapshot.nextTimerAt = time;
    }
  }
  return snapshot;
}

/** The running workflows' states, through the visibility index's run entries. */
async function readStates(topology: Topology): Promise<WorkflowState[]> {
  return (await readRunningStates(topology)).map(({ state }) => state);
}
