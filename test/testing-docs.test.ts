/**
 * docs/testing.md stays true: every ```ts example block in it is a complete node:test file, and
 * this runs them all with `node --test` (imports of "jetflow" and "jetflow/testing" pointed at
 * the sources, so no build is needed).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));

it("every example in docs/testing.md runs and passes", () => {
  const doc = readFileSync(join(root, "docs", "testing.md"), "utf8");
  const examples = [...doc.matchAll(/^```ts example\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  expect(examples.length).toBeGreaterThanOrEqual(5);
  const dir = mkdtempSync(join(tmpdir(), "jetflow-testing-docs-"));
  const files = examples.map((source, i) => {
    const file = join(dir, `example-${i + 1}.test.mts`);
    writeFileSync(
      file,
      source
        .replaceAll(`from "jetflow/testing"`, `from ${JSON.stringify(join(root, "runtime", "testing", "index.ts"))}`)
        .replaceAll(`from "jetflow"`, `from ${JSON.stringify(join(root, "runtime", "index.ts"))}`),
    );
    return file;
  });
  const run = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", ...files], { cwd: root, encoding: "utf8", timeout: 180_000 });
  expect(run.status, run.stdout + run.stderr).toBe(0);
  const tests = [...doc.matchAll(/^test\(/gm)].length;
  expect(run.stdout).toContain(`# pass ${tests}`);
});
