import { readFileSync } from "node:fs";
import { cliClient } from "../client.js";
import { parseDuration } from "../../runtime/duration.js";
import { WorkflowFailedError } from "../../runtime/errors.js";
import { parseAttributeArgument, type SearchAttributes } from "../../runtime/visibility/search-attributes.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, printJson, renderState } from "../output.js";
import type { CommandContext } from "../wf.js";

export async function startCommand(ctx: CommandContext): Promise<number> {
  const [workflow, ...extra] = ctx.positionals;
  if (!workflow) throw new UsageError("wf start needs the workflow's name", "Usage: wf start <workflow> --input '<json>' [--id ID] [--wait]");
  if (extra.length) throw new UsageError(`unexpected argument(s): ${extra.join(" ")}`, "Quote the JSON input: --input '{\"orderId\":\"o-1\"}'.");
  const input = readInput(ctx.values.input);
  const config = configFromFlags(ctx);
  const client = await cliClient(config);
  try {
    const searchAttributes: SearchAttributes = {};
    for (const text of Array.isArray(ctx.values.attr) ? ctx.values.attr.map(String) : typeof ctx.values.attr === "string" ? [ctx.values.attr] : []) {
      const [name, value] = parseAttributeArgument(text, "--attr");
      searchAttributes[name] = value;
    }
    const handle = await client.start(workflow, input, { ...(typeof ctx.values.id === "string" ? { id: ctx.values.id } : {}), ...(Object.keys(searchAttributes).length ? { searchAttributes } : {}) });
    if (!ctx.values.wait) {
      if (ctx.values.json) printJson({ id: handle.id, workflow });
      else print(handle.id);
      return 0;
    }
    const timeoutMs = typeof ctx.values.timeout === "string" ? parseDuration(ctx.values.timeout, "--timeout") : undefined;
    try {
      const result = await handle.result(timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {});
      if (ctx.values.json) printJson({ id: handle.id, workflow, status: "completed", result });
      else {
        process.stderr.write(color.dim(`${handle.id} completed\n`));
        printJson(result);
      }
      return 0;
    } catch (err) {
      if (!(err instanceof WorkflowFailedError)) throw err;
      const state = await handle.describe();
      if (ctx.values.json) printJson({ id: handle.id, workflow, status: state.status, error: state.error });
      else process.stderr.write(renderState(state) + "\n");
      return 2;
    }
  } finally {
    await client.close();
  }
}

function readInput(value: string | boolean | undefined): unknown {
  if (value === undefined || value === true) return null;
  const text = String(value);
  let source = "--input";
  let json = text;
  if (text.startsWith("@")) {
    source = text.slice(1);
    try {
      json = readFileSync(source, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read input file ${source}: ${(err as Error).message}`, "Pass --input @path/to/input.json with a readable file.");
    }
  }
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new UsageError(`${source} is not valid JSON: ${(err as Error).message}`, `Quote it for the shell, e.g. --input '{"orderId":"o-1","amount":42}'.`);
  }
}
