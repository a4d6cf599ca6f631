/**
 * Bundles functions/ with esbuild into two artifacts: the workflow bundle (CommonJS, evaluated in
 * the deterministic sandbox; Node's I/O modules refused at build time with file and line) and the
 * activity bundle (an ES module run by Node with full I/O). Their content hash is the version
 * every workflow records.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { BundleError } from "../errors.js";

export interface Bundle {
  /** Content hash of both artifacts (16 hex digits). */
  version: string;
  workflowsCode: string;
  activitiesCode: string;
  /** Files that went in, relative to the functions folder. */
  /** `schedules`: functions/schedules.ts (or .js), when there is one (schedules/declared.ts). */
  files: { workflows: string[]; activities: string[]; schedules?: string };
  builtAt: string;
}

const SOURCE_FILE = /\.(ts|mts|js|mjs)$/;
const SKIPPED_FILE = /(\.d\.ts|\.test\.[mc]?[jt]s|\.spec\.[mc]?[jt]s)$/;

/** The file functions/ import as `jetflow/workflow`: bundled in, so the sandbox needs no loader. */
function workflowApiPath(): string {
  for (const candidate of ["../workflow-api.js", "../workflow-api.ts"]) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new BundleError("WF_BUNDLE_INTERNAL", "cannot find jetflow's workflow-api module next to the bundler", { hint: "Reinstall jetflow." });
}

export async function buildFunctions(functionsDir: string): Promise<Bundle> {
  const dir = resolve(functionsDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new BundleError("WF_FUNCTIONS_NOT_FOUND", `functions folder ${dir} does not exist`, {
      hint: "Create functions/activities/*.ts and functions/workflows/*.ts (`wf init` scaffolds them), or set functions.dir in wf.config.json.",
    });
  }
  const workflows = listSources(join(dir, "workflows"), dir);
  const activities = listSources(join(dir, "activities"), dir);
  if (workflows.length === 0 && activities.length === 0) {
    throw new BundleError("WF_FUNCTIONS_EMPTY", `${dir} has no workflows/ or activities/ source files`, {
      hint: "Add an activity as an exported async function in functions/activities/<name>.ts.",
    });
  }
  const apiPath = workflowApiPath();
  // Schedules declared in code are plain data; they ride in the activity bundle (run by Node, like
  // activities) as its `__schedules` export, so they are part of the version and deployed with it.
  const schedules = ["schedules.ts", "schedules.mts", "schedules.js", "schedules.mjs"].find((f) => existsSync(join(dir, f)));
  const [workflowsCode, activitiesCode] = await Promise.all([
    bundle(dir, workflows, apiPath, "workflows"),
    bundle(dir, activities, apiPath, "activities", schedules),
  ]);
  const version = createHash("sha256").update(workflowsCode).update("\0").update(activitiesCode).digest("hex").slice(0, 16);
  return { version, workflowsCode, activitiesCode, files: { workflows, activities, ...(schedules ? { schedules } : {}) }, builtAt: new Date().toISOString() };
}

function listSources(folder: string, root: string): string[] {
  if (!existsSync(folder)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (SOURCE_FILE.test(entry.name) && !SKIPPED_FILE.test(entry.name)) out.push(relative(root, path).split(sep).join("/"));
    }
  };
  walk(folder);
  return out.sort();
}

async function bundle(dir: string, files: string[], apiPath: string, kind: "workflows" | "activities", schedules?: string): Promise<string> {
  const lines = files.map((f, i) => `import * as m${i} from ${JSON.stringify("./" + f)};`);
  lines.push(`export const __modules = { ${files.map((f, i) => `${JSON.stringify(f)}: m${i}`).join(", ")} };`);
  if (schedules) lines.push(`export * as __schedules from ${JSON.stringify("./" + schedules)};`);
  if (kind === "workflows") {
    lines.push(`export { ActivityFailure as __ActivityFailure, ChildWorkflowFailure as __ChildWorkflowFailure } from "jetflow/workflow";`);
    // The sandbox's own error classes for cancellation scopes and sagas (journal/cancellation.ts).
    lines.push(`export { CancelledError as __CancelledError, ScopeTimeoutError as __ScopeTimeoutError, SagaCompensationError as __SagaCompensationError } from "jetflow/workflow";`);
  }

  const plugins: esbuild.Plugin[] = [
    {
      name: "jetflow-api",
      setup(build) {
        build.onResolve({ filter: /^jetflow\/workflow$/ }, () => ({ path: apiPath }));
        if (kind === "workflows") {
          build.onResolve({ filter: /^jetflow$/ }, () => ({
            errors: [{ text: `workflow code imports "jetflow"; import from "jetflow/workflow" instead (the runtime API needs Node and cannot run in the workflow sandbox)` }],
          }));
        }
      },
    },
  ];
  if (kind === "workflows") {
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    plugins.push({
      name: "jetflow-determinism",
      setup(build) {
        build.onResolve({ filter: /.*/ }, (args) => {
          if (!builtins.has(args.path) && !args.path.startsWith("node:")) return undefined;
          return {
            errors: [
              {
                text: `workflow code cannot import "${args.path}": workflows are replayed after crashes and must be deterministic, so Node's I/O modules are not available to them`,
                notes: [{ text: "Move this code into an activity (functions/activities/) and call it with ctx.activity() or ctx.activities." }],
              },
            ],
          };
        });
      },
    });
  }

  try {
    const result = await esbuild.build({
      stdin: { contents: lines.join("\n"), resolveDir: dir, sourcefile: `jetflow-${kind}-entry.ts`, loader: "ts" },
      bundle: true,
      write: false,
      format: kind === "workflows" ? "cjs" : "esm",
      platform: kind === "workflows" ? "neutral" : "node",
      mainFields: kind === "workflows" ? ["module", "main"] : ["module", "main"],
      target: "node20",
      sourcemap: "inline",
      sourceRoot: dir,
      logLevel: "silent",
      ...(kind === "activities" ? { packages: "external" as const } : {}),
      plugins,
    });
    return result.outputFiles[0]!.text;
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    if (!Array.isArray(failure.errors)) throw err;
    const messages = failure.errors.map((e) => {
      // esbuild reports files relative to the working directory: what a user can click on.
      const at = e.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}: ` : "";
      const notes = e.notes.map((n) => `\n    ${n.text}`).join("");
      return `${at}${e.text}${notes}`;
    });
    throw new BundleError("WF_BUNDLE_FAILED", `cannot bundle ${kind} in ${dir}:\n  ${messages.join("\n  ")}`, {
      hint: "Fix the error at the file and line shown; the previous code keeps running in `wf dev`.",
      cause: err,
    });
  }
}
