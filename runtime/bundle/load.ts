/**
 * Turn a bundle into a Registry: workflows evaluated in the sandbox, activities imported by Node
 * from a file named by the bundle's version (so a new version is a new module, never a cached one).
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createRegistry, type Registry } from "../definitions.js";
import { BundleError, JetflowError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Bundle } from "./build.js";
import { instanceOf, loadSandbox, type SandboxModule } from "./sandbox.js";
import { declaredSchedules } from "../schedules/declared.js";

export interface LoadBundleOptions {
  /** Where the activity module is written before import (default .wf/build in the cwd). */
  cacheDir?: string;
  logger: Logger;
  checkActivityTypes?: boolean;
  /** Sandboxes the workflow code is evaluated in (activations overlap across them). */
  sandboxes?: number;
}

/** Each sandbox runs one activation at a time; a few let different workflows' activations overlap. */
const DEFAULT_SANDBOXES = 4;

type ModuleMap = Record<string, Record<string, unknown>>;

export async function loadBundle(bundle: Bundle, options: LoadBundleOptions): Promise<Registry> {
  const cacheDir = options.cacheDir ?? join(process.cwd(), ".wf", "build");
  let workflowModules: ModuleMap;
  let realm;
  const sandboxes: SandboxModule[] = [];
  try {
    for (let i = 0; i < Math.max(1, options.sandboxes ?? DEFAULT_SANDBOXES); i++) {
      sandboxes.push(loadSandbox(bundle.workflowsCode, `jetflow-workflows-${bundle.version}.js`, options.logger));
    }
    workflowModules = (sandboxes[0]!.exports.__modules ?? {}) as ModuleMap;
    realm = sandboxes[0]!.realm;
  } catch (err) {
    throw new BundleError("WF_WORKFLOW_LOAD_FAILED", `loading workflow code failed: ${(err as Error)?.message ?? String(err)}`, {
      hint: "Top-level code in functions/workflows runs in the deterministic sandbox at load; move I/O into activities.",
      cause: err,
    });
  }

  let activityModules: ModuleMap;
  let scheduleExports: Record<string, unknown> | undefined;
  try {
    mkdirSync(cacheDir, { recursive: true });
    const file = join(cacheDir, `activities-${bundle.version}.mjs`);
    if (!existsSync(file)) {
      // Write, then rename into place: runtimes sharing a working directory (several `wf run` on one
      // machine) must never import a file another one is still writing.
      const partial = `${file}.${process.pid}.${Date.now()}.tmp`;
      writeFileSync(partial, bundle.activitiesCode);
      renameSync(partial, file);
    }
    const module = (await import(pathToFileURL(file).href)) as { __modules: ModuleMap; __schedules?: Record<string, unknown> };
    activityModules = module.__modules;
    scheduleExports = module.__schedules;
  } catch (err) {
    throw new BundleError("WF_ACTIVITY_LOAD_FAILED", `loading activity code failed: ${(err as Error)?.message ?? String(err)}`, {
      hint: "An activity module threw while it was imported; check its top-level code and its dependencies (npm install).",
      cause: err,
    });
  }

  const workflows: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const [file, exports] of Object.entries(workflowModules)) {
    for (const [name, value] of Object.entries(exports)) {
      if (name === "default" || name.startsWith("__")) continue;
      workflows[`${file}#${name}`] = value;
      sources[`${file}#${name}`] = `functions/${file}`;
    }
  }
  const activities: Record<string, unknown> = {};
  const activitySource = new Map<string, string>();
  for (const [file, exports] of Object.entries(activityModules)) {
    for (const [name, value] of Object.entries(exports)) {
      if (typeof value !== "function" || name === "default") continue;
      if (activitySource.has(name)) {
        throw new BundleError("WF_DUPLICATE_ACTIVITY", `activity "${name}" is exported by both functions/${activitySource.get(name)} and functions/${file}`, {
          hint: "Activity types are export names and must be unique; rename one.",
        });
      }
      activitySource.set(name, file);
      activities[name] = value;
    }
  }
  try {
    const registry = createRegistry({
      version: bundle.version,
      workflows: stripFilePrefix(workflows),
      activities,
      realm,
      sources: stripFilePrefix(sources),
      ...(options.checkActivityTypes === undefined ? {} : { checkActivityTypes: options.checkActivityTypes }),
    });
    for (const definition of registry.workflows.values()) {
      if (definition.kind !== "code") continue;
      // Every execution runs its own instance of the modules (sandbox.ts, "Module state").
      definition.variants = sandboxes.map((sandbox) => ({
        fn: instanceOf(sandbox.exports, definition.name).fn,
        realm: sandbox.realm,
        instantiate: () => instanceOf(sandbox.instantiate(), definition.name),
      }));
    }
    // Declared schedules, checked now: a bad cron expression fails the deploy, not a tick.
    registry.schedules = declaredSchedules(scheduleExports, bundle.files.schedules);
    return registry;
  } catch (err) {
    if (err instanceof JetflowError) throw err;
    throw new BundleError("WF_REGISTRY_FAILED", (err as Error).message, { cause: err });
  }
}

/** Export names are workflow names; a name exported by two files is reported by createRegistry. */
function stripFilePrefix<T>(record: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  const seen = new Map<string, string>();
  for (const [key, value] of Object.entries(record)) {
    const [file, name] = [key.slice(0, key.lastIndexOf("#")), key.slice(key.lastIndexOf("#") + 1)];
    if (seen.has(name) && out[name] !== value) {
      throw new BundleError("WF_DUPLICATE_WORKFLOW", `workflow "${name}" is exported by both functions/${seen.get(name)} and functions/${file}`, {
        hint: "Workflow names are export names and must be unique; rename one.",
      });
    }
    seen.set(name, file);
    out[name] = value;
  }
  return out;
}
