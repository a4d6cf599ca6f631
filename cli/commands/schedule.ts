import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print, printJson, statusColor } from "../output.js";
import type { CommandContext } from "../wf.js";
import { describeWhen, type ScheduleDescription } from "../../runtime/schedules/client.js";
import { OVERLAP_POLICIES, type OverlapPolicy, type ScheduleOptions } from "../../runtime/schedules/spec.js";
import { parseDuration } from "../../runtime/duration.js";

export const SCHEDULE_USAGE =
  "wf schedule create <id> --workflow <type> [--input JSON] (--cron \"<expr>\" | --every 10m) [--timezone Europe/Paris] [--jitter 30s] " +
  `[--overlap ${OVERLAP_POLICIES.join("|")}] [--catchup 1h] [--start-at TIME] [--end-at TIME] [--paused] [--note TEXT]` +
  " | update <id> [same flags] | list | describe <id> | pause <id> [--note TEXT] | unpause <id> | trigger <id> | backfill <id> --from TIME --to TIME | delete <id>   [--json]";

const SUBCOMMANDS = ["create", "update", "list", "describe", "pause", "unpause", "trigger", "backfill", "delete"] as const;

/** `wf schedule <subcommand>`: client.schedules from the command line. */
export async function scheduleCommand(ctx: CommandContext): Promise<number> {
  const [sub, id, ...extra] = ctx.positionals;
  if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new UsageError(sub ? `unknown schedule subcommand "${sub}"` : "wf schedule needs a subcommand", `Subcommands: ${SUBCOMMANDS.join(", ")}. Usage: ${SCHEDULE_USAGE}`);
  }
  if (sub !== "list" && !id) throw new UsageError(`wf schedule ${sub} needs a schedule id`, `Usage: ${SCHEDULE_USAGE}`);
  if (extra.length) throw new UsageError(`unexpected argument(s): ${extra.join(" ")}`, 'Quote the cron expression and the JSON input: --cron "*/5 * * * *" --input \'{"a":1}\'.');
  const json = ctx.values.json === true;
  const client = await cliClient(configFromFlags(ctx));
  try {
    const schedules = client.schedules;
    switch (sub) {
      case "create": {
        const description = await schedules.create(id!, optionsFromFlags(ctx, true) as ScheduleOptions);
        if (json) printJson(description);
        else print(`schedule ${id} created: ${describeWhen(description.spec)}, next ${description.nextFireTimes[0] ?? "(none)"}`);
        return 0;
      }
      case "update": {
        const description = await schedules.update(id!, optionsFromFlags(ctx, false));
        if (json) printJson(description);
        else print(`schedule ${id} updated: ${describeWhen(description.spec)}, next ${description.nextFireTimes[0] ?? "(none)"}`);
        return 0;
      }
      case "list": {
        const list = await schedules.list();
        if (json) printJson(list);
        else if (list.length === 0) print(color.dim("no schedules"));
        else for (const s of list) print([s.id, s.workflow, s.when, s.paused ? color.yellow("paused") : color.dim(`next ${s.nextFireTime ?? "(ended)"}`), ...(s.lastRun ? [color.dim(`last ${s.lastRun.workflowId}`)] : [])].join("  "));
        return 0;
      }
      case "describe": {
        const description = await schedules.describe(id!);
        if (json) printJson(description);
        else print(renderSchedule(description));
        return 0;
      }
      case "pause":
        await schedules.pause(id!, typeof ctx.values.note === "string" ? ctx.values.note : undefined);
        print(`schedule ${id} paused`);
        return 0;
      case "unpause":
        await schedules.unpause(id!);
        print(`schedule ${id} unpaused`);
        return 0;
      case "trigger": {
        const workflowId = await schedules.trigger(id!);
        if (json) printJson({ workflowId });
        else print(`started ${workflowId}`);
        return 0;
      }
      case "backfill": {
        if (typeof ctx.values.from !== "string" || typeof ctx.values.to !== "string") throw new UsageError("wf schedule backfill needs --from and --to", "For example --from 2026-03-01T00:00:00Z --to 2026-03-02T00:00:00Z.");
        const ids = await schedules.backfill(id!, { from: ctx.values.from, to: ctx.values.to });
        if (json) printJson({ workflowIds: ids });
        else print(`started ${ids.length} workflow(s)` + (ids.length ? `: ${ids.join(", ")}` : ""));
        return 0;
      }
      case "delete": {
        const removed = await schedules.delete(id!);
        print(removed ? `schedule ${id} deleted` : `no schedule ${id}`);
        return removed ? 0 : 1;
      }
    }
    return 0;
  } finally {
    await client.close();
  }
}

