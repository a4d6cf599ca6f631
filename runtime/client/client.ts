/**
 * The client: start workflows, wait for results, read state, cancel. It speaks the wire contract
 * only (publish to workflow.start.<type>, read WORKFLOW_STATES), like any other NATS program could.
 */
import type { Config } from "../config.js";
import { loadConfig } from "../config.js";
import { AbortedError, QueryError, UpdateError, ValidationError, WorkflowFailedError, WorkflowNotFoundError } from "../errors.js";
import { newWorkflowId, validateName, validateWorkflowId } from "../ids.js";
import { createConsoleLogger, type Logger } from "../logger.js";
import { connectNats, type NatsConnection } from "../nats/connect.js";
import { createNames } from "../nats/names.js";
import { ensureTopology, type Topology } from "../nats/topology.js";
import { randomUUID } from "node:crypto";
import { encode, ID_REUSE_POLICIES, MSG_ID, type CancelMessage, type IdReusePolicy, type QueryReply, type QueryRequest, type UpdateMessage, type SignalMessage, type StartMessage } from "../protocol.js";
import { listRuns, readRun, RETRYABLE_STATUSES, reusesId, type RunsPage } from "../orchestrator/runs.js";
import { storedJson } from "../nats/kv-entry.js";
import { isTerminal, runNumber, updateSeen, type UpdateRecord, type WorkflowState } from "../state.js";

export type { ListFilter, ListPage, WorkflowSummary } from "../visibility/query.js";
export type { RunsPage, RunSummary } from "../orchestrator/runs.js";
export type { IdReusePolicy } from "../protocol.js";
import { withHistory, type HistoryChunk } from "../orchestrator/history.js";
import { countWorkflows, DEFAULT_PAGE_SIZE, listPage, planFilter, type ListFilter, type ListPage, type WorkflowSummary } from "../visibility/query.js";
import { removeWorkflow } from "../visibility/index-writer.js";
import { typedAttributes, type SearchAttributes } from "../visibility/search-attributes.js";
import { toWorkflowHistory, type WorkflowHistory } from "../journal/history-file.js";
import type { WorkflowFunction } from "../workflow-api.js";
import { parseDuration, type Duration } from "../duration.js";
import { activeTraceparent } from "../observability/tracing.js";
import { createScheduleClient, type ScheduleClient } from "../schedules/client.js";
import type { Clock } from "../timers.js";
export type { ScheduleClient, ScheduleDescription, ScheduleSummary, ScheduleRunView } from "../schedules/client.js";
import type { PayloadCodec } from "../payloads/codec.js";
import { payloadOptionsOf, SLOT } from "../payloads/payloads.js";

export interface StartOptions {
  /** Idempotency: starting the same id twice runs the workflow once. Default: a new UUID-based id. */
  id?: string;
  /** Values to find the workflow by (`list({ where })`, `wf list --where`): strings, finite numbers, booleans, Dates. */
  searchAttributes?: SearchAttributes;
  /** This run's execution timeout, over the workflow type's (`0`: none). */
  timeout?: Duration;
  /** Free JSON kept with the workflow and shown by `wf show`. */
  memo?: unknown;
  /**
   * When a workflow with this id exists: "reject-duplicate" (default) keeps it and this start is a
   * no-op; "allow-if-failed" starts a new run if its latest run ended failed, cancelled,
   * terminated or timed out; "allow-duplicate" if it ended at all. A running one is never replaced.
   */
  idReusePolicy?: IdReusePolicy;
}

export interface DescribeOptions {
  /** Run number (1 for the first): an earlier run of the id, archived when the next replaced it. Default: the latest. */
  run?: number;
  /**
   * A payload this client cannot decode (encrypted with a key it lacks, or no codec configured):
   * "throw" (default) a CodecError naming the key; "mark": shown as "[encrypted; configure
   * codec.keys to read]" instead (wf show, the UI).
   */
  undecodable?: "throw" | "mark";
}

export interface SignalWithStartOptions<I = unknown> extends StartOptions {
  /** The workflow id: the signal goes to the workflow with this id, started now if it does not exist. */
  id: string;
  input?: I;
  /** Signal name (`ctx.waitForSignal(name)` receives it). */
  signal: string;
  payload?: unknown;
}

export interface UpdateOptions {
  /** The update's id (1-64 characters of A-Z a-z 0-9 _ -): the same id is applied once, however often it is sent. */
  updateId?: string;
  /** How long to wait for the handler's outcome (default 1 min). */
  timeout?: Duration;
}

