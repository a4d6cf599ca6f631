/**
 * Turn the JSON lines of `npm run chaos` into the Markdown table of docs/guarantees.md:
 *
 *   npm run chaos > chaos.jsonl && node --import tsx chaos/summarize.ts < chaos.jsonl
 */
import { readFileSync } from "node:fs";
import type { ScenarioResult } from "./lib/scenario.js";

const lines = readFileSync(0, "utf8")
  .split("\n")
  .filter((l) => l.startsWith("{"));
const results = lines.map((l) => JSON.parse(l) as ScenarioResult);

const faults = (r: ScenarioResult) =>
  Object.entries(r.faultsInjected)
    .filter(([k]) => k !== "total")
    .map(([k, v]) => `${v} ${k}`)
    .join(", ") || "—";

const executions = (r: ScenarioResult) => {
  const expected = r.expectedExecutions as number | undefined;
  const extra = r.extraExecutions as { total: number; unexplained: number } | undefined;
  if (expected === undefined || !extra) return String(r.activityExecutions ?? "—");
  return `${r.activityExecutions} (${expected} attempts + ${extra.total} re-runs, ${extra.unexplained} unexplained)`;
};

const dup = (r: ScenarioResult) => String(r.duplicateStepCompletions?.total ?? "—");

/** Kill to takeover of the activities a killed runtime was running (lib/verify.ts takeovers). */
const stall = (r: ScenarioResult) => {
  const t = r.takeovers as { kills: number; perKillP50Ms: number; perKillMaxMs: number } | undefined;
  return t && t.kills > 0 ? `${(t.perKillP50Ms / 1000).toFixed(1)} / ${(t.perKillMaxMs / 1000).toFixed(1)} s (${t.kills} kills)` : "—";
};

console.log("| scenario | started | completed | lost | failed | duplicate step completions | activity executions | faults injected | stall per kill, p50 / max | wall time | held |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of results) {
  if (r.skipped) {
    console.log(`| ${r.scenario} | skipped: ${r.skipped} | | | | | | | | | — |`);
    continue;
  }
  console.log(
    `| ${r.scenario} | ${r.started} | ${r.completed} | ${r.lost} | ${r.failed} | ${dup(r)} | ${executions(r)} | ${faults(r)} | ${stall(r)} | ${(r.wallTimeMs / 1000).toFixed(1)} s | ${r.ok ? "yes" : "**no**"} |`,
  );
}
