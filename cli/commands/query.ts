import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf query <id> <name> [--args '<json>'] [--timeout 10s]`: what the workflow's ctx.handleQuery(name) handler returns, as JSON. */
export async function queryCommand(ctx: CommandContext): Promise<number> {
  const [id, name, ...extra] = ctx.positionals;
  if (!id || !name) throw new UsageError("wf query needs a workflow id and a query name", "Usage: wf query <id> <name> [--args '<json>']");
  if (extra.length) throw new UsageError(`unexpected argument(s): ${extra.join(" ")}`, "Quote the JSON arguments: --args '{\"page\":2}'.");
  let args: unknown;
  if (typeof ctx.values.args === "string") {
    try {
      args = JSON.parse(ctx.values.args);
    } catch (err) {
      throw new UsageError(`--args is not valid JSON: ${(err as Error).message}`, `Quote it for the shell, e.g. --args '{"page":2}'.`);
    }
  }
  const client = await cliClient(configFromFlags(ctx));
  try {
    const result = await client.query(id, name, args, typeof ctx.values.timeout === "string" ? { timeout: ctx.values.timeout } : {});
    if (typeof result === "string") print(result);
    else printJson(result);
    return 0;
  } finally {
    await client.close();
  }
}
