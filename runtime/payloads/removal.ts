/**
 * Claim-checked payloads go with their workflow: removeWorkflow (retention, client.delete) calls
 * this before it purges the state, so a removal that dies half way is found again by the next
 * sweep, with its state, and finishes. The objects are found from what references them: the
 * state, its history chunks and its archived runs (one read each, only for workflows that have
 * them), so the cost grows with the workflow removed, not with the bucket.
 *
 * Not found this way: an object written by an attempt whose completion never reached the state
 * (a timed-out attempt that finished after its retry did): it stays until the bucket is purged.
 * Two kinds of objects lose their last reference before their workflow goes, and are removed
 * then: the arguments of an update that reached a workflow that had ended, when the orchestrator
 * drops that update (removeOrphanedPayload), and those of a refused update whose outcome is
 * pushed out of the 64 most recent (`updates`), once the state without it is stored
 * (droppedUpdateArgs). Both removals are best effort: a runtime that dies first leaves the
 * object, which costs storage only.
 */
import type { Logger } from "../logger.js";
import type { Topology } from "../nats/topology.js";
import { withHistory } from "../orchestrator/history.js";
import { readRun } from "../orchestrator/runs.js";
import { runNumber, type WorkflowState } from "../state.js";
import { objectNameOf } from "./claim-check.js";
import { updateArgsPrefix } from "./payloads.js";

export async function removeWorkflowPayloads(topology: Topology, state: WorkflowState): Promise<void> {
  const { payloads } = topology;
  if (!payloads.claimCheck) return;
  const runs: WorkflowState[] = [state];
  for (let n = 1; n < runNumber(state); n++) {
    const run = await readRun(topology.states, state, n);
    if (run) runs.push(run);
  }
  const names: string[] = [];
  for (const run of runs) names.push(...payloads.refsOf(await withHistory(topology.states, run)));
  if (names.length > 0) await payloads.claimCheck.remove(names);
}

/**
 * A claim-checked payload that only a dropped message referenced (decide.ts `orphanedPayload`):
 * removed now, since no state leads to it; only if its name starts with `under` (the message's own
 * slot), so a forged reference cannot remove another workflow's payload. A failure is logged, not
 * retried: the message is dropped either way, and an object left behind costs storage only.
 */
export async function removeOrphanedPayload(topology: Topology, value: unknown, under: string, logger: Logger): Promise<void> {
  const { claimCheck } = topology.payloads;
  const name = claimCheck && objectNameOf(value, claimCheck.bucket);
  if (!claimCheck || !name?.startsWith(under)) return;
  await claimCheck.remove([name]).catch((err: unknown) => logger.warn(`could not remove payload object ${name}, which only a dropped message referenced: ${(err as Error)?.message}`));
}

/**
 * The claim-checked arguments of refused updates whose outcomes `before` kept and `after` no
 * longer does (pushed out of the most recent ones): the run's state no longer references them, so
 * they are passed to removeOrphanedPayload once `after` is stored. (An outcome carried over by
 * continue-as-new is still named by the earlier run's archived state; reads never open update
 * arguments, and that run's removal finds the object gone, which is no error.) Cost: a comparison
 * of two lists of at most 64 when a write changed them; nothing otherwise.
 */
export function droppedUpdateArgs(before: WorkflowState, after: WorkflowState): Array<{ ref: unknown; under: string }> {
  if (before.updates === after.updates || !before.updates?.some((u) => u.args !== undefined)) return [];
  const kept = new Set((after.updates ?? []).map((u) => u.id));
  return before.updates.filter((u) => u.args !== undefined && !kept.has(u.id)).map((u) => ({ ref: u.args, under: updateArgsPrefix(before.id, u.id) }));
}
