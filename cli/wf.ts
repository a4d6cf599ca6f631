#!/usr/bin/env node
/** The `wf` command: argument wiring only; the work happens in runtime/. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { reportError, UsageError } from "./errors.js";
import { runCommand } from "./commands/run.js";
import { startCommand } from "./commands/start.js";
import { showCommand } from "./commands/show.js";
import { listCommand } from "./commands/list.js";
import { cancelCommand, terminateCommand } from "./commands/cancel.js";
import { deleteCommand } from "./commands/delete.js";
import { devCommand } from "./commands/dev.js";
import { buildCommand } from "./commands/build.js";
import { deployCommand } from "./commands/deploy.js";
import { deploymentsCommand } from "./commands/deployments.js";
import { initCommand } from "./commands/init.js";
import { signalCommand } from "./commands/signal.js";
import { queryCommand } from "./commands/query.js";
import { updateCommand } from "./commands/update.js";
import { uiCommand } from "./commands/ui.js";
import { deadLettersCommand } from "./commands/dead-letters.js";
import { permissionsCommand } from "./commands/permissions.js";
import { provisionCommand } from "./commands/provision.js";
import { retryCommand } from "./commands/retry.js";
import { statsCommand } from "./commands/stats.js";
import { scheduleCommand, SCHEDULE_USAGE } from "./commands/schedule.js";

process.setSourceMapsEnabled(true);

export interface CommandContext {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
}

interface CommandSpec {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  run(ctx: CommandContext): Promise<number>;
}

const common: NonNullable<ParseArgsConfig["options"]> = {
  config: { type: "string", short: "c" },
  nats: { type: "string" },
  namespace: { type: "string" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** Flags of the bulk form of cancel, terminate and retry (commands/bulk.ts). */
const bulkOptions: NonNullable<ParseArgsConfig["options"]> = {
  where: { type: "string", multiple: true },
  "dry-run": { type: "boolean" },
  yes: { type: "boolean", short: "y" },
};

