/**
 * Every error jetflow raises lives here. Each has a stable `code` (documented in docs/errors.md),
 * a message that states what happened with the offending value, and, where there is one, a `hint`
 * that says what to do next.
 */

export interface JetflowErrorOptions {
  cause?: unknown;
  hint?: string;
}

export class JetflowError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: JetflowErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** wf.config.json, an environment variable or a flag has a wrong key or value. */
export class ConfigError extends JetflowError {}

/** A workflow id, workflow type, step name or duration is not of the accepted form. */
export class ValidationError extends JetflowError {}

/**
 * A message on a jetflow subject has the wrong shape (runtime/protocol.ts). Runtimes dead-letter
 * it with this message as the reason (`invalid_message`); programs that publish see it there.
 */
export class ProtocolError extends JetflowError {
  constructor(message: string) {
    super("WF_INVALID_MESSAGE", message, { hint: "docs/protocol.md gives each message's shape; the dead letter (WORKFLOW_DEAD_LETTERS) holds the body." });
  }
}

/** A DAG definition is inconsistent: unknown dependency, cycle, duplicate step, unknown activity. */
export class DefinitionError extends JetflowError {}

/** functions/ could not be bundled or loaded (syntax error, forbidden import in workflow code). */
export class BundleError extends JetflowError {}

/** NATS could not be reached or refused an operation jetflow needs. */
export class ConnectionError extends JetflowError {}

/** The named workflow (id) does not exist in WORKFLOW_STATES. */
export class WorkflowNotFoundError extends JetflowError {}

/** A workflow ended in `failed`, `cancelled` or `timed_out`; `result()` rejects with this. */
export class WorkflowFailedError extends JetflowError {
  readonly workflowId: string;
  readonly status: string;
  readonly failure: { message: string; type: string } | undefined;

  constructor(workflowId: string, status: string, failure: { message: string; type: string } | undefined) {
    super(
      "WF_WORKFLOW_" + status.toUpperCase(),
      `workflow ${workflowId} ${status.replaceAll("_", " ")}` + (failure ? `: ${failure.type}: ${failure.message}` : ""),
      { hint: `Run \`wf show ${workflowId}\` for its steps and errors.` },
    );
    this.workflowId = workflowId;
    this.status = status;
    this.failure = failure;
  }
}

/**
 * A replay issued a different command than the journal recorded: the workflow's code changed in a
 * way that is not compatible with runs already in flight, or it is not deterministic.
 */
export class NonDeterminismError extends JetflowError {
  constructor(message: string) {
    super("WF_NON_DETERMINISM", message, {
      hint:
        "Workflow code must issue the same commands in the same order on every replay. Keep the old " +
        "code for running workflows (deploy a new workflow name or version) and use ctx.now()/ctx.random() " +
        "instead of Date and Math.random.",
    });
  }
}

/**
 * With orchestrator.onNonDeterminism = "block", thrown by a decision instead of failing a diverging
 * workflow: the orchestrator parks the event (orchestrator/blocked.ts) and marks the state
 * `blocked`. Internal: users see the marker in the state and `wf show`, never this error.
 */
export class BlockedWorkflowError extends JetflowError {
  constructor(readonly divergence: NonDeterminismError) {
    super("WF_WORKFLOW_BLOCKED", divergence.message, {
      cause: divergence,
      hint: "Deploy code that replays the workflow's journal (or cancel it); its parked events are then applied.",
    });
  }
}

/** Thrown inside workflow code for things the sandbox forbids (timers, I/O). */
export class DeterminismViolationError extends JetflowError {}

/**
 * The reason an activity's `ctx.signal` fires when its workflow is cancelled or ended (the worker
 * aborts its running attempts); the attempt's task goes back to JetStream, never acked unrecorded.
 */
export class CancelledError extends JetflowError {
  constructor(reason: string) {
    super("WF_CANCELLED", reason);
  }
}

