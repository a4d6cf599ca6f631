// The chaos suite, short (CI) version: scenarios of `npm run chaos` (chaos/) with small figures,
// against real child-process runtimes and real nats-servers. Each must lose nothing, complete
// every workflow, record no step twice, and inject the faults it is about. The full version, with
// its figures in docs/guarantees.md, is `npm run chaos`.
import { describe, expect, it } from "vitest";
import { runScenario, type Scenario } from "../chaos/lib/scenario.js";
import { runtimeKills } from "../chaos/scenarios/s01-runtime-kills.js";
import { natsKills } from "../chaos/scenarios/s02-nats-kills.js";
import { duplicates } from "../chaos/scenarios/s07-duplicates.js";
import { crashPoints } from "../chaos/scenarios/s08-crash-points.js";
import { dedupeGap } from "../chaos/scenarios/s09-dedupe-gap.js";

const SHORT: Scenario[] = [runtimeKills, natsKills, duplicates, crashPoints, dedupeGap];

describe("chaos, short version (runtime kills, NATS kills, duplicates, crash points, dedupe gap)", () => {
  for (const scenario of SHORT) {
    it(
      `${scenario.id}. ${scenario.name}`,
      async () => {
        const result = await runScenario(scenario, { quick: true });
        console.log(JSON.stringify(result));
        expect(result.error, result.error).toBeUndefined();
        expect(result.violations, JSON.stringify(result.violations, null, 2)).toEqual([]);
        expect(result.started).toBeGreaterThan(0);
        expect(result.lost).toBe(0);
        expect(result.failed).toBe(0);
        // Every workflow ended as expected: completed, or cancelled where the workload cancelled it.
        expect(result.completed + (result.cancelled ?? 0)).toBe(result.started);
        expect(result.duplicateStepCompletions.total).toBe(0);
        expect((result.extraExecutions as { unexplained: number }).unexplained).toBe(0);
        expect(result.faultsInjected.total).toBeGreaterThan(0);
        expect(result.ok).toBe(true);
      },
      scenario.timeoutMs + 30_000,
    );
  }
});
