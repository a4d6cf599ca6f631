/**
 * `wf dev`: NATS (found or started), functions/ bundled and run in-process, hot reload on save
 * (a local deploy with the replay check), and a live log of every workflow's steps.
 */
import { join } from "node:path";
import { buildFunctions, type Bundle } from "../../runtime/bundle/build.js";
import { deployBundle, type DeployReport } from "../../runtime/bundle/deploy.js";
import { loadBundle } from "../../runtime/bundle/load.js";
import { watchFunctions } from "../../runtime/bundle/watch.js";
import { formatDuration } from "../../runtime/duration.js";
import { JetflowError } from "../../runtime/errors.js";
import { createConsoleLogger } from "../../runtime/logger.js";
import { ensureDevNats } from "../../runtime/nats/local-server.js";
import { watchProgress, type ProgressEvent } from "../../runtime/observe.js";
import { createRuntime, type Runtime } from "../../runtime/runtime.js";
import { createClient, type WorkflowClient } from "../../runtime/client/client.js";
import { createUiServer, type UiServer } from "../../runtime/ui/server.js";
import { configFromFlags } from "../config.js";
import { color, print, upserted } from "../output.js";
import type { CommandContext } from "../wf.js";

export async function devCommand(ctx: CommandContext): Promise<number> {
  // Listen for Ctrl-C from the start: one during startup must still stop the NATS server started here.
  const stopRequested = new Promise<number>((resolve) => {
    const stop = () => resolve(0);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  const initial = configFromFlags(ctx);
  const logger = createConsoleLogger({ level: initial.log.level === "info" ? "warn" : initial.log.level });
  const nats = await ensureDevNats(initial.nats.servers, { storeDir: join(process.cwd(), ".wf", "nats"), logger: createConsoleLogger({ level: "info" }) });
  const config = nats.started ? configFromFlags(ctx, { nats: { servers: [nats.url] } }) : initial;
  print(`${color.bold("wf dev")}  NATS ${nats.url}${nats.started ? color.dim(` (started by wf dev, pid ${nats.pid}, store .wf/nats; it stops when wf dev ends, however it ends)`) : ""}${config.namespace ? `  namespace ${config.namespace}` : ""}`);
  let runtime: Runtime | undefined;
  // The web UI, like Temporal's dev server: on ui.port or 8233, the next free port when taken (two
  // wf dev side by side). Its own client, so it is up before the code loads (and while it is broken).
  let ui: { server: UiServer; client: WorkflowClient } | undefined;
  if (!ctx.values["no-ui"]) {
    const uiClient = await createClient({ config, logger });
    try {
      const server = createUiServer({ client: uiClient, config, portFallback: true, logger, registry: () => runtime?.registry });
      await server.start();
      ui = { server, client: uiClient };
      print(`${color.bold("UI")}  ${server.url}`);
    } catch (err) {
      await uiClient.close();
      printError(err);
    }
  }
  print(color.dim(`watching ${config.functionsDir}; Ctrl-C to stop`));

  let stopWatchingProgress: (() => void) | undefined;
  let reloading: Promise<void> = Promise.resolve();
  let again = false;

  const start = async (bundle: Bundle) => {
    runtime = await createRuntime({ config, bundle, logger, role: "all", onDeploy: (report) => printReport(report) });
    await runtime.start();
    printLoaded(runtime, bundle);
    stopWatchingProgress = (await watchProgress(runtime.topology, printProgress)).stop;
  };

  const reload = async () => {
    const t0 = performance.now();
    let bundle: Bundle;
    try {
      bundle = await buildFunctions(config.functionsDir);
    } catch (err) {
      printError(err);
      return;
    }
    if (!runtime) {
      await start(bundle).catch(printError);
      return;
    }
    if (bundle.version === runtime.registry.version) return;
    try {
      const registry = await loadBundle(bundle, { logger });
      const report = await deployBundle({ topology: runtime.topology, store: runtime.deployments!, bundle, registry, deployedBy: `wf dev ${config.worker.id}`, logger, force: true });
      runtime.versions.setCurrent(registry);
      print(color.green(`↻ reloaded ${bundle.version} in ${Math.round(performance.now() - t0)}ms`) + color.dim(`  workflows [${[...registry.workflows.keys()].join(", ")}], activities [${[...registry.activities.keys()].join(", ")}]`));
      printReport(report);
    } catch (err) {
      printError(err);
    }
  };

  const watcher = watchFunctions(config.functionsDir, () => {
    // One reload at a time; saves during a reload coalesce into one more.
    if (again) return;
    again = true;
    reloading = reloading.then(() => {
      again = false;
      return reload();
    });
  });

  await reload();

  const exit = await stopRequested;
  print(color.dim("stopping…"));
  await watcher.close();
  stopWatchingProgress?.();
  await reloading.catch(() => undefined);
  await runtime?.stop("wf dev stopped");
  await ui?.server.stop();
  await ui?.client.close();
  await nats.stop();
  return exit;
}

function printLoaded(runtime: Runtime, bundle: Bundle): void {
  const registry = runtime.registry;
  print(color.green(`✔ loaded ${bundle.version}`) + `  workflows [${[...registry.workflows.keys()].join(", ")}], activities [${[...registry.activities.keys()].join(", ")}]`);
  print(color.dim(`start one: npx wf start <workflow> --input '{...}'${runtime.config.namespace ? ` --namespace ${runtime.config.namespace}` : ""}`));
}

function printReport(report: DeployReport): void {
  if (report.compatible.length) print(color.dim(`  ${report.compatible.length} running workflow(s) replay cleanly on the new code and moved to it`));
  for (const d of report.diverging) print(color.yellow(`  ⚠ ${d.workflowId} (${d.workflow}) stays on ${d.version}: ${d.message}`));
}

function printError(err: unknown): void {
  if (err instanceof JetflowError) {
    print(color.red(`✖ ${err.message}`));
    if (err.hint) print(color.dim(`  ${err.hint}`));
  } else {
    print(color.red(`✖ ${(err as Error)?.stack ?? String(err)}`));
  }
}

function time(): string {
  return color.dim(new Date().toISOString().slice(11, 23));
}

export function printProgress(event: ProgressEvent): void {
  const wf = `${event.state.workflow} ${color.dim(event.state.id)}`;
  switch (event.kind) {
    case "workflow-started":
      print(`${time()} ${color.blue("▶")} ${wf} started`);
      break;
    case "step-started":
      if (event.record.kind === "sleep") print(`${time()}   ${event.step} sleeping until ${event.record.fireAt}`);
      else if (event.record.kind === "signal") print(`${time()}   ${event.step} waiting for signal ${event.record.signal}`);
      else print(`${time()}   ${event.step} ${event.record.attempt > 1 ? `retried (attempt ${event.record.attempt}/${event.record.maxAttempts})` : "started"}`);
      break;
    case "step-completed":
      if (event.record.kind === "upsert") {
        print(`${time()}   ${event.step} set ${upserted(event.record)}`);
        break;
      }
      if (event.record.kind === "marker") {
        print(`${time()}   ${event.step} patched ${event.record.patch ?? "?"}`);
        break;
      }
      print(`${time()}   ${event.step} ${color.green("ok")}${event.durationMs === undefined ? "" : color.dim(` (${formatDuration(event.durationMs)})`)}`);
      break;
    case "step-retrying":
      print(`${time()}   ${event.step} ${color.yellow("failed")}: ${event.record.lastError?.message ?? "?"} ${color.dim(`— next retry in ${formatDuration(event.retryInMs)}`)}`);
      break;
    case "step-failed":
      print(`${time()}   ${event.step} ${color.red("failed")}: ${event.record.error?.type}: ${event.record.error?.message}`);
      break;
    case "workflow-ended": {
      const s = event.state;
      const mark = s.status === "completed" ? color.green("✔") : color.red("✖");
      print(`${time()} ${mark} ${wf} ${s.status}${color.dim(` (${formatDuration(event.durationMs)})`)}${s.error ? `: ${s.error.message}` : ""}`);
      break;
    }
  }
}
