/** `wf dead-letters list|show|replay|discard`: the messages the engine refused (runtime/dead-letters.ts). */
import { DEAD_LETTER_REASONS, discardDeadLetter, listDeadLetters, readDeadLetter, replayDeadLetter, type DeadLetterReason, type StoredDeadLetter } from "../../runtime/dead-letters.js";
import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

const SUBCOMMANDS = ["list", "show", "replay", "discard"] as const;
const USAGE = "wf dead-letters list [--reason R] [--limit N] [--cursor C] [--json] | show <seq> [--json] | replay <seq> | discard <seq>";

export async function deadLettersCommand(ctx: CommandContext): Promise<number> {
  const [sub = "list", seqText] = ctx.positionals;
  if (!SUBCOMMANDS.includes(sub as (typeof SUBCOMMANDS)[number])) throw new UsageError(`wf dead-letters has no subcommand "${sub}"`, `Usage: ${USAGE}`);
  let seq = 0;
  if (sub !== "list") {
    seq = Number(seqText);
    if (!seqText || !Number.isSafeInteger(seq) || seq < 1) throw new UsageError(`wf dead-letters ${sub} needs a dead letter's number (the first column of \`wf dead-letters list\`), got ${seqText === undefined ? "none" : `"${seqText}"`}`, `Usage: ${USAGE}`);
  }
  const reason = typeof ctx.values.reason === "string" ? ctx.values.reason : undefined;
  if (reason !== undefined && !DEAD_LETTER_REASONS.includes(reason as DeadLetterReason)) throw new UsageError(`--reason must be one of ${DEAD_LETTER_REASONS.join(", ")}, got "${reason}"`);
  const limit = ctx.values.limit === undefined ? 50 : Number(ctx.values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError(`--limit must be a whole number from 1 to 1000, got "${String(ctx.values.limit)}"`, "Page on with --cursor.");

  const client = await cliClient(configFromFlags(ctx));
  const topology = client.topology;
  try {
    switch (sub) {
      case "list": {
        const cursor = typeof ctx.values.cursor === "string" ? ctx.values.cursor : undefined;
        const page = await listDeadLetters(topology, { ...(reason ? { reason: reason as DeadLetterReason } : {}), limit, ...(cursor ? { cursor } : {}) });
        if (ctx.values.json) {
          printJson(page);
          return 0;
        }
        if (page.letters.length === 0) print(color.dim("no dead letters"));
        for (const l of page.letters) print([String(l.seq).padStart(6), color.dim(l.at), color.yellow(l.reason), l.workflowId ?? color.dim("-"), l.message].join("  "));
        if (page.cursor) print(color.dim(`next: --cursor ${page.cursor}`));
        return 0;
      }
      case "show": {
        const letter = await readDeadLetter(topology, seq);
        if (ctx.values.json) printJson(letter);
        else print(renderLetter(letter));
        return 0;
      }
      case "replay": {
        const done = await replayDeadLetter(topology, seq);
        print(`dead letter ${done.seq} published again to ${done.subject} and removed`);
        return 0;
      }
      default: {
        const discarded = await discardDeadLetter(topology, seq);
        print(discarded ? `dead letter ${seq} discarded` : color.dim(`dead letter ${seq} was already gone`));
        return 0;
      }
    }
  } finally {
    await client.close();
  }
}

function renderLetter(l: StoredDeadLetter): string {
  let body = l.body;
  try {
    body = JSON.stringify(JSON.parse(l.body), null, 2);
  } catch {
    /* not JSON: as it came */
  }
  return [
    `${color.bold(`dead letter ${l.seq}`)}  ${color.yellow(l.reason)}  ${color.dim(l.at)}`,
    `message: ${l.message}`,
    `subject: ${l.subject}`,
    ...(l.workflowId ? [`workflow: ${l.workflowId}`] : []),
    `body${l.bytes !== undefined ? ` (${l.bytes} bytes${l.truncated ? ", only the first 64 KiB kept: cannot be replayed" : ""})` : ""}:`,
    body,
  ].join("\n");
}
