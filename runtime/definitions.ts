/**
 * What a runtime can run: workflows (code functions and DAG definitions) and activities, checked
 * once when they are loaded. DAG definitions are validated here and run by `dagWorkflow`, a
 * built-in workflow function, so both kinds share one engine.
 */
import { parseDuration } from "./duration.js";
import { DefinitionError, ValidationError } from "./errors.js";
import { validateName } from "./ids.js";
import type { DeclaredSchedule } from "./schedules/declared.js";
import { hostRealm, type WorkflowInstance, type WorkflowRealm } from "./journal/execution.js";
import {
  ActivityFailure,
  DAG_MARKER,
  WORKFLOW_OPTIONS,
  type ActivityFunction,
  type DagActivity,
  type DagDefinition,
  type WorkflowFunction,
  type WorkflowOptions,
} from "./workflow-api.js";

/**
 * The DAG interpreter below reacts to a result within a few microtask hops (the output's `then`,
 * the dependents' Promise.all, their `then` that issues the command; or the end of the function):
 * three were enough in test/engine-paths.test.ts's wide and deep DAG, two were not. Activations of
 * DAGs give it twenty times that instead of waiting for a macrotask turn.
 */
const DAG_SETTLE_HOPS = 64;
const DAG_REALM: WorkflowRealm = { ...hostRealm(ActivityFailure), settlesWithinMicrotasks: DAG_SETTLE_HOPS };

export interface RegisteredWorkflow {
  name: string;
  kind: "code" | "dag";
  fn: WorkflowFunction;
  timeoutMs: number | undefined;
  /** How long a finished workflow of this type is kept (undefined: the `retention` config). */
  retentionMs?: number;
  /** The validated definition, for kind "dag". */
  dag?: DagDefinition;
  realm: WorkflowRealm;
  /**
   * The same code workflow evaluated in further sandboxes: a sandbox runs one activation at a
   * time, so executions are spread over several (by workflow id) to overlap.
   */
  variants?: WorkflowBinding[];
  /** Where it came from, for error messages. */
  source?: string;
  /** The workflow types of its registry: what its code may start as children. */
  workflowTypes?: { has(name: string): boolean };
}

/** What an execution runs: a function and its realm, and for sandboxed code, its own module instance. */
export interface WorkflowBinding {
  fn: WorkflowFunction;
  realm: WorkflowRealm;
  /** A fresh instance of the bundle's modules per execution (bundle/sandbox.ts, "Module state"). */
  instantiate?: () => WorkflowInstance;
  /** The workflow types the code may start as children (RegisteredWorkflow.workflowTypes). */
  workflowTypes?: { has(name: string): boolean } | undefined;
}

/** The function and realm an execution of `workflowId` uses: always the same for one id. */
export function bindWorkflow(definition: RegisteredWorkflow, workflowId: string): WorkflowBinding {
  const variants = definition.variants;
  if (!variants?.length) return { fn: definition.fn, realm: definition.realm, workflowTypes: definition.workflowTypes };
  let hash = 0;
  for (let i = 0; i < workflowId.length; i++) hash = (Math.imul(hash, 31) + workflowId.charCodeAt(i)) >>> 0;
  return { ...variants[hash % variants.length]!, workflowTypes: definition.workflowTypes };
}

export interface Registry {
  /** Version of the code: a content hash for bundles, a label for programmatic registries. */
  version: string;
  workflows: Map<string, RegisteredWorkflow>;
  activities: Map<string, ActivityFunction>;
  /** Schedules declared in functions/schedules.ts (bundles only; schedules/declared.ts). Absent: no code-declared schedules are managed. */
  schedules?: DeclaredSchedule[];
}

export interface RegistryInput {
  version: string;
  workflows: Record<string, unknown>;
  activities: Record<string, unknown>;
  realm: WorkflowRealm;
  /** File each export came from, by export name, for error messages. */
  sources?: Record<string, string>;
  /** Check that DAG steps name known activities (off for an orchestrator-only runtime without activity code). */
  checkActivityTypes?: boolean;
}

