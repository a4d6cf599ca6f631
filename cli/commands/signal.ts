import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf signal <id> <name> [--payload '<json>']`: what `ctx.waitForSignal(name)` receives. */
export async function signalCommand(ctx: CommandContext): Promise<number> {
  const [id, name, ...extra] = ctx.positionals;
  if (!id || !name) throw new UsageError("wf signal needs a workflow id and a signal name", "Usage: wf signal <id> <name> [--payload '<json>']");
  if (extra.length) throw new UsageError(`unexpected argument(s): ${extra.join(" ")}`, "Quote the JSON payload: --payload '{\"approved\":true}'.");
  let payload: unknown = null;
  if (typeof ctx.values.payload === "string") {
    try {
      payload = JSON.parse(ctx.values.payload);
    } catch (err) {
      throw new UsageError(`--payload is not valid JSON: ${(err as Error).message}`, `Quote it for the shell, e.g. --payload '{"approved":true}'.`);
    }
  }
  const client = await cliClient(configFromFlags(ctx));
  try {
    await client.describe(id); // a clear error for an unknown id, rather than a signal nobody receives
    await client.signal(id, name, payload);
    print(`signal ${name} sent to ${id}`);
    return 0;
  } finally {
    await client.close();
  }
}
