/**
 * Replay tests: run recorded workflow histories (client.history(id), `wf show <id> --history`)
 * against the current code, as `wf deploy`'s check does for running workflows
 * (bundle/deploy.ts: replayWorkflow over the state with its history put back). Code that would
 * issue other commands than a recorded run did fails with NonDeterminismError, which names the
 * step and both commands; change such code behind a new workflow name or version.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { buildFunctions } from "../bundle/build.js";
import { loadBundle } from "../bundle/load.js";
import { bindWorkflow, createRegistry, type Registry } from "../definitions.js";
import { NonDeterminismError, ValidationError } from "../errors.js";
import { parseWorkflowHistory, type WorkflowHistory } from "../journal/history-file.js";
import { hostRealm } from "../journal/execution.js";
import { replayWorkflow } from "../journal/replay.js";
import { silentLogger, type Logger } from "../logger.js";
import { ActivityFailure } from "../workflow-api.js";

export interface ReplayHistoryOptions {
  /** The code to check: workflows by name (functions or DAG definitions)... */
  workflows?: Record<string, unknown>;
  /** ...or a functions/ folder, bundled as `wf deploy` bundles it. */
  functionsDir?: string;
  /** Workflow logs during replay are dropped anyway; this sees the loader's. */
  logger?: Logger;
}

export interface ReplayResult {
  /** The file it came from (replayHistories). */
  file?: string;
  workflowId: string;
  workflow: string;
}

/** Replay one history (an object, or the path of a JSON file); throws NonDeterminismError when the code diverges from it. */
export async function replayHistory(history: WorkflowHistory | string, options: ReplayHistoryOptions): Promise<ReplayResult> {
  return replayOne(await readHistory(history), await loadCode(options), options.logger ?? silentLogger);
}

/**
 * Replay every `*.json` history in `dir` (code bundled once). All are replayed; if any diverge,
 * one NonDeterminismError lists each file with its divergence.
 */
export async function replayHistories(dir: string, options: ReplayHistoryOptions): Promise<ReplayResult[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".json")).sort();
  if (files.length === 0) {
    throw new ValidationError("WF_HISTORY_INVALID", `replayHistories: no .json history in ${resolve(dir)}`, {
      hint: "Export histories with `wf show <id> --history > dir/<id>.json` first.",
    });
  }
  const registry = await loadCode(options);
  const results: ReplayResult[] = [];
  const failures: string[] = [];
  for (const file of files) {
    const path = join(dir, file);
    try {
      results.push({ ...(await replayOne(await readHistory(path), registry, options.logger ?? silentLogger)), file: path });
    } catch (err) {
      if (!(err instanceof NonDeterminismError)) throw err;
      failures.push(`${path}: ${err.message}`);
    }
  }
  if (failures.length > 0) throw new NonDeterminismError(`${failures.length} of ${files.length} histories diverge from the current code:\n${failures.join("\n")}`);
  return results;
}

async function readHistory(history: WorkflowHistory | string): Promise<WorkflowHistory> {
  if (typeof history !== "string") return parseWorkflowHistory(history);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(history, "utf8"));
  } catch (err) {
    throw new ValidationError("WF_HISTORY_INVALID", `cannot read history ${history}: ${(err as Error).message}`, {
      hint: "Export one with `wf show <id> --history > file.json`.",
      cause: err,
    });
  }
  return parseWorkflowHistory(parsed, history);
}

async function loadCode(options: ReplayHistoryOptions): Promise<Registry> {
  if (options.workflows) {
    return createRegistry({ version: "replay", workflows: options.workflows, activities: {}, realm: hostRealm(ActivityFailure), checkActivityTypes: false });
  }
  const bundle = await buildFunctions(resolve(options.functionsDir ?? "functions"));
  return loadBundle(bundle, { logger: options.logger ?? silentLogger, checkActivityTypes: false });
}

async function replayOne(history: WorkflowHistory, registry: Registry, logger: Logger): Promise<ReplayResult> {
  const { state } = history;
  const definition = registry.workflows.get(state.workflow);
  if (!definition) {
    throw new NonDeterminismError(
      `workflow ${state.workflow} (id ${state.id}) is not in the code under test (it has: ${[...registry.workflows.keys()].join(", ") || "none"}); a recorded run cannot continue`,
    );
  }
  await replayWorkflow(state, { ...bindWorkflow(definition, state.id), logger });
  return { workflowId: state.id, workflow: state.workflow };
}