export interface ListOptions extends ListFilter {
  /** Workflows fetched per page while iterating (default 50). */
  pageSize?: number;
  /** Continue a listing from a page's cursor. */
  cursor?: string;
}

export interface ResultOptions {
  signal?: AbortSignal;
}

export interface WorkflowHandle<O = unknown> {
  id: string;
  workflow: string;
  /** Wait until the workflow ends: its result, or WorkflowFailedError (failed, cancelled, timed out). */
  result(options?: ResultOptions): Promise<O>;
  describe(): Promise<WorkflowState>;
  cancel(reason?: string): Promise<void>;
  signal(name: string, payload?: unknown): Promise<void>;
}


export interface WorkflowClient {
  start<F extends WorkflowFunction = WorkflowFunction>(workflow: string, input?: Parameters<F>[1], options?: StartOptions): Promise<WorkflowHandle<Awaited<ReturnType<F>>>>;
  /**
   * Start the workflow if no workflow has this id, and deliver the signal to it either way: one
   * message, so a crash of the caller cannot leave one without the other.
   */
  signalWithStart<F extends WorkflowFunction = WorkflowFunction>(workflow: string, options: SignalWithStartOptions<Parameters<F>[1]>): Promise<WorkflowHandle<Awaited<ReturnType<F>>>>;
  getHandle<O = unknown>(id: string): WorkflowHandle<O>;
  result<O = unknown>(id: string, options?: ResultOptions): Promise<O>;
  /** Wait until the workflow ends, whatever its status: its terminal state, every step included (history chunks read back). */
  waitForEnd(id: string, options?: ResultOptions): Promise<WorkflowState>;
  /**
   * The state of the latest run (or of run `options.run`), every step included (history chunks
   * read back); WorkflowNotFoundError when there is none. `runId` and `run` tell which run it is.
   */
  describe(id: string, options?: DescribeOptions): Promise<WorkflowState>;
  /** The runs before the latest (or before run `page.before`), newest first, `page.limit` (default 10) at a time: one read each. */
  runs(id: string, page?: { limit?: number; before?: number }): Promise<RunsPage>;
  /** The workflow's history in the exported format (journal/history-file.ts), for replay tests (jetflow/testing replayHistory). */
  history(id: string): Promise<WorkflowHistory>;
  cancel(id: string, reason?: string): Promise<void>;
  /**
   * Re-run a workflow whose latest run ended failed, cancelled, terminated or timed out, from its
   * failed step: a new run of the id that reuses the results of the steps completed before it
   * (orchestrator/retry.ts). The handle's result() waits for the new run. WF_RETRY_RUNNING for a
   * running workflow, WF_RETRY_COMPLETED for a completed one. Retrying the same run twice starts one new run.
   */
  retry<O = unknown>(id: string): Promise<WorkflowHandle<O>>;
  /** A hard stop: the workflow ends `terminated` at once, no workflow code runs; its running activities are aborted. No-op once it has ended. */
  terminate(id: string, reason?: string): Promise<void>;
  /**
   * Send a signal; `ctx.waitForSignal(name)` in the workflow receives its payload. To an id that
   * has not started yet, it is kept until the workflow starts (24 h at most; docs/protocol.md, "Signal").
   */
  signal(id: string, name: string, payload?: unknown): Promise<void>;
  /**
   * Ask the workflow's query handler `name` (ctx.handleQuery) and resolve with what it returns: a
   * runtime replays the workflow from its journal and runs the handler (while it runs, sleeps or
   * waits, or after it ended, while it is kept). Rejects with a QueryError: `WF_UNKNOWN_QUERY`
   * (the message lists the known ones), `WF_QUERY_EFFECT` (the handler tried to act),
   * `WF_QUERY_FAILED`, `WF_QUERY_TIMEOUT` (no answer within `timeout`, default 10 s),
   * `WF_NO_QUERY_RESPONDER` (no runtime is running), `WF_WORKFLOW_NOT_FOUND`.
   */
  query<R = unknown>(id: string, name: string, args?: unknown, options?: { timeout?: Duration }): Promise<R>;
  /**
   * Send the update `name` (ctx.handleUpdate) and resolve with what its handler returns, once the
   * workflow recorded it. Its validator refusing it rejects with its error (`WF_UPDATE_REJECTED`,
   * nothing recorded in the journal). `updateId` (default: a new one) makes a retry of the same
   * update apply once. Rejects with `WF_UPDATE_FAILED` when the handler threw, `WF_UNKNOWN_UPDATE`,
   * `WF_WORKFLOW_NOT_RUNNING`, or `WF_UPDATE_TIMEOUT` (no outcome within `timeout`, default 1 min:
   * the update may still apply; call again with the same updateId to wait for it).
   */
  update<R = unknown>(id: string, name: string, args?: unknown, options?: UpdateOptions): Promise<R>;
  /** Start the workflow if no workflow has this id (`options.id`), then send it the update: "start the cart if needed, then add the item". */
  updateWithStart<R = unknown>(workflow: string, options: StartOptions & { id: string; input?: unknown; update: string; args?: unknown } & UpdateOptions): Promise<R>;
  /**
   * Workflows matching `filter`, running ones first (newest started first), then finished ones
   * (most recently ended first), fetched a page at a time through the visibility index
   * (visibility/query.ts): `for await (const w of client.list({ status: "failed" }))`.
   */
  list(filter?: ListOptions): AsyncIterable<WorkflowSummary>;
  /** One page of `list`, and the cursor of the next (absent on the last). */
  listPage(filter?: ListFilter, page?: { limit?: number; cursor?: string }): Promise<ListPage>;
  /** How many workflows match `filter` (counted from the index). */
  count(filter?: ListFilter): Promise<number>;
  /**
   * Remove a finished workflow now, with its history and index entries (retention does it
   * later by itself). Refuses a running one: cancel it first. Resolves true once removed, false
   * when there was no such workflow.
   */
  delete(id: string): Promise<boolean>;
  /** Watch a workflow's state changes until it ends (for live progress); each state whole, as describe() gives it. */
  watch(id: string, options?: ResultOptions): AsyncIterable<WorkflowState>;
  /** Schedules: workflows started on a cron expression or an interval (schedules/client.ts, README "Schedules"). */
  readonly schedules: ScheduleClient;
  close(): Promise<void>;
  readonly topology: Topology;
}

