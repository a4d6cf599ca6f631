/**
 * The docs cannot drift from the code: docs/config.md is exactly what the schema renders, and
 * every error code raised in runtime/ and cli/ is explained in docs/errors.md.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CONFIG_DOC_PATH, renderConfigDoc, schemaKeys } from "../scripts/gen-config-doc.js";
import { TERMINAL_STATUSES } from "../runtime/state.js";

const root = fileURLToPath(new URL("..", import.meta.url));

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** String literals that look like codes; environment variable names are the schema's and WF_CONFIG. */
function errorCodesInSource(): Set<string> {
  const envNames = new Set(["WF_CONFIG", ...schemaKeys().flatMap(({ entry }) => (entry.env ? [entry.env] : []))]);
  const codes = new Set<string>();
  for (const file of [...sourceFiles(join(root, "runtime")), ...sourceFiles(join(root, "cli"))]) {
    for (const match of readFileSync(file, "utf8").matchAll(/["'`](WF_[A-Z0-9_]+)["'`]/g)) {
      const literal = match[1]!;
      if (envNames.has(literal)) continue;
      if (literal === "WF_WORKFLOW_") {
        // WorkflowFailedError: "WF_WORKFLOW_" + the terminal status, upper case.
        for (const status of TERMINAL_STATUSES) if (status !== "completed") codes.add(`WF_WORKFLOW_${status.toUpperCase()}`);
        continue;
      }
      codes.add(literal);
    }
  }
  return codes;
}

describe("docs", () => {
  it("docs/config.md is what scripts/gen-config-doc.ts renders from the schema", () => {
    const committed = readFileSync(CONFIG_DOC_PATH, "utf8");
    // On failure: node --import tsx scripts/gen-config-doc.ts
    expect(committed).toBe(renderConfigDoc());
  });

  it("docs/config.md has a row for every config key", () => {
    const doc = renderConfigDoc();
    for (const { path } of schemaKeys()) expect(doc).toContain(`| \`${path}\` |`);
  });

  it("every WF_ error code in runtime/ and cli/ is explained in docs/errors.md", () => {
    const errorsDoc = readFileSync(join(root, "docs", "errors.md"), "utf8");
    const codes = errorCodesInSource();
    expect(codes.size).toBeGreaterThan(20);
    const missing = [...codes].filter((code) => !new RegExp(`^### \`${code}\`$`, "m").test(errorsDoc));
    expect(missing, "add a `### \\`CODE\\`` section to docs/errors.md for each").toEqual([]);
  });
});