export function isDagDefinition(value: unknown): value is DagDefinition {
  return typeof value === "object" && value !== null && ((value as Record<string, unknown>)[DAG_MARKER] === true || Array.isArray((value as DagDefinition).activities));
}

export function createRegistry(input: RegistryInput): Registry {
  const activities = new Map<string, ActivityFunction>();
  for (const [name, value] of Object.entries(input.activities)) {
    if (typeof value !== "function") continue; // constants and types exported beside activities
    validateName("activity type", name);
    activities.set(name, value as ActivityFunction);
  }

  const workflows = new Map<string, RegisteredWorkflow>();
  const add = (entry: RegisteredWorkflow) => {
    const existing = workflows.get(entry.name);
    if (existing) {
      throw new DefinitionError("WF_DUPLICATE_WORKFLOW", `workflow "${entry.name}" is defined twice (${existing.source ?? "?"} and ${entry.source ?? "?"})`, {
        hint: "Workflow names must be unique across functions/workflows; rename one of them.",
      });
    }
    workflows.set(entry.name, entry);
  };

  for (const [exportName, value] of Object.entries(input.workflows)) {
    const source = input.sources?.[exportName];
    if (isDagDefinition(value)) {
      const dag = validateDag(value, {
        source,
        ...(input.checkActivityTypes === false ? {} : { activityTypes: new Set(activities.keys()) }),
      });
      // The DAG interpreter is jetflow's own code: it runs in the host realm, where activations of
      // different workflows overlap (it uses no Date or Math.random, only ctx).
      add({
        name: dag.name,
        kind: "dag",
        fn: dagWorkflow(dag),
        timeoutMs: dag.timeout === undefined ? undefined : parseDuration(dag.timeout),
        ...(dag.retention === undefined ? {} : { retentionMs: parseDuration(dag.retention, `workflow ${dag.name} retention`) }),
        dag,
        realm: DAG_REALM,
        ...(source ? { source } : {}),
      });
    } else if (typeof value === "function") {
      validateName("workflow name", exportName);
      const options = (value as unknown as Record<string, unknown>)[WORKFLOW_OPTIONS] as WorkflowOptions | undefined;
      add({
        name: exportName,
        kind: "code",
        fn: value as WorkflowFunction,
        timeoutMs: options?.timeout === undefined ? undefined : parseDuration(options.timeout, `workflow ${exportName} timeout`),
        ...(options?.retention === undefined ? {} : { retentionMs: parseDuration(options.retention, `workflow ${exportName} retention`) }),
        realm: input.realm,
        ...(source ? { source } : {}),
      });
    }
  }
  // Child workflow types are checked once every workflow is known: a DAG's child steps here, a
  // code workflow's ctx.executeChild at the call (journal/child-commands.ts).
  for (const entry of workflows.values()) {
    entry.workflowTypes = workflows;
    for (const step of entry.dag?.activities ?? []) {
      if (step.workflow !== undefined && !workflows.has(step.workflow)) {
        throw new DefinitionError("WF_DAG_UNKNOWN_WORKFLOW", `workflow "${entry.name}", step "${step.name}": unknown child workflow type "${step.workflow}" (known: ${[...workflows.keys()].sort().join(", ")})${entry.source ? ` (${entry.source})` : ""}`, {
          hint: "Export a workflow with that name from functions/workflows, or fix the step's workflow.",
        });
      }
    }
  }
  return { version: input.version, workflows, activities };
}

