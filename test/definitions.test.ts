/** DAG definitions are validated at load; every error names the workflow and the step. */
import { describe, expect, it } from "vitest";
import { createRegistry, validateDag } from "../runtime/definitions.js";
import { DefinitionError } from "../runtime/errors.js";
import { hostRealm } from "../runtime/journal/execution.js";
import { ActivityFailure, defineDag, type DagDefinition } from "../runtime/workflow-api.js";

const activities = { a: async () => 1, b: async () => 2, c: async () => 3 };

function errorOf(definition: DagDefinition): DefinitionError {
  try {
    createRegistry({ version: "t", workflows: { x: defineDag(definition) }, activities, realm: hostRealm(ActivityFailure) });
  } catch (err) {
    return err as DefinitionError;
  }
  throw new Error("expected a DefinitionError");
}

describe("DAG validation", () => {
  it("accepts a valid DAG and registers it under its name", () => {
    const registry = createRegistry({
      version: "t",
      workflows: { anything: defineDag({ name: "flow", activities: [{ name: "one", type: "a" }, { name: "two", type: "b", dependencies: ["one"] }] }) },
      activities,
      realm: hostRealm(ActivityFailure),
    });
    expect(registry.workflows.get("flow")?.kind).toBe("dag");
  });

  it("names an unknown dependency", () => {
    const err = errorOf({ name: "flow", activities: [{ name: "one", type: "a", dependencies: ["zero"] }] });
    expect(err).toBeInstanceOf(DefinitionError);
    expect(err.code).toBe("WF_DAG_UNKNOWN_DEPENDENCY");
    expect(err.message).toContain('workflow "flow", step "one" depends on unknown step "zero"');
  });

  it("names the steps of a cycle", () => {
    const err = errorOf({
      name: "flow",
      activities: [
        { name: "one", type: "a", dependencies: ["three"] },
        { name: "two", type: "b", dependencies: ["one"] },
        { name: "three", type: "c", dependencies: ["two"] },
      ],
    });
    expect(err.code).toBe("WF_DAG_CYCLE");
    expect(err.message).toMatch(/cycle: (one|two|three) → (one|two|three) → (one|two|three) → (one|two|three)/);
  });

  it("names a duplicate step", () => {
    const err = errorOf({ name: "flow", activities: [{ name: "one", type: "a" }, { name: "one", type: "b" }] });
    expect(err.code).toBe("WF_DAG_DUPLICATE_STEP");
    expect(err.message).toContain('workflow "flow": step "one" is defined twice');
  });

  it("names an unknown activity type and lists the known ones", () => {
    const err = errorOf({ name: "flow", activities: [{ name: "one", type: "charge" }] });
    expect(err.code).toBe("WF_DAG_UNKNOWN_ACTIVITY");
    expect(err.message).toContain('step "one": unknown activity type "charge" (known: a, b, c)');
  });

  it("names a bad duration and a bad retry policy", () => {
    expect(errorOf({ name: "flow", activities: [{ name: "one", type: "a", timeout: "soon" }] }).message).toContain('step "one": timeout');
    expect(errorOf({ name: "flow", activities: [{ name: "one", type: "a", retryPolicy: { maxRetries: -1 } }] }).message).toContain("maxRetries");
  });

  it("validateDag returns plain data", () => {
    const dag = validateDag({ name: "flow", activities: [{ name: "one", type: "a" }] });
    expect(dag).toEqual({ name: "flow", activities: [{ name: "one", type: "a" }] });
  });
});
