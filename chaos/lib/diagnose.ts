/**
 * When workflows do not finish: what NATS and the execution records say about them, on stderr,
 * so that a failed run can be explained without re-running it.
 */
import type { WorkflowClient } from "../../runtime/index.js";
import { createNames } from "../../runtime/nats/names.js";
import type { Execution } from "./verify.js";

export async function diagnoseStuck(client: WorkflowClient, namespace: string, ids: string[], executions: Execution[], log: (line: string) => void): Promise<void> {
  if (ids.length === 0) return;
  const names = createNames(namespace);
  const { jsm } = client.topology;
  for (const id of ids.slice(0, 5)) {
    const state = await client.describe(id).catch((err: Error) => err.message);
    const runs = executions.filter((e) => e.workflowId === id).map((e) => `${e.step}#${e.attempt} ${e.event} pid ${e.pid} at ${e.at}`);
    log(`stuck ${id}: ${typeof state === "string" ? state : JSON.stringify({ status: state.status, updatedAt: state.updatedAt, steps: state.steps, journal: state.journal })}`);
    log(`stuck ${id}: executions: ${runs.join("; ") || "none"}`);
  }
  for (const stream of [names.eventsStream, names.tasksStream, names.timersStream]) {
    try {
      const info = await jsm.streams.info(stream);
      log(`stream ${stream}: ${info.state.messages} message(s), seq ${info.state.first_seq}..${info.state.last_seq}`);
      for await (const c of jsm.consumers.list(stream)) {
        log(`  consumer ${c.name}: pending ${c.num_pending}, ack pending ${c.num_ack_pending}, redelivered ${c.num_redelivered}, waiting ${c.num_waiting}, delivered ${c.delivered.stream_seq}, ack floor ${c.ack_floor.stream_seq}`);
      }
    } catch (err) {
      log(`stream ${stream}: ${(err as Error).message}`);
    }
  }
}
