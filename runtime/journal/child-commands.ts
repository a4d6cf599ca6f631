/**
 * ctx.executeChild / ctx.startChild as commands: the call's arguments checked at the call (where
 * the code can catch the error) and turned into the command that becomes a step of kind "child".
 * The child's id is deterministic: the parent's id, its run number after the first, and the step
 * name, so a replay issues the same.
 */
import { parseDuration } from "../duration.js";
import { ValidationError } from "../errors.js";
import { MAX_ID_LENGTH, validateWorkflowId } from "../ids.js";
import type { ParentClosePolicy } from "../state.js";
import { typedAttributes, type TypedAttributes } from "../visibility/search-attributes.js";
import type { ChildOptions } from "../workflow-api.js";

export const PARENT_CLOSE_POLICIES: readonly ParentClosePolicy[] = ["terminate", "cancel", "abandon"];

/** What a child command carries besides its name and seq (execution.ts Command, kind "child"). */
export interface ChildSpec {
  workflow: string;
  childId: string;
  parentClosePolicy: ParentClosePolicy;
  timeoutMs?: number;
  memo?: unknown;
  searchAttributes?: TypedAttributes;
}

const OPTION_KEYS = ["id", "name", "timeout", "parentClosePolicy", "memo", "searchAttributes"];

function invalid(where: string, message: string, hint: string): never {
  throw new ValidationError("WF_INVALID_CHILD_OPTIONS", `${where}: ${message}`, { hint });
}

/** The child's type and options checked; `stepName` is the step the call records (its default id). */
export function childSpec(parentId: string, workflowType: unknown, options: ChildOptions | undefined, stepName: string, knownWorkflows: { has(name: string): boolean } | undefined, run = 1): ChildSpec {
  const where = `ctx.executeChild(${JSON.stringify(workflowType)})`;
  if (typeof workflowType !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(workflowType)) {
    invalid(where, `workflow type ${JSON.stringify(workflowType)} is not valid: use 1-100 characters of A-Z a-z 0-9 _ -`, "Pass the export name of a workflow in functions/workflows (or a DAG's name).");
  }
  if (knownWorkflows && !knownWorkflows.has(workflowType)) {
    throw new ValidationError("WF_UNKNOWN_CHILD_WORKFLOW", `${where}: no workflow type "${workflowType}" in the code this workflow runs on`, {
      hint: "Export a workflow with that name from functions/workflows (and deploy it), or fix the type.",
    });
  }
  if (options !== undefined && (typeof options !== "object" || options === null)) invalid(where, `options must be an object, got ${JSON.stringify(options)}`, `Use { id, timeout, parentClosePolicy }.`);
  const unknownKeys = Object.keys(options ?? {}).filter((key) => !OPTION_KEYS.includes(key));
  if (unknownKeys.length) invalid(where, `unknown option(s) ${unknownKeys.join(", ")}`, `Child options are ${OPTION_KEYS.join(", ")}.`);
  const policy = options?.parentClosePolicy ?? "terminate";
  if (!PARENT_CLOSE_POLICIES.includes(policy)) {
    invalid(where, `parentClosePolicy ${JSON.stringify(policy)} is not one of ${PARENT_CLOSE_POLICIES.join(", ")}`, `"terminate" (default) stops the child when the parent ends, "cancel" asks it to stop, "abandon" lets it run.`);
  }
  let childId: string;
  if (options?.id !== undefined) {
    try {
      childId = validateWorkflowId(options.id);
    } catch (err) {
      invalid(where, `id: ${(err as Error).message}`, "Pass an id such as `${ctx.workflowId}-shipping`, or leave it out for the default.");
    }
  } else {
    // Run 1: `<parent id>-<step>`; a later run (continue-as-new) `<parent id>-r<run>-<step>`, since its steps reuse the names.
    childId = run > 1 ? `${parentId}-r${run}-${stepName}` : `${parentId}-${stepName}`;
    if (childId.length > MAX_ID_LENGTH) invalid(where, `the default child id ${childId.slice(0, 40)}… is longer than ${MAX_ID_LENGTH} characters`, "Pass options.id (or a shorter step name).");
  }
  const spec: ChildSpec = { workflow: workflowType, childId: childId!, parentClosePolicy: policy };
  if (options?.timeout !== undefined) {
    try {
      spec.timeoutMs = parseDuration(options.timeout, `${where} timeout`);
    } catch (err) {
      invalid(where, (err as Error).message, 'Use milliseconds or a duration such as "30s", "5m".');
    }
  }
  if (options?.memo !== undefined) spec.memo = JSON.parse(JSON.stringify(options.memo));
  if (options?.searchAttributes !== undefined) {
    const typed = typedAttributes(options.searchAttributes, `${where} searchAttributes`);
    if (Object.keys(typed).length > 0) spec.searchAttributes = typed;
  }
  return spec;
}
