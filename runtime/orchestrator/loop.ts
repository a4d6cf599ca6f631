/**
 * The orchestrator: a pull consumer on WORKFLOW_EVENTS shared by every runtime (no leader, no
 * partitions). For each event it loads the workflow's state, decides, writes the new state by CAS,
 * publishes the effects, and only then acks. A crash at any point leaves the event unacked; its
 * redelivery finds the state already written (a no-op) and re-publishes the pending effects.
 */
import type { JsMsg } from "@nats-io/jetstream";
import type { Config } from "../config.js";
import { recordDeadLetter } from "../dead-letters.js";
import type { Registry, RegisteredWorkflow } from "../definitions.js";
import { BlockedWorkflowError, PoisonEventError, RevisionConflictError, ValidationError } from "../errors.js";
import { validateWorkflowId } from "../ids.js";
import type { Logger } from "../logger.js";
import type { Topology } from "../nats/topology.js";
import { encode, REPAIR_HEADER, parseCancel, parseChildEvent, parseUpdate, type CompletionMessage, utf8BytesOver, parseCompletion, parseJson, parseSignal, parseStart, parseTimer, ProtocolError, type SignalMessage, type StartMessage } from "../protocol.js";
import { decodeOrRefusal } from "../payloads/payloads.js";
import { indexAttributes, indexAttributesBeforeState, indexEnd, indexStart, removeEntries, repairIndex, subjectsOf } from "../visibility/index-writer.js";
import { isTerminal, runNumber, STATE_SCHEMA_VERSION, type LeaseRef, type WorkflowState } from "../state.js";
import { repairEffects, type Leases } from "../worker/leases.js";
import { decideCancel, decideCompletion, decideSignal, decideStart, decideTimer, decideUpdate, type Decision, type DecideEnv, type StartExtras } from "./decide.js";
import { decideRetry, RETRYABLE_STATUSES } from "./retry.js";
import { archiveRun, otherRun, refuseContinuation, reusesId, runawayContinuation, startRunId } from "./runs.js";
import { parkedTimersOf } from "./parked-timers.js";
import { endSubjectOf } from "../visibility/index-keys.js";
import { parkEvent, releaseParked } from "./blocked.js";
import { createQueryResponder } from "./queries.js";
import { pendingEffects, publishAbort, publishEffects, taskMessage, type Effect } from "./outbox.js";
import { splitHistory, storeChunk, withHistory } from "./history.js";
import { TimerBatcher } from "./timer-batches.js";
import { fleetLeases } from "../nats/fleet-lease.js";
import { createRecovery } from "./recovery.js";
import { drainThenStop } from "../nats/drain.js";
import { isJsMsg, LocalCompletion, type ContinuationReservation, type EventMessage, type LocalOutcome, type LocalSource } from "./local-completion.js";
export type { Continuation, LocalOutcome, LocalSource } from "./local-completion.js";
import { earlyByMs, reparkTimer } from "./early-timers.js";
import { afterFailure, failForPoison, workflowIdOf } from "./poison.js";
import { recheckUnknownStart } from "./unknown-start.js";
import { carriedCloses, childStartFoundState, closesToCarry, decideChildEvent, endEffects, publishChildEffect, reportRejectedStart, startReport } from "./children.js";
import { holdSignal, MAX_PENDING_SIGNALS, PendingSignalsListener, releasePendingSignals } from "./pending-signals.js";
import { serializeState, StateStore, StateTooLargeError, type StoredWorkflow } from "./state-store.js";
import { NO_OBSERVER, type EngineObserver } from "../observability/observer.js";
import { droppedUpdateArgs, removeOrphanedPayload } from "../payloads/removal.js";
import { KeepAlive } from "../nats/keep-alive.js";

export interface Orchestrator {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Apply a completion from this runtime's own worker directly, without a round trip through
   * WORKFLOW_EVENTS: the state CAS that records it is its durable record (the task is acked only
   * after it). See LocalOutcome for what the worker does next.
   */
  applyLocalCompletion(completion: CompletionMessage, source: LocalSource): Promise<LocalOutcome>;
}

export interface OrchestratorOptions {
  topology: Topology;
  config: Config;
  logger: Logger;
  /** The code a workflow runs on, by the version it recorded (undefined: current). */
  registryFor(version: string | undefined): Promise<Registry>;
  /** The current code, for new starts. */
  currentRegistry(): Registry;
  /** Who holds continued steps (worker/leases.ts): a repair re-publishes only those nobody runs. */
  leases: Leases;
  /** The code of the deployment current in NATS now, re-read (a start for a type currentRegistry() lacks). */
  latestRegistry?: () => Promise<Registry>;
  now?: () => number;
  /** Told of runs started and ended, replays and cache lookups (observability/observer.ts). */
  observer?: EngineObserver;
  /** Test-only: called at named points so crash tests can kill the process there (a promise it returns at "after-state-write-before-dispatch" in apply() is waited for). */
  crashPoint?: (name: string) => void | Promise<void>;
}

const MAX_CAS_ATTEMPTS = 20;
/** Runs that continue as new in their first activation, one after the other, within one event (settleContinuations). */
const MAX_RUNS_PER_EVENT = 100;
/** Pull request lifetime of the event consumer; see run(). */
const PULL_EXPIRES_MS = 5_000;
const RETRY_DELAY_MS = 1_000;

