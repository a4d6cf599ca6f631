/**
 * `wf stats`: per workflow type, how many run now and how many completed / failed / were
 * cancelled in the last hour (client.count over the visibility index); per activity type, the
 * tasks waiting in its queue and those running (consumer info, and the tasks stream's subject
 * counts for a type no worker pulled yet). Cost: a few counts per type and one request per
 * activity type, whatever ran before.
 */
import { openDeploymentStore } from "../../runtime/bundle/deployments.js";
import type { WorkflowClient } from "../../runtime/client/client.js";
import type { Config } from "../../runtime/config.js";
import type { WorkflowStatus } from "../../runtime/state.js";
import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

export interface WorkflowTypeStats {
  workflow: string;
  running: number;
  completed: number;
  /** Failed or timed out. */
  failed: number;
  /** Cancelled or terminated. */
  cancelled: number;
}

export interface ActivityTypeStats {
  activity: string;
  /** Tasks waiting for a worker. */
  queued: number;
  /** Tasks delivered to a worker and not yet acknowledged. */
  running: number;
}

export async function statsCommand(ctx: CommandContext): Promise<number> {
  const sinceText = typeof ctx.values.since === "string" ? ctx.values.since : "1h";
  const ago = /^(\d+)(m|h|d)$/.exec(sinceText);
  if (!ago) throw new UsageError(`--since must be a duration like 15m, 1h or 1d, got "${sinceText}"`);
  const since = new Date(Date.now() - Number(ago[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as "m" | "h" | "d"]);
  const config = configFromFlags(ctx);
  const client = await cliClient(config);
  try {
    const types = typeof ctx.values.workflow === "string" ? ctx.values.workflow.split(",").map((t) => t.trim()).filter(Boolean) : await workflowTypes(client, config, since);
    const [workflows, activities] = await Promise.all([Promise.all(types.map((t) => workflowStats(client, t, since))), activityStats(client)]);
    if (ctx.values.json) {
      printJson({ since: since.toISOString(), workflows, activities });
      return 0;
    }
    print(color.bold(`workflows`) + color.dim(` (ended since ${sinceText} ago)`));
    if (workflows.length === 0) print(color.dim("  none deployed or seen"));
    else {
      const w = Math.max(8, ...workflows.map((s) => s.workflow.length));
      print(color.dim(`  ${"workflow".padEnd(w)}  ${"running".padStart(8)}  ${"completed".padStart(9)}  ${"failed".padStart(7)}  ${"cancelled".padStart(9)}`));
      for (const s of workflows) print(`  ${s.workflow.padEnd(w)}  ${String(s.running).padStart(8)}  ${String(s.completed).padStart(9)}  ${(s.failed ? color.red : String)(String(s.failed).padStart(7))}  ${String(s.cancelled).padStart(9)}`);
    }
    print(color.bold("activities") + color.dim(" (tasks now)"));
    if (activities.length === 0) print(color.dim("  no activity queues yet"));
    else {
      const w = Math.max(8, ...activities.map((s) => s.activity.length));
      print(color.dim(`  ${"activity".padEnd(w)}  ${"queued".padStart(7)}  ${"running".padStart(8)}`));
      for (const s of activities) print(`  ${s.activity.padEnd(w)}  ${String(s.queued).padStart(7)}  ${String(s.running).padStart(8)}`);
    }
    return 0;
  } finally {
    await client.close();
  }
}

async function workflowStats(client: WorkflowClient, workflow: string, since: Date): Promise<WorkflowTypeStats> {
  const ended = (status: WorkflowStatus | WorkflowStatus[]) => client.count({ workflow, status, endedAfter: since });
  const [running, completed, failed, cancelled] = await Promise.all([client.count({ workflow, status: "running" }), ended("completed"), ended(["failed", "timed_out"]), ended(["cancelled", "terminated"])]);
  return { workflow, running, completed, failed, cancelled };
}

/**
 * The workflow types to report: the current deployment's; without one (code run programmatically),
 * those of the workflows running now or ended in the window (a listing of them).
 */
async function workflowTypes(client: WorkflowClient, config: Pick<Config, "replicas" | "storage">, since: Date): Promise<string[]> {
  const store = await openDeploymentStore(client.topology, { replicas: config.replicas, storage: config.storage });
  const current = await store.current();
  if (current) {
    const record = await store.record(current.deployment.version);
    if (record?.workflows.length) return [...record.workflows].sort();
  }
  const seen = new Set<string>();
  for await (const w of client.list({ status: "running" })) seen.add(w.workflow);
  for await (const w of client.list({ endedAfter: since })) seen.add(w.workflow);
  return [...seen].sort();
}

async function activityStats(client: WorkflowClient): Promise<ActivityTypeStats[]> {
  const { jsm, names } = client.topology;
  const byType = new Map<string, ActivityTypeStats>();
  const consumerPrefix = names.activityConsumer("");
  for await (const info of jsm.consumers.list(names.tasksStream)) {
    if (!info.name.startsWith(consumerPrefix)) continue;
    const activity = info.name.slice(consumerPrefix.length);
    byType.set(activity, { activity, queued: info.num_pending, running: info.num_ack_pending });
  }
  // A type no worker pulled yet has no consumer: every task on its subject waits.
  const subjectPrefix = names.taskSubject("");
  const stream = await jsm.streams.info(names.tasksStream, { subjects_filter: `${subjectPrefix}>` });
  for (const [subject, count] of Object.entries(stream.state.subjects ?? {})) {
    const activity = subject.slice(subjectPrefix.length);
    if (!byType.has(activity)) byType.set(activity, { activity, queued: count, running: 0 });
  }
  return [...byType.values()].sort((a, b) => a.activity.localeCompare(b.activity));
}