/** The reason an activity's `ctx.signal` fires when its attempt's timeout passes. */
export class ActivityTimeoutError extends JetflowError {
  constructor(timeoutMs: number) {
    super("WF_ACTIVITY_TIMEOUT", `activity timed out after ${timeoutMs}ms`, {
      hint: "Make the activity faster, raise its timeout, or let it honour ctx.signal.",
    });
  }
}

/** The reason an activity's `ctx.signal` fires when its runtime stops and the grace period is over. */
export class ShutdownError extends JetflowError {
  constructor(reason: string) {
    super("WF_SHUTDOWN", `the runtime is stopping (${reason})`, { hint: "The task is released to another runtime; nothing to do." });
  }
}

/** A workflow's state names a workflow type its pinned code does not have (replay cannot run). */
export class UnknownWorkflowError extends JetflowError {
  constructor(workflowType: string, version: string) {
    super("WF_UNKNOWN_WORKFLOW", `workflow type "${workflowType}" is not in the loaded code (version ${version})`, {
      hint: "Deploy code that has it (wf deploy), or check the workflow type in the start subject.",
    });
  }
}

/** An operation was given up on because its AbortSignal fired. */
export class AbortedError extends JetflowError {}

/**
 * An event kept failing (or failed in a way that cannot heal): it was dead-lettered as
 * `event_failed`, and its workflow, when one is named, failed with this error's message.
 */
export class PoisonEventError extends JetflowError {
  constructor(subject: string, deliveries: number, cause: unknown) {
    const why = (cause as Error)?.message ?? String(cause);
    super("WF_EVENT_FAILED", `the event on ${subject} could not be applied (${deliveries} deliveries): ${why}`, {
      cause,
      hint: "The dead letter (stream WORKFLOW_DEAD_LETTERS, reason event_failed) holds the event; see docs/errors.md#wf_event_failed.",
    });
  }
}

/** Internal: a KV compare-and-set lost against a concurrent writer. Never seen by users. */
export class RevisionConflictError extends JetflowError {
  constructor(key: string, cause?: unknown) {
    super("WF_REVISION_CONFLICT", `state of ${key} changed concurrently`, { cause });
  }
}

/**
 * A payload could not be encoded or decoded (runtime/payloads/): a key missing from codec.keys,
 * a codec misconfigured, a payload too large, a claim-checked object gone.
 */
export class CodecError extends JetflowError {}

/** Turn anything thrown (including non-Error values and errors from another realm) into a plain record. */
export interface ErrorRecord {
  message: string;
  type: string;
  stack?: string;
  nonRetryable?: boolean;
  details?: unknown;
  /** A jetflow error's code and hint, where the record stands for one (a child start that was refused). */
  code?: string;
  hint?: string;
  /**
   * Set when a payload codec encoded this error (runtime/payloads/payloads.ts): the envelope of
   * `{message, stack, details}`, which are then absent here (`message` says it is encoded).
   */
  encoded?: unknown;
}

export function toErrorRecord(thrown: unknown): ErrorRecord {
  if (thrown !== null && typeof thrown === "object") {
    const e = thrown as { message?: unknown; name?: unknown; stack?: unknown; nonRetryable?: unknown; details?: unknown; type?: unknown };
    const record: ErrorRecord = {
      message: typeof e.message === "string" ? e.message : safeStringify(thrown),
      type: typeof e.type === "string" ? e.type : typeof e.name === "string" ? e.name : "Error",
    };
    if (typeof e.stack === "string") record.stack = e.stack;
    if (e.nonRetryable === true) record.nonRetryable = true;
    if (e.details !== undefined) record.details = e.details;
    return record;
  }
  return { message: `non-Error value thrown: ${safeStringify(thrown)}`, type: "Error" };
}

function safeStringify(value: unknown): string {
  try {
    return typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The web UI could not start (a token missing for a non-loopback host, assets not built) or refused a request (read-only, unauthorized). */
export class UiError extends JetflowError {}

/** A query (client.query, `wf query`) could not be answered: unknown name, a handler that tried an effect or threw, no runtime to answer. */
export class QueryError extends JetflowError {}

/** An update (client.update, `wf update`) was rejected by its validator, failed in its handler, or got no outcome in time. */
export class UpdateError extends JetflowError {}