export function createOrchestrator(options: OrchestratorOptions): Orchestrator {
  const { topology, config, logger: baseLogger } = options;
  const logger = baseLogger.child({ component: "orchestrator" });
  // Headroom below max_payload for the KV subject and headers of the write.
  const maxStateBytes = (topology.nc.info?.max_payload ?? 1024 * 1024) - 1024;
  const observer = options.observer ?? NO_OBSERVER;
  const store = new StateStore(topology.states, config.orchestrator.cacheSize, maxStateBytes, (hit) => observer.cacheLookup(hit));
  const env: DecideEnv = {
    registryFor: options.registryFor,
    defaults: config.defaults,
    onNonDeterminism: config.orchestrator.onNonDeterminism,
    withHistory: (state) => withHistory(topology.states, state),
    logger: baseLogger,
    now: options.now ?? Date.now,
    observer,
    payloads: topology.payloads,
  };
  /**
   * The payload boundary (payloads/payloads.ts): what the workflow code produced in a decision
   * (activity and child inputs, its result or error) is encoded before anything is sized, written
   * or published; `previous`'s values are sealed already and are skipped. Without a codec and
   * with small payloads, this returns the decision's own state.
   */
  const seal = async <D extends Decision>(decision: D, previous?: WorkflowState): Promise<D> =>
    decision.kind === "write" && topology.payloads.active ? { ...decision, state: await topology.payloads.seal(decision.state, previous) } : decision;
  const decideStartSealed = async (...args: Parameters<typeof decideStart>) => seal(await decideStart(...args));
  const timerBatcher = new TimerBatcher(topology);
  const recovery = createRecovery({ topology, logger, beforePass: () => store.clear(), leases: () => fleetLeases(topology, config) });
  const pendingSignals = new PendingSignalsListener(topology, (message) => logger.warn(message));
  const queries = createQueryResponder({ topology, registryFor: env.registryFor, withHistory: env.withHistory, logger: baseLogger });
  const chains = new Map<string, Promise<void>>();
  const inFlight = new Set<Promise<void>>();
  let messages: Awaited<ReturnType<Awaited<ReturnType<Topology["js"]["consumers"]["get"]>>["consume"]>> | undefined;
  let loop: Promise<void> | undefined;
  let stopping = false;
  const slotWaiters: Array<() => void> = [];
  /** Events pulled but not started when stop() came; released by stop(). */
  const unstarted: JsMsg[] = [];
  /**
   * Events from delivery until they settle, kept alive past the short ack wait (nats/keep-alive.ts):
   * one waiting for a slot, or behind another event of its workflow (serialize), is not taken over
   * by another runtime while this one is alive.
   */
  const inHand = new KeepAlive<JsMsg>({ ackWaitMs: config.orchestrator.ackWaitMs, logger, what: "events", setting: "orchestrator.ackWait" });

  /** Events of one workflow are applied one at a time in this runtime; other runtimes are fenced by CAS. */
  function serialize(id: string, work: () => Promise<void>): Promise<void> {
    const previous = chains.get(id) ?? Promise.resolve();
    const next = previous.then(work, work);
    chains.set(id, next);
    // Clean up either way; the caller handles the rejection (a bare `next.finally()` would be an
    // unhandled rejection of its own, which ends the process).
    const cleanup = () => {
      if (chains.get(id) === next) chains.delete(id);
    };
    next.then(cleanup, cleanup);
    return next;
  }

  /** A completion, applied only to the run that scheduled its task (runs.ts): an earlier run's is a no-op. */
  async function completionOfThisRun(stored: StoredWorkflow, event: CompletionMessage): Promise<Decision> {
    return otherRun(stored.state, event.runId, `completion of ${event.step}`) ?? (await decideCompletion(env, stored, event));
  }

  async function handle(msg: JsMsg): Promise<void> {
    const kind = topology.names.eventKind(msg.subject);
    let body: unknown;
    try {
      // Input from outside (starts, signals) is bounded in depth where it is parsed (protocol.ts).
      body = parseJson(msg.data, kind === "start" || kind === "signal" || kind === "update" ? { maxDepth: config.limits.maxInputDepth } : {});
    } catch (err) {
      if (kind === "start" && err instanceof ProtocolError && /maxInputDepth/.test(err.message)) {
        // Still JSON: the id, if any, is readable, and its state says why (shallowly parsed).
        const id = readableId(parseJsonShallow(msg.data));
        return deadLetter(msg, "invalid_message", err.message, id, topology.names.workflowTypeOfStart(msg.subject));
      }
      return deadLetter(msg, err instanceof ProtocolError && /maxInputDepth/.test(err.message) ? "invalid_message" : "invalid_json", (err as Error).message);
    }
    options.crashPoint?.(`event-parsed:${kind}`);
    try {
      switch (kind) {
        case "start":
          return await handleStart(msg, body);
        case "completed": {
          const event = parseCompletion(body);
          const lease = { step: event.step, attempt: event.attempt };
          return await serialize(event.workflowId, () => apply(msg, event.workflowId, (stored) => completionOfThisRun(stored, event), { lease }));
        }
        case "timer": {
          const timer = parseTimer(body);
          const early = earlyByMs(timer, env.now());
          if (early > 0) {
            logger.debug(`timer ${timer.key} fired ${early}ms early by this runtime's clock; parking it again`, { workflowId: timer.workflowId });
            await reparkTimer(topology, timer, early, msg.seq);
            return msg.ack();
          }
          return await serialize(timer.workflowId, () => apply(msg, timer.workflowId, async (stored) => otherRun(stored.state, timer.runId, `timer ${timer.key}`) ?? (await decideTimer(env, stored, timer))));
        }
        case "signal": {
          const signal = parseSignal(body);
          // A payload no runtime here can decode (a forged or tampered envelope, an unknown key, a
          // reference to no object) is its sender's fault: a dead letter. Recorded, it would fail
          // the workflow at its wait, so anyone allowed to signal could fail any workflow.
          const decoded = topology.payloads.active ? await decodeOrRefusal(topology.payloads, signal.payload) : undefined;
          if (decoded && !decoded.ok) return deadLetter(msg, "invalid_event", `signal ${signal.name} to ${signal.workflowId}: its payload cannot be decoded here: ${decoded.error.message}`, signal.workflowId);
          const event = { ...signal, signalId: signal.signalId ?? `seq-${msg.seq}` };
          const decide = (stored: StoredWorkflow) => decideSignal(env, stored, event);
          // No state yet: the signal waits for its workflow's start (pending-signals.ts).
          const hold = async () => {
            if ((await holdSignal(topology.pendingSignals, event)) === "full") {
              return deadLetter(msg, "unknown_workflow", `no workflow with id ${signal.workflowId}, and ${MAX_PENDING_SIGNALS} signals already wait for it to start`, signal.workflowId);
            }
            // Written before this read: a start stored since then is seen here, one stored later sees the signal.
            if (await store.load(signal.workflowId, true)) return apply(msg, signal.workflowId, decide);
            logger.debug(`signal ${signal.name} held until workflow ${signal.workflowId} starts`, { workflowId: signal.workflowId });
            msg.ack();
          };
          return await serialize(signal.workflowId, () => apply(msg, signal.workflowId, decide, { onUnknown: hold }));
        }
        case "cancel": {
          const cancel = parseCancel(body);
          return await serialize(cancel.workflowId, () => apply(msg, cancel.workflowId, async (stored) => decideCancel(env, stored, cancel)));
        }
        case "update": {
          const update = parseUpdate(body);
          return await serialize(update.workflowId, () => apply(msg, update.workflowId, (stored) => decideUpdate(env, stored, update)));
        }
        case "child": {
          const event = parseChildEvent(body);
          return await serialize(event.parentId, () => apply(msg, event.parentId, (stored) => decideChildEvent(env, stored, event)));
        }
        default:
          return deadLetter(msg, "invalid_event", `no handler for subject ${msg.subject}`);
      }
    } catch (err) {
      if (err instanceof ProtocolError) return deadLetter(msg, "invalid_message", err.message);
      throw err;
    }
  }

  async function handleStart(msg: JsMsg, body: unknown): Promise<void> {
    const workflowType = topology.names.workflowTypeOfStart(msg.subject);
    let start;
    try {
      start = parseStart(body);
    } catch (err) {
      const id = readableId(body);
      return deadLetter(msg, "invalid_message", (err as Error).message, id, workflowType);
    }
    // Without an id the engine makes one; it must be the same on every redelivery of this message.
    const id = start.id ?? `${workflowType}-${msg.info.timestampNanos.toString(36)}-${msg.seq}`;
    // A child's start refused without a state: its parent hears it (children.ts), instead of waiting forever.
    const rejectChild = (code: string, message: string, hint: string) => reportRejectedStart(topology, start, id, workflowType, { message, type: "ChildWorkflowStartError", code, hint });
    try {
      validateWorkflowId(id);
    } catch (err) {
      await rejectChild("WF_INVALID_ID", (err as ValidationError).message, (err as ValidationError).hint ?? "");
      return deadLetter(msg, "invalid_id", (err as ValidationError).message);
    }
    const inputBytes = msg.data.length;
    if (inputBytes > config.limits.maxInputBytes) {
      const message = `start message of ${inputBytes} bytes exceeds limits.maxInputBytes (${config.limits.maxInputBytes})`;
      await rejectChild("WF_INPUT_TOO_LARGE", message, "Pass the child a reference (an object store key, a URL) instead of the data, or raise limits.maxInputBytes.");
      return deadLetter(msg, "input_too_large", message, id, workflowType);
    }
    let registry = options.currentRegistry();
    let definition = registry.workflows.get(workflowType);
    if (!definition) {
      // Perhaps code being deployed: re-checked and retried a little, never a terminal state (unknown-start.ts).
      const verdict = await recheckUnknownStart({ workflowType, deliveryCount: msg.info.deliveryCount, registry, latest: options.latestRegistry });
      if (verdict.kind === "retry") {
        logger.warn(`${verdict.message}; retrying in ${verdict.delayMs}ms`, { workflowId: id });
        return msg.nak(verdict.delayMs);
      }
      if (verdict.kind === "refuse") {
        await rejectChild("WF_UNKNOWN_CHILD_WORKFLOW", verdict.message, "Deploy code that has the child's workflow type, or fix the type in the parent's code.");
        return deadLetter(msg, "unknown_workflow", verdict.message, id);
      }
      ({ registry, definition } = verdict);
    }
    await serialize(id, async () => {
      // No read before the create: kv.create fails when the id exists, so a start costs one write
      // (a duplicate start, rare, pays for an activation that is thrown away). A redelivered start
      // is most likely a duplicate: read first then, and repair the effects.
      const existing = msg.redelivered ? await store.load(id) : store.cached(id);
      // The run this start makes: the same on every delivery of this message (runs.ts).
      const runId = startRunId(id, msg.seq);
      const extras = {
        searchAttributes: start.searchAttributes,
        retentionMs: definition.retentionMs ?? config.retentionMs,
        signal: start.signal,
        timeoutMs: start.timeoutMs,
        memo: start.memo,
        parent: start.parent,
        traceparent: start.traceparent,
      };
      // A finished id that the start's idReusePolicy lets start again: a new run replaces it (runs.ts).
      // Undefined when it does not (a duplicate start, or this very start's run).
      const replace = (latest: StoredWorkflow): Promise<void> | undefined =>
        latest.state.runId !== runId && reusesId(latest.state, start.idReusePolicy)
          ? startNewRun(msg, latest, definition.name, () => decideStart(env, definition, registry.version, id, start.input, { ...extras, run: { runId, run: runNumber(latest.state) + 1, previousRunId: latest.state.runId } }))
          : undefined;
      // `wf retry`: a new run that reuses the completed steps of the run it replaces (retry.ts).
      if (start.retry) return retryRun(msg, id, start.retry.run, definition, registry.version, runId, extras);
      const replaced = existing && replace(existing);
      if (replaced) return replaced;
      if (existing) {
        // The first delivery may have died before it released the signals or wrote the index.
        await Promise.all([releasePendingSignals(topology, id), repairIndex(topology, existing.state), signalOfStart(id, start.signal), childStartFoundState(topology, existing.state, start, workflowType)]);
        return duplicate(msg, existing, `workflow ${id} already exists`);
      }
      // (A first run that continues as new at once is archived before the create, like any switch.)
      const { archived, decision } = await settleContinuations(await decideStartSealed(env, definition, registry.version, id, start.input, { ...extras, run: { runId, run: 1 } }));
      // The run entry first, on this connection: stored before the state (index-writer.ts).
      const indexed = indexStart(topology, decision.state, { beforeState: true });
      let stored: StoredWorkflow;
      try {
        if (options.crashPoint) {
          // Test-only: the run entry went out without an ack; have it reach the server before the crash point.
          await topology.nc.flush();
          options.crashPoint("after-run-entry-before-state");
        }
        if (archived.length > 0) await Promise.all(archived.map((run) => archiveRun(topology.states, run)));
        stored = await store.create(decision.state, decision.execution);
      } catch (err) {
        await indexed.catch(() => undefined);
        if (err instanceof RevisionConflictError) {
          const winner = await store.load(id, true);
          const replacedWinner = winner && replace(winner);
          if (replacedWinner) return replacedWinner;
          // Our run entry may now stand for a workflow that has ended: the index follows the winner.
          if (winner) await Promise.all([releasePendingSignals(topology, id), repairIndex(topology, winner.state), signalOfStart(id, start.signal), childStartFoundState(topology, winner.state, start, workflowType)]);
          return winner ? duplicate(msg, winner, `workflow ${id} was started concurrently`) : retryLater(msg, err);
        }
        throw err;
      }
      logger.debug(`started ${workflowType}`, { workflowId: id });
      observer.workflowStarted(stored.state);
      announceIfFinished(stored.state);
      if (waitsOnlyOnDistantTimers(stored.state, decision.effects, env.now(), config.orchestrator.cacheDistantWaitsMs)) store.forget(id);
      options.crashPoint?.("after-state-write-before-dispatch");
      // The deadline is parked with other starts' (timer-batches.ts); the start is acked only
      // once it is stored, like every other effect.
      const deadlines: Array<Promise<void>> = [];
      // A child reports its start (or its end, if it ended in it) to its parent (children.ts).
      const others: Effect[] = isTerminal(stored.state.status) ? endEffects(stored.state) : startReport(stored.state);
      for (const effect of decision.effects) {
        if (effect.kind === "timer" && effect.timer.kind === "timeout") deadlines.push(timerBatcher.park(effect.timer));
        else others.push(effect);
      }
      // Test-only: the state is created, a child's start (or this child's report of its end) not yet published.
      if (others.some((effect) => effect.kind === "child")) options.crashPoint?.("after-child-step-before-child-start");
      if (others.some((effect) => effect.kind === "parent" && effect.event.event === "ended")) options.crashPoint?.("after-child-end-before-parent-event");
      // Signals sent before the start are re-published now that the state exists (pending-signals.ts).
      const held = pendingSignals.has(id) ? releasePendingSignals(topology, id) : undefined;
      await Promise.all([publishEffects(topology, stored.state, others), ...deadlines, held, indexed, isTerminal(stored.state.status) ? indexEnd(topology, stored.state) : undefined]);
      msg.ack();
    });
  }

  /**
   * Signal-with-start to a workflow that exists: the signal goes to it as an ordinary signal event
   * (its id makes it a duplicate if this very start already put it in the state).
   */
  async function signalOfStart(id: string, signal: StartMessage["signal"]): Promise<void> {
    if (!signal) return;
    const message: SignalMessage = { workflowId: id, name: signal.name, payload: signal.payload, signalId: signal.signalId };
    await topology.js.publish(topology.names.signalSubject(id, signal.name), encode(message), { msgID: `${id}/signal/${signal.signalId}` });
  }

  /**
   * A decision whose run asked to continue as new (ctx.continueAsNew): the runs to archive and the
   * decision of the run that replaces them (runs.ts). The next run has the same id and type, a
   * fresh history, the new input, the same search attributes, memo, timeout and retention, and the
   * signals the run had not consumed. New code (a deployment since) runs it: nothing of the old
   * run is replayed. A run that continues again in its first activation is archived too, up to
   * MAX_RUNS_PER_EVENT; an input too large fails the run instead (no new run).
   */
  async function settleContinuations(decision: Decision & { kind: "write" }): Promise<{ archived: WorkflowState[]; decision: Decision & { kind: "write" } }> {
    const archived: WorkflowState[] = [];
    while (decision.state.status === "continued_as_new") {
      const ended = decision.state;
      const refused = refuseContinuation(ended, config.limits.maxInputBytes) ?? (archived.length >= MAX_RUNS_PER_EVENT ? runawayContinuation(ended) : undefined);
      if (refused) return { archived, decision: { kind: "write", state: refused, effects: [], execution: undefined } };
      let registry = options.currentRegistry();
      if (!registry.workflows.has(ended.workflow)) registry = await env.registryFor(ended.bundle);
      const definition = registry.workflows.get(ended.workflow);
      if (!definition) throw new Error(`workflow type ${ended.workflow} is in neither the current code nor version ${ended.bundle}`);
      archived.push(ended);
      decision = await decideStartSealed(env, definition, registry.version, ended.id, ended.continuedAsNew!.input, {
        searchAttributes: ended.searchAttributes,
        retentionMs: ended.retentionMs ?? config.retentionMs,
        timeoutMs: ended.timeoutMs ?? 0,
        memo: ended.memo,
        run: { runId: ended.continuedAsNew!.runId, run: runNumber(ended) + 1, previousRunId: ended.runId },
        carried: { signals: ended.signals, seenSignals: ended.seenSignals, updates: ended.updates, seenUpdates: ended.seenUpdates },
        // A child that continues as new stays its parent's child: the last run's end is what the parent awaits.
        parent: ended.parent,
        traceparent: ended.traceparent,
      });
    }
    return { archived, decision };
  }

  /**
   * A retry of run `run` of `id`: a new run replacing it when it is still the latest and ended
   * failed, cancelled, terminated or timed out; else the retry was applied already (a redelivery)
   * or the run went on: a duplicate.
   */
  async function retryRun(msg: JsMsg, id: string, run: number, definition: RegisteredWorkflow, version: string, runId: string, extras: StartExtras): Promise<void> {
    const latest = await store.load(id, true);
    if (!latest) return deadLetter(msg, "unknown_workflow", `no workflow with id ${id} to retry`, id);
    if (latest.state.workflow !== definition.name) return deadLetter(msg, "invalid_message", `retry of ${id} was sent for workflow type ${definition.name}, but ${id} is a ${latest.state.workflow}`, id);
    if (runNumber(latest.state) !== run || !RETRYABLE_STATUSES.includes(latest.state.status)) {
      return duplicate(msg, latest, `retry of run ${run} of ${id}: its latest run is ${runNumber(latest.state)}, ${latest.state.status}`);
    }
    const ended = await env.withHistory(latest.state);
    const retention = latest.state.retentionMs ?? extras.retentionMs;
    return startNewRun(msg, latest, definition.name, () => decideRetry(env, definition, version, ended, { ...extras, retentionMs: retention, run: { runId, run: run + 1, previousRunId: latest.state.runId } }));
  }

  /** A start under an idReusePolicy (or a retry) that lets it replace `latest`, a finished run: a new run of the id. */
  async function startNewRun(msg: JsMsg, latest: StoredWorkflow, workflowType: string, decideFirst: () => Promise<Decision & { kind: "write" }>): Promise<void> {
    // (What the first decision produced is encoded before it is stored: payloads/payloads.ts.)
    const { archived, decision } = await settleContinuations(await seal(await decideFirst()));
    try {
      await switchRun(msg, latest, [latest.state, ...archived], decision);
    } catch (err) {
      store.forget(latest.state.id);
      if (err instanceof RevisionConflictError) return retryLater(msg, err); // redelivered, it finds what won
      throw err;
    }
    logger.debug(`started ${workflowType} as run ${runNumber(decision.state)} of an id whose run ${runNumber(latest.state)} had ${latest.state.status}`, { workflowId: latest.state.id });
  }

  /**
   * The switch to a new run: the replaced runs' final states archived at `<id>/r.<n>`, then one
   * CAS of `<id>` on `base`'s revision to the new run's first state, then its effects and index
   * entries. A crash before the CAS leaves archived copies that the retry overwrites; one after it
   * leaves the event unacked, and its redelivery (a no-op for the new run) re-publishes the effects.
   */
  async function switchRun(msg: EventMessage, base: StoredWorkflow, archived: WorkflowState[], next: Decision & { kind: "write" }): Promise<void> {
    const id = base.state.id;
    await Promise.all(archived.map((run) => archiveRun(topology.states, run)));
    options.crashPoint?.("after-run-archived-before-switch");
    // The children the replaced runs leave running, to close by their policy: recorded in the
    // new run's state, so that a crash after the switch leaves them to its next writer.
    const closes = closesToCarry(archived);
    if (closes.length > 0) next.state.closing = closes;
    // A run continued as new: its next run's new attribute values' entries before its state (index-writer.ts).
    // (After a finished run, its entries are purged after the switch and the new run's written after that.)
    if (!isTerminal(base.state.status)) indexAttributesBeforeState(topology, next.state, base.state.searchAttributes);
    const written = await store.update(next.state, base.revision, next.execution);
    for (const run of archived) if (run.status === "continued_as_new") observer.workflowEnded(run);
    observer.workflowStarted(written.state);
    announceIfFinished(written.state);
    options.crashPoint?.("after-run-switch-before-dispatch");
    // The old run's parked timers (its deadline) would only fire as no-ops: deleted (parked-timers.ts).
    parkedTimersOf(topology).ended(id);
    if (isTerminal(base.state.status)) {
      // A finished run replaced by a start: its end entry and attribute entries go, the new run's come.
      await removeEntries(topology, { id, workflow: base.state.workflow, attrs: base.state.searchAttributes }, { subject: endSubjectOf(subjectsOf(topology), base.state) });
    }
    const state = written.state;
    const index = isTerminal(state.status)
      ? indexEnd(topology, state, isTerminal(base.state.status) ? "rewrite" : { before: base.state.searchAttributes })
      : isTerminal(base.state.status)
        ? indexStart(topology, state)
        : // The run entry again (the new run's createdAt), and the attribute entries its last activation changed.
          indexAttributes(topology, state, base.state.searchAttributes);
    // A run that continued as new closes its children still running, by their policy, as an end would (children.ts).
    await Promise.all([publishEffects(topology, state, next.effects), publishEffects(topology, state, carriedCloses(state)), index]);
    options.crashPoint?.("after-dispatch-before-ack");
    msg.ack();
  }

  /** Load, decide, CAS, publish, ack; on a lost CAS, re-read and decide again. */
  async function apply(msg: EventMessage, id: string, decide: (stored: StoredWorkflow) => Promise<Decision>, applyOptions: { onUnknown?: () => Promise<void>; lease?: LeaseRef } = {}): Promise<void> {
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const stored = await store.load(id, attempt > 1);
      if (!stored) {
        // A signal may come before its workflow's start: it is held for it (onUnknown).
        if (applyOptions.onUnknown && isJsMsg(msg)) return applyOptions.onUnknown();
        return deadLetter(msg, "unknown_workflow", `no workflow with id ${id} for the event on ${msg.subject}`, id);
      }
      let decision: Decision;
      try {
        decision = await seal(await decide(stored), stored.state);
      } catch (err) {
        store.forget(id); // the cached execution may be half-advanced
        if (err instanceof BlockedWorkflowError) return block(msg, stored, err);
        throw err;
      }
      if (decision.kind === "write" && decision.state.status === "continued_as_new") {
        // ctx.continueAsNew: the next run replaces this one (runs.ts), unless it is refused (a failed write then).
        const continued: { archived: WorkflowState[]; decision: Decision & { kind: "write" } } = await settleContinuations(decision);
        if (continued.archived.length > 0) {
          try {
            return await switchRun(msg, stored, continued.archived, continued.decision);
          } catch (err) {
            store.forget(id);
            if (!(err instanceof RevisionConflictError)) throw err;
            logger.debug(`lost the CAS that continues ${id} as new; re-reading`, { workflowId: id, attempt });
            continue;
          }
        }
        decision = continued.decision;
      }
      if (decision.kind === "write" && stored.state.blocked) {
        // Running code replays cleanly again: the workflow is no longer blocked.
        decision = { ...decision, state: { ...decision.state } };
        delete decision.state.blocked;
      }
      if (decision.kind === "noop") {
        // A cached state may be stale (another runtime applied later events of this workflow):
        // a "no-op" judged on it could drop an event the current state needs. Only a no-op on a
        // fresh read is a duplicate.
        if (attempt === 1) {
          store.forget(id);
          continue;
        }
        if (decision.absentStep && msg instanceof LocalCompletion && msg.leased) {
          // A continued step the state does not hold: the state went back to before the step
          // that scheduled it (a NATS crash lost writes). Acking the lease would lose that step
          // too; released, it is delivered again and runs again. (Even when the state has history
          // chunks: a step that is not delivered yet cannot have moved to one, and if a late
          // retry's step did, the redelivered lease finds its attempt recorded and repairs.)
          logger.warn(`a continued step's completion finds ${decision.reason} in the state of ${id} (NATS lost writes?); releasing its lease`, { workflowId: id });
          msg.release();
          return;
        }
        if (decision.orphanedPayload !== undefined) await removeOrphanedPayload(topology, decision.orphanedPayload.ref, decision.orphanedPayload.under, logger);
        // Another execution of an attempt already recorded: its task was delivered again, and may
        // have been the lease of a continued step whose runtime died (see Continuation): repair.
        return duplicate(msg, stored, decision.reason, decision.anotherExecution, applyOptions.lease);
      }
      if (decision.state.closing) {
        // The closes this run owes its predecessor's children: published before the write that drops them (WorkflowState.closing).
        const owed = decision.state;
        await publishEffects(topology, owed, carriedCloses(owed));
        decision = { ...decision, state: { ...owed } };
        delete decision.state.closing;
      }
      // A next task this runtime's worker runs itself (see Continuation): chosen and held before
      // the write, which marks the step as continued, so that a recovery pass leaves it alone and
      // a repair that reads the write before the step starts is told it is held.
      const here = continuedHere(msg, decision.state, decision.effects);
      try {
        // A long workflow's oldest delivered steps move to a history chunk, stored before the
        // state that no longer holds them; only steps `stored` already committed (history.ts).
        const serialized = serializeState(decision.state);
        const split = splitHistory(decision.state, serialized.length, stored);
        if (split) await storeChunk(topology.states, split.chunk);
        const write = split ? failIfTooLarge({ ...decision, state: split.head }, stored, maxStateBytes) : failIfTooLarge(decision, stored, maxStateBytes, serialized);
        // (A state too large fails the workflow instead: no effects, nothing continues.)
        const continued = here && write.effects.includes(here.effect) ? here : undefined;
        if (here && !continued) here.reservation.cancel();
        options.crashPoint?.("before-state-write");
        // New search attribute values' entries go first, so the stored state says they are stored (index-writer.ts).
        if (write.state.searchAttributes !== stored.state.searchAttributes) indexAttributesBeforeState(topology, write.state, stored.state.searchAttributes);
        const next = await store.update(write.state, stored.revision, write.execution, write.serialized);
        announceIfFinished(next.state, write.serialized);
        // Refused updates' claim-checked arguments that no stored state references any more (removal.ts).
        for (const dropped of droppedUpdateArgs(stored.state, next.state)) void removeOrphanedPayload(topology, dropped.ref, dropped.under, logger);
        if (waitsOnlyOnDistantTimers(next.state, write.effects, env.now(), config.orchestrator.cacheDistantWaitsMs)) store.forget(id);
        // (A test's hook may pause here, to act inside the window between the write and its effects.)
        const paused = options.crashPoint?.("after-state-write-before-dispatch");
        if (paused) await paused;
        // Test-only: the write that recorded a cancel request is stored, its effects (aborts, cleanup tasks) not yet published.
        if (next.state.cancelRequested && !stored.state.cancelRequested) options.crashPoint?.("after-cancel-recorded-before-dispatch");
        // A workflow that just ended owes its parent its end and its children their close policy (children.ts).
        const ended = isTerminal(next.state.status) && !isTerminal(stored.state.status) ? endEffects(next.state) : [];
        const effects = [...(continued ? write.effects.filter((effect) => effect !== continued.effect) : write.effects), ...ended];
        if (effects.some((effect) => effect.kind === "child")) options.crashPoint?.("after-child-step-before-child-start");
        if (ended.some((effect) => effect.kind === "parent")) options.crashPoint?.("after-child-end-before-parent-event");
        const attributesChanged = next.state.searchAttributes !== stored.state.searchAttributes;
        await Promise.all([
          publishEffects(topology, next.state, effects),
          // The index follows the state: an end entry once it ended; old attribute values' entries purged when they changed.
          // (An upsert and the end in one activation: indexEnd purges them too.)
          isTerminal(next.state.status)
            ? indexEnd(topology, next.state, attributesChanged ? { before: stored.state.searchAttributes } : undefined, { unacknowledged: true })
            : attributesChanged
              ? indexAttributes(topology, next.state, stored.state.searchAttributes)
              : undefined,
        ]);
        options.crashPoint?.("after-dispatch-before-ack");
        // (A terminate message reached the workers itself.)
        if (isTerminal(next.state.status) && next.state.status !== "terminated") abortRunningSteps(next.state);
        if (continued && msg instanceof LocalCompletion) {
          continued.reservation.start(taskMessage(next.state, continued.effect.step));
          msg.continued();
        } else {
          msg.ack();
        }
        if (stored.state.blocked) releaseUnblocked(id);
        return;
      } catch (err) {
        // Not started: a repair may publish the step now (the caller's retry path depends on it).
        here?.reservation.cancel();
        store.forget(id);
        if (!(err instanceof RevisionConflictError)) throw err;
        logger.debug(`lost a CAS on ${id}; re-reading`, { workflowId: id, attempt });
      }
    }
    retryLater(msg, new Error(`gave up after ${MAX_CAS_ATTEMPTS} CAS conflicts`));
  }

  /**
   * One next task of a completion from this runtime's own worker, for the worker to run here
   * instead of publishing it (see Continuation): the first task of an activity type it hosts.
   * Its step in `state` (the decision's draft, not yet written) is marked `continued`, and it is
   * held from now on (the reservation: started, or cancelled, by the caller).
   */
  function continuedHere(msg: EventMessage, state: WorkflowState, effects: Effect[]): { effect: Effect & { kind: "task" }; reservation: ContinuationReservation } | undefined {
    if (!(msg instanceof LocalCompletion) || !msg.continuation || stopping) return undefined;
    const continuation = msg.continuation;
    const effect = effects.find((e): e is Effect & { kind: "task" } => e.kind === "task" && continuation.hosts(state.steps[e.step]!.activity!));
    if (!effect) return undefined;
    state.steps[effect.step] = { ...state.steps[effect.step]!, continued: continuation.holder, lease: continuation.lease };
    return { effect, reservation: continuation.reserve(state.id, effect.step) };
  }

  /**
   * An event the state already reflects. If it is a redelivery (or `repair`: another execution
   * reported it), the runtime that applied it may have died before publishing the effects: publish
   * every pending one again (deduplicated by Nats-Msg-Id), then ack.
   */
  async function duplicate(msg: EventMessage, stored: StoredWorkflow, reason: string, anotherExecution = false, completionOf?: LeaseRef): Promise<void> {
    // A completion its worker could record only part way in-process comes as an event that says
    // so (protocol.ts REPAIR_HEADER): its first delivery may find it recorded and its effects not.
    const partWay = isJsMsg(msg) && msg.headers?.has(REPAIR_HEADER) === true;
    if (msg.redelivered || anotherExecution || partWay) {
      // Continued steps are repaired only through their lease's task (worker/leases.ts): a
      // completion from this runtime's worker may hold it; so may the part-way decision whose
      // continued step never started (its lease is the completed task, acked since).
      const lease = msg instanceof LocalCompletion ? msg.lease : partWay ? completionOf : undefined;
      const { effects, held } = lease ? await repairEffects(stored.state, lease, options.leases.status) : { effects: pendingEffects(stored.state, { skipContinued: true }), held: false };
      logger.debug(`${msg.redelivered ? "redelivered event" : "another execution's completion"} already applied (${reason}); re-publishing ${effects.length} pending effect(s)`, { workflowId: stored.state.id });
      await Promise.all([publishEffects(topology, stored.state, effects), repairIndex(topology, stored.state)]);
      if (held && msg instanceof LocalCompletion) return msg.held();
      if (held && isJsMsg(msg)) {
        // A part-way event whose continued step's holder did not answer in time (leases.ts
        // "unknown"), or still runs it: acked, the step would be left to nobody if that holder is
        // gone (its lease, the completed task, was acked). Asked again after a while instead.
        logger.info(`a continued step of ${stored.state.id} may still run on its runtime (no clear answer); asking again in ${config.orchestrator.ackWaitMs}ms`, { workflowId: stored.state.id });
        return msg.nak(config.orchestrator.ackWaitMs);
      }
    } else {
      logger.debug(`duplicate event ignored: ${reason}`, { workflowId: stored.state.id });
    }
    msg.ack();
  }

  /**
   * Record (once) that the workflow is blocked, and park the event (blocked.ts) before acking it:
   * its state stays as it was. A delayed NAK instead would keep a max_ack_pending slot of the shared
   * events consumer per blocked workflow, and enough of them stop event delivery for everyone.
   */
  async function block(msg: EventMessage, stored: StoredWorkflow, err: BlockedWorkflowError): Promise<void> {
    logger.error(`workflow ${stored.state.id} is blocked: ${err.message}`, { workflowId: stored.state.id });
    if (!stored.state.blocked) {
      const state: WorkflowState = { ...stored.state, blocked: { message: err.message, since: new Date().toISOString() } };
      await store.update(state, stored.revision).catch(() => undefined); // a lost CAS just means we record it next time
    }
    // Our own worker's completion: declined, it is published as an event and parked on that path.
    if (!isJsMsg(msg)) return msg.nak();
    await parkEvent(topology, msg, stored.state.id);
    msg.ack();
  }

  /** A write just cleared `blocked`: the workflow's other parked events can be applied now. */
  function releaseUnblocked(id: string): void {
    releaseParked(topology, id).catch((err) =>
      logger.warn(`re-publishing the parked events of ${id} failed (the next sweep retries): ${(err as Error)?.message ?? err}`, { workflowId: id }),
    );
  }

  /**
   * A workflow that ended (timed out, or failed in one branch) while other steps were running:
   * tell the workers, which abort those attempts. Best effort; their results would be ignored.
   */
  function abortRunningSteps(state: WorkflowState): void {
    if (!Object.values(state.steps).some((s) => s.status === "scheduled")) return;
    publishAbort(topology, state, undefined, `workflow ${state.status.replaceAll("_", " ")}`);
  }

  function retryLater(msg: EventMessage, err: unknown): void {
    logger.warn(`applying ${msg.subject} failed, retrying in ${RETRY_DELAY_MS}ms: ${(err as Error)?.message ?? err}`);
    msg.nak(RETRY_DELAY_MS);
  }

  async function deadLetter(msg: EventMessage, reason: Parameters<typeof recordDeadLetter>[2]["reason"], message: string, workflowId?: string, workflowType?: string): Promise<void> {
    // A completion from our own worker is no message to keep: declined, it is published as an
    // event, and the event path dead-letters that.
    if (!isJsMsg(msg)) return msg.nak();
    await recordDeadLetter(topology, logger, { reason, message, subject: msg.subject, data: msg.data, sourceSeq: msg.seq, ...(workflowId ? { workflowId } : {}) });
    if (workflowId && workflowType) await recordFailedStart(workflowId, workflowType, reason, message);
    msg.ack();
  }

  /** A start we refused, but whose id we can read: its state says why, so `wf show` and result() can tell. */
  async function recordFailedStart(id: string, workflowType: string, reason: string, message: string): Promise<void> {
    try {
      validateWorkflowId(id);
    } catch {
      return;
    }
    const now = new Date().toISOString();
    const state: WorkflowState = {
      v: STATE_SCHEMA_VERSION,
      id,
      workflow: workflowType,
      status: "failed",
      input: null,
      error: { message, type: reason === "unknown_workflow" ? "UnknownWorkflowError" : reason === "event_failed" ? "PoisonEventError" : "InvalidStartError" },
      createdAt: now,
      updatedAt: now,
      completedAt: now,
      bundle: options.currentRegistry().version,
      kind: "code",
      steps: {},
      journal: [],
      retentionMs: config.retentionMs,
    };
    try {
      await store.create(state);
      announceIfFinished(state);
      await indexEnd(topology, state);
    } catch (err) {
      if (!(err instanceof RevisionConflictError)) throw err; // an existing workflow keeps its state
    }
  }

  /**
   * Tell waiting clients (result()) that a workflow ended, with the state just written: a core
   * NATS message, so a waiting client needs no KV watch (a JetStream consumer per wait). A lost
   * one costs a client its next re-read of the state, nothing more.
   */
  function announceIfFinished(state: WorkflowState, serialized?: string): void {
    if (!isTerminal(state.status)) return;
    observer.workflowEnded(state);
    try {
      topology.nc.publish(topology.names.finishedSubject(state.id), serialized ?? JSON.stringify(state));
    } catch {
      /* connection closing: clients re-read the state */
    }
  }

  /** An event whose application threw: retried with a growing delay, or given up (poison.ts). */
  async function failed(msg: JsMsg, err: unknown): Promise<void> {
    const verdict = afterFailure(err, msg.info.deliveryCount, config.orchestrator.maxDeliveries);
    try {
      if (!verdict.giveUp) {
        logger.error(`event on ${msg.subject} failed (delivery ${msg.info.deliveryCount} of at most ${config.orchestrator.maxDeliveries}), retrying in ${verdict.retryInMs}ms: ${(err as Error)?.stack ?? err}`);
        return msg.nak(verdict.retryInMs);
      }
      const kind = topology.names.eventKind(msg.subject);
      const poison = new PoisonEventError(msg.subject, msg.info.deliveryCount, err);
      const id = workflowIdOf(parseJsonShallow(msg.data), kind);
      await recordDeadLetter(topology, logger, { reason: "event_failed", message: poison.message, subject: msg.subject, data: msg.data, sourceSeq: msg.seq, ...(id ? { workflowId: id } : {}) });
      if (id && kind === "start") await recordFailedStart(id, topology.names.workflowTypeOfStart(msg.subject), "event_failed", poison.message);
      else if (id) {
        store.forget(id);
        const state = await failForPoison(store, id, poison, env.now());
        if (state) {
          announceIfFinished(state);
          await Promise.all([indexEnd(topology, state), ...endEffects(state).map((effect) => publishChildEffect(topology, state, effect))]);
        }
      }
      msg.ack();
    } catch (second) {
      logger.error(`giving up the event on ${msg.subject} failed too (${(second as Error)?.message ?? second}); it is retried`);
      try {
        msg.nak(RETRY_DELAY_MS);
      } catch {
        /* connection gone: JetStream redelivers after ack wait */
      }
    }
  }

  async function acquireSlot(): Promise<void> {
    if (inFlight.size < config.orchestrator.concurrency) return;
    await new Promise<void>((resolve) => slotWaiters.push(resolve));
  }

  async function run(): Promise<void> {
    const consumer = await topology.js.consumers.get(topology.names.eventsStream, topology.names.orchestratorConsumer);
    inHand.observeAckWait(((await consumer.info(true)).config.ack_wait ?? Infinity) / 1_000_000); // the ack wait in force (nats/keep-alive.ts)
    // Short pull expiry: a pull request lost with a NATS node (or a consumer leader) is noticed
    // after two missed heartbeats (expires / 2 each), not after the 30 s default.
    messages = await consumer.consume({ max_messages: Math.min(1_000, config.orchestrator.concurrency * 2), expires: PULL_EXPIRES_MS });
    for await (const msg of messages) {
      if (stopping) {
        // Pulled but not started when stop() came (the iterator yields what it buffered before
        // it ends): stop() hands these to another runtime instead of leaving them to the ack wait.
        unstarted.push(msg);
        continue;
      }
      inHand.hold(msg);
      await acquireSlot();
      const task = handle(msg)
        .catch((err) => failed(msg, err))
        .finally(() => {
          inHand.release(msg);
          inFlight.delete(task);
          slotWaiters.shift()?.();
        });
      inFlight.add(task);
    }
  }

  return {
    async applyLocalCompletion(completion, source) {
      if (stopping) return "declined";
      const local = new LocalCompletion(topology.names.completedSubject(completion.workflowId, completion.step), source);
      try {
        await serialize(completion.workflowId, () => apply(local, completion.workflowId, (stored) => completionOfThisRun(stored, completion)));
      } catch (err) {
        logger.warn(`recording the completion of ${completion.step} failed part way (${(err as Error)?.message ?? err}); releasing the task to repair it`, { workflowId: completion.workflowId });
        return "retry";
      }
      return local.outcome === "pending" ? "declined" : local.outcome;
    },
    async start() {
      stopping = false;
      inHand.start();
      await pendingSignals.start();
      await queries.start();
      loop = run().catch((err) => {
        if (!stopping) logger.error(`orchestrator loop ended: ${(err as Error)?.stack ?? err}`);
      });
      recovery.start();
    },
    async stop() {
      stopping = true;
      recovery.stop();
      pendingSignals.stop();
      await queries.stop();
      // Drain the subscription first: events the server sent before it saw our unsubscribe still
      // reach the loop (nats/drain.ts), which keeps them for the NAKs below.
      await drainThenStop(messages);
      // The server keeps our pull request until it expires and would hand it events that nobody
      // reads any more (each then waits for the ack wait). A consumer info, sent after the
      // unsubscribe on the same connection, makes the server drop requests without interest;
      // only then are the unstarted events NAK'd (else one could go back to our dead request).
      await topology.jsm.consumers.info(topology.names.eventsStream, topology.names.orchestratorConsumer).catch(() => undefined);
      await loop;
      for (const msg of unstarted.splice(0)) {
        try {
          msg.nak();
        } catch {
          /* connection gone: JetStream redelivers after ack wait */
        }
      }
      await Promise.allSettled([...inFlight]);
      inHand.stop();
    },
  };
}

