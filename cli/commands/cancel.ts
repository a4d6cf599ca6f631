import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print } from "../output.js";
import type { CommandContext } from "../wf.js";

export async function cancelCommand(ctx: CommandContext): Promise<number> {
  const [id] = ctx.positionals;
  if (!id) throw new UsageError("wf cancel needs a workflow id");
  const client = await cliClient(configFromFlags(ctx));
  try {
    await client.cancel(id, typeof ctx.values.reason === "string" ? ctx.values.reason : undefined);
    print(`cancel requested for ${id}`);
    return 0;
  } finally {
    await client.close();
  }
}
