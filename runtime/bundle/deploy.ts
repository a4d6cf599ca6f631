/**
 * Promotion of a new code version, with a replay check first: every running workflow that is not
 * on the new version is replayed against the new code. Those that replay cleanly move to it (their
 * next steps run the new code); those that diverge stay pinned to their version, which stays
 * loadable. `wf deploy` refuses a version that would strand diverging workflows unless forced.
 */
import { bindWorkflow, type Registry } from "../definitions.js";
import { toErrorRecord } from "../errors.js";
import { replayWorkflow } from "../journal/replay.js";
import type { Logger } from "../logger.js";
import type { Topology } from "../nats/topology.js";
import { resumeBlocked } from "../orchestrator/blocked.js";
import { withHistory } from "../orchestrator/history.js";
import { StateStore } from "../orchestrator/state-store.js";
import { readRunningStates } from "../visibility/query.js";
import { RevisionConflictError } from "../errors.js";
import type { WorkflowState } from "../state.js";
import type { Bundle } from "./build.js";
import type { CurrentDeployment, DeploymentStore } from "./deployments.js";
import { syncDeclaredSchedules, type ScheduleSyncReport } from "../schedules/declared.js";

export interface Divergence {
  workflowId: string;
  workflow: string;
  /** The version it stays on. */
  version: string;
  message: string;
}

export interface DeployReport {
  version: string;
  previous: string | undefined;
  /** The version was current already. */
  unchanged: boolean;
  promoted: boolean;
  /** Running workflows that replay cleanly on the new code (moved to it when promoted). */
  compatible: string[];
  diverging: Divergence[];
  /** Schedules of functions/schedules.ts brought in line, once the version is current (schedules/declared.ts). */
  schedules?: ScheduleSyncReport;
}

export interface DeployOptions {
  topology: Topology;
  store: DeploymentStore;
  bundle: Bundle;
  registry: Registry;
  deployedBy: string;
  logger: Logger;
  /** Report only. */
  checkOnly?: boolean;
  /** Promote even when running workflows diverge (they stay on their version). */
  force?: boolean;
}

export async function deployBundle(options: DeployOptions): Promise<DeployReport> {
  const { topology, store, bundle, registry } = options;
  const current = await store.current();
  const previous = current?.deployment.version;
  const report: DeployReport = { version: bundle.version, previous, unchanged: previous === bundle.version, promoted: false, compatible: [], diverging: [] };
  if (!options.checkOnly) {
    await store.upload(bundle, { workflows: [...registry.workflows.keys()], activities: [...registry.activities.keys()] }, options.deployedBy);
  }
  // Only running workflows can move to new code: found through the index (cost ∝ running, not ∝ every workflow kept).
  const running = await readRunningStates(topology, (state) => state.bundle !== bundle.version);
  for (const { state } of running) {
    const outcome = await checkOne(topology, state, registry, options.logger);
    if (outcome) report.diverging.push({ workflowId: state.id, workflow: state.workflow, version: state.bundle, message: outcome });
    else report.compatible.push(state.id);
  }
  if (options.checkOnly || report.unchanged) {
    report.promoted = report.unchanged;
    if (report.promoted && !options.checkOnly) await syncSchedules(options, report);
    return report;
  }
  if (report.diverging.length > 0 && !options.force) return report;
  await store.promote(bundle.version, options.deployedBy, current?.revision ?? 0);
  report.promoted = true;
  await migrate(topology, registry, bundle.version, report, options.logger);
  await syncSchedules(options, report);
  // Blocked workflows that replay cleanly now run on this version: their parked events can be
  // applied. (Promotion came first, so runtimes already run it; a workflow moved meanwhile is
  // retried by each runtime's sweep.) Those that still diverge stay parked.
  // Best effort: the version is promoted already, and each runtime retries blocked workflows when
  // it starts (and sweeps those no longer blocked).
  await resumeBlocked(topology, options.logger, { except: new Set(report.diverging.map((d) => d.workflowId)) }).catch((err) =>
    options.logger.warn(`retrying blocked workflows after the deploy failed: ${(err as Error)?.message ?? err}`, { component: "deploy" }),
  );
  return report;
}

/** The current version's declared schedules, made the bucket's (a registry without `schedules`, programmatic code, manages none). */
async function syncSchedules(options: DeployOptions, report: DeployReport): Promise<void> {
  if (options.registry.schedules === undefined) return;
  report.schedules = await syncDeclaredSchedules(options.topology, options.registry.schedules, options.logger);
}

/** Roll back (or forward) to a stored version: the same check, against that version's code. */
export async function promoteStored(options: Omit<DeployOptions, "bundle"> & { version: string }): Promise<DeployReport> {
  const bundle = await options.store.fetch(options.version);
  return deployBundle({ ...options, bundle });
}

/** undefined when the state replays cleanly on `registry`, else why not. */
async function checkOne(topology: Topology, state: WorkflowState, registry: Registry, logger: Logger): Promise<string | undefined> {
  const definition = registry.workflows.get(state.workflow);
  if (!definition) return `workflow type "${state.workflow}" is not in the new code`;
  try {
    await replayWorkflow(await withHistory(topology.states, state), { ...bindWorkflow(definition, state.id), logger, payloads: topology.payloads });
    return undefined;
  } catch (err) {
    return toErrorRecord(err).message;
  }
}

/** Move compatible workflows to the new version, each by CAS; one that changed meanwhile is checked again. */
async function migrate(topology: Topology, registry: Registry, version: string, report: DeployReport, logger: Logger): Promise<void> {
  const store = new StateStore(topology.states, 0);
  const moved: string[] = [];
  for (const id of report.compatible) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const stored = await store.load(id, true);
      if (!stored || stored.state.status !== "running" || stored.state.bundle === version) break;
      // Re-check on the fresh state: events applied since the report may have extended the journal.
      const problem = await checkOne(topology, stored.state, registry, logger);
      if (problem) {
        report.diverging.push({ workflowId: id, workflow: stored.state.workflow, version: stored.state.bundle, message: problem });
        break;
      }
      try {
        await store.update({ ...stored.state, bundle: version, updatedAt: new Date().toISOString() }, stored.revision);
        moved.push(id);
        break;
      } catch (err) {
        if (!(err instanceof RevisionConflictError)) throw err;
      }
    }
  }
  report.compatible = moved;
}

export type { CurrentDeployment };
