/**
 * `ctx.saga()`: compensations recorded as a workflow goes, run in reverse order when it must undo
 * what it did. Plain workflow code over ctx: each compensation calls activities, which are steps
 * like any other, so a saga replays like the rest of the workflow and needs nothing in the state.
 */
import { ValidationError } from "../errors.js";
import type { Saga, SagaOptions, WorkflowContext } from "../workflow-api.js";
import type { RealmErrors } from "./cancellation.js";

export function createSaga(ctx: Pick<WorkflowContext, "nonCancellable">, options: SagaOptions | undefined, errors: RealmErrors): Saga {
  const { parallel, continueOnError } = checkedOptions(options);
  const compensations: Array<() => Promise<unknown>> = [];
  const run = (compensation: () => Promise<unknown>): Promise<unknown> => {
    try {
      return Promise.resolve(compensation());
    } catch (err) {
      return Promise.reject(err);
    }
  };
  return {
    add(compensation) {
      if (typeof compensation !== "function") {
        throw new ValidationError("WF_INVALID_COMPENSATION", `saga.add() takes a function that calls activities, got ${describe(compensation)}`, {
          hint: "Pass a function, not the promise of a call: saga.add(() => ctx.activities.refund_payment(charge)).",
        });
      }
      compensations.push(compensation);
    },
    compensate() {
      // Last added, first undone; each runs once even if compensate() is called again.
      const due = compensations.splice(0).reverse();
      return ctx.nonCancellable(async () => {
        const failures: unknown[] = [];
        if (parallel) {
          const results = await Promise.allSettled(due.map(run));
          for (const result of results) if (result.status === "rejected") failures.push(result.reason);
          if (failures.length > 0 && !continueOnError) throw failures[0];
        } else {
          for (const compensation of due) {
            try {
              await run(compensation);
            } catch (err) {
              if (!continueOnError) throw err;
              failures.push(err);
            }
          }
        }
        if (failures.length > 0) throw errors.sagaFailure(failures);
      });
    },
  };
}

function checkedOptions(options: SagaOptions | undefined): Required<SagaOptions> {
  if (options === undefined) return { parallel: false, continueOnError: false };
  const bad = (what: string) =>
    new ValidationError("WF_INVALID_SAGA_OPTIONS", `ctx.saga(): ${what}`, { hint: "Use ctx.saga(), or ctx.saga({ parallel: true, continueOnError: true }) with booleans." });
  if (typeof options !== "object" || options === null) throw bad(`options must be an object, got ${describe(options)}`);
  for (const key of ["parallel", "continueOnError"] as const) {
    if (options[key] !== undefined && typeof options[key] !== "boolean") throw bad(`${key} must be a boolean, got ${describe(options[key])}`);
  }
  return { parallel: options.parallel ?? false, continueOnError: options.continueOnError ?? false };
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return typeof (value as { then?: unknown }).then === "function" ? "a promise (the call already ran)" : "an object";
  return `${typeof value} ${JSON.stringify(value) ?? String(value)}`;
}
