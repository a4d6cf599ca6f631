/**
 * A runtime: one NATS connection, the topology, the code versions it runs, and the roles it hosts:
 * the orchestrator (event loop + timer service) and the worker pool. Any number of runtimes share
 * one NATS; none leads.
 *
 * Code comes from one of three places:
 * - programmatic: `workflows` / `activities` passed in (fixed; no deployments);
 * - local: functions/ is bundled and deployed to NATS at start (a runtime with code is a deploy);
 * - nats: the current deployment in NATS (`wf run --from-nats`, or no functions/ folder).
 * Local and nats runtimes follow the `current` deployment from then on, switching without restart.
 *
 * A local runtime never moves workflows back at boot: when its functions/ holds a version that was
 * deployed before and has since been replaced (a restart with an older copy), it runs the current
 * deployment instead and says so; `promoteLocal` (`wf run --promote-local`) deploys it anyway.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import type { Config, ConfigOverrides } from "./config.js";
import { loadConfig } from "./config.js";
import { createRegistry, type Registry } from "./definitions.js";
import { buildFunctions, type Bundle } from "./bundle/build.js";
import { deployBundle, type DeployReport } from "./bundle/deploy.js";
import { openDeploymentStore, type CurrentDeployment, type DeploymentRecord, type DeploymentStore } from "./bundle/deployments.js";
import { loadBundle } from "./bundle/load.js";
import { fixedCodeVersions, storedCodeVersions, type CodeVersions } from "./code-versions.js";
import { hostRealm } from "./journal/execution.js";
import { createConsoleLogger, type Logger } from "./logger.js";
import { connectNats, type NatsConnection } from "./nats/connect.js";
import { ensureTopology, type Topology } from "./nats/topology.js";
import { createNames } from "./nats/names.js";
import { createBlockedResumer, type BlockedResumer } from "./orchestrator/blocked.js";
import { createOrchestrator, type Orchestrator } from "./orchestrator/loop.js";
import { createTimerService, type Clock, type TimerService } from "./timers.js";
import { createWorkerPool, type WorkerPool } from "./worker/pool.js";
import { createLeases, type Leases } from "./worker/leases.js";
import { ActivityFailure } from "./workflow-api.js";
import { fleetLeases } from "./nats/fleet-lease.js";
import { createRetentionSweeper, type RetentionSweeper } from "./visibility/retention.js";
import { combineObservers, type EngineObserver } from "./observability/observer.js";
import { createMetrics, type Metrics, type MetricsSamples } from "./observability/metrics.js";
import { createMetricsServer, type MetricsServer } from "./observability/metrics-server.js";
import { createTracing, type Tracing } from "./observability/tracing.js";
import { createClient } from "./client/client.js";
import { createScheduler, type Scheduler } from "./schedules/scheduler.js";
import type { PayloadCodec } from "./payloads/codec.js";
import { payloadOptionsOf } from "./payloads/payloads.js";

export type RuntimeRole = "all" | "orchestrator" | "worker";
export type CodeSource = "local" | "nats";

export interface RuntimeOptions {
  /** A compiled config; or `configOverrides` on top of wf.config.json and the environment. */
  config?: Config;
  configOverrides?: ConfigOverrides;
  /** Which roles this process hosts (default both). */
  role?: RuntimeRole;
  /** Programmatic code: workflows (functions or DAG definitions) and activities by name. */
  workflows?: Record<string, unknown>;
  activities?: Record<string, unknown>;
  /** Where bundled code comes from (default: local when functions/ exists, else nats). */
  code?: CodeSource;
  /** A bundle built already (wf dev); implies code "local". */
  bundle?: Bundle;
  logger?: Logger;
  /** Reuse a connection (tests, embedding); it is not closed by stop(). */
  connection?: NatsConnection;
  /**
   * Deploy local functions/ at boot even when it is a version that was deployed before and has
   * since been replaced (default false: run the current deployment; see the top of this file).
   */
  promoteLocal?: boolean;
  /** Called with the replay-check report when this runtime deploys its local code. */
  onDeploy?: (report: DeployReport) => void;
  /**
   * Time of the orchestrator and the timers (default: the system clock): one clock for both
   * (jetflow/testing passes one it can skip ahead), or one each (tests of clock skew between them).
   */
  clock?: Clock | { orchestrator?: Clock; timers?: Clock };
  /**
   * Collect Prometheus metrics (docs/metrics.md) even without `metrics.port` (then nothing is
   * served: read them with `runtime.metrics.text()`). Default: only when `metrics.port` is set.
   */
  metrics?: boolean;
  /** Told of what the engine does, besides the runtime's own metrics and traces (observability/observer.ts). */
  observer?: EngineObserver;
  /**
   * A custom payload codec (a KMS, …) instead of the built-in AES-256-GCM of `codec.keys`
   * (payloads/codec.ts). Every runtime and client of the namespace needs the same one.
   */
  codec?: PayloadCodec;
  /**
   * Test-only: called at named crash points. At "after-state-write-before-dispatch" the
   * orchestrator waits for a promise the hook returns (a pause, to act inside that window).
   */
  crashPoint?: (name: string) => void | Promise<void>;
}