/** result(): how often the state is re-read while no announcement came (doubling up to the max). */
const RESULT_RECHECK_MIN_MS = 1_000;
const RESULT_RECHECK_MAX_MS = 10_000;

export interface ClientOptions {
  config?: Config;
  connection?: NatsConnection;
  logger?: Logger;
  /** Wait for NATS to come up instead of failing at once (default false). */
  waitForServer?: boolean;
  /** Time of schedule operations (next tick from now, trigger): a test's clock can skip ahead. Default: the system clock. */
  clock?: Clock;
  /** A custom payload codec instead of the built-in one of `codec.keys` (payloads/codec.ts); the runtimes need the same. */
  codec?: PayloadCodec;
}

/** How long client.updateWithStart waits for the workflow's state before it sends the update. */
const UPDATE_WITH_START_WAIT_MS = 30_000;

/** How long client.update waits for its handler's outcome. */
export const DEFAULT_UPDATE_TIMEOUT_MS = 60_000;

/** How long client.query waits for an answer (a replay of the workflow on some runtime). */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

export async function createClient(options: ClientOptions = {}): Promise<WorkflowClient> {
  const config = options.config ?? loadConfig();
  const logger = options.logger ?? createConsoleLogger({ level: config.log.level });
  const nc = options.connection ?? (await connectNats(config.nats, { name: "jetflow client", namespace: config.namespace, logger, waitForServer: options.waitForServer ?? false }));
  const names = createNames(config.namespace);
  const topology = await ensureTopology(nc, {
    names,
    replicas: config.replicas,
    storage: config.storage,
    orchestratorAckWaitMs: config.orchestrator.ackWaitMs,
    orchestratorMaxAckPending: config.orchestrator.maxAckPending,
    updateConsumers: false,
    payloads: payloadOptionsOf(config, options.codec),
  });
  const payloads = topology.payloads;

  async function latestRun(id: string): Promise<WorkflowState> {
    validateWorkflowId(id);
    const entry = await topology.states.get(id);
    if (!entry || entry.operation !== "PUT" || entry.length === 0) {
      throw new WorkflowNotFoundError("WF_WORKFLOW_NOT_FOUND", `no workflow with id ${id}${config.namespace ? ` in namespace "${config.namespace}"` : ""}`, {
        hint: "Check the id (`wf list` shows recent ones) and that NATS_URL / namespace point where it was started.",
      });
    }
    return entry.json<WorkflowState>();
  }

  async function describe(id: string, describeOptions: DescribeOptions = {}): Promise<WorkflowState> {
    const latest = await latestRun(id);
    const open = (state: WorkflowState) => payloads.open(state, describeOptions.undecodable ?? "throw");
    if (describeOptions.run === undefined) return open(await withHistory(topology.states, latest));
    const state = await readRun(topology.states, latest, describeOptions.run);
    if (!state) {
      throw new WorkflowNotFoundError("WF_RUN_NOT_FOUND", `workflow ${id} has no run ${describeOptions.run}: its runs are 1 to ${runNumber(latest)}`, {
        hint: `Pick a run number from \`wf show ${id}\` (it lists earlier runs); a removed workflow's runs are gone with it.`,
      });
    }
    return open(await withHistory(topology.states, state));
  }

  async function* watch(id: string, opts: ResultOptions = {}): AsyncIterable<WorkflowState> {
    const chunks = new Map<number, HistoryChunk>();
    for await (const state of watchStored(id, opts)) yield payloads.open(await withHistory(topology.states, state, chunks));
  }

  /**
   * watch() without opening: each state as stored (a KV watch of key `<id>`, the current value
   * first), until one is terminal. For a caller that needs one field of the head state (an
   * update's outcome): no payload decoded, no history chunk read.
   */
  async function* watchStored(id: string, opts: ResultOptions = {}): AsyncIterable<WorkflowState> {
    validateWorkflowId(id);
    opts.signal?.throwIfAborted();
    const watcher = await topology.states.watch({ key: id });
    const onAbort = () => watcher.stop();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const entry of watcher) {
        if (entry.operation !== "PUT" || entry.length === 0) continue;
        const state = entry.json<WorkflowState>();
        yield state;
        if (isTerminal(state.status)) return;
      }
      if (opts.signal?.aborted) throw new AbortedError("WF_ABORTED", `stopped waiting for workflow ${id}: ${String(opts.signal.reason)}`);
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      watcher.stop();
    }
  }

  async function result<O>(id: string, opts: ResultOptions = {}, afterRun = 0): Promise<O> {
    const state = await endState(id, opts, afterRun);
    if (state.status === "completed") return (await payloads.decode(state.result)) as O;
    throw new WorkflowFailedError(id, state.status, state.error ? await payloads.decodeError(state.error) : undefined);
  }

  /**
   * The workflow's terminal state. The orchestrator announces it on a core NATS subject right
   * after writing it; subscribing before the first read closes the gap between the two (the
   * server handles our SUB before our read, so an end after the read reaches the subscription).
   * The announcement is a hint: the state is re-read now and then, which also covers an
   * announcement lost to a runtime crash or a reconnect.
   */
  async function waitForEnd(id: string, opts: ResultOptions = {}): Promise<WorkflowState> {
    return payloads.open(await withHistory(topology.states, await endState(id, opts)));
  }

  /**
   * The terminal state as stored: a long workflow's early steps are in its history chunks. Key
   * `<id>` never holds a run that continued as new (runs.ts), so this follows to the last run.
   * `afterRun`: only a run numbered above it counts (a start that replaces a finished run).
   */
  async function endState(id: string, opts: ResultOptions, afterRun = 0): Promise<WorkflowState> {
    validateWorkflowId(id);
    opts.signal?.throwIfAborted();
    let wake: (() => void) | undefined;
    let announced: WorkflowState | undefined;
    const sub = nc.subscribe(names.finishedSubject(id), {
      callback: (_err, msg) => {
        try {
          const state = msg.json<WorkflowState>();
          if (state?.id === id && isTerminal(state.status) && runNumber(state) > afterRun) announced = state;
        } catch {
          /* not a state: the next read decides */
        }
        wake?.();
      },
    });
    const onAbort = () => wake?.();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (let recheckMs = RESULT_RECHECK_MIN_MS; ; recheckMs = Math.min(recheckMs * 2, RESULT_RECHECK_MAX_MS)) {
        if (announced) return announced;
        const entry = await topology.states.get(id);
        if (entry && entry.operation === "PUT" && entry.length > 0) {
          const state = entry.json<WorkflowState>();
          if (isTerminal(state.status) && runNumber(state) > afterRun) return state;
        }
        if (announced) return announced;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, recheckMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        if (opts.signal?.aborted) throw new AbortedError("WF_ABORTED", `stopped waiting for workflow ${id}: ${String(opts.signal.reason)}`);
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      sub.unsubscribe();
    }
  }

  async function cancel(id: string, reason?: string, terminate = false): Promise<void> {
    // The latest run's status and number are all it needs: no history chunks read back.
    const state = await latestRun(id);
    if (isTerminal(state.status)) return;
    const message: CancelMessage = { workflowId: id, ...(reason ? { reason } : {}), ...(terminate ? { terminate } : {}) };
    await topology.js.publish(names.cancelSubject(id), encode(message), { msgID: MSG_ID.cancel(id, terminate, state.run) });
  }

  async function retry<O>(id: string): Promise<WorkflowHandle<O>> {
    const state = await latestRun(id);
    if (state.status === "running") {
      throw new ValidationError("WF_RETRY_RUNNING", `workflow ${id} is running; only a workflow that ended failed, cancelled, terminated or timed out can be retried`, {
        hint: `Wait for it to end, or cancel it first (wf cancel ${id}).`,
      });
    }
    if (!RETRYABLE_STATUSES.includes(state.status)) {
      throw new ValidationError("WF_RETRY_COMPLETED", `workflow ${id} ${state.status === "completed" ? "completed" : `is ${state.status}`}; there is no failed step to retry from`, {
        hint: `To run it again from the start, start it with idReusePolicy "allow-duplicate" (wf start ${state.workflow} --id ${id} --id-reuse-policy allow-duplicate).`,
      });
    }
    const run = runNumber(state);
    const message: StartMessage = { id, input: null, retry: { run } };
    const traceparent = activeTraceparent();
    if (traceparent) message.traceparent = traceparent;
    // One retry per run: a second one of the same run (within the duplicate window) is dropped, and after it a no-op.
    await topology.js.publish(names.startSubject(state.workflow), encode(message), { msgID: `${id}/retry/${run}` });
    return getHandle<O>(id, state.workflow, run);
  }

  async function signal(id: string, name: string, payload?: unknown): Promise<void> {
    validateWorkflowId(id);
    validateName("signal name", name);
    const signalId = randomUUID();
    const encoded = await payloads.encode(payload === undefined ? null : payload, SLOT.signal(id, signalId), { limit: `payload of signal ${name} to ${id}` });
    const message: SignalMessage = { workflowId: id, name, payload: encoded, signalId };
    await topology.js.publish(names.signalSubject(id, name), encode(message), { msgID: `${id}/signal/${signalId}` });
  }

  async function query<R>(id: string, name: string, args?: unknown, queryOptions: { timeout?: Duration } = {}): Promise<R> {
    validateWorkflowId(id);
    const timeoutMs = queryOptions.timeout === undefined ? DEFAULT_QUERY_TIMEOUT_MS : parseDuration(queryOptions.timeout, "client.query() timeout");
    // Encrypted with the codec, never claim-checked: a query leaves nothing that could remove an object.
    const request: QueryRequest = { workflowId: id, name, ...(args !== undefined ? { args: await payloads.encodeInline(args) } : {}) };
    let data: Uint8Array;
    try {
      const msg = await topology.nc.request(names.querySubject(id), encode(request), { timeout: timeoutMs });
      data = msg.data;
    } catch (err) {
      const text = String((err as Error)?.message ?? err);
      if (/no responders|503/i.test(text) || (err as { code?: unknown })?.code === "503") {
        throw new QueryError("WF_NO_QUERY_RESPONDER", `no runtime answers queries in namespace "${names.namespace || "(none)"}"`, { hint: "Start one (`wf run` or `wf dev`): queries are answered by a runtime that replays the workflow." });
      }
      if (/timeout/i.test(text)) throw new QueryError("WF_QUERY_TIMEOUT", `query "${name}" of ${id} had no answer within ${timeoutMs} ms`, { hint: "Pass a longer timeout, or check the runtimes' logs." });
      throw err;
    }
    const reply = JSON.parse(new TextDecoder().decode(data)) as QueryReply;
    if (reply.ok) return (await payloads.decodeInline(reply.result)) as R;
    const { code, hint, message, encoded } = reply.error;
    const text = encoded === undefined ? message : (await payloads.decodeError({ message, type: "QueryError", encoded })).message;
    throw new QueryError(code, text, hint ? { hint } : {});
  }

  /** `exists`: the caller saw the state already (updateWithStart), so no read for a clear unknown-id error. */
  async function update<R>(id: string, name: string, args: unknown, updateOptions: UpdateOptions = {}, exists = false): Promise<R> {
    validateName("update name", name);
    const updateId = updateOptions.updateId ?? randomUUID();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(updateId)) throw new ValidationError("WF_INVALID_UPDATE_ID", `updateId ${JSON.stringify(updateId)} is not 1-64 characters of A-Z a-z 0-9 _ -`, { hint: "Pass an id such as `add-sku-42-1`, or leave it out." });
    const timeoutMs = updateOptions.timeout === undefined ? DEFAULT_UPDATE_TIMEOUT_MS : parseDuration(updateOptions.timeout, "client.update() timeout");
    const expired = AbortSignal.timeout(timeoutMs);
    const timedOut = () =>
      new UpdateError("WF_UPDATE_TIMEOUT", `no outcome of update "${name}" (${updateId}) of ${id} within ${timeoutMs} ms`, { hint: `It may still apply: call client.update again with { updateId: "${updateId}" } to wait for it, or check the runtimes.` });
    if (!exists) await latestRun(id); // a clear error for an unknown id (a watch of no key would wait for the timeout)
    let sent = false;
    try {
      // The outcome is recorded in the state: watch it (the current state first, then each write)
      // until it is there. The update is sent once the watch has the state, so no write is missed.
      for await (const state of watchStored(id, { signal: expired })) {
        const outcome = state.updates?.find((u) => u.id === updateId);
        if (outcome) return await updateOutcome<R>(outcome, id, name);
        // An ended workflow takes no update, and writes nothing for one (decide.ts decideUpdate).
        if (isTerminal(state.status)) throw updateOfEnded(state, name, updateId);
        if (!sent) {
          // Encoded (and claim-checked when large) only now: a retry whose update has its outcome sends nothing, and stores nothing.
          const encodedArgs = args === undefined ? undefined : await payloads.encode(args, (data) => SLOT.updateArgs(id, updateId, data), { limit: `args of update ${name} to ${id}` });
          const message: UpdateMessage = { workflowId: id, name, updateId, ...(encodedArgs !== undefined ? { args: encodedArgs } : {}) };
          await topology.js.publish(names.updateSubject(id), encode(message), { msgID: `${id}/update/${updateId}` });
          sent = true;
        }
      }
    } catch (err) {
      if (err instanceof AbortedError && expired.aborted) throw timedOut();
      throw err;
    }
    throw timedOut(); // the watch ended without a terminal state: the connection is closing
  }

  /** The caller's answer from an update's outcome record: its result or its error, decoded (a CodecError without the key). */
  async function updateOutcome<R>(outcome: UpdateRecord, id: string, name: string): Promise<R> {
    if (outcome.ok) return (await payloads.decode(outcome.result)) as R;
    const error = outcome.error ? await payloads.decodeError(outcome.error) : { message: "update failed", type: "Error" };
    const code = outcome.rejected ? (error.code ?? "WF_UPDATE_REJECTED") : error.code === "WF_UNKNOWN_UPDATE" ? "WF_UNKNOWN_UPDATE" : "WF_UPDATE_FAILED";
    throw new UpdateError(code, outcome.rejected ? `update "${name}" of ${id} was rejected: ${error.message}` : `update "${name}" of ${id} failed: ${error.type}: ${error.message}`, { hint: error.hint ?? (outcome.rejected ? "Nothing was recorded; fix the arguments and send it again." : "The handler threw; the workflow goes on.") });
  }

  /** Why an update to a workflow that ended has no outcome: it came too late, or the workflow ended while its handler ran. */
  function updateOfEnded(state: WorkflowState, name: string, updateId: string): UpdateError {
    if (updateSeen(state, updateId)) {
      return new UpdateError("WF_WORKFLOW_NOT_RUNNING", `workflow ${state.id} ended (${state.status}) before the handler of update "${name}" (${updateId}) returned: the update was applied, and has no outcome`, {
        hint: `What its handler did until then is in the journal (wf show ${state.id}); a handler that must finish should be awaited by the workflow code before it returns.`,
      });
    }
    return new UpdateError("WF_WORKFLOW_NOT_RUNNING", `workflow ${state.id} is ${state.status}: the update "${name}" was not applied`, {
      hint: "Updates go to a running workflow: start a new run (client.start with idReusePolicy, or updateWithStart), then send it.",
    });
  }

  async function startWorkflow<O>(workflow: string, input: unknown, startOptions: StartOptions, signalToo?: StartMessage["signal"]): Promise<WorkflowHandle<O>> {
    validateName("workflow name", workflow);
    const id = startOptions.id === undefined ? newWorkflowId(workflow) : validateWorkflowId(startOptions.id);
    const plainInput = input === undefined ? null : input;
    // The whole start, decoded, is what limits.maxInputBytes bounds: with the claim check, the
    // message itself is small however large the input.
    const plainBytes = Buffer.byteLength(JSON.stringify({ id, input: plainInput, memo: startOptions.memo, signal: signalToo }) ?? "");
    if (plainBytes > config.limits.maxInputBytes) {
      throw new ValidationError("WF_INPUT_TOO_LARGE", `input of ${workflow} is ${plainBytes} bytes; limits.maxInputBytes is ${config.limits.maxInputBytes}`, {
        hint: "Pass a reference (an object store key, a URL) instead of the data, or raise limits.maxInputBytes.",
      });
    }
    const encodeStart = (value: unknown, field: "input" | "memo") => payloads.encode(value, (data) => SLOT.start(id, field, data), { limit: `${field} of ${workflow}` });
    const message: StartMessage = { id, input: await encodeStart(plainInput, "input") };
    if (startOptions.searchAttributes !== undefined) {
      const typed = typedAttributes(startOptions.searchAttributes, `start of ${workflow}`);
      if (Object.keys(typed).length > 0) message.searchAttributes = typed;
    }
    if (startOptions.timeout !== undefined) message.timeoutMs = parseDuration(startOptions.timeout, `start of ${workflow}: timeout`);
    if (startOptions.memo !== undefined) message.memo = await encodeStart(startOptions.memo, "memo");
    if (signalToo) message.signal = { ...signalToo, payload: await payloads.encode(signalToo.payload, SLOT.signal(id, signalToo.signalId)) };
    // The caller's span (if an OpenTelemetry SDK is registered): the run's span becomes its child.
    const traceparent = activeTraceparent();
    if (traceparent) message.traceparent = traceparent;
    const reusing = startOptions.idReusePolicy !== undefined && startOptions.idReusePolicy !== "reject-duplicate";
    if (startOptions.idReusePolicy !== undefined) {
      if (!ID_REUSE_POLICIES.includes(startOptions.idReusePolicy)) {
        throw new ValidationError("WF_INVALID_ID_REUSE_POLICY", `idReusePolicy ${JSON.stringify(startOptions.idReusePolicy)} is not one of ${ID_REUSE_POLICIES.join(", ")}`, {
          hint: 'Pass "reject-duplicate" (the default: one id, one workflow), "allow-if-failed" or "allow-duplicate".',
        });
      }
      if (reusing) message.idReusePolicy = startOptions.idReusePolicy;
    }
    const data = encode(message);
    if (!payloads.active && data.length > config.limits.maxInputBytes) {
      throw new ValidationError("WF_INPUT_TOO_LARGE", `input of ${workflow} is ${data.length} bytes; limits.maxInputBytes is ${config.limits.maxInputBytes}`, {
        hint: "Pass a reference (an object store key, a URL) instead of the data, or raise limits.maxInputBytes.",
      });
    }
    // Same id, same Nats-Msg-Id: a retried publish is dropped by JetStream; a later one is a no-op
    // in the orchestrator because the state exists. (A signal-with-start is its own message: its
    // signal must reach a workflow that exists.)
    // A start that may make a new run of an existing id is its own request (a retry of this call
    // reuses it): the id's Nats-Msg-Id would have JetStream drop it within the duplicate window.
    // Its handle waits for a run after the latest finished one, which it may replace.
    let afterRun = 0;
    if (reusing) {
      const state = storedJson<WorkflowState>(await topology.states.get(id));
      if (state && reusesId(state, startOptions.idReusePolicy)) afterRun = runNumber(state);
    }
    const msgID = signalToo ? `${id}/start/${signalToo.signalId}` : reusing ? `${id}/start/${randomUUID()}` : `${id}/start`;
    const ack = await topology.js.publish(names.startSubject(workflow), data, { msgID });
    if (!reusing && ack.duplicate && !(await topology.states.get(id))) {
      // A start of this id within the duplicate window, and no state: it was refused without one
      // (a workflow type not deployed yet, docs/protocol.md) or is still queued. Publish it again
      // under its own Nats-Msg-Id; the orchestrator creates a state once per id (KV create) anyway.
      await topology.js.publish(names.startSubject(workflow), data, { msgID: `${id}/start/${randomUUID()}` });
    }
    return getHandle<O>(id, workflow, afterRun);
  }

  const getHandle = <O>(id: string, workflow = "", afterRun = 0): WorkflowHandle<O> => ({
    id,
    workflow,
    result: (opts) => result<O>(id, opts, afterRun),
    describe: () => describe(id),
    cancel: (reason) => cancel(id, reason),
    signal: (name, payload) => signal(id, name, payload),
  });

  const schedules = createScheduleClient({
    topology,
    namespace: config.namespace,
    ...(options.clock ? { clock: options.clock } : {}),
    start: async (workflow, input, id, scheduleId) => {
      await startWorkflow(workflow, input, { id, searchAttributes: { scheduleId } });
    },
  });

  return {
    topology,
    schedules,
    start: (workflow, input, startOptions = {}) => startWorkflow(workflow, input, startOptions),
    query,
    update: (id, name, args, updateOptions) => update(id, name, args, updateOptions),
    async updateWithStart(workflow, options) {
      const { update: name, args, updateId, timeout, input, ...start } = options;
      await startWorkflow(workflow, input, start);
      // The update goes once the state exists (an update for an id without one is dead-lettered):
      // the watch's first value is the state, as soon as it is written.
      const started = AbortSignal.timeout(UPDATE_WITH_START_WAIT_MS);
      let exists = false;
      try {
        for await (const _state of watchStored(options.id, { signal: started })) {
          exists = true;
          break;
        }
      } catch (err) {
        if (!(err instanceof AbortedError && started.aborted)) throw err;
      }
      if (!exists) throw new UpdateError("WF_UPDATE_TIMEOUT", `workflow ${options.id} was not started within ${UPDATE_WITH_START_WAIT_MS / 1000} s, so update "${name}" was not sent`, { hint: "Check that a runtime runs this workflow type (`wf run`)." });
      return update(options.id, name, args, { ...(updateId ? { updateId } : {}), ...(timeout !== undefined ? { timeout } : {}) }, true);
    },
    async signalWithStart(workflow, options) {
      validateName("signal name", options.signal);
      if (options.id === undefined) throw new ValidationError("WF_INVALID_ID", "signalWithStart needs an id: the signal goes to the workflow with that id", { hint: "Pass { id: \"order-1\", signal: \"approve\", … }." });
      const { input, signal, payload, ...startOptions } = options;
      return startWorkflow(workflow, input, startOptions, { name: signal, payload: payload === undefined ? null : payload, signalId: randomUUID() });
    },
    getHandle: (id) => getHandle(id),
    result: (id, opts) => result(id, opts),
    waitForEnd,
    describe,
    runs: async (id, page) => listRuns(topology.states, await latestRun(id), page),
    history: async (id) => toWorkflowHistory(await describe(id)),
    cancel: (id, reason) => cancel(id, reason),
    retry,
    terminate: (id, reason) => cancel(id, reason, true),
    signal,
    watch,
    list(filter: ListOptions = {}): AsyncIterable<WorkflowSummary> {
      const { pageSize, cursor: from, ...rest } = filter;
      planFilter(rest); // a bad filter fails here, at the call
      return {
        async *[Symbol.asyncIterator]() {
          let cursor = from;
          do {
            const page = await listPage(topology, rest, { limit: pageSize ?? DEFAULT_PAGE_SIZE, ...(cursor ? { cursor } : {}) });
            yield* page.workflows;
            cursor = page.cursor;
          } while (cursor);
        },
      };
    },
    listPage: (filter = {}, page = {}) => listPage(topology, filter, page),
    count: (filter = {}) => countWorkflows(topology, filter),
    async delete(id) {
      validateWorkflowId(id);
      const entry = await topology.states.get(id);
      if (!entry || entry.operation !== "PUT" || entry.length === 0) return false;
      const state = entry.json<WorkflowState>();
      if (!isTerminal(state.status)) {
        throw new ValidationError("WF_WORKFLOW_RUNNING", `workflow ${id} is ${state.status}; only a finished workflow can be deleted`, {
          hint: `Cancel it first (wf cancel ${id}), then delete it once it has ended.`,
        });
      }
      await removeWorkflow(topology, state, { stateSeq: entry.revision });
      return true;
    },
    async close() {
      if (!options.connection) await nc.drain().catch(() => nc.close());
    },
  };
}
