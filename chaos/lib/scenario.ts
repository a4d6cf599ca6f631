/**
 * What every scenario gets: a temporary directory with its marker files, a namespace, and
 * constructors for NATS servers, runtime fleets, clients and the state observer that register
 * their own cleanup. `runScenario` bounds the scenario in time and cleans up in every case.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, loadConfig, type WorkflowClient } from "../../runtime/index.js";
import { startNatsCluster, startNatsServer, type TestNats, type TestNatsOptions } from "../../test/helpers/nats-server.js";
import { Fleet, type FleetOptions } from "./fleet.js";
import { StateObserver } from "./observer.js";
import { log, withTimeout } from "./util.js";
import type { Verdict } from "./verify.js";

export interface ScenarioOptions {
  /** Workflows of the scenario's main workload (CHAOS_N, else the scenario's default). */
  n?: number;
  /** Small figures for CI (CHAOS_QUICK=1). */
  quick: boolean;
}

export interface Faults {
  total: number;
  [kind: string]: number;
}

/** What a scenario reports; with its name and wall time, one JSON line. */
export interface ScenarioFigures {
  ok: boolean;
  skipped?: string;
  error?: string;
  started: number;
  completed: number;
  /** Ended cancelled as the scenario expects (it cancelled them); absent: none. */
  cancelled?: number;
  lost: number;
  failed: number;
  duplicateStepCompletions: { total: number; byStep: Record<string, number> };
  activityExecutions: number;
  faultsInjected: Faults;
  natsServer?: string;
  [figure: string]: unknown;
}

export type ScenarioResult = { scenario: string } & ScenarioFigures & { wallTimeMs: number };

export interface Scenario {
  id: number;
  name: string;
  /** Default workflow count; quick runs use `quickN`. */
  defaultN: number;
  quickN: number;
  /** Upper bound of the scenario's run (then it fails and is cleaned up). */
  timeoutMs: number;
  run(ctx: ScenarioContext, n: number, options: ScenarioOptions): Promise<ScenarioFigures>;
}

export class ScenarioContext {
  readonly dir: string;
  readonly markerDir: string;
  readonly namespace: string;
  private readonly cleanups: Array<{ what: string; fn: () => Promise<void> }> = [];
  readonly fleets: Fleet[] = [];

  constructor(readonly label: string) {
    this.dir = mkdtempSync(join(tmpdir(), `jetflow-chaos-${label}-`));
    this.markerDir = this.dir;
    this.namespace = `chaos_${label.replace(/[^A-Za-z0-9_]/g, "_")}_${randomBytes(3).toString("hex")}`.slice(0, 32);
    // CHAOS_KEEP=1 keeps the marker files for a post-mortem.
    this.defer("temp dir", async () => {
      if (process.env.CHAOS_KEEP === "1") this.log(`kept ${this.dir}`);
      else rmSync(this.dir, { recursive: true, force: true });
    });
  }

  log(message: string): void {
    log(this.label, message);
  }

  /** Cleanups run in reverse order of registration. */
  defer(what: string, fn: () => Promise<void>): void {
    this.cleanups.push({ what, fn });
  }

  async nats(options: TestNatsOptions = {}): Promise<TestNats> {
    const server = await startNatsServer(options);
    this.defer(`nats-server ${server.url}`, () => server.stop());
    return server;
  }

  async cluster(size: number): Promise<{ servers: TestNats[]; urls: string[] }> {
    const cluster = await startNatsCluster(size);
    this.defer(`nats cluster`, () => cluster.stop());
    return cluster;
  }

  fleet(base: Omit<FleetOptions, "namespace" | "markerDir"> & Partial<Pick<FleetOptions, "namespace" | "markerDir">>): Fleet {
    const fleet = new Fleet(this.label, { namespace: this.namespace, markerDir: this.markerDir, ...base });
    this.fleets.push(fleet);
    this.defer(`fleet`, () => fleet.close());
    return fleet;
  }