const commands: Record<string, CommandSpec> = {
  init: {
    summary: "scaffold a new project (functions/, wf.config.json, package.json)",
    usage: "wf init [dir] [--force] [--jetflow <npm spec>]",
    options: { force: { type: "boolean" }, jetflow: { type: "string" } },
    run: initCommand,
  },
  dev: {
    summary: "develop: NATS (found or started), hot reload of functions/, live log",
    usage: "wf dev [--no-ui]",
    options: { "no-ui": { type: "boolean" } },
    run: devCommand,
  },
  run: {
    summary: "run the runtime: orchestrator + worker slots (production)",
    usage: "wf run [--role all|orchestrator|worker] [--activities a,b] [--slots N] [--metrics-port 9464] [--from-nats] [--promote-local] [--print-config]",
    options: {
      "metrics-port": { type: "string" },
      role: { type: "string" },
      activities: { type: "string" },
      slots: { type: "string" },
      "from-nats": { type: "boolean" },
      "promote-local": { type: "boolean" },
      "print-config": { type: "boolean" },
    },
    run: runCommand,
  },
  permissions: {
    summary: "print the NATS permissions of a role (client, worker, orchestrator, runtime, admin)",
    usage: "wf permissions --role client|worker|orchestrator|runtime|admin [--namespace NS] [--activities a,b] [--format conf|json]",
    options: { role: { type: "string" }, activities: { type: "string" }, format: { type: "string" } },
    run: permissionsCommand,
  },
  provision: {
    summary: "create a namespace's streams, consumers and buckets (once, with admin credentials)",
    usage: "wf provision [--activities a,b] [--json]",
    options: { activities: { type: "string" }, json: { type: "boolean" } },
    run: provisionCommand,
  },
  build: {
    summary: "bundle functions/ into dist/ (bundles + manifest.json)",
    usage: "wf build [--out dir] [--json]",
    options: { out: { type: "string" }, json: { type: "boolean" } },
    run: buildCommand,
  },
  deploy: {
    summary: "publish functions/ to NATS after a replay check of running workflows",
    usage: "wf deploy [--check] [--force] [--version <hash>] [--json]",
    options: { check: { type: "boolean" }, force: { type: "boolean" }, version: { type: "string" }, json: { type: "boolean" } },
    run: deployCommand,
  },
  deployments: {
    summary: "list deployed code versions (current marked *)",
    usage: "wf deployments [--json]",
    options: { json: { type: "boolean" } },
    run: deploymentsCommand,
  },
  start: {
    summary: "start a workflow (idempotent by --id)",
    usage:
      "wf start <workflow> [--input '<json>' | --input @file.json] [--id ID] [--attr name=value ...] [--signal NAME [--payload '<json>']] [--execution-timeout 1h] [--memo '<json>'] [--id-reuse-policy reject-duplicate|allow-if-failed|allow-duplicate] [--wait] [--timeout 5m] [--json]",
    options: {
      input: { type: "string", short: "i" },
      "id-reuse-policy": { type: "string" },
      id: { type: "string" },
      attr: { type: "string", multiple: true },
      signal: { type: "string" },
      payload: { type: "string", short: "p" },
      "execution-timeout": { type: "string" },
      memo: { type: "string" },
      wait: { type: "boolean", short: "w" },
      timeout: { type: "string" },
      json: { type: "boolean" },
    },
    run: startCommand,
  },
  show: {
    summary: "show a workflow's status and its steps",
    usage: "wf show <id> [--run N] [--runs N] [--json | --history]",
    options: { json: { type: "boolean" }, history: { type: "boolean" }, run: { type: "string" }, runs: { type: "string" } },
    run: showCommand,
  },
  list: {
    summary: "list workflows: running first (newest first), then finished (latest ended first)",
    usage:
      "wf list [--status S[,S]] [--workflow NAME] [--since TIME|2h] [--until TIME|2h] [--where name=value ...] [--limit N] [--cursor C | --all] [--count] [--json]",
    options: {
      status: { type: "string", multiple: true },
      workflow: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      where: { type: "string", multiple: true },
      limit: { type: "string" },
      cursor: { type: "string" },
      all: { type: "boolean" },
      count: { type: "boolean" },
      json: { type: "boolean" },
    },
    run: listCommand,
  },
  delete: {
    summary: "remove a finished workflow now, with its history (retention does it after `retention`)",
    usage: "wf delete <id>",
    options: {},
    run: deleteCommand,
  },
  signal: {
    summary: "send a signal to a workflow (ctx.waitForSignal receives it)",
    usage: "wf signal <id> <name> [--payload '<json>']",
    options: { payload: { type: "string", short: "p" } },
    run: signalCommand,
  },
  query: {
    summary: "ask a workflow's query handler (ctx.handleQuery) and print what it returns",
    usage: "wf query <id> <name> [--args '<json>'] [--timeout 10s]",
    options: { args: { type: "string", short: "a" }, timeout: { type: "string" } },
    run: queryCommand,
  },
  update: {
    summary: "send an update (ctx.handleUpdate) and print what its handler returns",
    usage: "wf update <id> <name> [--payload '<json>'] [--update-id ID] [--timeout 1m]",
    options: { payload: { type: "string", short: "p" }, "update-id": { type: "string" }, timeout: { type: "string" } },
    run: updateCommand,
  },
  ui: {
    summary: "serve the web UI: workflows, dead letters, deployments (token: ui.token)",
    usage: "wf ui [--port 8233] [--host 127.0.0.1] [--read-only]",
    options: { port: { type: "string" }, host: { type: "string" }, "read-only": { type: "boolean" } },
    run: uiCommand,
  },
  "dead-letters": {
    summary: "list, show, replay or discard the messages the engine refused",
    usage: "wf dead-letters list [--reason R] [--limit N] [--cursor C] [--json] | show <seq> [--json] | replay <seq> | discard <seq>",
    options: { reason: { type: "string" }, limit: { type: "string" }, cursor: { type: "string" }, json: { type: "boolean" } },
    run: deadLettersCommand,
  },
  schedule: {
    summary: "schedules: start a workflow on a cron expression or an interval (create, list, describe, pause, trigger, backfill, …)",
    usage: SCHEDULE_USAGE,
    options: {
      workflow: { type: "string" },
      input: { type: "string", short: "i" },
      cron: { type: "string" },
      every: { type: "string" },
      timezone: { type: "string" },
      jitter: { type: "string" },
      overlap: { type: "string" },
      catchup: { type: "string" },
      "start-at": { type: "string" },
      "end-at": { type: "string" },
      paused: { type: "boolean" },
      note: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      json: { type: "boolean" },
    },
    run: scheduleCommand,
  },
  cancel: {
    summary: "cancel a running workflow, or every one matching --where filters",
    usage: "wf cancel <id> [--reason TEXT] | wf cancel --where status=running --where workflow=NAME [--where attr=value] [--dry-run] [--yes] [--reason TEXT]",
    options: { reason: { type: "string" }, ...bulkOptions },
    run: cancelCommand,
  },
  terminate: {
    summary: "terminate a running workflow: a hard stop, no workflow code runs (status terminated); or every match of --where",
    usage: "wf terminate <id> [--reason TEXT] | wf terminate --where status=running --where workflow=NAME [--dry-run] [--yes]",
    options: { reason: { type: "string" }, ...bulkOptions },
    run: terminateCommand,
  },
  retry: {
    summary: "re-run a failed, cancelled, terminated or timed-out workflow from its failed step (completed steps reused); or every match of --where",
    usage: "wf retry <id> [--wait] [--json] | wf retry --where status=failed --where workflow=NAME [--dry-run] [--yes]",
    options: { wait: { type: "boolean", short: "w" }, json: { type: "boolean" }, ...bulkOptions },
    run: retryCommand,
  },
  stats: {
    summary: "per workflow type: running, completed and failed in the last hour; per activity type: tasks queued and running",
    usage: "wf stats [--workflow a,b] [--since 1h] [--json]",
    options: { workflow: { type: "string" }, since: { type: "string" }, json: { type: "boolean" } },
    run: statsCommand,
  },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    "wf — durable workflows on NATS JetStream",
    "",
    "Commands:",
    ...Object.entries(commands).map(([name, spec]) => `  ${name.padEnd(width)}  ${spec.summary}`),
    "",
    "Common flags: --config FILE (default wf.config.json or WF_CONFIG), --nats URL (NATS_URL), --namespace NS, --debug",
    "Run `wf <command> --help` for a command's flags.",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help() + "\n");
    return name ? 0 : 64;
  }
  if (name === "--version" || name === "-v") {
    const { createRequire } = await import("node:module");
    process.stdout.write(createRequire(import.meta.url)("../../package.json").version + "\n");
    return 0;
  }
  const spec = commands[name];
  const debug = rest.includes("--debug");
  try {
    if (!spec) throw new UsageError(`unknown command "${name}"`, `Commands: ${Object.keys(commands).join(", ")}. Run \`wf --help\`.`);
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...common, ...spec.options }, allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError(`${(err as Error).message.replace(/\. To specify.*$/s, "")}`, `Usage: ${spec.usage}`);
    }
    if (parsed.values.help) {
      process.stdout.write(`${spec.summary}\n\nUsage: ${spec.usage}\n`);
      return 0;
    }
    return await spec.run({ positionals: parsed.positionals, values: parsed.values as CommandContext["values"] });
  } catch (err) {
    return reportError(err, debug);
  }
}

/**
 * Exit once the command is done, even if a socket lingers: nats.js leaves the socket of a
 * connection attempt that timed out open, which would keep a failed `wf list` alive forever. The
 * timer is unref'd: a process with nothing left exits at once, as before, output flushed.
 */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}

main(process.argv.slice(2)).then(exitSoon, (err) => exitSoon(reportError(err, true)));
