/** `wf ui`: the web UI (runtime/ui/server.ts) against the configured NATS, until Ctrl-C. */
import { createUiServer, DEFAULT_UI_PORT } from "../../runtime/ui/server.js";
import { createConsoleLogger } from "../../runtime/logger.js";
import { cliClient } from "../client.js";
import { configFromFlags } from "../config.js";
import { UsageError } from "../errors.js";
import { color, print } from "../output.js";
import type { CommandContext } from "../wf.js";

export async function uiCommand(ctx: CommandContext): Promise<number> {
  const config = configFromFlags(ctx);
  let port = config.ui.port || DEFAULT_UI_PORT;
  if (typeof ctx.values.port === "string") {
    port = Number(ctx.values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`--port must be a port number (0 for any free one), got "${ctx.values.port}"`);
  }
  const host = typeof ctx.values.host === "string" ? ctx.values.host : config.ui.host;
  const readOnly = ctx.values["read-only"] === true || config.ui.readOnly;
  const logger = createConsoleLogger({ level: config.log.level });
  const client = await cliClient(config);
  const stopRequested = new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  try {
    const server = createUiServer({ client, config, port, host, readOnly, logger });
    await server.start();
    print(`${color.bold("jetflow UI")}  ${server.url}${readOnly ? color.dim("  (read-only)") : ""}${config.ui.token ? color.dim("  (token required: ui.token)") : ""}${config.namespace ? `  namespace ${config.namespace}` : ""}`);
    print(color.dim("Ctrl-C to stop"));
    await stopRequested;
    await server.stop();
    return 0;
  } finally {
    await client.close();
  }
}