/** Check a DAG definition; every error names the workflow and the step. Returns a plain-data copy. */
export function validateDag(definition: DagDefinition, options: { source?: string | undefined; activityTypes?: Set<string> } = {}): DagDefinition {
  const where = options.source ? ` (${options.source})` : "";
  const fail = (code: string, message: string, hint: string): never => {
    throw new DefinitionError(code, message + where, { hint });
  };
  let dag: DagDefinition;
  try {
    dag = JSON.parse(JSON.stringify(definition)) as DagDefinition;
  } catch (err) {
    return fail("WF_DAG_INVALID", `DAG definition is not plain data: ${(err as Error).message}`, "A DAG definition holds only names, types, durations and policies.");
  }
  if (!isPlainObject(dag)) return fail("WF_DAG_INVALID", `DAG definition must be an object { name, activities }, got ${dag === null ? "null" : Array.isArray(dag) ? "an array" : typeof dag}`, 'Use { name: "my_workflow", activities: [{ name, type }] }.');
  if (typeof dag.name !== "string") return fail("WF_DAG_INVALID", `DAG definition has no name`, 'Add name: "my_workflow".');
  try {
    validateName("workflow name", dag.name);
  } catch (err) {
    return fail("WF_DAG_INVALID", `workflow "${dag.name}": ${(err as Error).message}`, "Rename the workflow.");
  }
  const wf = `workflow "${dag.name}"`;
  if (!Array.isArray(dag.activities) || dag.activities.length === 0) {
    return fail("WF_DAG_EMPTY", `${wf} has no activities`, "List at least one activity: { name, type }.");
  }
  if (dag.timeout !== undefined) durationOrFail(dag.timeout, `${wf}: timeout`, fail);
  if (dag.retention !== undefined) durationOrFail(dag.retention, `${wf}: retention`, fail);

  const byName = new Map<string, DagActivity>();
  for (const step of dag.activities) {
    if (!step || typeof step.name !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(step.name)) {
      return fail("WF_DAG_INVALID_STEP", `${wf}: step name ${JSON.stringify(step?.name)} is not valid`, "Step names are 1-100 characters of A-Z a-z 0-9 _ -.");
    }
    if (byName.has(step.name)) return fail("WF_DAG_DUPLICATE_STEP", `${wf}: step "${step.name}" is defined twice`, "Give every step a unique name.");
    byName.set(step.name, step);
    if (step.workflow !== undefined) {
      // A child workflow step (its type is checked against the registry in createRegistry).
      if (step.type !== undefined) return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}" has both type and workflow`, "A step runs an activity (type) or a child workflow (workflow), not both.");
      if (typeof step.workflow !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(step.workflow)) {
        return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": child workflow type ${JSON.stringify(step.workflow)} is not valid`, "Set workflow to the name of a workflow in functions/workflows.");
      }
      if (step.retryPolicy !== undefined) return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": a child workflow step takes no retryPolicy`, "Retry inside the child workflow's own steps.");
    } else if (typeof step.type !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(step.type)) {
      return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": activity type ${JSON.stringify(step.type)} is not valid`, "Set type to the export name of an activity, or workflow to a child workflow's type.");
    } else if (options.activityTypes && !options.activityTypes.has(step.type)) {
      const known = [...options.activityTypes].sort().join(", ") || "none";
      return fail("WF_DAG_UNKNOWN_ACTIVITY", `${wf}, step "${step.name}": unknown activity type "${step.type}" (known: ${known})`, "Export an async function with that name from functions/activities, or fix the type.");
    }
    if (step.compensation !== undefined) {
      if (step.workflow !== undefined) return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": a child workflow step takes no compensation`, "Undo a child's work inside the child workflow (ctx.saga), or compensate with an activity step of its own.");
      if (typeof step.compensation !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(step.compensation)) {
        return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": compensation ${JSON.stringify(step.compensation)} is not a valid activity type`, 'Set compensation to the export name of the activity that undoes this step, e.g. compensation: "refund_payment".');
      }
      if (options.activityTypes && !options.activityTypes.has(step.compensation)) {
        const known = [...options.activityTypes].sort().join(", ") || "none";
        return fail("WF_DAG_UNKNOWN_ACTIVITY", `${wf}, step "${step.name}": unknown compensation activity type "${step.compensation}" (known: ${known})`, "Export an async function with that name from functions/activities, or fix the compensation.");
      }
    }
    if (step.timeout !== undefined) durationOrFail(step.timeout, `${wf}, step "${step.name}": timeout`, fail);
    if (step.retryPolicy !== undefined) {
      const p = step.retryPolicy;
      if (typeof p !== "object" || p === null) return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": retryPolicy must be an object`, "Use { maxRetries, initialInterval, backoffFactor, maxInterval }.");
      if (p.maxRetries !== undefined && (!Number.isInteger(p.maxRetries) || p.maxRetries < 0)) {
        return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": retryPolicy.maxRetries must be a whole number ≥ 0, got ${JSON.stringify(p.maxRetries)}`, "Use 0 for no retries.");
      }
      if (p.backoffFactor !== undefined && !(typeof p.backoffFactor === "number" && p.backoffFactor >= 1)) {
        return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": retryPolicy.backoffFactor must be a number ≥ 1, got ${JSON.stringify(p.backoffFactor)}`, "Use 2 to double the delay each retry.");
      }
      if (p.initialInterval !== undefined) durationOrFail(p.initialInterval, `${wf}, step "${step.name}": retryPolicy.initialInterval`, fail);
      if (p.maxInterval !== undefined) durationOrFail(p.maxInterval, `${wf}, step "${step.name}": retryPolicy.maxInterval`, fail);
    }
    if (step.dependencies !== undefined && !(Array.isArray(step.dependencies) && step.dependencies.every((d) => typeof d === "string"))) {
      return fail("WF_DAG_INVALID_STEP", `${wf}, step "${step.name}": dependencies must be an array of step names`, 'Use dependencies: ["validate_order"].');
    }
  }
  for (const step of dag.activities) {
    for (const dep of step.dependencies ?? []) {
      if (dep === step.name) return fail("WF_DAG_CYCLE", `${wf}, step "${step.name}" depends on itself`, "Remove the self-dependency.");
      if (!byName.has(dep)) {
        return fail("WF_DAG_UNKNOWN_DEPENDENCY", `${wf}, step "${step.name}" depends on unknown step "${dep}"`, `Steps are: ${[...byName.keys()].join(", ")}.`);
      }
    }
  }
  const cycle = findCycle(dag.activities);
  if (cycle) return fail("WF_DAG_CYCLE", `${wf} has a dependency cycle: ${cycle.join(" → ")}`, "A DAG cannot loop; remove one of these dependencies.");
  return dag;
}

