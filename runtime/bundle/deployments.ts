/**
 * Deployments live in NATS, so a runtime on another machine needs no copy of functions/: bundles
 * in an Object Store (content-addressed: the object name is the version), and in a KV bucket the
 * `current` pointer plus one record per version. Old versions stay loadable for the workflows
 * pinned to them.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { StorageType } from "@nats-io/jetstream";
import { BundleError } from "../errors.js";
import type { Topology } from "../nats/topology.js";
import { isWrongLastSequence } from "../orchestrator/state-store.js";
import type { Bundle } from "./build.js";

export interface DeploymentRecord {
  version: string;
  builtAt: string;
  deployedAt: string;
  deployedBy: string;
  files: Bundle["files"];
  workflows: string[];
  activities: string[];
  bytes: number;
}

export interface CurrentDeployment {
  version: string;
  deployedAt: string;
  deployedBy: string;
  previous?: string;
}

export interface DeploymentStore {
  /** Upload a bundle (a no-op when that version is stored already). */
  upload(bundle: Bundle, manifest: { workflows: string[]; activities: string[] }, deployedBy: string): Promise<DeploymentRecord>;
  fetch(version: string): Promise<Bundle>;
  current(): Promise<{ deployment: CurrentDeployment; revision: number } | undefined>;
  /** Point `current` at a stored version (CAS against `expectRevision` when given). */
  promote(version: string, deployedBy: string, expectRevision?: number): Promise<CurrentDeployment>;
  list(): Promise<DeploymentRecord[]>;
  /** The record of one version, if it was ever uploaded here. */
  record(version: string): Promise<DeploymentRecord | undefined>;
  /** Calls back with every change of `current` (and once with its value now). */
  watch(onChange: (deployment: CurrentDeployment) => void): Promise<{ stop(): void }>;
}

const CURRENT = "current";
const recordKey = (version: string) => `version.${version}`;

export async function openDeploymentStore(topology: Topology, options: { replicas: number; storage: "file" | "memory" }): Promise<DeploymentStore> {
  const storage = options.storage === "memory" ? StorageType.Memory : StorageType.File;
  const [kv, objects]: [KV, ObjectStore] = await Promise.all([
    new Kvm(topology.js).create(topology.names.deploymentsBucket, { replicas: options.replicas, history: 10, storage }),
    new Objm(topology.js).create(topology.names.bundlesStore, { replicas: options.replicas, storage }),
  ]);

  return {
    async upload(bundle, manifest, deployedBy) {
      const existing = await kv.get(recordKey(bundle.version));
      if (existing && existing.operation === "PUT" && existing.length > 0 && (await objects.info(bundle.version))) return existing.json<DeploymentRecord>();
      const data = new TextEncoder().encode(JSON.stringify(bundle));
      await objects.putBlob({ name: bundle.version, description: `jetflow bundle ${bundle.version}` }, data);
      const record: DeploymentRecord = {
        version: bundle.version,
        builtAt: bundle.builtAt,
        deployedAt: new Date().toISOString(),
        deployedBy,
        files: bundle.files,
        workflows: manifest.workflows,
        activities: manifest.activities,
        bytes: data.length,
      };
      await kv.put(recordKey(bundle.version), JSON.stringify(record));
      return record;
    },
    async fetch(version) {
      const data = await objects.getBlob(version);
      if (!data) {
        throw new BundleError("WF_BUNDLE_NOT_FOUND", `code version ${version} is not in ${topology.names.bundlesStore}`, {
          hint: "`wf deployments` lists the stored versions; deploy the code again with `wf deploy`.",
        });
      }
      return JSON.parse(new TextDecoder().decode(data)) as Bundle;
    },
    async current() {
      const entry = await kv.get(CURRENT);
      if (!entry || entry.operation !== "PUT" || entry.length === 0) return undefined;
      return { deployment: entry.json<CurrentDeployment>(), revision: entry.revision };
    },
    async promote(version, deployedBy, expectRevision) {
      if (!(await objects.info(version))) {
        throw new BundleError("WF_BUNDLE_NOT_FOUND", `code version ${version} was never deployed here`, { hint: "`wf deployments` lists the versions you can roll back to." });
      }
      const now = await kv.get(CURRENT);
      const previous = now && now.operation === "PUT" && now.length > 0 ? now.json<CurrentDeployment>().version : undefined;
      const next: CurrentDeployment = { version, deployedAt: new Date().toISOString(), deployedBy, ...(previous && previous !== version ? { previous } : {}) };
      try {
        if (expectRevision === undefined) await kv.put(CURRENT, JSON.stringify(next));
        else if (expectRevision === 0) await kv.create(CURRENT, JSON.stringify(next));
        else await kv.update(CURRENT, JSON.stringify(next), expectRevision);
      } catch (err) {
        if (isWrongLastSequence(err)) {
          throw new BundleError("WF_DEPLOY_CONFLICT", `another deployment changed the current version while this one was being checked`, {
            hint: "Run the deploy again; it re-checks against what is current now.",
          });
        }
        throw err;
      }
      return next;
    },
    async record(version) {
      const entry = await kv.get(recordKey(version));
      return entry && entry.operation === "PUT" && entry.length > 0 ? entry.json<DeploymentRecord>() : undefined;
    },
    async list() {
      const records: DeploymentRecord[] = [];
      for await (const key of await kv.keys("version.>")) {
        const entry = await kv.get(key);
        if (entry && entry.operation === "PUT" && entry.length > 0) records.push(entry.json<DeploymentRecord>());
      }
      return records.sort((a, b) => b.deployedAt.localeCompare(a.deployedAt));
    },
    async watch(onChange) {
      const watcher = await kv.watch({ key: CURRENT });
      void (async () => {
        for await (const entry of watcher) {
          if (entry.operation === "PUT" && entry.length > 0) onChange(entry.json<CurrentDeployment>());
        }
      })();
      return { stop: () => watcher.stop() };
    },
  };
}
