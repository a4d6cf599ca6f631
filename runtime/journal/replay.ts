/**
 * Rebuild a live execution from a workflow's journal: run the function from the start, deliver
 * every recorded result in the recorded order, and check that the code issues exactly the commands
 * the journal holds. Any difference is a NonDeterminismError naming the step and both commands.
 */
import { NonDeterminismError } from "../errors.js";
import type { Logger } from "../logger.js";
import { runNumber, type StepState, type WorkflowState } from "../state.js";
import { sameAttributes, type TypedAttributes } from "../visibility/search-attributes.js";
import { activate, randomSeedOf, WorkflowExecution, type Command, type StepResult, type WorkflowInstance, type WorkflowRealm } from "./execution.js";
import type { WorkflowFunction } from "../workflow-api.js";
import type { Payloads } from "../payloads/payloads.js";

export interface ReplayOptions {
  fn: WorkflowFunction;
  instantiate?: (() => WorkflowInstance) | undefined;
  realm: WorkflowRealm;
  logger: Logger;
  workflowTypes?: { has(name: string): boolean } | undefined;
  /**
   * A retry's replay of a journal prefix (orchestrator/retry.ts): commands the journal did not
   * record are collected here as the run's new commands instead of failing the replay, and so
   * are those of them the code stopped awaiting.
   */
  unrecorded?: { issued: Command[]; cancelled: string[] } | undefined;
  /**
   * The payload boundary (payloads/payloads.ts): the input and each result are decoded before the
   * code sees them (states hold them encoded when a codec or the claim check is on). Absent: as stored.
   */
  payloads?: Pick<Payloads, "decode" | "openResult"> | undefined;
}

export async function replayWorkflow(state: WorkflowState, options: ReplayOptions): Promise<WorkflowExecution> {
  const execution = new WorkflowExecution({
    workflowId: state.id,
    workflow: state.workflow,
    fn: options.fn,
    instantiate: options.instantiate,
    input: options.payloads ? await options.payloads.decode(state.input) : state.input,
    searchAttributes: startAttributes(state),
    realm: options.realm,
    logger: options.logger,
    randomSeed: randomSeedOf(state),
    run: runNumber(state),
    workflowTypes: options.workflowTypes,
  });
  const bySeq = new Map<number, [string, StepState]>();
  // A cancel request is no command: its seq only says where it fell among them.
  // (Nor is an update: it comes from outside.)
  for (const [name, step] of Object.entries(state.steps)) if (step.kind !== "cancel" && step.kind !== "update") bySeq.set(step.seq, [name, step]);
  const issued = new Set<string>();
  // ctx.patched asks what was recorded at the position it stands at (execution.ts, patch()).
  execution.recordedAt = (seq) => bySeq.get(seq)?.[1];

  const check = (commands: Command[]) => {
    for (const command of commands) {
      const recorded = bySeq.get(command.seq);
      if (!recorded && options.unrecorded) {
        options.unrecorded.issued.push(command);
        continue;
      }
      if (!recorded) {
        throw new NonDeterminismError(
          `workflow ${state.workflow} (id ${state.id}) diverged at command #${command.seq + 1}: the code now issues ${describeCommand(command)}, ` +
            `but the journal recorded no command there`,
        );
      }
      const [name, step] = recorded;
      if (
        name !== command.name ||
        step.kind !== command.kind ||
        (command.kind === "activity" && step.activity !== command.activity) ||
        (command.kind === "signal" && step.signal !== command.signal) ||
        (command.kind === "upsert" && !sameAttributes((step.output ?? {}) as TypedAttributes, command.attributes)) ||
        (command.kind === "marker" && step.patch !== command.patch) ||
        (command.kind === "child" && (step.child?.workflow !== command.workflow || step.child.id !== command.childId)) ||
        (command.kind === "child_result" && step.child?.step !== command.step)
      ) {
        throw new NonDeterminismError(
          `workflow ${state.workflow} (id ${state.id}) diverged at step "${name}" (command #${command.seq + 1}): ` +
            `the journal recorded ${describeStep(name, step)}, but the code now issues ${describeCommand(command)}`,
        );
      }
      // A step recorded without a hash (before it existed) replays on its type alone.
      if ((command.kind === "activity" || command.kind === "child") && step.inputHash !== undefined && step.inputHash !== command.inputHash) {
        throw new NonDeterminismError(
          `workflow ${state.workflow} (id ${state.id}) diverged at step "${name}" (command #${command.seq + 1}): the journal recorded ${describeStep(name, step)} ` +
            `with input ${preview(step.input)}, but the code now calls it with input ${preview(command.input)}`,
        );
      }
      issued.add(name);
    }
    // The steps a cancellation made the code stop awaiting must be those the run recorded cancelled.
    for (const name of execution.takeCancelled()) {
      const step = state.steps[name];
      if (!step && options.unrecorded) options.unrecorded.cancelled.push(name);
      if (step && step.status !== "cancelled") {
        throw new NonDeterminismError(
          `workflow ${state.workflow} (id ${state.id}) diverged at step "${name}": the code now stops awaiting ${describeStep(name, step)} (a cancellation), ` +
            `but the journal recorded it ${step.status}`,
        );
      }
    }
  };

  execution.replaying = true;
  await activate(execution, Date.parse(state.createdAt), () => execution.begin());
  check(execution.takeIssued());
  for (const name of state.journal) {
    const step = state.steps[name];
    if (!step) throw new NonDeterminismError(`journal of ${state.id} names step "${name}" that has no record; the state document is corrupt`);
    // An upsert or a marker delivers nothing: it was matched when the code issued it (check, above).
    if (step.kind === "upsert" || step.kind === "marker") continue;
    if (step.kind === "cancel") {
      // The cancel request reaches the code at the point of the journal where the run applied it.
      await activate(execution, step.resolvedAt ?? Date.parse(state.updatedAt), () => execution.cancel(step.reason));
      check(execution.takeIssued());
      continue;
    }
    if (step.kind === "update") {
      // An accepted update reaches its handler where the run applied it; its outcomes were recorded then.
      const args = options.payloads ? await options.payloads.decode(step.input ?? null) : (step.input ?? null); // decoded outside the activation
      await activate(execution, step.resolvedAt ?? Date.parse(state.updatedAt), () => execution.deliverUpdate(step.update!.name, args, step.update!.id));
      check(execution.takeIssued());
      continue;
    }
    let delivered = false;
    const result = options.payloads ? await options.payloads.openResult(stepResult(step)) : stepResult(step); // decoded outside the activation
    await activate(execution, step.resolvedAt ?? Date.parse(state.updatedAt), () => {
      delivered = execution.deliver(name, result);
    });
    if (!delivered) {
      throw new NonDeterminismError(
        `workflow ${state.workflow} (id ${state.id}) diverged at step "${name}": the journal delivered the result of ${describeStep(name, step)}, ` +
          `but the code no longer waits for it`,
      );
    }
    check(execution.takeIssued());
  }
  for (const [name, step] of Object.entries(state.steps)) {
    if (!issued.has(name) && step.kind !== "cancel" && step.kind !== "update") {
      throw new NonDeterminismError(
        `workflow ${state.workflow} (id ${state.id}) diverged at step "${name}": the journal recorded ${describeStep(name, step)}, ` +
          `but the code did not issue it on replay` + (execution.outcome ? " (the code returned before reaching it)" : ""),
      );
    }
  }
  // Outcomes of updates the replay settled were recorded by the activations it repeated.
  execution.takeUpdateOutcomes();
  execution.replaying = false;
  execution.recordedAt = undefined;
  return execution;
}

