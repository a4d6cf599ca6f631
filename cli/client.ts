/**
 * The client of a one-shot CLI command (start, show, list, signal, cancel). Unlike a runtime, which
 * waits for NATS, a command fails within seconds when NATS cannot be reached: at once when the
 * connection is refused, and after CONNECT_TIMEOUT_MS when something accepts it but does not speak
 * NATS (nats.js would wait 20 s). The error names the URL and says what to do.
 */
import { createClient, type WorkflowClient } from "../runtime/client/client.js";
import type { Config } from "../runtime/config.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { connectNats } from "../runtime/nats/connect.js";

export const CONNECT_TIMEOUT_MS = 3_000;

export async function cliClient(config: Config): Promise<WorkflowClient> {
  const logger = createConsoleLogger({ level: config.log.level });
  const nc = await connectNats(config.nats, { name: "jetflow cli", namespace: config.namespace, logger, waitForServer: false, connectTimeoutMs: CONNECT_TIMEOUT_MS });
  try {
    const client = await createClient({ config, connection: nc, logger });
    // A client handed a connection leaves it open on close: this one is ours to drain.
    const closeClient = client.close.bind(client);
    client.close = async () => {
      await closeClient();
      await nc.drain().catch(() => nc.close());
    };
    return client;
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}
