/**
 * jetflow/testing in node:test, with two test files at once: `node --test` runs them as two
 * processes; each holds an env (its own nats-server on a random port) until the other's is up and
 * done, and both run the same workflow id without seeing each other.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";

it("two node:test files use the kit in parallel", () => {
  const dir = mkdtempSync(join(tmpdir(), "jetflow-kit-parallel-"));
  const run = spawnSync(
    process.execPath,
    ["--import", "tsx", "--test", "--test-concurrency=2", "test/fixtures/testing-kit/a.node-test.ts", "test/fixtures/testing-kit/b.node-test.ts"],
    { encoding: "utf8", env: { ...process.env, RENDEZVOUS_DIR: dir }, timeout: 120_000 },
  );
  expect(run.status, run.stdout + run.stderr).toBe(0);
  expect(run.stdout).toMatch(/# pass 2/);
  const urls = ["a", "b"].map((f) => readFileSync(join(dir, `${f}.url`), "utf8"));
  expect(urls[0]).not.toBe(urls[1]);
});
