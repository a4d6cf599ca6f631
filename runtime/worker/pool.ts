/**
 * The worker pool: a fixed number of activity slots fed by one pull loop per activity type this
 * runtime hosts. Each loop reserves slots before it pulls, so a task is only taken from JetStream
 * when it can start at once (a task waiting in our memory would burn its ack wait). An idle type
 * reserves one slot, so its first task is picked up immediately; a busy type takes up to its fair
 * share of the slots.
 *
 * Per task: check the crash-loop count, run the activity with an AbortSignal (timeout, shutdown),
 * keep JetStream's ack deadline moving while it runs, publish the completion (durable), then ack.
 * A crash anywhere before the ack redelivers the task to some runtime after the ack wait.
 */
import { repairIndex } from "../visibility/index-writer.js";
import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { setTimeout as sleep } from "node:timers/promises";
import pRetry from "p-retry";
import type { Config } from "../config.js";
import type { Registry } from "../definitions.js";
import { ActivityTimeoutError, CancelledError, ShutdownError, toErrorRecord, type ErrorRecord } from "../errors.js";
import type { Logger } from "../logger.js";
import { ensureActivityConsumer, type Topology } from "../nats/topology.js";
import { headers } from "@nats-io/nats-core";
import { REPAIR_HEADER, MSG_ID, parseJson, parseTask, utf8BytesOver, type CompletionMessage, type TaskMessage } from "../protocol.js";
import { recordDeadLetter } from "../dead-letters.js";
import { createActivityContext } from "./activity-context.js";
import { armTimeout, Attempt } from "./attempt.js";
import { ContinuedTask, type TaskDelivery } from "./continued-task.js";
import { createTaskReleaser, type ReleasableDelivery } from "./release.js";
import { Slots } from "./slots.js";
import { drainThenStop } from "../nats/drain.js";
import { KeepAlive } from "../nats/keep-alive.js";
import type { Continuation, LocalOutcome, LocalSource } from "../orchestrator/loop.js";
import { pendingEffects, publishEffects } from "../orchestrator/outbox.js";
import { isTerminal, type LeaseRef, type WorkflowState } from "../state.js";
import { repairEffects, type Leases } from "./leases.js";
import { attemptOutcome, NO_OBSERVER, type EngineObserver } from "../observability/observer.js";
import { CodecError } from "../errors.js";
import { SLOT } from "../payloads/payloads.js";

export interface WorkerPool {
  start(): Promise<void>;
  /** Stop pulling; let running activities finish within the grace period, then release the rest. */
  stop(reason?: string): Promise<void>;
  /** Activity types this pool pulls. */
  readonly activityTypes: string[];
  /** The current code changed: start pulling activity types it added. */
  refresh(): void;
  readonly running: number;
  /** Activity attempts running now (busy slots, for metrics). */
  readonly attemptsRunning: number;
}

export interface WorkerPoolOptions {
  topology: Topology;
  config: Config;
  logger: Logger;
  registry(): Registry;
  /** The code of an older version, for a task whose activity the current code no longer has. */
  registryFor?(version: string): Promise<Registry>;
  /**
   * This runtime's orchestrator, when it has one: a completion is applied in-process (its state
   * CAS is the durable record) instead of being published to WORKFLOW_EVENTS and consumed again.
   * "declined": the completion is published instead; "retry": published too, marked for repair (see LocalOutcome).
   */
  applyCompletion?: (completion: CompletionMessage, source: LocalSource) => Promise<LocalOutcome>;
  /** The continued steps this runtime holds, and the question to other runtimes (leases.ts). */
  leases: Leases;
  /** Told of each activity attempt (observability/observer.ts). */
  observer?: EngineObserver;
  /** Test-only hook: called at named points so crash tests can kill the process there. */
  crashPoint?: (name: string) => void;
}

/** The shortest pull JetStream's client allows: a loop's unused reservations come back within it. */
const FETCH_EXPIRES_MS = 1_000;
/** How long a stopping pull loop waits for the tasks already on their way (see drainThenStop). */
const DRAIN_TIMEOUT_MS = 2_000;
const MAX_OUTPUT_BYTES = 900 * 1024;
const encoder = new TextEncoder();
/** A released task (or lease) comes back after this: a continuation whose state went back, or that stops part way. */
const RELEASE_DELAY_MS = 1_000;
/** A task whose attempt a cancel aborted comes back after this: by then the cancel is applied (or was never stored). */
const CANCELLED_RELEASE_DELAY_MS = 2_000;
/** For waits that only end by being granted. */
const NEVER = new AbortController().signal;

