import { provisionNamespace } from "../../runtime/provision.js";
import { connectNats } from "../../runtime/nats/connect.js";
import { createConsoleLogger } from "../../runtime/logger.js";
import { CONNECT_TIMEOUT_MS } from "../client.js";
import { configFromFlags } from "../config.js";
import { color, print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf provision`: create a namespace's streams, consumers and buckets once, with admin credentials (docs/security.md). */
export async function provisionCommand(ctx: CommandContext): Promise<number> {
  const config = configFromFlags(ctx);
  const activities = typeof ctx.values.activities === "string" ? ctx.values.activities.split(",").map((s) => s.trim()).filter(Boolean) : [];
  const logger = createConsoleLogger({ level: config.log.level });
  const nc = await connectNats(config.nats, { name: "jetflow provision", namespace: config.namespace, logger, waitForServer: false, connectTimeoutMs: CONNECT_TIMEOUT_MS });
  try {
    const report = await provisionNamespace(nc, config, activities);
    if (ctx.values.json) printJson(report);
    else {
      print(`provisioned namespace ${report.namespace ? `"${report.namespace}"` : "(default)"}`);
      print(color.dim(`  streams: ${report.streams.join(", ")}`));
      print(color.dim(`  buckets: ${report.buckets.join(", ")}`));
      print(color.dim(`  consumers: ${report.consumers.join(", ")}`));
    }
    return 0;
  } finally {
    await nc.drain().catch(() => nc.close());
  }
}