/**
 * The search attributes the workflow started with, as far as the code's checks need them (names
 * and types): the current ones without the names its upserts added. A name keeps its type, so
 * the current type is the one it had at every point of the run; a value may be a later one.
 */
function startAttributes(state: WorkflowState): TypedAttributes | undefined {
  if (!state.searchAttributes) return undefined;
  const added = new Set(Object.values(state.steps).flatMap((step) => (step.kind === "upsert" ? (step.added ?? []) : [])));
  if (added.size === 0) return state.searchAttributes;
  return Object.fromEntries(Object.entries(state.searchAttributes).filter(([name]) => !added.has(name)));
}

/** The result a completed or failed step delivers to the code. */
export function stepResult(step: StepState): StepResult {
  if (step.status === "completed") return { ok: true, value: step.kind === "sleep" ? undefined : step.output };
  if (step.child) {
    const child = { id: step.child.id, workflow: step.child.workflow, status: step.child.status };
    return { ok: false, error: step.error ?? { message: `child workflow ${step.child.status}`, type: "Error" }, attempts: step.attempt, activity: step.kind, child };
  }
  if (step.kind === "signal") return { ok: false, error: step.error ?? { message: "signal wait failed", type: "Error" }, attempts: 0, activity: "signal" };
  return {
    ok: false,
    error: step.error ?? { message: "step failed", type: "Error" },
    attempts: step.attempt,
    activity: step.activity ?? step.kind,
  };
}

function describeCommand(command: Command): string {
  if (command.kind === "activity") return `activity ${command.activity} (step "${command.name}")`;
  if (command.kind === "signal") return `wait for signal ${command.signal} (step "${command.name}")`;
  if (command.kind === "upsert") return `upsert of search attributes ${describeAttributes(command.attributes)} (step "${command.name}")`;
  if (command.kind === "marker") return `patch marker "${command.patch}" (step "${command.name}")`;
  if (command.kind === "child") return `child workflow ${command.workflow} with id ${command.childId} (step "${command.name}")`;
  if (command.kind === "child_result") return `result of the child of step "${command.step}" (step "${command.name}")`;
  return `sleep (step "${command.name}", ${command.durationMs}ms)`;
}

function describeStep(name: string, step: StepState): string {
  if (step.kind === "activity") return `activity ${step.activity} (step "${name}")`;
  if (step.kind === "signal") return `wait for signal ${step.signal} (step "${name}")`;
  if (step.kind === "upsert") return `upsert of search attributes ${describeAttributes((step.output ?? {}) as TypedAttributes)} (step "${name}")`;
  if (step.kind === "marker") return `patch marker "${step.patch}" (step "${name}")`;
  if (step.kind === "cancel") return `cancel request (step "${name}")`;
  if (step.kind === "update") return `update ${step.update?.name} (step "${name}")`;
  if (step.kind === "child") return `child workflow ${step.child?.workflow} with id ${step.child?.id} (step "${name}")`;
  if (step.kind === "child_result") return `result of the child of step "${step.child?.step}" (step "${name}")`;
  return `sleep (step "${name}")`;
}

/** `{stage: "paid", priority: 2}`: a time as its ISO text. */
function describeAttributes(attributes: TypedAttributes): string {
  return `{${Object.entries(attributes)
    .map(([name, { value }]) => `${name}: ${JSON.stringify(value)}`)
    .join(", ")}}`;
}

/** An input, shortened for an error message. */
function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? "undefined";
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
