import { readFileSync } from "node:fs";
import { cliClient } from "../client.js";
import { parseDuration } from "../../runtime/duration.js";
import { WorkflowFailedError } from "../../runtime/errors.js";
import { parseAttributeArgument, type SearchAttributes } from "../../runtime/visibility/search-attributes.js";
import type { StartOptions } from "../../runtime/client/client.js";
import type { IdReusePolicy } from "../../runtime/protocol.js";
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
    const options: StartOptions = {
      ...(typeof ctx.values.id === "string" ? { id: ctx.values.id } : {}),
      ...(Object.keys(searchAttributes).length ? { searchAttributes } : {}),
      ...(typeof ctx.values["execution-timeout"] === "string" ? { timeout: ctx.values["execution-timeout"] } : {}),
      ...(typeof ctx.values.memo === "string" ? { memo: readJson(ctx.values.memo, "--memo") } : {}),
      ...(typeof ctx.values["id-reuse-policy"] === "string" ? { idReusePolicy: ctx.values["id-reuse-policy"] as IdReusePolicy } /* checked by the client: WF_INVALID_ID_REUSE_POLICY */ : {}),
    };
    let handle;
    if (typeof ctx.values.signal === "string") {
      if (options.id === undefined) throw new UsageError("wf start --signal needs --id: the signal goes to the workflow with that id, started if it does not exist");
      const payload = typeof ctx.values.payload === "string" ? readJson(ctx.values.payload, "--payload") : null;
      handle = await client.signalWithStart(workflow, { ...options, id: options.id, input, signal: ctx.values.signal, payload });
    } else {
      if (ctx.values.payload !== undefined) throw new UsageError("--payload goes with --signal", "wf start <workflow> --id ID --signal NAME --payload '<json>'");
      handle = await client.start(workflow, input, options);
    }
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

function readJson(text: string, flag: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag} is not JSON: ${(err as Error).message}`, `Quote it for the shell: ${flag} '{"reason":"rush"}'.`);
  }
}
