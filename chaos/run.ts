/**
 * `npm run chaos`: fault-injection runs against real processes (child runtimes, real nats-servers),
 * one JSON line per scenario on stdout; progress on stderr.
 *
 *   CHAOS_SCENARIOS=1,2,7   which scenarios (default: all)
 *   CHAOS_N=200             workflows per scenario (default: each scenario's own)
 *   CHAOS_QUICK=1           small figures (CI-sized)
 *   CHAOS_REPEAT=20         run the chosen scenarios that many times; the summary lists every
 *                           run that failed and every violation it saw
 *   NATS_SERVER_BIN=…       the nats-server to run (scenario 3 needs 2.10 or later)
 *
 * Exit code 0 when every scenario held its guarantees, 1 otherwise. Every process and server a
 * scenario starts is stopped when it ends, fails or times out; an exit hook SIGKILLs leftovers.
 */
import { killAllChildrenSync } from "./lib/fleet.js";
import { runScenario, type ScenarioResult } from "./lib/scenario.js";
import { SCENARIOS } from "./scenarios/index.js";

const GLOBAL_TIMEOUT_MS = 45 * 60_000;

function parseList(value: string | undefined): number[] | undefined {
  if (!value) return undefined;
  const ids = value.split(",").map((s) => Number(s.trim()));
  const bad = ids.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (bad.length) throw new Error(`CHAOS_SCENARIOS names unknown scenario(s) ${bad.join(", ")}; known: ${SCENARIOS.map((s) => `${s.id} (${s.name})`).join(", ")}`);
  return ids;
}

async function main(): Promise<number> {
  const only = parseList(process.env.CHAOS_SCENARIOS);
  const n = process.env.CHAOS_N ? Number(process.env.CHAOS_N) : undefined;
  if (n !== undefined && !(Number.isInteger(n) && n > 0)) throw new Error(`CHAOS_N must be a positive whole number, got ${process.env.CHAOS_N}`);
  const quick = process.env.CHAOS_QUICK === "1";
  const repeat = process.env.CHAOS_REPEAT ? Number(process.env.CHAOS_REPEAT) : 1;
  if (!(Number.isInteger(repeat) && repeat > 0)) throw new Error(`CHAOS_REPEAT must be a positive whole number, got ${process.env.CHAOS_REPEAT}`);
  const selected = SCENARIOS.filter((s) => !only || only.includes(s.id));
  const results: Array<ScenarioResult & { run: number }> = [];
  const t0 = Date.now();
  for (let run = 1; run <= repeat; run++) {
    for (const scenario of selected) {
      const result = { ...(await runScenario(scenario, { quick, ...(n !== undefined ? { n } : {}) })), run };
      results.push(result);
      process.stdout.write(JSON.stringify(result) + "\n");
    }
  }
  const failed = results.filter((r) => !r.ok && !r.skipped);
  const label = (r: { scenario: string; run: number }) => (repeat > 1 ? `${r.scenario} (run ${r.run})` : r.scenario);
  process.stderr.write(
    `chaos: ${results.length} scenario run(s) in ${Math.round((Date.now() - t0) / 1000)} s; ` +
      (failed.length ? `FAILED: ${failed.map(label).join(", ")}` : "all held") +
      (results.some((r) => r.skipped) ? `; skipped: ${[...new Set(results.filter((r) => r.skipped).map((r) => r.scenario))].join(", ")}` : "") +
      "\n",
  );
  for (const r of failed) {
    const violations = (r.violations as string[] | undefined) ?? [];
    process.stderr.write(`  ${label(r)}: ${r.error ?? ""}${violations.length ? `\n    ${violations.join("\n    ")}` : ""}\n`);
  }
  return failed.length ? 1 : 0;
}

const watchdog = setTimeout(() => {
  process.stderr.write(`chaos: still running after ${GLOBAL_TIMEOUT_MS / 60_000} min; giving up\n`);
  process.exit(2);
}, GLOBAL_TIMEOUT_MS);
watchdog.unref();

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`chaos: ${signal}; stopping every runtime and server started here\n`);
    killAllChildrenSync();
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
