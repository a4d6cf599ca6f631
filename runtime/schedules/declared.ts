/**
 * Schedules declared in code: functions/schedules.ts exports `defineSchedule(...)` values
 * (workflow-api.ts), bundled with the activities (bundle/build.ts) and read when the bundle is
 * loaded (bundle/load.ts), where each is validated. A deploy that promotes the bundle (`wf
 * deploy`, a runtime deploying its functions/, `wf dev` on save, a rollback) brings the bucket in
 * line: declared schedules are created or updated (records marked `source: "code"`), and a
 * code-declared schedule that the bundle no longer exports is deleted. Schedules created through
 * the client or `wf schedule` (`source: "api"`) are never touched. A pause made with `wf schedule
 * pause` survives deploys. Cost per deploy: one read per schedule in the namespace.
 */
import { BundleError, JetflowError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Topology } from "../nats/topology.js";
import { SCHEDULE_MARKER, type ScheduleDeclaration } from "../workflow-api.js";
import { createScheduleClient } from "./client.js";
import { toScheduleSpec, validateScheduleId, type ScheduleOptions, type ScheduleSpec } from "./spec.js";
import { readSchedule } from "./store.js";

export interface DeclaredSchedule {
  id: string;
  spec: ScheduleSpec;
}

export interface ScheduleSyncReport {
  created: string[];
  updated: string[];
  removed: string[];
}

/** The schedules a bundle's functions/schedules.ts exports, validated; [] without the file. */
export function declaredSchedules(exports: Record<string, unknown> | undefined, file = "schedules.ts"): DeclaredSchedule[] {
  const out: DeclaredSchedule[] = [];
  const seen = new Map<string, string>();
  for (const [name, value] of Object.entries(exports ?? {})) {
    if (!value || typeof value !== "object" || (value as Record<string, unknown>)[SCHEDULE_MARKER] !== true) continue;
    const { id, ...options } = value as ScheduleDeclaration;
    try {
      validateScheduleId(id);
      if (seen.has(id)) throw new BundleError("WF_DUPLICATE_SCHEDULE", `schedule "${id}" is declared twice in functions/${file} (exports ${seen.get(id)} and ${name})`, { hint: "Schedule ids are unique; rename one." });
      seen.set(id, name);
      out.push({ id, spec: toScheduleSpec(id, options as ScheduleOptions) });
    } catch (err) {
      if (err instanceof JetflowError) throw new BundleError(err.code, `functions/${file}, export ${name}: ${err.message}`, { ...(err.hint ? { hint: err.hint } : {}), cause: err });
      throw err;
    }
  }
  return out;
}

export async function syncDeclaredSchedules(topology: Topology, declared: DeclaredSchedule[], logger: Logger): Promise<ScheduleSyncReport> {
  const schedules = createScheduleClient({
    topology,
    namespace: topology.names.namespace,
    start: async () => {
      throw new Error("unreachable: a deploy starts no workflow");
    },
  });
  const report: ScheduleSyncReport = { created: [], updated: [], removed: [] };
  const wanted = new Set(declared.map((d) => d.id));
  for (const { id, spec } of declared) {
    const existing = await readSchedule(topology.schedules, id);
    // A pause from `wf schedule pause` is the operator's: a deploy does not undo it.
    const effective = existing?.record.spec.paused ? { ...spec, paused: true } : spec;
    const outcome = await schedules.apply(id, effective, "code");
    if (outcome !== "unchanged") report[outcome].push(id);
  }
  for await (const id of await topology.schedules.keys()) {
    if (wanted.has(id)) continue;
    const stored = await readSchedule(topology.schedules, id).catch(() => undefined);
    if (stored?.record.source === "code" && (await schedules.delete(id))) report.removed.push(id);
  }
  const changed = report.created.length + report.updated.length + report.removed.length;
  if (changed > 0) {
    logger.info(`schedules from functions/schedules.ts: ${[report.created.length && `created ${report.created.join(", ")}`, report.updated.length && `updated ${report.updated.join(", ")}`, report.removed.length && `removed ${report.removed.join(", ")}`].filter(Boolean).join("; ")}`, { component: "deploy" });
  }
  return report;
}