export interface Runtime {
  start(): Promise<void>;
  /** Stop pulling, finish in-flight work within the grace period, close the connection. */
  stop(reason?: string): Promise<void>;
  readonly config: Config;
  /** The current code. */
  readonly registry: Registry;
  readonly workerId: string;
  /** Available after start(). */
  readonly topology: Topology;
  /** Available after start() for bundled code. */
  readonly deployments: DeploymentStore | undefined;
  readonly versions: CodeVersions;
  /** This runtime's metrics, when collected (`metrics.port`, or the `metrics` option). */
  readonly metrics: Metrics | undefined;
  /** Where `GET /metrics` is served, once started with `metrics.port`. */
  readonly metricsUrl: string | undefined;
}

export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const config = options.config ?? loadConfig(options.configOverrides ? { overrides: options.configOverrides } : {});
  const logger = options.logger ?? createConsoleLogger({ level: config.log.level, json: config.log.format === "json" });
  const role = options.role ?? "all";
  const checkActivityTypes = role !== "orchestrator";
  const programmatic = Boolean(options.workflows || options.activities);
  const source: CodeSource = options.bundle ? "local" : (options.code ?? (existsSync(config.functionsDir) ? "local" : "nats"));

  // Build and load local code before connecting: a syntax error fails fast, with file and line.
  let localBundle: Bundle | undefined = options.bundle;
  let localRegistry: Registry | undefined;
  if (programmatic) {
    localRegistry = createRegistry({
      version: "programmatic",
      workflows: options.workflows ?? {},
      activities: options.activities ?? {},
      realm: hostRealm(ActivityFailure),
      checkActivityTypes,
    });
  } else if (source === "local") {
    localBundle ??= await buildFunctions(config.functionsDir);
    localRegistry = await loadBundle(localBundle, { logger, checkActivityTypes });
  }

  let nc: NatsConnection | undefined;
  let topology: Topology | undefined;
  let deployments: DeploymentStore | undefined;
  let versions: CodeVersions | undefined = localRegistry && programmatic ? fixedCodeVersions(localRegistry) : undefined;
  let orchestrator: Orchestrator | undefined;
  let timers: TimerService | undefined;
  let resumer: BlockedResumer | undefined;
  let retention: RetentionSweeper | undefined;
  let scheduler: Scheduler | undefined;
  let workers: WorkerPool | undefined;
  let watcher: { stop(): void } | undefined;
  let leases: Leases | undefined;
  let tracing: Tracing | undefined;
  let metricsServer: MetricsServer | undefined;
  const metrics: Metrics | undefined = (options.metrics ?? config.metrics.port > 0) ? createMetrics({ samples: metricsSamples() }) : undefined;

  /** The tasks of a type no worker has pulled yet (it has no consumer): every one on its subject waits. */
  async function queued(top: Topology, type: string): Promise<number | undefined> {
    const subject = top.names.taskSubject(type);
    const info = await top.jsm.streams.info(top.names.tasksStream, { subjects_filter: subject }).catch(() => undefined);
    return info ? (info.state.subjects?.[subject] ?? 0) : undefined;
  }

  /** What a scrape samples (metrics.ts): from consumer info, and the worker pool's slots. */
  function metricsSamples(): MetricsSamples {
    const pending = async (stream: string, consumer: string) => {
      if (!topology) return undefined;
      return (await topology.jsm.consumers.info(stream, consumer)).num_pending;
    };
    return {
      slots: () => (workers ? { busy: workers.attemptsRunning, free: Math.max(0, config.worker.slots - workers.attemptsRunning) } : { busy: 0, free: 0 }),
      eventsPending: async () => (role === "worker" || !topology ? undefined : pending(topology.names.eventsStream, topology.names.orchestratorConsumer)),
      timersParked: async () => {
        if (role === "worker" || !topology) return undefined;
        const info = await topology.jsm.consumers.info(topology.names.timersStream, topology.names.timersConsumer);
        return info.num_pending + info.num_ack_pending;
      },
      tasksPending: async () => {
        if (!topology || !versions) return {};
        const top = topology;
        // The activity types of the current code: as many requests as types, whatever ran before.
        const types = [...versions.current().activities.keys()];
        const counts = await Promise.all(types.map((type) => pending(top.names.tasksStream, top.names.activityConsumer(type)).catch(() => queued(top, type))));
        return Object.fromEntries(types.flatMap((type, i) => (counts[i] === undefined ? [] : [[type, counts[i]!]])));
      },
    };
  }

  async function resolveCode(top: Topology): Promise<CodeVersions> {
    if (versions) return versions;
    deployments = await openDeploymentStore(top, { replicas: config.replicas, storage: config.storage });
    let initial: Registry | undefined;
    // `wf dev` (a bundle handed in) deploys every save; `wf run` checks it is not going back.
    const superseded = localBundle && !options.bundle && !options.promoteLocal ? await supersededBy(deployments, localBundle.version) : undefined;
    if (superseded && localBundle) {
      logger.warn(
        `functions/ holds code ${localBundle.version}, deployed ${superseded.local.deployedAt} and since replaced by ${superseded.current.version} ` +
          `(deployed ${superseded.current.deployedAt} by ${superseded.current.deployedBy}): not deploying it over the newer code; running ${superseded.current.version}. ` +
          `To make the local code current, run \`wf deploy\` in this folder, or start with \`wf run --promote-local\`.`,
        { component: "runtime" },
      );
      initial = await loadBundle(await deployments.fetch(superseded.current.version), { logger, checkActivityTypes });
    } else if (localBundle && localRegistry) {
      // Runtimes starting together each deploy their code; a lost race re-checks against the winner.
      let report: DeployReport | undefined;
      for (let attempt = 1; !report; attempt++) {
        try {
          report = await deployBundle({ topology: top, store: deployments, bundle: localBundle, registry: localRegistry, deployedBy: config.worker.id, logger, force: true });
        } catch (err) {
          if ((err as { code?: string }).code !== "WF_DEPLOY_CONFLICT" || attempt >= 5) throw err;
        }
      }
      logDeploy(report);
      options.onDeploy?.(report);
      initial = localRegistry;
    } else {
      let current = await deployments.current();
      if (!current) {
        logger.warn(`no code deployed in namespace "${config.namespace}" yet; waiting for \`wf deploy\``, { component: "runtime" });
        while (!current) {
          await new Promise((r) => setTimeout(r, 1_000));
          current = await deployments.current();
        }
      }
      initial = await loadBundle(await deployments.fetch(current.deployment.version), { logger, checkActivityTypes });
    }
    if (!initial) throw new Error("unreachable: no code resolved");
    const stored = storedCodeVersions({ initial, store: deployments, logger, checkActivityTypes });
    return stored;
  }

  /** The code of the deployment current in NATS now, made current here if it is not yet (the watch may lag). */
  async function latestRegistry(code: CodeVersions): Promise<Registry> {
    const current = await deployments?.current();
    if (!current || current.deployment.version === code.current().version) return code.current();
    const registry = await code.load(current.deployment.version);
    code.setCurrent(registry);
    return registry;
  }

  function logDeploy(report: DeployReport): void {
    if (report.unchanged) return;
    logger.info(`deployed code ${report.version}` + (report.previous ? ` (was ${report.previous})` : "") + `; ${report.compatible.length} running workflow(s) moved to it`, { component: "runtime" });
    for (const d of report.diverging) {
      logger.warn(`workflow ${d.workflowId} (${d.workflow}) stays on code ${d.version}: ${d.message}`, { component: "runtime" });
    }
  }

  const runtime: Runtime = {
    config,
    get registry() {
      if (!versions) throw new Error("runtime not started");
      return versions.current();
    },
    workerId: config.worker.id,
    get topology() {
      if (!topology) throw new Error("runtime not started");
      return topology;
    },
    get deployments() {
      return deployments;
    },
    get versions() {
      if (!versions) throw new Error("runtime not started");
      return versions;
    },
    metrics,
    get metricsUrl() {
      return metricsServer?.url;
    },
    async start() {
      nc = options.connection ?? (await connectNats(config.nats, { name: `jetflow ${role} ${config.worker.id}`, namespace: config.namespace, logger, waitForServer: true }));
      topology = await ensureTopology(nc, {
        names: createNames(config.namespace),
        replicas: config.replicas,
        storage: config.storage,
        orchestratorAckWaitMs: config.orchestrator.ackWaitMs,
        orchestratorMaxAckPending: config.orchestrator.maxAckPending,
        payloads: payloadOptionsOf(config, options.codec),
      });
      const code = await resolveCode(topology);
      versions = code;
      if (deployments) {
        const store = deployments;
        watcher = await store.watch((deployment) => {
          if (deployment.version === code.current().version) return;
          code
            .load(deployment.version)
            .then((registry) => {
              code.setCurrent(registry);
              logger.info(`switched to code ${registry.version} (deployed by ${deployment.deployedBy})`, { component: "runtime" });
            })
            .catch((err) => logger.error(`cannot load deployed code ${deployment.version}: ${(err as Error).message}`, { component: "runtime" }));
        });
      }
      leases = createLeases(topology, config.worker.id);
      leases.start();
      tracing = createTracing({ nc: topology.nc, finishedSubject: topology.names.finishedSubject(">") });
      const observer = combineObservers([tracing, ...(metrics ? [metrics] : []), ...(options.observer ? [options.observer] : [])]);
      if (role !== "worker") {
        const crash = options.crashPoint ? { crashPoint: options.crashPoint } : {};
        // One clock for both (the testing kit's), or a clock each (tests of clock skew).
        const clock = options.clock;
        const [orchestratorClock, timersClock] = clock === undefined || "now" in clock ? [clock, clock] : [clock.orchestrator, clock.timers];
        orchestrator = createOrchestrator({
          topology,
          config,
          logger,
          registryFor: (v) => code.registryFor(v),
          currentRegistry: () => code.current(),
          ...(deployments ? { latestRegistry: () => latestRegistry(code) } : {}),
          leases,
          observer,
          ...crash,
          ...(orchestratorClock ? { now: () => orchestratorClock.now() } : {}),
        });
        timers = createTimerService({ topology, logger, ...crash, ...(timersClock ? { clock: timersClock } : {}) });
        await orchestrator.start();
        await timers.start();
        // This runtime's code may be the fix for workflows blocked on a divergence: retry them.
        resumer = createBlockedResumer({ topology, logger });
        await resumer.start();
        retention = createRetentionSweeper({
          topology,
          logger,
          holder: `${config.worker.id}/${randomUUID().slice(0, 8)}`,
          intervalMs: config.orchestrator.retentionSweepIntervalMs,
          leases: () => fleetLeases(topology!, config),
          ...(orchestratorClock ? { now: () => orchestratorClock.now() } : {}),
        });
        retention.start();
        // Schedules fire where the orchestrator runs: ticks start workflows through a client on this connection.
        const client = await createClient({ config, connection: nc, logger, ...(timersClock ? { clock: timersClock } : {}) });
        scheduler = createScheduler({
          topology,
          logger,
          client,
          holder: `${config.worker.id}/${randomUUID().slice(0, 8)}`,
          leases: () => fleetLeases(topology!, config),
          ...crash,
          ...(timersClock ? { clock: timersClock } : {}),
        });
        await scheduler.start();
      }
      if (role !== "orchestrator") {
        const local = orchestrator;
        workers = createWorkerPool({
          topology,
          config,
          logger,
          registry: () => code.current(),
          registryFor: (v) => code.registryFor(v),
          leases,
          observer,
          ...(local ? { applyCompletion: (completion, source) => local.applyLocalCompletion(completion, source) } : {}),
          ...(options.crashPoint ? { crashPoint: options.crashPoint } : {}),
        });
        code.onChange(() => workers?.refresh());
        await workers.start();
      }
      if (metrics && config.metrics.port > 0) {
        metricsServer = createMetricsServer({ metrics, port: config.metrics.port, host: config.metrics.host });
        await metricsServer.start();
        logger.info(`metrics on ${metricsServer.url}`, { component: "runtime" });
      }
      const registry = code.current();
      logger.info(
        `runtime ${config.worker.id} ready: role ${role}, ${registry.workflows.size} workflow(s) [${[...registry.workflows.keys()].join(", ")}], ` +
          `${workers ? `${config.worker.slots} slot(s) for [${workers.activityTypes.join(", ")}]` : "no worker slots"}, code ${registry.version}`,
        { component: "runtime" },
      );
    },
    async stop(reason = "shutdown") {
      watcher?.stop();
      await workers?.stop(reason);
      await resumer?.stop();
      await retention?.stop();
      await scheduler?.stop();
      await Promise.all([orchestrator?.stop(), timers?.stop(), metricsServer?.stop()]);
      tracing?.stop();
      // Last: until the workers stopped, this runtime may still run continued steps.
      leases?.stop();
      if (nc && !options.connection) await nc.drain().catch(() => nc?.close());
    },
  };
  return runtime;
}

/**
 * When `localVersion` was deployed here before and a later deployment replaced it: both records.
 * (A version never deployed here is new code, and deployed as before.)
 */
async function supersededBy(store: DeploymentStore, localVersion: string): Promise<{ local: DeploymentRecord; current: CurrentDeployment } | undefined> {
  const current = await store.current();
  if (!current || current.deployment.version === localVersion) return undefined;
  const local = await store.record(localVersion);
  if (!local || local.deployedAt > current.deployment.deployedAt) return undefined;
  return { local, current: current.deployment };
}
