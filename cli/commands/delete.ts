import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf delete <id>`: remove a finished workflow now (retention would later). */
export async function deleteCommand(ctx: CommandContext): Promise<number> {
  const [id, ...extra] = ctx.positionals;
  if (!id) throw new UsageError("wf delete needs a workflow id", "Usage: wf delete <id> (a finished workflow; cancel a running one first)");
  if (extra.length) throw new UsageError(`unexpected argument(s): ${extra.join(" ")}`, "Delete one workflow at a time.");
  const client = await cliClient(configFromFlags(ctx));
  try {
    print((await client.delete(id)) ? `deleted ${id}` : `no workflow ${id}: nothing to delete`);
    return 0;
  } finally {
    await client.close();
  }
}
