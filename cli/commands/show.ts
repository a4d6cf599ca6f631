import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print, printJson, renderState } from "../output.js";
import type { CommandContext } from "../wf.js";

export async function showCommand(ctx: CommandContext): Promise<number> {
  const [id] = ctx.positionals;
  if (!id) throw new UsageError("wf show needs a workflow id", "Usage: wf show <id>; `wf list` shows recent ids.");
  const client = await cliClient(configFromFlags(ctx));
  try {
    if (ctx.values.history) {
      // The replay-test format (docs/testing.md), always JSON: `wf show <id> --history > order-1.json`.
      printJson(await client.history(id));
      return 0;
    }
    const state = await client.describe(id);
    if (ctx.values.json) printJson(state);
    else print(renderState(state));
    return 0;
  } finally {
    await client.close();
  }
}
