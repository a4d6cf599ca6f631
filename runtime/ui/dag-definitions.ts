/**
 * The DAG definition a workflow ran on, for the web UI's graph. A workflow's state names its code
 * version (`bundle`) but not its steps' dependencies; those are in the definition, in that
 * version's bundle. The bundle is fetched from the deployments' Object Store and only its workflow
 * code is evaluated, in the deterministic sandbox (no activity code is imported): a UI process
 * needs no copy of functions/. Versions never change, so each is read once (a few kept).
 */
import type { DeploymentStore } from "../bundle/deployments.js";
import { loadSandbox } from "../bundle/sandbox.js";
import type { Registry } from "../definitions.js";
import type { Logger } from "../logger.js";
import { DAG_MARKER, type DagDefinition } from "../workflow-api.js";

export interface DagDefinitions {
  /** The definition of DAG workflow `workflow` in code version `version`; undefined when it cannot be found. */
  of(workflow: string, version: string): Promise<DagDefinition | undefined>;
}

export interface DagDefinitionsOptions {
  store: () => Promise<DeploymentStore | undefined>;
  /** The code a runtime in this process runs (wf dev, wf run): used when its version matches, with no fetch. */
  registry?: () => Registry | undefined;
  logger: Logger;
}

/** Versions whose definitions are kept: a UI looks at the few versions that run. */
const KEPT_VERSIONS = 16;

export function createDagDefinitions(options: DagDefinitionsOptions): DagDefinitions {
  const byVersion = new Map<string, Promise<Map<string, DagDefinition>>>();

  async function load(version: string): Promise<Map<string, DagDefinition>> {
    const out = new Map<string, DagDefinition>();
    const store = await options.store();
    if (!store) return out;
    const bundle = await store.fetch(version);
    const sandbox = loadSandbox(bundle.workflowsCode, `jetflow-ui-${version}.js`, options.logger);
    const modules = (sandbox.exports.__modules ?? {}) as Record<string, Record<string, unknown>>;
    for (const exports of Object.values(modules)) {
      for (const [name, value] of Object.entries(exports)) {
        if (!value || typeof value !== "object" || (value as Record<string, unknown>)[DAG_MARKER] !== true) continue;
        // Plain data out of the sandbox's realm.
        const definition = JSON.parse(JSON.stringify(value)) as DagDefinition;
        out.set(name, definition);
        out.set(definition.name, definition);
      }
    }
    return out;
  }

  return {
    async of(workflow, version) {
      const local = options.registry?.();
      if (local && local.version === version) {
        const dag = local.workflows.get(workflow)?.dag;
        if (dag) return dag;
      }
      let entry = byVersion.get(version);
      if (!entry) {
        entry = load(version);
        byVersion.set(version, entry);
        if (byVersion.size > KEPT_VERSIONS) byVersion.delete(byVersion.keys().next().value!);
      }
      try {
        return (await entry).get(workflow);
      } catch (err) {
        // Not stored (a programmatic registry, a removed version): try again next time.
        byVersion.delete(version);
        options.logger.debug(`no DAG definition of ${workflow} in version ${version}: ${(err as Error).message}`, { component: "ui" });
        return undefined;
      }
    },
  };
}
