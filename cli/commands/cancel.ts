import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print } from "../output.js";
import type { CommandContext } from "../wf.js";

export function cancelCommand(ctx: CommandContext): Promise<number> {
  return stop(ctx, "cancel");
}

/** `wf terminate`: the hard stop, no workflow code runs. */
export function terminateCommand(ctx: CommandContext): Promise<number> {
  return stop(ctx, "terminate");
}

async function stop(ctx: CommandContext, how: "cancel" | "terminate"): Promise<number> {
  const [id] = ctx.positionals;
  if (!id) throw new UsageError(`wf ${how} needs a workflow id`);
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
