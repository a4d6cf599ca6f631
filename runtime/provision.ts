/**
 * Provisioning: every stream, consumer and bucket of a namespace, created once by a user with the
 * admin role (`wf provision`), so that runtimes and clients can run with permissions that create
 * nothing (nats/permissions.ts). Idempotent; a runtime with admin rights does the same on its own
 * as it goes (ensureTopology at start, the other buckets on first use).
 */
import type { Config } from "./config.js";
import { openDeploymentStore } from "./bundle/deployments.js";
import { fleetLeases } from "./nats/fleet-lease.js";
import { createNames } from "./nats/names.js";
import type { NatsConnection } from "./nats/connect.js";
import { ensureActivityConsumer, ensureTopology, type Topology } from "./nats/topology.js";
import { openReleases } from "./worker/release.js";
import { validateName } from "./ids.js";

export interface ProvisionReport {
  namespace: string;
  streams: string[];
  buckets: string[];
  consumers: string[];
}

/** Creates (or updates) what runtimes of `config` need; `activities`: their durable task consumers too (workers may create their own). */
export async function provisionNamespace(nc: NatsConnection, config: Config, activities: string[] = []): Promise<ProvisionReport> {
  const names = createNames(config.namespace);
  for (const type of activities) validateName("activity type", type);
  const topology: Topology = await ensureTopology(nc, {
    names,
    replicas: config.replicas,
    storage: config.storage,
    orchestratorAckWaitMs: config.orchestrator.ackWaitMs,
    orchestratorMaxAckPending: config.orchestrator.maxAckPending,
  });
  await Promise.all([
    openDeploymentStore(topology, { replicas: config.replicas, storage: config.storage }),
    openReleases(topology, config),
    fleetLeases(topology, config),
    ...activities.map((type) => ensureActivityConsumer(topology, type, config.worker.ackWaitMs)),
  ]);
  return {
    namespace: config.namespace,
    streams: [names.eventsStream, names.tasksStream, names.timersStream, names.deadLettersStream, names.parkedStream],
    buckets: [names.statesBucket, names.pendingSignalsBucket, names.releasesBucket, names.leasesBucket, names.deploymentsBucket, `${names.bundlesStore} (object store)`, `${names.payloadsStore} (object store)`],
    consumers: [names.orchestratorConsumer, names.timersConsumer, ...activities.map((type) => names.activityConsumer(type))],
  };
}