/**
 * A state that NATS cannot store would be retried forever; instead the workflow fails, with the
 * last state it could store and an error that says why.
 */
function failIfTooLarge(decision: Decision & { kind: "write" }, stored: StoredWorkflow, maxBytes: number, serialized = serializeState(decision.state)): Decision & { kind: "write"; serialized?: string } {
  // Serialized once: the write below reuses it.
  const bytes = utf8BytesOver(serialized, maxBytes);
  if (bytes === undefined) return { ...decision, serialized };
  const error = new StateTooLargeError(decision.state.id, bytes, maxBytes);
  const now = new Date().toISOString();
  const state: WorkflowState = { ...stored.state, status: "failed", error: { message: `${error.message}. ${error.hint}`, type: "StateTooLargeError" }, updatedAt: now, completedAt: now };
  return { kind: "write", state, effects: [], execution: undefined };
}

/**
 * True when the write armed only timers and everything the workflow waits on fires at least
 * `distantMs` from now. Such a workflow is not kept in the state cache (orchestrator.cacheDistantWaits):
 * its state and live execution would hold memory until then (10,000 sleeping workflows were most
 * of a runtime's memory), and when it wakes, one read and a replay bring it back.
 */
function waitsOnlyOnDistantTimers(state: WorkflowState, effects: Effect[], now: number, distantMs: number): boolean {
  if (effects.length === 0 || effects.some((e) => e.kind !== "timer")) return false; // this write dispatched work
  // A signal may come any moment; everything else the workflow waits on is what a recovery would
  // re-publish (tasks, retry and sleep timers, the deadline): one mapping of steps to wake-ups.
  if (Object.values(state.steps).some((s) => s.kind === "signal" && s.status === "waiting")) return false;
  const pending = pendingEffects(state);
  return pending.length > 0 && pending.every((e) => e.kind === "timer" && e.timer.fireAt - now >= distantMs);
}


/** The body, for the ids of an event being given up; undefined if even that fails. */
function parseJsonShallow(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

function readableId(body: unknown): string | undefined {
  if (typeof body === "object" && body !== null && typeof (body as { id?: unknown }).id === "string") return (body as { id: string }).id;
  return undefined;
}