/** How an attempt ended, as its completion reports it. */
type Outcome = { ok: true; output: unknown } | { ok: false; error: ErrorRecord };

export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  const { topology, config } = options;
  const logger = options.logger.child({ component: "worker" });
  const slots = new Slots(Math.max(1, config.worker.slots));
  /** Completions being recorded at once (see runTask): as many as the orchestrator applies at once. */
  const recording = new Slots(Math.max(1, config.orchestrator.concurrency));
  const pulling = new AbortController(); // stops the pull loops
  /** This runtime is an orchestrator too (it applies its own completions): it may write the index. */
  const orchestratorHere = options.applyCompletion !== undefined;
  /** Releases are recorded before the NAK, so they are not counted as crashes (release.ts). */
  const releaser = createTaskReleaser({ topology, config });
  const tasks = new Set<Promise<void>>();
  const loops = new Map<string, Promise<void>>();
  /** Tasks pulled after stop() began, never started: released by stop(). */
  const unstarted: JsMsg[] = [];
  const activityTypes: string[] = [];
  let started = false;

  /** The types to pull: every activity of the current code, or those of worker.activities it has. */
  function wantedTypes(): string[] {
    const hosted = [...options.registry().activities.keys()];
    for (const wanted of config.worker.activities) {
      if (!hosted.includes(wanted)) logger.warn(`worker.activities names "${wanted}", but the loaded code has no such activity; not pulling it`);
    }
    return config.worker.activities.length ? config.worker.activities.filter((t) => hosted.includes(t)) : hosted;
  }

  function startLoops(): void {
    for (const type of wantedTypes()) {
      if (loops.has(type)) continue;
      activityTypes.push(type);
      loops.set(
        type,
        pullLoop(type).catch((err) => {
          logger.error(`pull loop for ${type} ended: ${(err as Error)?.stack ?? err}`);
        }),
      );
    }
  }
  /** Tasks between delivery and ack: one pool-wide timer keeps their ack deadlines moving (nats/keep-alive.ts). */
  const inProgress = new KeepAlive<TaskDelivery>({ ackWaitMs: config.worker.ackWaitMs, logger, what: "activity tasks and leases", setting: "worker.ackWait" });
  /** Activity attempts running now: stop() aborts them when the grace period is over. */
  const runningAttempts = new Set<Attempt>();
  /** Aborted when the shutdown grace period is over: a completion still being published gives up. */
  const graceOver = new AbortController();
  let cancelSubscriptions: Array<{ unsubscribe(): void }> = [];

  /**
   * Terminate messages land on the events stream for the orchestrator; JetStream subjects are also
   * plain NATS subjects, so every worker sees them too and aborts that workflow's running attempts
   * at once. A cancel request does not: the workflow's code decides what stops, and the
   * orchestrator names those steps on the abort subject (core NATS), as it does for a workflow
   * that ended with steps still running.
   */
  function watchCancellations(): void {
    const abort = (data: Uint8Array, wanted: (body: { terminate?: unknown; steps?: unknown }) => boolean) => {
      try {
        const body = JSON.parse(new TextDecoder().decode(data)) as { workflowId?: string; runId?: unknown; reason?: string; terminate?: unknown; steps?: unknown };
        if (!wanted(body)) return;
        const steps = Array.isArray(body.steps) ? new Set(body.steps) : undefined;
        // (Cancels are rare, and at most worker.slots attempts run: no index by workflow on the hot path.)
        for (const attempt of runningAttempts) {
          if (attempt.workflowId !== body.workflowId) continue;
          if (typeof body.runId === "string" && attempt.runId !== undefined && attempt.runId !== body.runId) continue;
          if (!steps || steps.has(attempt.step)) attempt.abort(new CancelledError(body.reason ?? "workflow cancelled"));
        }
      } catch {
        /* not ours to judge: the orchestrator dead-letters malformed cancels */
      }
    };
    cancelSubscriptions = [
      topology.nc.subscribe(topology.names.cancelSubject(">"), { callback: (_err, msg) => abort(msg.data, (body) => body.terminate === true) }),
      topology.nc.subscribe(topology.names.abortSubject(">"), { callback: (_err, msg) => abort(msg.data, () => true) }),
    ];
  }

  async function pullLoop(activityType: string): Promise<void> {
    await ensureActivityConsumer(topology, activityType, config.worker.ackWaitMs);
    const consumer: Consumer = await topology.js.consumers.get(topology.names.tasksStream, topology.names.activityConsumer(activityType));
    // The ack wait in force (another runtime may have set a shorter one than ours): the keep-alive follows it.
    inProgress.observeAckWait(((await consumer.info(true)).config.ack_wait ?? Infinity) / 1_000_000);
    let idle = true;
    while (!pulling.signal.aborted) {
      let granted: number;
      try {
        // A busy type takes its fair share of the slots (not all of them: a reservation is held
        // until its pull expires, and the next type in a workflow must not wait that long).
        const fairShare = Math.max(1, Math.ceil(slots.total / Math.max(1, loops.size)));
        granted = await slots.acquireUpTo(idle ? 1 : fairShare, pulling.signal);
      } catch {
        return;
      }
      let used = 0;
      try {
        const batch = await consumer.fetch({ max_messages: granted, expires: FETCH_EXPIRES_MS });
        const stop = () => void drainThenStop(batch, DRAIN_TIMEOUT_MS);
        pulling.signal.addEventListener("abort", stop, { once: true });
        try {
          for await (const msg of batch) {
            if (pulling.signal.aborted) {
              unstarted.push(msg); // pulled while stopping: stop() hands it to another runtime
              continue;
            }
            used += 1;
            startTask(releaser.wrap(msg));
          }
        } finally {
          // Also when the fetch fails part way: a listener per failed fetch would pile up on the pool's signal.
          pulling.signal.removeEventListener("abort", stop);
        }
      } catch (err) {
        if (!pulling.signal.aborted) {
          logger.warn(`pulling ${activityType} tasks failed: ${(err as Error)?.message ?? err}; retrying`);
          await sleep(1_000, undefined, { signal: pulling.signal }).catch(() => undefined);
        }
      } finally {
        slots.release(granted - used);
      }
      idle = used === 0;
    }
  }

  /** Run a task in a slot already taken for it (the slot is given back when it ends). */
  function startTask(msg: TaskDelivery): void {
    inProgress.hold(msg);
    let slotHeld = true;
    const releaseSlot = () => {
      if (!slotHeld) return;
      slotHeld = false;
      slots.release(1);
    };
    const task = runTask(msg, releaseSlot)
      .catch((err) => {
        // Unexpected (a bug, or a task no check foresaw): log it; never let it end the process.
        logger.error(`task on ${msg.subject} failed: ${(err as Error)?.stack ?? err}`);
      })
      .finally(() => {
        inProgress.release(msg);
        tasks.delete(task);
        releaseSlot();
        if (msg instanceof ContinuedTask) options.leases.release(msg.task.workflowId, msg.task.step);
      });
    tasks.add(task);
  }

  /**
   * The offer to run the next step of a workflow here (see Continuation), holding `lease`: for
   * activity types this pool pulls, and not while stopping. The step starts in the next free slot,
   * ahead of the pull loops: a workflow under way goes before new work, and a slot is not held
   * while the decision's state write is in flight (under load that many writes are, and holding
   * slots through them left most next steps to the tasks stream).
   */
  function continuationOf(lease: TaskDelivery, leaseRef: LeaseRef): Continuation {
    return {
      holder: options.leases.instance,
      lease: leaseRef,
      hosts: (activityType) => !pulling.signal.aborted && loops.has(activityType),
      reserve: (workflowId, step) => {
        // Held from the decision until its attempt ends (recorded or released), or until the
        // decision gives it up: a repair that asks in between is told to leave the step alone
        // (leases.ts), even before the write that marks it continued has returned.
        options.leases.hold(workflowId, step);
        let settled = false;
        const settle = (): boolean => !settled && (settled = true);
        return {
          // From here the task owns the hold: its end (or a stop before its slot) releases it.
          start: (task) => void (settle() && startWhenSlotFree(new ContinuedTask(topology.names.taskSubject(task.activity), task, lease, leaseRef))),
          cancel: () => void (settle() && options.leases.release(workflowId, step)),
        };
      },
    };
  }

  /** The task a delivery's message stands for in a lease: its own, or the chain's first. */
  function leaseRefOf(msg: TaskDelivery, task: TaskMessage): LeaseRef {
    return msg instanceof ContinuedTask ? msg.leaseRef : { step: task.step, attempt: task.attempt };
  }

  /** A continued step waits for a slot in memory, its lease kept alive; stopping releases the lease. */
  function startWhenSlotFree(msg: ContinuedTask): void {
    inProgress.hold(msg);
    const waiting = slots.acquireUpTo(1, pulling.signal, true).then(
      () => startTask(msg),
      () => {
        inProgress.release(msg);
        options.leases.release(msg.task.workflowId, msg.task.step);
        release(msg); // stopping: the lease goes to another runtime, which re-publishes this step
      },
    );
    const tracked = waiting.finally(() => tasks.delete(tracked));
    tasks.add(tracked);
  }

  /**
   * Run one task. `releaseSlot` gives its activity slot back: once the activity settled, recording
   * its completion (a state CAS and the next task's publish, or a completion event) is engine work
   * that runs no user code, so it no longer counts against worker.slots but against a bound of its
   * own. (Holding the slot through the recording capped a runtime at worker.slots workflows
   * advancing at once, however short the activities: 16 by default.)
   */
  async function runTask(msg: TaskDelivery, releaseSlot: () => void): Promise<void> {
    let task: TaskMessage;
    try {
      task = msg instanceof ContinuedTask ? msg.ownTask() : parseTask(parseJson(msg.data));
    } catch (err) {
      await recordDeadLetter(topology, logger, { reason: "invalid_message", message: (err as Error).message, subject: msg.subject, data: msg.data }).catch(() => undefined);
      msg.ack();
      return;
    }
    const meta = { workflowId: task.workflowId, step: task.step, attempt: task.attempt };
    let fn = options.registry().activities.get(task.activity);
    if (!fn && task.bundle && options.registryFor) {
      fn = (await options.registryFor(task.bundle).catch(() => undefined))?.activities.get(task.activity);
    }
    if (!fn) {
      logger.warn(`no code for activity ${task.activity} in this runtime any more; releasing the task`, meta);
      msg.nak(5_000);
      return;
    }
    if (msg.redelivered && (await alreadyRecorded(msg, task, meta))) return;
    const deliveries = msg.info.deliveryCount;
    const crashes = deliveries > config.worker.maxDeliveries && "crashes" in msg ? await (msg as ReleasableDelivery).crashes() : deliveries - 1;
    if (crashes >= config.worker.maxDeliveries) {
      // Each earlier delivery ended without a completion: the runtime running it died (or hung).
      await record(msg, task, new Date(), releaseSlot, {
        ok: false,
        error: {
          message: `activity ${task.activity} (step ${task.step}, attempt ${task.attempt}) crashed or lost its runtime ${crashes} times (worker.maxDeliveries=${config.worker.maxDeliveries}); not running it again`,
          type: "ActivityCrashLoopError",
          nonRetryable: true,
        },
      });
      return;
    }

    const startedAt = new Date();
    // One controller per attempt, aborted with the reason: its timeout, the workflow's
    // cancellation, or the end of the shutdown grace period (stop() aborts every running one).
    const attempt = new Attempt(task.workflowId, task.step, task.runId);
    const timer = armTimeout(attempt, task);
    runningAttempts.add(attempt);
    const heartbeat = () => msg.working();
    const observed = (options.observer ?? NO_OBSERVER).activityAttempt(task, startedAt);
    let outcome: Outcome | undefined;
    try {
      const ctx = createActivityContext(task, attempt, heartbeat, options.logger);
      // The payload boundary (payloads/payloads.ts): the activity gets its input decoded.
      const input = await topology.payloads.decode(task.input);
      const output = await attempt.race(Promise.resolve(observed.run(() => fn(input, ctx))));
      outcome = { ok: true, output: output === undefined ? null : output };
    } catch (err) {
      const reason: unknown = attempt.aborted ? attempt.reason : undefined;
      if (reason instanceof CancelledError) {
        // The workflow is cancelled, or ended: its state no longer waits for this step. The task
        // is not acked without a completion, though: the cancel was seen on core NATS, and if
        // JetStream did not store it the workflow still waits. Released, the task comes back
        // after the cancel was applied and is dropped (its workflow ended), or runs again.
        logger.info(`aborted ${task.activity}: workflow cancelled`, meta);
        release(msg, CANCELLED_RELEASE_DELAY_MS);
        return;
      }
      if (reason instanceof ShutdownError) {
        // Shutdown: not a failure of the activity. Release the task for another runtime now.
        logger.info(`released ${task.activity} at shutdown`, meta);
        msg.nak();
        return;
      }
      outcome =
        reason instanceof ActivityTimeoutError
          ? { ok: false, error: { message: `activity ${task.activity} timed out after ${task.timeoutMs}ms (attempt ${task.attempt})`, type: "ActivityTimeoutError" } }
          : { ok: false, error: toErrorRecord(err) };
    } finally {
      observed.end(...attemptOutcome(outcome, attempt.reason));
      timer.clear();
      runningAttempts.delete(attempt);
    }
    options.crashPoint?.("after-activity-before-completion");
    await record(msg, task, startedAt, releaseSlot, outcome);
  }

  /**
   * A redelivered task whose attempt the workflow's state already records (the runtime that ran it
   * died after recording it, or held it as the lease of a continued step) is not run again: what
   * the workflow waits on is re-published instead (deduplicated by Nats-Msg-Id), which restarts a
   * continued step that died with its runtime. A task of an ended workflow is dropped. Only for
   * redeliveries: one read, rarely. True when the task was handled here (acked, or released
   * again because the re-publish failed).
   */
  async function alreadyRecorded(msg: TaskDelivery, task: TaskMessage, meta: Record<string, unknown>): Promise<boolean> {
    let state: WorkflowState | undefined;
    try {
      const entry = await topology.states.get(task.workflowId);
      state = entry && entry.operation === "PUT" && entry.length > 0 ? entry.json<WorkflowState>() : undefined;
    } catch {
      return false; // cannot tell: run it (at least once)
    }
    if (!state) return false;
    if (isTerminal(state.status)) {
      logger.info(`dropped a redelivered task of ${task.activity}: the workflow is ${state.status}`, meta);
      // Its orchestrator may have died between the terminal write and the end entry (index-writer.ts),
      // or before the end's effects: its report to a parent, its close policy for its children
      // (orchestrator/children.ts; pendingEffects of an ended state). Both are deduplicated. The
      // index only where this runtime is an orchestrator too: a worker's permissions do not cover
      // it (refused, the task went round forever), and the orchestrators repair it anyway (the
      // redelivered event that ended it, listings, recovery).
      try {
        await Promise.all([orchestratorHere ? repairIndex(topology, state) : undefined, publishEffects(topology, state, pendingEffects(state))]);
      } catch (err) {
        logger.warn(`re-publishing the end of workflow ${task.workflowId} failed (${(err as Error)?.message ?? err}); releasing the task to try again`, meta);
        release(msg, RELEASE_DELAY_MS);
        return true;
      }
      msg.ack();
      return true;
    }
    const step = state.steps[task.step];
    // A step no longer in the state moved to a history chunk: it was delivered long ago.
    const recorded = step ? !(step.status === "scheduled" && step.attempt === task.attempt) : state.history !== undefined;
    if (!recorded) return false;
    try {
      const repair = await repairEffects(state, leaseRefOf(msg, task), options.leases.status);
      await publishEffects(topology, state, repair.effects);
      if (repair.held) {
        // This message may be the lease of a continued step that still runs: its holder acks it
        // when the chain ends; until then it comes back now and then and is asked about again.
        logger.info(`redelivered task of ${task.activity} is already recorded, and a continued step it leases still runs; leaving it to its runtime`, meta);
        release(msg, config.worker.ackWaitMs); // the very message: its holder may ack it (a NAK, not a copy)
        return true;
      }
      logger.info(`redelivered task of ${task.activity} is already recorded; re-published what the workflow waits on instead of running it`, meta);
      msg.ack();
    } catch (err) {
      logger.warn(`re-publishing what workflow ${task.workflowId} waits on failed (${(err as Error)?.message ?? err}); releasing the task to try again`, meta);
      release(msg, RELEASE_DELAY_MS);
    }
    return true;
  }

  /** Record the outcome (see complete()) under the recording bound, with the activity slot given back. */
  async function record(msg: TaskDelivery, task: TaskMessage, startedAt: Date, releaseSlot: () => void, outcome: Outcome): Promise<void> {
    await recording.acquireUpTo(1, NEVER);
    releaseSlot();
    try {
      await complete(msg, task, startedAt, outcome);
    } finally {
      recording.release(1);
    }
  }

  async function complete(msg: TaskDelivery, task: TaskMessage, startedAt: Date, outcome: Outcome): Promise<void> {
    const base = { workflowId: task.workflowId, ...(task.runId ? { runId: task.runId } : {}), step: task.step, attempt: task.attempt, startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), worker: config.worker.id };
    let completion: CompletionMessage;
    try {
      // The payload boundary (payloads/payloads.ts): the output (claim-checked when large, under a
      // name of this attempt, which a redelivery overwrites) or the error leaves encoded.
      completion = outcome.ok
        ? { ...base, ok: true, output: await topology.payloads.encode(outcome.output, SLOT.stepOutput(SLOT.scope(task.workflowId, task.run), task.step, task.attempt), { limit: `output of activity ${task.activity}` }) }
        : { ...base, ok: false, error: await topology.payloads.encodeError(outcome.error) };
    } catch (err) {
      if (!(err instanceof CodecError)) {
        logger.warn(`could not store the output of ${task.step}: ${(err as Error)?.message}; the task will be redelivered`, { workflowId: task.workflowId });
        return;
      }
      const error = { message: `output of activity ${task.activity} cannot be recorded: ${err.message}`, type: "ActivityOutputError", nonRetryable: true };
      completion = { ...base, ok: false, error: await topology.payloads.encodeError(error).catch(() => error) };
    }
    let text: string;
    try {
      text = JSON.stringify(completion);
      const bytes = utf8BytesOver(text, MAX_OUTPUT_BYTES);
      if (bytes !== undefined) throw new Error(`the completion is ${bytes} bytes; the limit is ${MAX_OUTPUT_BYTES}`);
    } catch (err) {
      completion = { ...base, ok: false, error: { message: `output of activity ${task.activity} cannot be recorded: ${(err as Error).message}`, type: "ActivityOutputError", nonRetryable: true } };
      text = JSON.stringify(completion);
    }
    let local: LocalOutcome;
    try {
      // The completion must be durable before the task is acked: either recorded in the state by
      // this runtime's orchestrator, or published as an event (NATS may be restarting: retry).
      // A completion applied here went through JSON like a published one (Dates become strings),
      // so the cached execution sees exactly what a replay from the stored state would.
      local = options.applyCompletion
        ? await options
            .applyCompletion(JSON.parse(text) as CompletionMessage, {
              redelivered: msg.redelivered,
              leased: msg instanceof ContinuedTask,
              lease: leaseRefOf(msg, task),
              continuation: config.worker.continuations ? continuationOf(msg, leaseRefOf(msg, task)) : undefined,
            })
            .catch(() => "retry" as const)
        : "declined";
      if (local === "retry" && msg instanceof ContinuedTask) local = await keepRecording(msg, text, task);
      // (A continued step still "retry" after keepRecording: this runtime is stopping.)
      if (local === "released" || (local === "retry" && msg instanceof ContinuedTask)) {
        release(msg, RELEASE_DELAY_MS);
        return;
      }
      if (local === "held") {
        // Another execution of an attempt already recorded, and this message may be the lease of
        // a continued step that still runs (leases.ts): its holder acks it when its chain ends.
        release(msg, config.worker.ackWaitMs); // the very message: its holder may ack it (a NAK, not a copy)
        return;
      }
      if (local === "declined" || local === "retry") {
        // "retry": recorded part way in-process; the event says so, and repairs what is missing
        // (see LocalOutcome), so the activity's result is not thrown away.
        const data = encoder.encode(text);
        const marked = local === "retry" ? { headers: repairHeaders() } : {};
        const publish = () =>
          topology.js.publish(topology.names.completedSubject(task.workflowId, task.step), data, { msgID: MSG_ID.completion(task.workflowId, task.step, task.attempt, task.run), ...marked });
        // The first try is a plain publish (the common case, and the hot path); retries back off.
        await publish().catch(() =>
          pRetry(publish, { retries: Infinity, minTimeout: 200, maxTimeout: 2_000, signal: pulling.signal.aborted ? graceOver.signal : undefined }),
        );
      }
    } catch (err) {
      logger.warn(`could not publish the completion of ${task.step}: ${(err as Error)?.message}; the task will be redelivered`, { workflowId: task.workflowId });
      return;
    }
    options.crashPoint?.("after-completion-before-ack");
    // Continued: the next step runs here and holds this message as its lease (it acks it).
    if (local !== "continued") msg.ack();
    const level = completion.ok ? "debug" : "info";
    logger[level](`${task.activity} ${completion.ok ? "completed" : `failed: ${completion.error.type}: ${completion.error.message}`}`, {
      workflowId: task.workflowId,
      step: task.step,
      attempt: task.attempt,
    });
  }

  /**
   * A continued step whose recording failed part way (NATS went away) keeps trying, here, until
   * NATS is back or the runtime stops: releasing its lease instead would leave the step to the
   * lease's redelivery, which a crashed server may have lost with its last writes, and recovery
   * after a reconnect leaves continued steps to their runtime. Each retry counts as a redelivery:
   * if an earlier try was recorded, its effects are re-published. "retry" when stopping: the
   * caller releases the lease.
   */
  async function keepRecording(msg: ContinuedTask, text: string, task: TaskMessage): Promise<LocalOutcome> {
    const source: LocalSource = { redelivered: true, leased: true, lease: msg.leaseRef, continuation: config.worker.continuations ? continuationOf(msg, msg.leaseRef) : undefined };
    const once = async (): Promise<LocalOutcome> => {
      const outcome = await options.applyCompletion!(JSON.parse(text) as CompletionMessage, source);
      if (outcome === "retry") throw new Error(`recording ${task.step} of ${task.workflowId} failed part way`);
      return outcome;
    };
    // The same backoff as a completion's publish (200 ms doubling to 2 s), until stop() begins.
    return pRetry(once, { retries: Infinity, minTimeout: 200, maxTimeout: 2_000, signal: pulling.signal }).catch(() => "retry" as const);
  }

  /** Give a message back to JetStream (NAK), for now or after `delayMs`; a closed connection redelivers it after its ack wait anyway. */
  function release(msg: TaskDelivery, delayMs?: number): void {
    try {
      msg.nak(delayMs);
    } catch {
      /* connection gone: redelivered after the ack wait */
    }
  }

  /**
   * The pull loops stopped their fetches, but the server keeps each pull request until it expires.
   * On nats-server 2.9.x, a task NAK'd while such an abandoned request is the only one waiting is
   * lost until its ack wait, and another task is delivered twice (the server takes the NAK'd task
   * off its redelivery queue, finds no one listening, and rewinds the wrong sequence). A consumer
   * info makes the server drop requests nobody listens to, so the tasks released at shutdown go
   * straight to the other runtimes. 2.10 is not affected; the cost is one request per type.
   */
  async function forgetAbandonedPulls(): Promise<void> {
    await Promise.allSettled(activityTypes.map((type) => topology.jsm.consumers.info(topology.names.tasksStream, topology.names.activityConsumer(type))));
  }

  return {
    activityTypes,
    get running() {
      return tasks.size;
    },
    get attemptsRunning() {
      return runningAttempts.size;
    },
    refresh() {
      if (started && !pulling.signal.aborted) startLoops();
    },
    async start() {
      started = true;
      inProgress.start();
      watchCancellations();
      startLoops();
      if (activityTypes.length === 0) logger.warn("no activity types to pull: this runtime runs no activities");
    },
    async stop(reason = "shutdown") {
      pulling.abort(new ShutdownError(reason));
      for (const subscription of cancelSubscriptions.splice(0)) subscription.unsubscribe();
      await Promise.allSettled([...loops.values()]);
      // Our pull requests outlive their subscriptions on the server: make it drop them before
      // releasing anything (a task NAK'd while one waits could go straight back to it).
      await forgetAbandonedPulls();
      for (const msg of unstarted.splice(0)) release(releaser.wrap(msg));
      if (tasks.size > 0) {
        logger.info(`waiting up to ${config.worker.shutdownGraceMs}ms for ${tasks.size} running activit${tasks.size === 1 ? "y" : "ies"}`);
        // The grace timer is cancelled as soon as the tasks are done: it must not keep the process alive.
        const graceTimer = new AbortController();
        const grace = sleep(config.worker.shutdownGraceMs, undefined, { signal: graceTimer.signal }).catch(() => undefined);
        await Promise.race([Promise.allSettled([...tasks]), grace]);
        graceTimer.abort();
      }
      // The grace period is over: abort what still runs (each attempt NAKs its task).
      graceOver.abort(new ShutdownError(reason));
      for (const attempt of runningAttempts) attempt.abort(new ShutdownError(reason));
      await Promise.allSettled([...tasks]);
      await releaser.settled();
      inProgress.stop();
    },
  };
}

function repairHeaders() {
  const h = headers();
  h.set(REPAIR_HEADER, "1");
  return h;
}