  /** A client with the same durations as the runtimes: its topology check must not change the consumers. */
  async client(urls: string[], options: { replicas?: number; orchestratorAckWait?: string | number | "default"; namespace?: string } = {}): Promise<WorkflowClient> {
    const config = loadConfig({
      env: {},
      cwd: this.dir,
      overrides: {
        nats: { servers: urls },
        namespace: options.namespace ?? this.namespace,
        ...(options.replicas !== undefined ? { replicas: options.replicas } : {}),
        ...(options.orchestratorAckWait === "default" ? {} : { orchestrator: { ackWait: options.orchestratorAckWait ?? "2s" } }),
        log: { level: "error" },
      },
    });
    const client = await createClient({ config, waitForServer: true });
    this.defer("client", () => client.close().catch(() => undefined));
    return client;
  }

  async observer(client: WorkflowClient): Promise<StateObserver> {
    const observer = await StateObserver.open(client.topology.states);
    this.defer("observer", () => observer.close());
    return observer;
  }

  async cleanup(): Promise<void> {
    for (const { what, fn } of this.cleanups.reverse()) {
      try {
        await withTimeout(fn(), 20_000, `cleanup of ${what}`);
      } catch (err) {
        this.log(`cleanup of ${what} failed: ${(err as Error).message}`);
      }
    }
    this.cleanups.length = 0;
  }
}

/** The figures every scenario reports, from its verdict. */
export function verdictFigures(v: Verdict): Pick<ScenarioResult, "started" | "completed" | "lost" | "failed" | "duplicateStepCompletions" | "activityExecutions"> & Record<string, unknown> {
  return {
    started: v.started,
    completed: v.completed,
    cancelled: v.cancelled,
    lost: v.lost,
    failed: v.failed,
    duplicateStepCompletions: v.duplicateStepCompletions,
    activityExecutions: v.activityExecutions,
    expectedExecutions: v.expectedExecutions,
    extraExecutions: v.extraExecutions,
    dependencyViolations: v.dependencyViolations,
    unexpectedOutcomes: v.unexpected,
    retries: v.retries,
    takeovers: v.takeovers,
  };
}

/** The usual pass condition: nothing lost, nothing unexpected, no step settled twice, no unexplained re-run. */
export function verdictOk(v: Verdict): boolean {
  return v.lost === 0 && v.unexpected === 0 && v.duplicateStepCompletions.total === 0 && v.extraExecutions.unexplained === 0 && v.dependencyViolations === 0 && v.violations.length === 0;
}

export function faults(counts: Record<string, number>): Faults {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return { total, ...counts };
}

/** Run one scenario: bounded in time, cleaned up whatever happens, one result object. */
export async function runScenario(scenario: Scenario, options: ScenarioOptions): Promise<ScenarioResult> {
  const label = `${scenario.id}-${scenario.name}`;
  const ctx = new ScenarioContext(label);
  const n = options.n ?? (options.quick ? scenario.quickN : scenario.defaultN);
  const t0 = Date.now();
  let result: ScenarioResult;
  try {
    ctx.log(`starting (N=${n})`);
    const running = scenario.run(ctx, n, options);
    running.catch(() => undefined); // after a timeout it fails on its own, against closed servers: not unhandled
    const body = await withTimeout(running, scenario.timeoutMs, `scenario ${label}`);
    result = { scenario: label, ...body, wallTimeMs: Date.now() - t0 };
  } catch (err) {
    ctx.log(`FAILED: ${(err as Error)?.stack ?? err}`);
    for (const fleet of ctx.fleets) if (fleet.all.length) process.stderr.write(fleet.dump() + "\n");
    result = {
      scenario: label,
      ok: false,
      error: (err as Error)?.message ?? String(err),
      started: 0,
      completed: 0,
      lost: 0,
      failed: 0,
      duplicateStepCompletions: { total: 0, byStep: {} },
      activityExecutions: 0,
      faultsInjected: faults({}),
      wallTimeMs: Date.now() - t0,
    };
  } finally {
    await ctx.cleanup();
  }
  if (!result.ok && !result.error) {
    for (const fleet of ctx.fleets) if (fleet.all.length) process.stderr.write(fleet.dump(3, 25) + "\n");
  }
  return result;
}