function optionsFromFlags(ctx: CommandContext, creating: boolean): Partial<ScheduleOptions> {
  const v = ctx.values;
  const str = (name: string) => (typeof v[name] === "string" ? (v[name] as string) : undefined);
  const options: Partial<ScheduleOptions> = {};
  const workflow = str("workflow");
  if (workflow !== undefined) options.workflow = workflow;
  else if (creating) throw new UsageError("wf schedule create needs --workflow <type>", `Usage: ${SCHEDULE_USAGE}`);
  const input = str("input");
  if (input !== undefined) {
    try {
      options.input = JSON.parse(input);
    } catch (err) {
      throw new UsageError(`--input is not valid JSON: ${(err as Error).message}`, `Quote it for the shell, e.g. --input '{"region":"eu"}'.`);
    }
  }
  const cron = str("cron");
  const every = str("every");
  if (cron !== undefined) options.cron = cron;
  if (every !== undefined) options.every = parseDuration(every, "--every");
  if (creating && (cron === undefined) === (every === undefined)) throw new UsageError("wf schedule create needs exactly one of --cron and --every", 'For example --cron "0 9 * * 1-5" or --every 10m.');
  const timezone = str("timezone");
  if (timezone !== undefined) options.timezone = timezone;
  const jitter = str("jitter");
  if (jitter !== undefined) options.jitter = parseDuration(jitter, "--jitter");
  const overlap = str("overlap");
  if (overlap !== undefined) {
    if (!(OVERLAP_POLICIES as readonly string[]).includes(overlap)) throw new UsageError(`--overlap must be one of ${OVERLAP_POLICIES.join(", ")}, got "${overlap}"`);
    options.overlap = overlap as OverlapPolicy;
  }
  const catchup = str("catchup");
  if (catchup !== undefined) options.catchupWindow = parseDuration(catchup, "--catchup");
  const startAt = str("start-at");
  if (startAt !== undefined) options.startAt = startAt;
  const endAt = str("end-at");
  if (endAt !== undefined) options.endAt = endAt;
  if (v.paused === true) options.paused = true;
  const note = str("note");
  if (note !== undefined) options.note = note;
  return options;
}

function renderSchedule(d: ScheduleDescription): string {
  const s = d.spec;
  const lines = [`${color.bold(d.id)}  ${s.workflow}  ${describeWhen(s)}${s.paused ? "  " + color.yellow("paused") : ""}  ${color.dim(`(${d.source})`)}`];
  lines.push(color.dim(`overlap ${s.overlap}, catch-up window ${s.catchupWindowMs} ms, jitter ${s.jitterMs} ms` + (s.startAt ? `, from ${s.startAt}` : "") + (s.endAt ? `, until ${s.endAt}` : "")));
  if (s.note) lines.push(`note: ${s.note}`);
  lines.push(`input: ${JSON.stringify(s.input)}`);
  lines.push(color.bold("next fire times:"));
  if (d.nextFireTimes.length === 0) lines.push(color.dim(s.paused ? "  (paused)" : "  (none: the schedule has ended)"));
  for (const t of d.nextFireTimes) lines.push(`  ${t}`);
  lines.push(color.bold(`last runs (${d.recentRuns.length}):`));
  for (const r of d.recentRuns) lines.push(`  ${r.tick}  ${r.workflowId}  ${statusColor(r.status)}  ${color.dim(r.trigger)}`);
  if (d.state.buffered) lines.push(`buffered: ${d.state.buffered.tick} (after ${d.state.buffered.after} ends)`);
  if (d.state.skippedCount > 0) {
    lines.push(color.bold(`skipped ticks: ${d.state.skippedCount}`));
    for (const k of d.state.skipped) lines.push(`  ${k.tick}${k.until ? ` … ${k.until}` : ""}  ${k.count} tick(s)  ${color.dim(k.reason)}`);
  }
  return lines.join("\n");
}