function durationOrFail(value: unknown, what: string, fail: (code: string, message: string, hint: string) => never): void {
  try {
    parseDuration(value as string, what);
  } catch (err) {
    fail("WF_DAG_INVALID_DURATION", (err as ValidationError).message, (err as ValidationError).hint ?? "");
  }
}

/** A cycle of dependencies, if any. Iterative: a long chain of steps must not overflow the stack (found by fuzzing). */
function findCycle(steps: DagActivity[]): string[] | undefined {
  const deps = new Map(steps.map((s) => [s.name, s.dependencies ?? []]));
  const state = new Map<string, "visiting" | "done">();
  for (const step of steps) {
    if (state.has(step.name)) continue;
    // path[i] is visiting; next[i] is the index of its next dependency to look at.
    const path: string[] = [step.name];
    const next: number[] = [0];
    const onPath = new Map<string, number>([[step.name, 0]]);
    state.set(step.name, "visiting");
    while (path.length > 0) {
      const top = path.length - 1;
      const name = path[top]!;
      const list = deps.get(name) ?? [];
      if (next[top]! >= list.length) {
        state.set(name, "done");
        onPath.delete(name);
        path.pop();
        next.pop();
        continue;
      }
      const dep = list[next[top]!++]!;
      const at = onPath.get(dep);
      if (at !== undefined) return [...path.slice(at), dep].reverse();
      if (state.get(dep) === "done") continue;
      state.set(dep, "visiting");
      onPath.set(dep, path.length);
      path.push(dep);
      next.push(0);
    }
  }
  return undefined;
}

