import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf update <id> <name> [--payload '<json>'] [--update-id ID] [--timeout 1m]`: what the workflow's ctx.handleUpdate(name) handler returns, as JSON. */
export async function updateCommand(ctx: CommandContext): Promise<number> {
  const [id, name, ...extra] = ctx.positionals;
  if (!id || !name) throw new UsageError("wf update needs a workflow id and an update name", "Usage: wf update <id> <name> [--payload '<json>']");
  if (extra.length) throw new UsageError(`unexpected argument(s): ${extra.join(" ")}`, "Quote the JSON payload: --payload '{\"sku\":\"A7\"}'.");
  let payload: unknown;
  if (typeof ctx.values.payload === "string") {
    try {
      payload = JSON.parse(ctx.values.payload);
    } catch (err) {
      throw new UsageError(`--payload is not valid JSON: ${(err as Error).message}`, `Quote it for the shell, e.g. --payload '{"sku":"A7"}'.`);
    }
  }
  const client = await cliClient(configFromFlags(ctx));
  try {
    const result = await client.update(id, name, payload, {
      ...(typeof ctx.values["update-id"] === "string" ? { updateId: ctx.values["update-id"] } : {}),
      ...(typeof ctx.values.timeout === "string" ? { timeout: ctx.values.timeout } : {}),
    });
    if (typeof result === "string") print(result);
    else printJson(result);
    return 0;
  } finally {
    await client.close();
  }
}
