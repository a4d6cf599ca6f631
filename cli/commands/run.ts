import { createRuntime, type RuntimeRole } from "../../runtime/runtime.js";
import { createClient } from "../../runtime/client/client.js";
import { createConsoleLogger } from "../../runtime/logger.js";
import { createUiServer, type UiServer } from "../../runtime/ui/server.js";
import { configKeys } from "../../runtime/config.js";
import { redactUrl } from "../../runtime/nats/credentials.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

const ROLES: RuntimeRole[] = ["all", "orchestrator", "worker"];

export async function runCommand(ctx: CommandContext): Promise<number> {
  const role = (ctx.values.role ?? "all") as RuntimeRole;
  if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(", ")}, got "${String(ctx.values.role)}"`);
  const worker: Record<string, unknown> = {};
  if (typeof ctx.values.activities === "string") worker.activities = ctx.values.activities.split(",").map((s) => s.trim()).filter(Boolean);
  if (typeof ctx.values.slots === "string") {
    const slots = Number(ctx.values.slots);
    if (!Number.isInteger(slots) || slots < 1) throw new UsageError(`--slots must be a whole number ≥ 1, got "${ctx.values.slots}"`);
    worker.slots = slots;
  }
  const overrides: Record<string, unknown> = Object.keys(worker).length ? { worker } : {};
  if (typeof ctx.values["metrics-port"] === "string") {
    const port = Number(ctx.values["metrics-port"]);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--metrics-port must be a port number from 1 to 65535, got "${ctx.values["metrics-port"]}"`);
    overrides.metrics = { port };
  }
  const config = configFromFlags(ctx, overrides);
  if (ctx.values["print-config"]) {
    const nats = config.nats;
    const masked = { ...nats, servers: nats.servers.map(redactUrl), password: nats.password ? "***" : undefined, token: nats.token ? "***" : undefined, nkeySeed: nats.nkeySeed ? "***" : undefined };
    printJson({ keys: configKeys(), config: { ...config, nats: masked, ui: { ...config.ui, token: config.ui.token ? "***" : undefined }, codec: { ...config.codec, keys: Object.fromEntries(Object.keys(config.codec.keys).map((id) => [id, "***"])) } } });
    return 0;
  }
  if (ctx.values["from-nats"] && ctx.values["promote-local"]) throw new UsageError("--promote-local deploys functions/, --from-nats ignores it: use one of them");
  const runtime = await createRuntime({
    config,
    role,
    ...(ctx.values["from-nats"] ? { code: "nats" as const } : {}),
    ...(ctx.values["promote-local"] ? { promoteLocal: true } : {}),
  });
  let ui: UiServer | undefined;
  const stopped = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`second ${signal}: exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      process.stderr.write(`${signal}: stopping (finishing in-flight activities, up to ${config.worker.shutdownGraceMs}ms)\n`);
      Promise.all([ui?.stop(), runtime.stop(signal)]).then(
        () => resolve(0),
        (err) => {
          process.stderr.write(`error while stopping: ${(err as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await runtime.start();
  if (config.ui.port) {
    // Off unless ui.port is set: a production fleet serves the UI from the runtimes it chooses.
    // The client shares the runtime's connection (closed by runtime.stop()).
    const logger = createConsoleLogger({ level: config.log.level, json: config.log.format === "json" });
    try {
      const client = await createClient({ config, connection: runtime.topology.nc, logger });
      ui = createUiServer({ client, config, logger, registry: () => runtime.registry });
      await ui.start();
      process.stderr.write(`web UI on ${ui.url}${config.ui.readOnly ? " (read-only)" : ""}\n`);
    } catch (err) {
      await runtime.stop("the web UI could not start");
      throw err;
    }
  }
  return stopped;
}
