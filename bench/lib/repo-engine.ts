/**
 * jetflow in the bench's own process, as `wf run` in the repo runs it (its wf.config.json and
 * functions/, minus the process environment): a runtime and a client, and `one(id)`, which runs
 * one order_processing workflow and resolves with its milliseconds from start to completion. The
 * in_process and cluster figures use it.
 */
import { join } from "node:path";
import { createClient, createRuntime, loadConfig, silentLogger, type Runtime, type WorkflowClient } from "../../runtime/index.js";
import { orderInput } from "./context.js";
import type { WaitMode } from "./options.js";
import { REPO_ROOT } from "./runtimes.js";
import { createWaiter, type ResultWaiter } from "./waiter.js";

export interface RepoEngine {
  runtime: Runtime;
  client: WorkflowClient;
  one(id: string): Promise<number>;
  close(): Promise<void>;
}

export async function startRepoEngine(options: { servers: string[]; namespace: string; waitMode: WaitMode; slots?: number | undefined; replicas?: 1 | 3 }): Promise<RepoEngine> {
  const config = loadConfig({
    env: {},
    cwd: REPO_ROOT,
    overrides: {
      nats: { servers: options.servers },
      namespace: options.namespace,
      ...(options.replicas ? { replicas: options.replicas } : {}),
      log: { level: "warn" },
      functions: { dir: join(REPO_ROOT, "functions") },
      ...(options.slots ? { worker: { slots: options.slots } } : {}),
    },
  });
  let runtime: Runtime | undefined;
  let client: WorkflowClient | undefined;
  let waiter: ResultWaiter | undefined;
  const close = async () => {
    await waiter?.close().catch(() => undefined);
    await client?.close().catch(() => undefined);
    await runtime?.stop("bench").catch(() => undefined);
  };
  try {
    runtime = await createRuntime({ config, code: "local", logger: silentLogger });
    await runtime.start();
    client = await createClient({ config, logger: silentLogger });
    waiter = await createWaiter(client, options.waitMode);
  } catch (err) {
    await close();
    throw err;
  }
  const [started, results] = [client, waiter];
  return {
    runtime,
    client,
    async one(id) {
      const t0 = performance.now();
      await started.start("order_processing", orderInput(0), { id });
      const state = await results.wait(id);
      if (state.status !== "completed") throw new Error(`workflow ${id} ended ${state.status}: ${state.error?.message ?? ""}`);
      return performance.now() - t0;
    },
    close,
  };
}