/**
 * The built-in workflow that runs a DAG. Each step starts when its dependencies completed; its
 * input is `{ ...workflowInput, [dependency]: output }` (a non-object workflow input is passed as
 * `{ input }`). The result is `{ [step]: output }` in definition order. Commands are issued in
 * promise-resolution order, which replay reproduces, so this is deterministic.
 *
 * When a step fails for good or the workflow is cancelled, no further step starts; once the steps
 * still running have settled, the compensations of the steps that completed run (DagActivity
 * `compensation`), shielded from cancellation, in reverse dependency order: a step's after those
 * of the steps that depend on it, one at a time, each as a step `compensate_<step>` with input
 * `{ input, output }` of the step it undoes. A compensation that fails (after its retries) does not
 * stop the others; the workflow then ends with the error that started it all (failed, or
 * cancelled), and the failed compensation shows as a failed step.
 */
export function dagWorkflow(dag: DagDefinition): WorkflowFunction {
  const byName = new Map(dag.activities.map((a) => [a.name, a]));
  const compensates = dag.activities.some((a) => a.compensation !== undefined);
  return async (ctx, input) => {
    const base: Record<string, unknown> = isPlainObject(input) ? input : input === undefined || input === null ? {} : { input };
    const outputs: Record<string, unknown> = {};
    const inputs: Record<string, unknown> = {};
    const completed = new Set<string>();
    let stopped = false;
    const started = new Map<string, Promise<unknown>>();
    const run = (step: DagActivity): Promise<unknown> => {
      let promise = started.get(step.name);
      if (!promise) {
        const dependencies = step.dependencies ?? [];
        promise = Promise.all(dependencies.map((d) => run(byName.get(d)!)))
          .then(() => {
            // After a failure or a cancel nothing new starts (what ran is compensated below).
            if (stopped) throw new DagStopped();
            const stepInput: Record<string, unknown> = { ...base };
            for (const d of dependencies) stepInput[d] = outputs[d];
            inputs[step.name] = stepInput;
            // A child workflow step: the child's result is the step's output (children.ts).
            if (step.workflow !== undefined) {
              return ctx.executeChild(step.workflow, stepInput, { name: step.name, ...(step.timeout !== undefined ? { timeout: step.timeout } : {}) });
            }
            return ctx.activity(step.type!, stepInput, {
              name: step.name,
              ...(step.timeout !== undefined ? { timeout: step.timeout } : {}),
              ...(step.retryPolicy !== undefined ? { retry: step.retryPolicy } : {}),
            });
          })
          .then((output) => {
            outputs[step.name] = output;
            completed.add(step.name);
            return output;
          });
        started.set(step.name, promise);
      }
      return promise;
    };
    try {
      await Promise.all(dag.activities.map(run));
    } catch (err) {
      stopped = true;
      if (!compensates) throw err;
      // Steps already running may still complete (and then need undoing too): wait for them.
      await ctx.nonCancellable(async () => {
        await Promise.allSettled([...started.values()]);
        for (const step of reverseDependencyOrder(dag.activities)) {
          if (!step.compensation || !completed.has(step.name)) continue;
          try {
            await ctx.activity(step.compensation, { input: inputs[step.name], output: outputs[step.name] }, { name: `compensate_${step.name}` });
          } catch {
            /* recorded as a failed step; the other compensations still run */
          }
        }
      });
      throw err;
    }
    return Object.fromEntries(dag.activities.map((a) => [a.name, outputs[a.name]]));
  };
}

/** Why a step did not start: an earlier step failed, or the workflow was cancelled. Never the workflow's error. */
class DagStopped extends Error {
  constructor() {
    super("not started: the DAG stopped");
  }
}

/** Steps ordered so that each comes before the steps it depends on (definition order among equals). */
function reverseDependencyOrder(steps: DagActivity[]): DagActivity[] {
  const order: DagActivity[] = [];
  const placed = new Set<string>();
  const byName = new Map(steps.map((s) => [s.name, s]));
  const place = (step: DagActivity) => {
    if (placed.has(step.name)) return;
    placed.add(step.name);
    for (const dep of step.dependencies ?? []) place(byName.get(dep)!);
    order.push(step);
  };
  for (const step of steps) place(step);
  return order.reverse();
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
