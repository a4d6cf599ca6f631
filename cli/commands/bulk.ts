/**
 * Bulk operations by filter: `wf cancel|terminate|retry --where status=running --where
 * workflow=order_saga [--dry-run] [--yes]`. The matching workflows come from the visibility index
 * (client.list: cost ∝ the matches); they are listed first, then acted on after a confirmation
 * (a prompt on a terminal, or --yes; without a terminal and without --yes the command refuses),
 * with progress on a terminal. `status` and `workflow` filter on the workflow; any other name is
 * a search attribute (`--where customerId=c-7`).
 */
import { createInterface } from "node:readline/promises";
import type { WorkflowClient } from "../../runtime/client/client.js";
import { TERMINAL_STATUSES, type WorkflowStatus } from "../../runtime/state.js";
import { RETRYABLE_STATUSES } from "../../runtime/orchestrator/runs.js";
import type { ListFilter, WorkflowSummary } from "../../runtime/visibility/query.js";
import { parseAttributeArgument, type SearchAttributes } from "../../runtime/visibility/search-attributes.js";
import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, statusColor } from "../output.js";
import type { CommandContext } from "../wf.js";

export type BulkAction = "cancel" | "terminate" | "retry";

const STATUSES: WorkflowStatus[] = ["running", ...TERMINAL_STATUSES];
/** Operations in flight at once. */
const CONCURRENCY = 16;
/** Matches printed before the confirmation (the rest are counted). */
const SHOWN = 50;

/** The filter of `--where` flags: status=…[,…], workflow=…, else search attributes; and the default status of the action. */
export function bulkFilter(wheres: string[], action: BulkAction): ListFilter {
  const filter: ListFilter = {};
  const attributes: SearchAttributes = {};
  for (const text of wheres) {
    const at = text.indexOf("=");
    const name = at > 0 ? text.slice(0, at) : "";
    const value = text.slice(at + 1);
    if (name === "status") {
      const statuses = value.split(",").map((s) => s.trim());
      for (const s of statuses) if (!STATUSES.includes(s as WorkflowStatus)) throw new UsageError(`--where status=${value}: "${s}" is not a status`, `Statuses: ${STATUSES.join(", ")}.`);
      filter.status = statuses.length === 1 ? (statuses[0] as WorkflowStatus) : (statuses as WorkflowStatus[]);
    } else if (name === "workflow") {
      if (!value) throw new UsageError("--where workflow= needs a workflow type", "Write --where workflow=order_saga.");
      filter.workflow = value;
    } else {
      const [attr, v] = parseAttributeArgument(text, "--where");
      attributes[attr] = v;
    }
  }
  if (Object.keys(attributes).length > 0) filter.where = attributes;
  // What the action can act on, unless the filter says: cancel and terminate running ones, retry ended ones that did not complete.
  filter.status ??= action === "retry" ? [...RETRYABLE_STATUSES] : "running";
  return filter;
}

const past = { cancel: "cancel requested", terminate: "terminate requested", retry: "retry started" } as const;

/** `wf cancel|terminate|retry --where …`. */
export async function bulkCommand(ctx: CommandContext, action: BulkAction): Promise<number> {
  const wheres = Array.isArray(ctx.values.where) ? (ctx.values.where as unknown[]).map(String) : typeof ctx.values.where === "string" ? [ctx.values.where] : [];
  const filter = bulkFilter(wheres, action);
  const client = await cliClient(configFromFlags(ctx));
  try {
    const matches: WorkflowSummary[] = [];
    for await (const w of client.list(filter)) matches.push(w);
    if (matches.length === 0) {
      print(color.dim(`no workflows match; nothing to ${action}`));
      return 0;
    }
    print(`${ctx.values["dry-run"] ? "would" : "will"} ${action} ${matches.length} workflow${matches.length === 1 ? "" : "s"}:`);
    for (const w of matches.slice(0, SHOWN)) print(`  ${w.id}  ${w.workflow}  ${statusColor(w.status)}  ${color.dim(w.createdAt)}`);
    if (matches.length > SHOWN) print(color.dim(`  … and ${matches.length - SHOWN} more`));
    if (ctx.values["dry-run"]) return 0;
    if (!ctx.values.yes) {
      if (!process.stdin.isTTY) {
        throw new UsageError(`refusing to ${action} ${matches.length} workflow(s) without a confirmation, and there is no terminal to ask on`, `Pass --yes to confirm (after a --dry-run to see what matches).`);
      }
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const answer = await rl.question(`${action} these ${matches.length} workflow(s)? [y/N] `);
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) {
        print("nothing done");
        return 1;
      }
    }
    const reason = typeof ctx.values.reason === "string" ? ctx.values.reason : undefined;
    const failures = await applyAll(client, matches, action, reason);
    print(`${past[action]} for ${matches.length - failures.length} of ${matches.length} workflow(s)`);
    for (const f of failures) process.stderr.write(color.red(`  ${f.id}: ${f.message}`) + "\n");
    return failures.length ? 1 : 0;
  } finally {
    await client.close();
  }
}

async function applyAll(client: WorkflowClient, matches: WorkflowSummary[], action: BulkAction, reason: string | undefined): Promise<Array<{ id: string; message: string }>> {
  const failures: Array<{ id: string; message: string }> = [];
  const tty = process.stderr.isTTY;
  let next = 0;
  let done = 0;
  const one = async (w: WorkflowSummary) => {
    if (action === "cancel") await client.cancel(w.id, reason);
    else if (action === "terminate") await client.terminate(w.id, reason);
    else await client.retry(w.id);
  };
  const worker = async () => {
    while (next < matches.length) {
      const w = matches[next++]!;
      try {
        await one(w);
      } catch (err) {
        failures.push({ id: w.id, message: (err as Error).message });
      }
      done += 1;
      if (tty) process.stderr.write(`\r${action}: ${done}/${matches.length}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, matches.length) }, worker));
  if (tty) process.stderr.write("\n");
  return failures;
}
