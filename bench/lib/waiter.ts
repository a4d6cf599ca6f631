/**
 * How the bench learns that a workflow ended. Four ways, chosen by BENCH_WAIT:
 *  - result (default): the public API, `client.waitForEnd(id)` (what `handle.result()` does): a
 *    core NATS subscription to the workflow's end announcement, and a read of its state.
 *  - watch-all: one KV watch on every key (`>`, updates only) for the whole figure; each update is
 *    routed to the waiting workflow. One ordered consumer however many workflows are in flight.
 *  - per-id: `client.watch(id)` (live progress): one KV watch (an
 *    ordered consumer, created and deleted) per workflow.
 *  - poll: `kv.get(id)` every POLL_MS until the state is terminal.
 * All four read only the wire contract (WORKFLOW_STATES, and the end announcement), like any client would.
 */
import { isHistoryKey } from "../../runtime/orchestrator/history.js";
import { KvWatchInclude } from "@nats-io/kv";
import type { WorkflowClient, WorkflowState } from "../../runtime/index.js";
import { isTerminal } from "../../runtime/state.js";
import type { WaitMode } from "./options.js";
import { sleep } from "./stats.js";

const POLL_MS = 20;

export interface ResultWaiter {
  readonly mode: WaitMode;
  /** The workflow's terminal state. */
  wait(id: string): Promise<WorkflowState>;
  close(): Promise<void>;
}

export interface WaiterOptions {
  /** Called with every state update the watch sees (watch-all only). */
  onState?: (state: WorkflowState) => void;
}

export async function createWaiter(client: WorkflowClient, mode: WaitMode, options: WaiterOptions = {}): Promise<ResultWaiter> {
  if (mode === "result") {
    return {
      mode,
      wait: (id) => client.waitForEnd(id),
      async close() {},
    };
  }
  if (mode === "per-id") {
    return {
      mode,
      async wait(id) {
        let last: WorkflowState | undefined;
        for await (const state of client.watch(id)) last = state;
        if (!last || !isTerminal(last.status)) throw new Error(`watch of ${id} ended before the workflow did`);
        return last;
      },
      async close() {},
    };
  }
  if (mode === "poll") {
    let closed = false;
    return {
      mode,
      async wait(id) {
        while (!closed) {
          const entry = await client.topology.states.get(id);
          if (entry && entry.operation === "PUT" && entry.length > 0) {
            const state = entry.json<WorkflowState>();
            if (isTerminal(state.status)) return state;
          }
          await sleep(POLL_MS);
        }
        throw new Error("waiter closed");
      },
      async close() {
        closed = true;
      },
    };
  }

  const waiting = new Map<string, { resolve: (s: WorkflowState) => void }>();
  const ended = new Map<string, WorkflowState>(); // ended before anyone waited (rare: start → end within the publish ack)
  const watcher = await client.topology.states.watch({ key: ">", include: KvWatchInclude.UpdatesOnly, ignoreDeletes: true });
  const loop = (async () => {
    for await (const entry of watcher) {
      // Keys with a '/' are not states: index entries (idx/…), history chunks, archived runs.
      if (entry.operation !== "PUT" || entry.length === 0 || isHistoryKey(entry.key)) continue;
      const state = entry.json<WorkflowState>();
      options.onState?.(state);
      if (!isTerminal(state.status)) continue;
      const w = waiting.get(state.id);
      if (w) {
        waiting.delete(state.id);
        w.resolve(state);
      } else if (!options.onState) {
        ended.set(state.id, state);
      }
    }
  })();
  return {
    mode,
    wait(id) {
      const done = ended.get(id);
      if (done) {
        ended.delete(id);
        return Promise.resolve(done);
      }
      return new Promise<WorkflowState>((resolve) => waiting.set(id, { resolve }));
    },
    async close() {
      watcher.stop();
      await loop.catch(() => undefined);
    },
  };
}
