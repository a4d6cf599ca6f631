/**
 * Blocked workflows (orchestrator.onNonDeterminism = "block"): their code diverged from their
 * journal, so none of their events can be applied until compatible code runs. Each such event is
 * parked on the WORKFLOW_PARKED stream, one subject per workflow, and acked; it must not stay on
 * the shared events consumer: a NAK'd message keeps its max_ack_pending slot until it is
 * redelivered, and a bad deploy that blocks thousands of workflows would fill the window and stop
 * event delivery for the whole namespace.
 *
 * The parked stream is also the index of blocked workflows: its subjects are their ids. Resuming
 * lists them (cost grows with the number of blocked workflows, not with every workflow ever run)
 * and re-publishes each parked event to its original subject, then deletes it. Events of a
 * workflow that is still blocked are simply parked again.
 *
 * Failure windows: an event is parked (PubAck) before it is acked, so a crash in between parks it
 * twice at most; the second copy has the same Nats-Msg-Id (dropped within the duplicate window)
 * or is a duplicate event, which the engine ignores (completions carry their attempt, signals get
 * their id pinned here). A parked event is re-published before it is deleted: a crash in between
 * re-publishes it again later, with the same two safety nets.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import type { Logger } from "../logger.js";
import type { Topology } from "../nats/topology.js";

/** Header of a parked message: the events-stream subject it came from and goes back to. */
export const PARKED_SUBJECT_HEADER = "Jetflow-Subject";
/** How often a runtime looks for parked events of workflows that are no longer blocked. */
export const DEFAULT_PARKED_SWEEP_MS = 30_000;
/** Workflows whose parked events are re-published at once. */
const RELEASE_CONCURRENCY = 16;

/**
 * Park one event of a blocked workflow; durable when this resolves, so the caller may ack it.
 * A signal without an id gets the one the orchestrator would have derived from this delivery
 * (`seq-<stream seq>`): re-published, it has a new sequence and must not become a second signal.
 */
export async function parkEvent(topology: Topology, msg: JsMsg, workflowId: string): Promise<void> {
  const { names } = topology;
  let data: Uint8Array = msg.data;
  if (names.eventKind(msg.subject) === "signal") {
    const body = JSON.parse(new TextDecoder().decode(msg.data)) as Record<string, unknown>;
    if (body.signalId === undefined) data = new TextEncoder().encode(JSON.stringify({ ...body, signalId: `seq-${msg.seq}` }));
  }
  const h = headers();
  h.set(PARKED_SUBJECT_HEADER, msg.subject);
  await topology.js.publish(names.parkedSubject(workflowId), data, { headers: h, msgID: `park/${workflowId}/${msg.seq}` });
}

/** The blocked workflows: ids with parked events, and how many each has. */
export async function parkedWorkflows(topology: Topology): Promise<Map<string, number>> {
  const { names } = topology;
  const info = await topology.jsm.streams.info(names.parkedStream, { subjects_filter: names.parkedSubject(">") });
  const parked = new Map<string, number>();
  for (const [subject, count] of Object.entries(info.state.subjects ?? {})) parked.set(names.workflowIdOfParked(subject), count);
  return parked;
}

/**
 * Re-publish a workflow's parked events to their subjects on the events stream, oldest first,
 * deleting each once it is re-published. Safe to run concurrently (two runtimes, or a sweep and
 * an unblocking write): a copy re-published twice has the same Nats-Msg-Id, and deleting a
 * message another runtime deleted already is a no-op. Returns how many it re-published.
 */
