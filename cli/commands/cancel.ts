import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print } from "../output.js";
import type { CommandContext } from "../wf.js";
import { bulkCommand } from "./bulk.js";

export function cancelCommand(ctx: CommandContext): Promise<number> {
  return stop(ctx, "cancel");
}

/** `wf terminate`: the hard stop, no workflow code runs. */
export function terminateCommand(ctx: CommandContext): Promise<number> {
  return stop(ctx, "terminate");
}

async function stop(ctx: CommandContext, how: "cancel" | "terminate"): Promise<number> {
  const [id] = ctx.positionals;
  if (ctx.values.where !== undefined) {
    if (id) throw new UsageError(`wf ${how} takes an id or --where filters, not both`);
    return bulkCommand(ctx, how);
  }
  if (!id) throw new UsageError(`wf ${how} needs a workflow id (or --where filters)`, `Usage: wf ${how} <id> [--reason TEXT] | wf ${how} --where status=running --where workflow=NAME [--dry-run] [--yes]`);
  const client = await cliClient(configFromFlags(ctx));
  try {
    const reason = typeof ctx.values.reason === "string" ? ctx.values.reason : undefined;
    await (how === "cancel" ? client.cancel(id, reason) : client.terminate(id, reason));
    print(`${how} requested for ${id}`);
    return 0;
  } finally {
    await client.close();
  }
}
