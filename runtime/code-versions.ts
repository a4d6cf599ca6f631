/**
 * The code versions a runtime knows: the current one (new starts, activities) and older ones that
 * running workflows are pinned to, loaded on demand from the bundle store and kept while in use.
 */
import type { Registry } from "./definitions.js";
import type { DeploymentStore } from "./bundle/deployments.js";
import { loadBundle } from "./bundle/load.js";
import type { Logger } from "./logger.js";

export interface CodeVersions {
  current(): Registry;
  /** The registry of a version (loading it from NATS if needed); the current one when undefined. */
  registryFor(version: string | undefined): Promise<Registry>;
  /** Make a loaded registry current; listeners hear of it. */
  setCurrent(registry: Registry): void;
  /** Load a stored version without making it current. */
  load(version: string): Promise<Registry>;
  onChange(listener: (registry: Registry) => void): void;
}

const MAX_LOADED_VERSIONS = 32;

/** One fixed registry (programmatic API): every version maps to it. */
export function fixedCodeVersions(registry: Registry): CodeVersions {
  return {
    current: () => registry,
    registryFor: async () => registry,
    setCurrent() {},
    load: async () => registry,
    onChange() {},
  };
}

export function storedCodeVersions(options: { initial: Registry; store: DeploymentStore; logger: Logger; cacheDir?: string; checkActivityTypes?: boolean }): CodeVersions {
  const loaded = new Map<string, Promise<Registry>>([[options.initial.version, Promise.resolve(options.initial)]]);
  let current = options.initial;
  const listeners: Array<(registry: Registry) => void> = [];

  const load = (version: string): Promise<Registry> => {
    let registry = loaded.get(version);
    if (!registry) {
      registry = options.store.fetch(version).then((bundle) =>
        loadBundle(bundle, {
          logger: options.logger,
          ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
          ...(options.checkActivityTypes === undefined ? {} : { checkActivityTypes: options.checkActivityTypes }),
        }),
      );
      registry.catch(() => loaded.delete(version));
      loaded.set(version, registry);
      while (loaded.size > MAX_LOADED_VERSIONS) {
        const oldest = [...loaded.keys()].find((v) => v !== current.version && v !== version);
        if (!oldest) break;
        loaded.delete(oldest);
      }
    }
    return registry;
  };

  return {
    current: () => current,
    registryFor: (version) => (version === undefined || version === current.version ? Promise.resolve(current) : load(version)),
    load,
    setCurrent(registry) {
      loaded.set(registry.version, Promise.resolve(registry));
      if (registry.version === current.version) return;
      current = registry;
      for (const listener of listeners) listener(registry);
    },
    onChange(listener) {
      listeners.push(listener);
    },
  };
}