export async function releaseParked(topology: Topology, workflowId: string): Promise<number> {
  const { names, jsm, js } = topology;
  const subject = names.parkedSubject(workflowId);
  let released = 0;
  for (let from = 1; ; ) {
    // next_by_subj (server 2.9+): the first message of this subject at or after `from`.
    const stored = await jsm.streams.getMessage(names.parkedStream, { seq: from, next_by_subj: subject } as unknown as { seq: number }).catch(noMessage);
    if (!stored) return released;
    from = stored.seq + 1;
    const original = stored.header?.get(PARKED_SUBJECT_HEADER);
    if (original && names.eventKind(original)) {
      await js.publish(original, stored.data, { msgID: `unpark/${workflowId}/${stored.seq}` });
      released += 1;
    }
    await jsm.streams.deleteMessage(names.parkedStream, stored.seq, false).catch(() => undefined);
  }
}

/**
 * Retry every blocked workflow against the code that runs now: a new deployment, or a runtime that
 * starts (programmatic code has no deployments). `except`: workflows known to diverge still (a
 * deploy's report), whose events would only be parked again.
 */
export interface ResumeOptions {
  /** Workflows to leave parked. */
  except?: Set<string>;
  /** Checked per workflow just before its events are re-published: false leaves them parked. */
  filter?: (id: string) => Promise<boolean>;
}

export async function resumeBlocked(topology: Topology, logger: Logger, options: ResumeOptions = {}): Promise<number> {
  const ids = [...(await parkedWorkflows(topology)).keys()].filter((id) => !options.except?.has(id));
  let workflows = 0;
  for (let i = 0; i < ids.length; i += RELEASE_CONCURRENCY) {
    await Promise.all(
      ids.slice(i, i + RELEASE_CONCURRENCY).map(async (id) => {
        if (options.filter && !(await options.filter(id))) return;
        const released = await releaseParked(topology, id);
        if (released > 0) workflows += 1;
        logger.debug(`re-published ${released} parked event(s) of workflow ${id}`, { component: "orchestrator", workflowId: id });
      }),
    );
  }
  return workflows;
}

export interface BlockedResumer {
  /** Retry the blocked workflows once (in the background), then sweep every `sweepMs`. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * What each orchestrator runs: a retry of every blocked workflow when it starts (its code may be
 * the fix), and a periodic sweep that releases the parked events of workflows no longer blocked,
 * e.g. unblocked by a runtime that died before releasing them, or by a cancel. The sweep reads
 * one state per blocked workflow.
 */
export function createBlockedResumer(options: { topology: Topology; logger: Logger; sweepMs?: number }): BlockedResumer {
  const { topology } = options;
  const logger = options.logger.child({ component: "orchestrator" });
  const sweepMs = options.sweepMs ?? DEFAULT_PARKED_SWEEP_MS;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  const stillBlocked = async (id: string): Promise<boolean> => {
    const entry = await topology.states.get(id);
    if (!entry || entry.operation !== "PUT" || entry.length === 0) return false;
    const state = entry.json<{ status?: string; blocked?: unknown }>();
    return state.status === "running" && state.blocked !== undefined;
  };

  function pass(kind: "start" | "sweep"): void {
    running = running.then(async () => {
      if (stopped) return;
      try {
        // (Checked per workflow: stop() does not wait for a whole pass over many blocked workflows.)
        const filter = async (id: string) => !stopped && (kind === "start" || !(await stillBlocked(id)));
        const resumed = await resumeBlocked(topology, logger, { filter });
        if (resumed > 0) logger.info(`${kind === "start" ? "retrying" : "resuming"} ${resumed} blocked workflow(s): their parked events are re-published`);
      } catch (err) {
        if (!stopped) logger.warn(`resuming blocked workflows failed: ${(err as Error)?.message ?? err}`);
      }
      if (!stopped) timer = setTimeout(() => pass("sweep"), sweepMs).unref();
    });
  }

  return {
    async start() {
      stopped = false;
      pass("start");
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

function noMessage(err: unknown): null {
  // 10037: no message found (the subject has no message at or after the sequence).
  const apiCode = (err as { api_error?: { err_code?: number } })?.api_error?.err_code;
  if (apiCode === 10037 || /no message found/i.test((err as Error)?.message ?? "")) return null;
  throw err;
}
