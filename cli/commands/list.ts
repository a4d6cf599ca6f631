import { cliClient } from "../client.js";
import type { WorkflowStatus } from "../../runtime/state.js";
import { TERMINAL_STATUSES } from "../../runtime/state.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, printJson, statusColor } from "../output.js";
import type { CommandContext } from "../wf.js";

const STATUSES: WorkflowStatus[] = ["running", ...TERMINAL_STATUSES];

export async function listCommand(ctx: CommandContext): Promise<number> {
  const status = ctx.values.status as WorkflowStatus | undefined;
  if (status !== undefined && !STATUSES.includes(status)) throw new UsageError(`--status must be one of ${STATUSES.join(", ")}, got "${status}"`);
  const limit = ctx.values.limit === undefined ? 50 : Number(ctx.values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a whole number ≥ 1, got "${String(ctx.values.limit)}"`);
  const client = await cliClient(configFromFlags(ctx));
  try {
    const items = await client.list({ ...(status ? { status } : {}), ...(typeof ctx.values.workflow === "string" ? { workflow: ctx.values.workflow } : {}), limit });
    if (ctx.values.json) printJson(items);
    else if (items.length === 0) print(color.dim("no workflows"));
    else for (const w of items) print(`${w.id}  ${w.workflow}  ${statusColor(w.status)}  ${color.dim(w.createdAt)}`);
    return 0;
  } finally {
    await client.close();
  }
}
