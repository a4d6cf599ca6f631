/**
 * Cancellation scopes of a workflow execution: which of the code's pending awaits a cancel
 * request (or a `ctx.withTimeout` deadline) rejects, and which it must leave alone.
 *
 * Every await the code issues belongs to the scope it was issued in: the workflow's root scope,
 * a `ctx.nonCancellable` block (a shield: cancellations from outside do not reach in), or a
 * `ctx.withTimeout` block (cancelled by its own timer). The scope an await belongs to is found
 * through an AsyncLocalStorage, which follows the code's async calls across the sandbox realm
 * (V8's promise hooks cover every context of the isolate), so concurrent branches each keep their
 * own scope. Node turns the storage's promise hook on at the first scope ever entered: processes
 * whose workflows never use a scope pay nothing for it.
 *
 * Cancelling is deterministic: it happens in an activation (the delivery of a recorded cancel
 * request, or of a withTimeout's timer), and which awaits it rejects depends only on what the
 * code awaits at that point, which a replay reproduces.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { CancelledError, SagaCompensationError, ScopeTimeoutError } from "../workflow-api.js";

/**
 * The error classes workflow code sees, made in its own realm so that `instanceof` holds there
 * (a sandboxed bundle has its own copy of `jetflow/workflow`; bundle/sandbox.ts).
 */
export interface RealmErrors {
  cancelled(reason: string | undefined): unknown;
  /** True for the realm's CancelledError: the workflow function rejecting with it ends the workflow cancelled. */
  isCancelled(value: unknown): boolean;
  scopeTimeout(timeoutMs: number, step: string): unknown;
  sagaFailure(failures: unknown[]): unknown;
}

/** The host realm's classes: for DAGs and workflows passed as functions. */
export const HOST_ERRORS: RealmErrors = {
  cancelled: (reason) => new CancelledError(reason),
  isCancelled: (value) => value instanceof CancelledError,
  scopeTimeout: (timeoutMs, step) => new ScopeTimeoutError(timeoutMs, step),
  sagaFailure: (failures) => new SagaCompensationError(failures),
};

/** The realm classes a bundle exports (`__CancelledError`, …; bundle/build.ts), if it does. */
export function realmErrorsOf(exports: Record<string, unknown>): RealmErrors | undefined {
  type Ctor = new (...args: unknown[]) => unknown;
  const Cancelled = exports.__CancelledError as Ctor | undefined;
  const Timeout = exports.__ScopeTimeoutError as Ctor | undefined;
  const Saga = exports.__SagaCompensationError as Ctor | undefined;
  if (!Cancelled || !Timeout || !Saga) return undefined; // a bundle built before scopes existed
  return {
    cancelled: (reason) => new Cancelled(reason),
    isCancelled: (value) => value instanceof Cancelled,
    scopeTimeout: (timeoutMs, step) => new Timeout(timeoutMs, step),
    sagaFailure: (failures) => new Saga(failures),
  };
}

export class Scope {
  /** Set once this scope is cancelled: what its awaits reject with from then on. */
  error: unknown = undefined;
  cancelled = false;
  readonly root: Scope;
  constructor(
    readonly parent: Scope | undefined,
    /** A nonCancellable scope: a cancellation of an enclosing scope does not reach the awaits in it. */
    readonly shield: boolean,
  ) {
    this.root = parent?.root ?? this;
  }

  /** The error an await in this scope must reject with now, if a cancellation reaches it. */
  cancellation(): { error: unknown } | undefined {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      if (scope.cancelled) return { error: scope.error };
      if (scope.shield) return undefined;
    }
    return undefined;
  }
}

const storage = new AsyncLocalStorage<Scope>();

/** The scope code runs in now, within the execution whose root is `root`. */
export function currentScope(root: Scope): Scope {
  const scope = storage.getStore();
  // A scope of another execution cannot be ours (activations start from the orchestrator's context).
  return scope && scope.root === root ? scope : root;
}

/** Run `fn` with `scope` as the scope of every await it issues, directly or in what it calls. */
export function runInScope<T>(scope: Scope, fn: () => Promise<T>): Promise<T> {
  return storage.run(scope, () => {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err);
    }
  });
}
