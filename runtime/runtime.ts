/**
 * A runtime: one NATS connection, the topology, and the roles it hosts — the orchestrator (event
 * loop + timer service) and the worker pool. Any number of runtimes share one NATS; none leads.
 */
import type { Config, ConfigOverrides } from "./config.js";
import { loadConfig } from "./config.js";
import { createRegistry, type Registry } from "./definitions.js";
import { buildFunctions } from "./bundle/build.js";
import { loadBundle } from "./bundle/load.js";
import { hostRealm } from "./journal/execution.js";
import { createConsoleLogger, type Logger } from "./logger.js";
import { connectNats, type NatsConnection } from "./nats/connect.js";
import { ensureTopology, type Topology } from "./nats/topology.js";
import { createNames } from "./nats/names.js";
import { createOrchestrator, type Orchestrator } from "./orchestrator/loop.js";
import { createTimerService, type TimerService } from "./timers.js";
import { createWorkerPool, type WorkerPool } from "./worker/pool.js";
import { ActivityFailure } from "./workflow-api.js";

export type RuntimeRole = "all" | "orchestrator" | "worker";

export interface RuntimeOptions {
  /** A compiled config; or `configOverrides` on top of wf.config.json and the environment. */
  config?: Config;
  configOverrides?: ConfigOverrides;
  /** Which roles this process hosts (default both). */
  role?: RuntimeRole;
  /** Programmatic code: workflows (functions or DAG definitions) and activities by name. Without these, functions/ is bundled. */
  workflows?: Record<string, unknown>;
  activities?: Record<string, unknown>;
  logger?: Logger;
  /** Reuse a connection (tests, embedding); it is not closed by stop(). */
  connection?: NatsConnection;
  /** Test-only: called at named crash points. */
  crashPoint?: (name: string) => void;
}

export interface Runtime {
  start(): Promise<void>;
  /** Stop pulling, finish in-flight work within the grace period, close the connection. */
  stop(reason?: string): Promise<void>;
  readonly config: Config;
  readonly registry: Registry;
  readonly workerId: string;
}

export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const config = options.config ?? loadConfig(options.configOverrides ? { overrides: options.configOverrides } : {});
  const logger = options.logger ?? createConsoleLogger({ level: config.log.level, json: config.log.format === "json" });
  const role = options.role ?? "all";

  let registry: Registry;
  if (options.workflows || options.activities) {
    registry = createRegistry({
      version: "programmatic",
      workflows: options.workflows ?? {},
      activities: options.activities ?? {},
      realm: hostRealm(ActivityFailure),
      checkActivityTypes: role !== "orchestrator",
    });
  } else {
    const bundle = await buildFunctions(config.functionsDir);
    registry = await loadBundle(bundle, { logger, checkActivityTypes: role !== "orchestrator" });
  }

  let nc: NatsConnection | undefined;
  let topology: Topology | undefined;
  let orchestrator: Orchestrator | undefined;
  let timers: TimerService | undefined;
  let workers: WorkerPool | undefined;

  return {
    config,
    get registry() {
      return registry;
    },
    workerId: config.worker.id,
    async start() {
      nc = options.connection ?? (await connectNats(config.nats, { name: `jetflow ${role} ${config.worker.id}`, logger, waitForServer: true }));
      topology = await ensureTopology(nc, {
        names: createNames(config.namespace),
        replicas: config.replicas,
        storage: config.storage,
        orchestratorAckWaitMs: config.orchestrator.ackWaitMs,
      });
      if (role !== "worker") {
        orchestrator = createOrchestrator({ topology, config, logger, registryFor: () => registry, currentRegistry: () => registry });
        timers = createTimerService({ topology, logger });
        await orchestrator.start();
        await timers.start();
      }
      if (role !== "orchestrator") {
        workers = createWorkerPool({ topology, config, logger, registry: () => registry, ...(options.crashPoint ? { crashPoint: options.crashPoint } : {}) });
        await workers.start();
      }
      logger.info(
        `runtime ${config.worker.id} ready: role ${role}, ${registry.workflows.size} workflow(s) [${[...registry.workflows.keys()].join(", ")}], ` +
          `${workers ? `${config.worker.slots} slot(s) for [${workers.activityTypes.join(", ")}]` : "no worker slots"}, code ${registry.version}`,
        { component: "runtime" },
      );
    },
    async stop(reason = "shutdown") {
      await workers?.stop(reason);
      await Promise.all([orchestrator?.stop(), timers?.stop()]);
      if (nc && !options.connection) await nc.drain().catch(() => nc?.close());
    },
  };
}
