import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { print, printJson, renderRuns, renderState } from "../output.js";
import type { CommandContext } from "../wf.js";
import { runNumber } from "../../runtime/state.js";
import { ENCRYPTED_PLACEHOLDER } from "../../runtime/payloads/payloads.js";

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
    const run = typeof ctx.values.run === "string" ? positiveInteger(ctx.values.run, "--run") : undefined;
    // Payloads this client cannot decode (encrypted, and no codec.keys or not their key) show as a note, not an error.
    const state = await client.describe(id, { undecodable: "mark", ...(run === undefined ? {} : { run }) });
    if (ctx.values.json) {
      printJson(state);
      return 0;
    }
    print(renderState(state));
    if (JSON.stringify(state).includes(ENCRYPTED_PLACEHOLDER)) print(`\nsome payloads are encrypted; configure codec.keys (with the key that encrypted them) to read them`);
    // The latest run lists the earlier ones (newest first, a page of them: a loop may have thousands).
    if (run === undefined && runNumber(state) > 1) {
      const limit = typeof ctx.values.runs === "string" ? positiveInteger(ctx.values.runs, "--runs") : 10;
      print("\n" + renderRuns(state, await client.runs(id, { limit })));
    }
    return 0;
  } finally {
    await client.close();
  }
}

function positiveInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a whole number ≥ 1, got ${text}`, "Run numbers start at 1; `wf show <id>` lists them.");
  return n;
}
