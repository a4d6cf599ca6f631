import { openDeploymentStore } from "../../runtime/bundle/deployments.js";
import { createClient } from "../../runtime/client/client.js";
import { createConsoleLogger } from "../../runtime/logger.js";
import { configFromFlags } from "../config.js";
import { color, print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf deployments`: every stored code version, newest first, with the current one marked. */
export async function deploymentsCommand(ctx: CommandContext): Promise<number> {
  const config = configFromFlags(ctx);
  const client = await createClient({ config, logger: createConsoleLogger({ level: "warn" }) });
  try {
    const store = await openDeploymentStore(client.topology, { replicas: config.replicas, storage: config.storage });
    const [records, current] = await Promise.all([store.list(), store.current()]);
    if (ctx.values.json) {
      printJson({ current: current?.deployment ?? null, versions: records });
      return 0;
    }
    if (records.length === 0) {
      print(color.dim("nothing deployed yet: `wf deploy` (or `wf run`/`wf dev` with functions/) deploys"));
      return 0;
    }
    for (const r of records) {
      const mark = r.version === current?.deployment.version ? color.green("* ") : "  ";
      print(`${mark}${r.version}  ${color.dim(r.deployedAt)}  ${r.deployedBy}`);
      print(color.dim(`    workflows: ${r.workflows.join(", ") || "none"}; activities: ${r.activities.join(", ") || "none"}; ${(r.bytes / 1024).toFixed(1)} KiB`));
    }
    return 0;
  } finally {
    await client.close();
  }
}
