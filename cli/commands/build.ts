import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildFunctions } from "../../runtime/bundle/build.js";
import { loadBundle } from "../../runtime/bundle/load.js";
import { silentLogger } from "../../runtime/logger.js";
import { configFromFlags } from "../config.js";
import { color, print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf build`: bundle functions/ into --out (default dist/): one file per bundle and a manifest. */
export async function buildCommand(ctx: CommandContext): Promise<number> {
  const config = configFromFlags(ctx);
  const out = resolve(typeof ctx.values.out === "string" ? ctx.values.out : "dist");
  const bundle = await buildFunctions(config.functionsDir);
  const registry = await loadBundle(bundle, { logger: silentLogger }); // validates DAGs and exports
  mkdirSync(out, { recursive: true });
  const manifest = {
    version: bundle.version,
    builtAt: bundle.builtAt,
    files: bundle.files,
    workflows: [...registry.workflows.values()].map((w) => ({ name: w.name, kind: w.kind, source: w.source })),
    activities: [...registry.activities.keys()],
    artifacts: { workflows: `workflows-${bundle.version}.cjs`, activities: `activities-${bundle.version}.mjs` },
  };
  writeFileSync(join(out, manifest.artifacts.workflows), bundle.workflowsCode);
  writeFileSync(join(out, manifest.artifacts.activities), bundle.activitiesCode);
  writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  if (ctx.values.json) printJson(manifest);
  else {
    print(`${color.green("built")} ${bundle.version} → ${out}`);
    print(`  workflows: ${manifest.workflows.map((w) => `${w.name} (${w.kind})`).join(", ") || "none"}`);
    print(`  activities: ${manifest.activities.join(", ") || "none"}`);
    print(color.dim(`  ${(bundle.workflowsCode.length / 1024).toFixed(1)} KiB workflows, ${(bundle.activitiesCode.length / 1024).toFixed(1)} KiB activities`));
  }
  return 0;
}
