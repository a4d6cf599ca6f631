import { buildFunctions } from "../../runtime/bundle/build.js";
import { deployBundle, promoteStored, type DeployReport } from "../../runtime/bundle/deploy.js";
import { openDeploymentStore } from "../../runtime/bundle/deployments.js";
import { loadBundle } from "../../runtime/bundle/load.js";
import { createClient } from "../../runtime/client/client.js";
import { createConsoleLogger } from "../../runtime/logger.js";
import { hostname } from "node:os";
import { configFromFlags } from "../config.js";
import { color, print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/**
 * `wf deploy`: build functions/, replay every running workflow against the new code, and promote it
 * unless some would diverge (`--force` promotes anyway; they stay on their version). `--check`
 * only reports; `--version <hash>` promotes a stored version (rollback).
 */
export async function deployCommand(ctx: CommandContext): Promise<number> {
  const config = configFromFlags(ctx);
  const logger = createConsoleLogger({ level: "warn" });
  const client = await createClient({ config, logger });
  try {
    const store = await openDeploymentStore(client.topology, { replicas: config.replicas, storage: config.storage });
    const deployedBy = `wf deploy by ${process.env.USER ?? "unknown"}@${hostname()}`;
    const common = { topology: client.topology, store, deployedBy, logger, checkOnly: Boolean(ctx.values.check), force: Boolean(ctx.values.force) };
    let report: DeployReport;
    if (typeof ctx.values.version === "string") {
      const registry = await loadBundle(await store.fetch(ctx.values.version), { logger });
      report = await promoteStored({ ...common, version: ctx.values.version, registry });
    } else {
      const bundle = await buildFunctions(config.functionsDir);
      const registry = await loadBundle(bundle, { logger });
      report = await deployBundle({ ...common, bundle, registry });
    }
    if (ctx.values.json) printJson(report);
    else printDeployReport(report, Boolean(ctx.values.check));
    if (ctx.values.check) return report.diverging.length ? 3 : 0;
    return report.promoted ? 0 : 3;
  } finally {
    await client.close();
  }
}

function printDeployReport(report: DeployReport, check: boolean): void {
  const checked = report.compatible.length + report.diverging.length;
  print(`${report.version}${report.previous && report.previous !== report.version ? color.dim(` (current: ${report.previous})`) : ""}`);
  print(`replay check: ${checked} running workflow(s) on other versions; ${report.compatible.length} replay cleanly, ${report.diverging.length} diverge`);
  for (const d of report.diverging) print(color.yellow(`  ✖ ${d.workflowId} (${d.workflow}, on ${d.version}): ${d.message}`));
  if (check) return;
  if (report.unchanged) print(color.dim("already current: nothing to do"));
  else if (report.promoted) {
    print(color.green(`deployed ${report.version}`) + (report.diverging.length ? color.yellow(` (forced: ${report.diverging.length} diverging workflow(s) stay on their version)`) : ""));
    if (report.compatible.length) print(color.dim(`  ${report.compatible.length} running workflow(s) moved to the new code`));
  }
  const s = report.schedules;
  if (s && s.created.length + s.updated.length + s.removed.length > 0) {
    print(`schedules (functions/schedules.ts): ${[s.created.length && `created ${s.created.join(", ")}`, s.updated.length && `updated ${s.updated.join(", ")}`, s.removed.length && `removed ${s.removed.join(", ")}`].filter(Boolean).join("; ")}`);
  }
  if (!report.unchanged && !report.promoted) {
    print(color.red(`refused: ${report.diverging.length} running workflow(s) would diverge on the new code`));
    print("hint: keep the old behaviour for running workflows (branch on a new workflow name), or rerun with --force: the diverging ones then finish on their version.");
  }
}
