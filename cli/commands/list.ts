import { cliClient } from "../client.js";
import type { WorkflowStatus } from "../../runtime/state.js";
import { TERMINAL_STATUSES } from "../../runtime/state.js";
import type { ListFilter, WorkflowSummary } from "../../runtime/visibility/query.js";
import { parseAttributeArgument, type SearchAttributes } from "../../runtime/visibility/search-attributes.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, printJson, statusColor } from "../output.js";
import type { CommandContext } from "../wf.js";

const STATUSES: WorkflowStatus[] = ["running", ...TERMINAL_STATUSES];

/** `wf list`: one page (or --all of them) through the visibility index, or --count. */
export async function listCommand(ctx: CommandContext): Promise<number> {
  const filter = listFilterFromFlags(ctx);
  const limit = ctx.values.limit === undefined ? 50 : Number(ctx.values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError(`--limit must be a whole number from 1 to 1000, got "${String(ctx.values.limit)}"`, "Page through more with --cursor, or list them all with --all.");
  const client = await cliClient(configFromFlags(ctx));
  try {
    if (ctx.values.count) {
      const count = await client.count(filter);
      if (ctx.values.json) printJson({ count });
      else print(String(count));
      return 0;
    }
    const cursor = typeof ctx.values.cursor === "string" ? ctx.values.cursor : undefined;
    if (ctx.values.all) {
      let n = 0;
      for await (const w of client.list({ ...filter, pageSize: limit, ...(cursor ? { cursor } : {}) })) {
        if (ctx.values.json) print(JSON.stringify(w));
        else print(line(w));
        n += 1;
      }
      if (n === 0 && !ctx.values.json) print(color.dim("no workflows"));
      return 0;
    }
    const page = await client.listPage(filter, { limit, ...(cursor ? { cursor } : {}) });
    if (ctx.values.json) printJson(page);
    else {
      if (page.workflows.length === 0) print(color.dim("no workflows"));
      for (const w of page.workflows) print(line(w));
      if (page.cursor) print(color.dim(`next: --cursor ${page.cursor}`));
    }
    return 0;
  } finally {
    await client.close();
  }
}

function line(w: WorkflowSummary): string {
  const attrs = w.searchAttributes ? Object.entries(w.searchAttributes).map(([k, v]) => `${k}=${v instanceof Date ? v.toISOString() : String(v)}`) : [];
  return [w.id, w.workflow, statusColor(w.status), color.dim(w.endedAt ? `${w.createdAt} → ${w.endedAt}` : w.createdAt), ...attrs.map((a) => color.dim(a))].join("  ");
}

function listFilterFromFlags(ctx: CommandContext): ListFilter {
  const filter: ListFilter = {};
  const statuses = flagValues(ctx.values.status).flatMap((s) => s.split(","));
  for (const status of statuses) if (!STATUSES.includes(status as WorkflowStatus)) throw new UsageError(`--status must be one of ${STATUSES.join(", ")}, got "${status}"`);
  if (statuses.length === 1) filter.status = statuses[0] as WorkflowStatus;
  else if (statuses.length > 1) filter.status = statuses as WorkflowStatus[];
  if (typeof ctx.values.workflow === "string") filter.workflow = ctx.values.workflow;
  for (const [flag, key] of [["since", "createdAfter"], ["until", "createdBefore"]] as const) {
    const value = ctx.values[flag];
    if (typeof value !== "string") continue;
    filter[key] = timeFlag(value, `--${flag}`);
  }
  const where: SearchAttributes = {};
  for (const text of flagValues(ctx.values.where)) {
    const [name, value] = parseAttributeArgument(text, "--where");
    where[name] = value;
  }
  if (Object.keys(where).length > 0) filter.where = where;
  return filter;
}

const flagValues = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : typeof value === "string" ? [value] : []);

/** An ISO 8601 time, or a duration ago (`--since 2h`). */
function timeFlag(text: string, flag: string): Date {
  const ago = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
  if (ago) {
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as "ms" | "s" | "m" | "h" | "d"];
    return new Date(Date.now() - Number(ago[1]) * unit);
  }
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new UsageError(`${flag} ${JSON.stringify(text)} is neither a time nor a duration`, `Write ${flag} 2026-12-01T00:00:00Z, or ${flag} 2h for two hours ago.`);
  return new Date(ms);
}
