import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print, printJson } from "../output.js";
import { runNumber } from "../../runtime/state.js";
import type { CommandContext } from "../wf.js";
import { bulkCommand } from "./bulk.js";

/**
 * `wf retry <id>`: re-run a failed (cancelled, terminated, timed out) workflow from its failed
 * step, reusing the results of the steps completed before it (runtime/orchestrator/retry.ts).
 * `--where …` retries every match (bulk.ts).
 */
export async function retryCommand(ctx: CommandContext): Promise<number> {
  const [id] = ctx.positionals;
  if (ctx.values.where !== undefined) {
    if (id) throw new UsageError("wf retry takes an id or --where filters, not both");
    return bulkCommand(ctx, "retry");
  }
  if (!id) throw new UsageError("wf retry needs a workflow id (or --where filters)", "Usage: wf retry <id> [--wait] | wf retry --where status=failed --where workflow=NAME [--dry-run] [--yes]");
  const client = await cliClient(configFromFlags(ctx));
  try {
    const before = await client.describe(id);
    const handle = await client.retry(id);
    const run = runNumber(before) + 1;
    if (!ctx.values.wait) {
      if (ctx.values.json) printJson({ id, workflow: handle.workflow, run, retried: runNumber(before) });
      else print(`retry of ${id} (run ${runNumber(before)}, ${before.status}) started as run ${run}`);
      return 0;
    }
    const result = await handle.result();
    if (ctx.values.json) printJson({ id, workflow: handle.workflow, run, status: "completed", result });
    else print(JSON.stringify(result, null, 2));
    return 0;
  } finally {
    await client.close();
  }
}
