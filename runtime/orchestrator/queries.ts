/**
 * Queries: a read of a workflow's own view (ctx.handleQuery), on demand, over core NATS
 * request/reply on `workflow.query.<id>`. One runtime of the queue group answers: it reads the
 * state (with its history chunks), replays the workflow from its journal on the code the workflow
 * runs on, and calls the handler on that replayed execution. Nothing is written, so a query
 * cannot change the workflow; a handler that tries an effect fails the query (execution.ts
 * refuseInReadOnly). Works alike while the workflow runs, sleeps or waits, and once it has ended
 * (from its final journal) while it is retained.
 *
 * With a payload codec the query's args and its answer travel encrypted (payloads.encodeInline):
 * the caller encodes the args, this runtime decodes them and encodes the answer.
 *
 * Cost: one state read (plus its history chunks) and one replay per query, proportional to the
 * workflow's journal; nothing while no query is asked.
 */
import type { Subscription } from "@nats-io/nats-core";
import { JetflowError, QueryError, toErrorRecord } from "../errors.js";
import { replayWorkflow } from "../journal/replay.js";
import { toJson, type ReadOnlyHandler, type WorkflowExecution } from "../journal/execution.js";
import type { Logger } from "../logger.js";
import { storedJson } from "../nats/kv-entry.js";
import type { Topology } from "../nats/topology.js";
import { encode, parseQueryRequest, type QueryReply, type QueryRequest } from "../protocol.js";
import type { WorkflowState } from "../state.js";
import { bindWorkflow, type Registry } from "../definitions.js";

/** How long an async handler may take to settle (it can await nothing durable). */
export const QUERY_HANDLER_TIMEOUT_MS = 2_000;

export interface QueryResponderOptions {
  topology: Topology;
  registryFor(version: string | undefined): Promise<Registry>;
  withHistory(state: WorkflowState): Promise<WorkflowState>;
  logger: Logger;
}

export interface QueryResponder {
  /** Resolves once the server has the subscription: a query sent after start() finds this runtime. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createQueryResponder(options: QueryResponderOptions): QueryResponder {
  const { topology, logger } = options;
  let subscription: Subscription | undefined;

  async function answer(request: QueryRequest): Promise<unknown> {
    const state = storedJson<WorkflowState>(await topology.states.get(request.workflowId));
    if (!state) throw new QueryError("WF_WORKFLOW_NOT_FOUND", `no workflow with id ${request.workflowId}`, { hint: "Check the id with `wf list`; a finished workflow is kept only for its retention." });
    const registry = await options.registryFor(state.bundle);
    const definition = registry.workflows.get(state.workflow);
    if (!definition) throw new QueryError("WF_UNKNOWN_WORKFLOW", `workflow type ${state.workflow} is not in the code (version ${registry.version}) this runtime can load`, { hint: "Deploy code that has it (`wf deploy`)." });
    const execution = await replayWorkflow(await options.withHistory(state), { ...bindWorkflow(definition, state.id), logger: logger.child({ component: "query" }), payloads: topology.payloads });
    // The payload boundary (payloads/payloads.ts): the args come encoded by a caller with the
    // codec, and the answer leaves encoded; inline both ways, since no state references a query.
    const value = await answerQuery(execution, request.name, await topology.payloads.decodeInline(request.args));
    return topology.payloads.encodeInline(value);
  }

  /** A failed query's reply; the handler's own error text (WF_QUERY_FAILED) is a payload, encoded like one. */
  async function failure(err: unknown): Promise<QueryReply> {
    const record = toErrorRecord(err);
    const code = err instanceof JetflowError ? err.code : "WF_QUERY_FAILED";
    const error: Extract<QueryReply, { ok: false }>["error"] = { code, message: record.message, ...(record.hint ? { hint: record.hint } : {}) };
    if (code !== "WF_QUERY_FAILED") return { ok: false, error };
    const sealed = await topology.payloads.encodeError({ message: record.message, type: "QueryError" });
    return { ok: false, error: { ...error, message: sealed.message, ...(sealed.encoded !== undefined ? { encoded: sealed.encoded } : {}) } };
  }

  return {
    async start() {
      subscription = topology.nc.subscribe(topology.names.querySubject("*"), {
        queue: `${topology.names.namespace}queries`,
        callback: (_err, msg) => {
          void (async () => {
            let reply: QueryReply;
            try {
              const request = parseQueryRequest(JSON.parse(new TextDecoder().decode(msg.data)));
              reply = { ok: true, result: await answer(request) };
            } catch (err) {
              reply = await failure(err).catch(() => ({ ok: false as const, error: { code: "WF_QUERY_FAILED", message: "the query failed, and its error could not be encoded" } }));
            }
            try {
              msg.respond(encode(reply));
            } catch {
              /* connection closing, or a request without a reply subject */
            }
          })();
        },
      });
      await topology.nc.flush();
    },
    async stop() {
      subscription?.unsubscribe();
    },
  };
}

/** Run query `name`'s handler on `execution` (a replay): its value as JSON, or a QueryError. */
export async function answerQuery(execution: WorkflowExecution, name: string, args: unknown): Promise<unknown> {
  const handler = execution.queryHandlers.get(name);
  if (!handler) {
    const known = [...execution.queryHandlers.keys()].sort();
    throw new QueryError("WF_UNKNOWN_QUERY", `workflow ${execution.workflow} (${execution.workflowId}) has no query "${name}"; known: ${known.length ? known.join(", ") : "none"}`, {
      hint: known.length ? `Ask one of ${known.join(", ")}.` : 'The workflow registers none where it stands: ctx.handleQuery("name", () => value), before its first await.',
    });
  }
  const query: ReadOnlyHandler = { kind: "query handler", name };
  execution.readOnlyHandler = query;
  try {
    let value = handler(args === undefined ? null : args);
    if (value !== null && typeof value === "object" && typeof (value as PromiseLike<unknown>).then === "function") {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new QueryError("WF_QUERY_FAILED", `query "${name}" did not settle within ${QUERY_HANDLER_TIMEOUT_MS} ms`, { hint: "A query handler returns what the workflow already knows; it cannot wait." })), QUERY_HANDLER_TIMEOUT_MS);
      });
      try {
        value = await Promise.race([value as PromiseLike<unknown>, timeout]);
      } finally {
        clearTimeout(timer);
      }
    }
    // A handler that swallowed the refusal of its effect still fails: it tried to act.
    if (query.refused) throw query.refused;
    return toJson(value === undefined ? null : value, `result of query "${name}"`);
  } catch (err) {
    if (err instanceof JetflowError || (err as { code?: unknown })?.code === "WF_QUERY_EFFECT") throw err;
    const record = toErrorRecord(err);
    throw new QueryError("WF_QUERY_FAILED", `query "${name}" of workflow ${execution.workflow} (${execution.workflowId}) failed: ${record.type}: ${record.message}`, { hint: "Fix the handler; the workflow itself is untouched." });
  } finally {
    execution.readOnlyHandler = undefined;
  }
}
