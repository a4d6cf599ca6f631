/**
 * Workflow states in KV, written only by compare-and-set on the revision. A bounded cache keeps
 * each recently used workflow's state, revision and live execution, so applying an event usually
 * costs one write and no read; a stale cache entry costs one failed CAS and a re-read, never a
 * wrong decision.
 */
import { JetStreamApiError } from "@nats-io/jetstream";
import { randomUUID } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { JetflowError, RevisionConflictError } from "../errors.js";
import type { WorkflowExecution } from "../journal/execution.js";
import type { StepState, WorkflowState } from "../state.js";
import { utf8BytesOver } from "../protocol.js";

export interface StoredWorkflow {
  state: WorkflowState;
  revision: number;
  /** The execution whose code has seen exactly this state's journal, if this runtime holds one. */
  execution?: WorkflowExecution | undefined;
}

const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);

export class StateStore {
  private readonly cache = new Map<string, StoredWorkflow>();

  constructor(
    private readonly kv: KV,
    private readonly capacity: number,
    /** The server's max_payload: a larger state cannot be written, and must not be retried forever. */
    private readonly maxBytes = Infinity,
    /** Told whether each cached lookup found the workflow (metrics). */
    private readonly onLookup?: (hit: boolean) => void,
  ) {}

  private encode(state: WorkflowState, serialized?: string): string {
    const text = serialized ?? serializeState(state);
    const over = utf8BytesOver(text, this.maxBytes);
    if (over !== undefined) throw new StateTooLargeError(state.id, over, this.maxBytes);
    return text;
  }

  /** The cached state, without asking NATS. */
  cached(id: string): StoredWorkflow | undefined {
    return this.cache.get(id);
  }

  /** Cached state if held, else a read. `fresh` skips the cache (after a conflict). */
  async load(id: string, fresh = false): Promise<StoredWorkflow | undefined> {
    if (!fresh) {
      const cached = this.cache.get(id);
      this.onLookup?.(cached !== undefined);
      if (cached) {
        this.touch(id, cached);
        return cached;
      }
    }
    const entry = await this.kv.get(id);
    if (!entry || entry.operation !== "PUT" || entry.length === 0) {
      this.cache.delete(id);
      return undefined;
    }
    const stored: StoredWorkflow = { state: entry.json<WorkflowState>(), revision: entry.revision };
    this.remember(id, stored);
    return stored;
  }

  /** Create the state; RevisionConflictError when the id exists. */
  async create(state: WorkflowState, execution?: WorkflowExecution): Promise<StoredWorkflow> {
    try {
      const revision = await this.kv.create(state.id, this.encode(state));
      const stored = { state, revision, execution };
      this.remember(state.id, stored);
      return stored;
    } catch (err) {
      if (isWrongLastSequence(err) || /exists/i.test((err as Error).message)) throw new RevisionConflictError(state.id, err);
      throw err;
    }
  }

  /** Replace the state if it is still at `revision`; RevisionConflictError otherwise. */
  async update(state: WorkflowState, revision: number, execution?: WorkflowExecution, serialized?: string): Promise<StoredWorkflow> {
    try {
      const next = await this.kv.update(state.id, this.encode(state, serialized), revision);
      const stored = { state, revision: next, execution };
      this.remember(state.id, stored);
      return stored;
    } catch (err) {
      this.cache.delete(state.id);
      if (isWrongLastSequence(err)) throw new RevisionConflictError(state.id, err);
      throw err;
    }
  }

  forget(id: string): void {
    this.cache.delete(id);
  }

  /** Drop every cached state (the server may have lost writes: a crash before its fsync). */
  clear(): void {
    this.cache.clear();
  }

  get size(): number {
    return this.cache.size;
  }

  private remember(id: string, stored: StoredWorkflow): void {
    this.cache.delete(id);
    this.cache.set(id, stored);
    while (this.cache.size > this.capacity) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private touch(id: string, stored: StoredWorkflow): void {
    this.cache.delete(id);
    this.cache.set(id, stored);
  }
}

/**
 * `"<name>":<step JSON>` of settled steps, by step object: a settled step never changes (decide
 * copies a step before editing it), and a step object sits under one name.
 */
const settledStepJson = new WeakMap<StepState, string>();
/** Below this many steps a plain JSON.stringify is as fast. */
const INCREMENTAL_MIN_STEPS = 16;
/** Stands in for the steps while the rest is serialized; random, so no workflow data can contain it. */
const STEPS_PLACEHOLDER = `\u0000jetflow-steps-${randomUUID()}\u0000`;
const STEPS_PLACEHOLDER_JSON = JSON.stringify(STEPS_PLACEHOLDER);

/**
 * The state as JSON, the same text JSON.stringify(state) gives. The state is rewritten on every
 * event and a long workflow's steps are most of it: the JSON of each settled (completed or failed)
 * step is kept and reused, so serializing step 200 of a workflow costs about what step 10 did,
 * plus copying text.
 */
export function serializeState(state: WorkflowState): string {
  const names = Object.keys(state.steps);
  if (names.length < INCREMENTAL_MIN_STEPS) return JSON.stringify(state);
  const parts: string[] = new Array(names.length);
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const step = state.steps[name]!;
    let member = settledStepJson.get(step);
    if (member === undefined) {
      member = `${JSON.stringify(name)}:${JSON.stringify(step)}`;
      if (step.status === "completed" || step.status === "failed") settledStepJson.set(step, member);
    }
    parts[i] = member;
  }
  const rest = JSON.stringify({ ...state, steps: STEPS_PLACEHOLDER });
  const at = rest.indexOf(STEPS_PLACEHOLDER_JSON);
  return `${rest.slice(0, at)}{${parts.join(",")}}${rest.slice(at + STEPS_PLACEHOLDER_JSON.length)}`;
}

/** The next state of a workflow is larger than NATS accepts in one message. */
export class StateTooLargeError extends JetflowError {
  constructor(id: string, bytes: number, maxBytes: number) {
    super("WF_STATE_TOO_LARGE", `the state of workflow ${id} would be ${bytes} bytes, over the NATS server's max_payload of ${maxBytes} bytes`, {
      hint: "Keep activity inputs and outputs small (store large data elsewhere and pass a reference), or raise max_payload on the NATS server.",
    });
  }
}

export function isWrongLastSequence(err: unknown): boolean {
  return (err instanceof JetStreamApiError && WRONG_LAST_SEQUENCE.has(err.code)) || /wrong last sequence/i.test((err as Error)?.message ?? "");
}
