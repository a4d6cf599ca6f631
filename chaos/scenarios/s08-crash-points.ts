/**
 * 8. Named crash points: for each point where the runtime calls its test-only crash hook (after
 * the state's CAS write and before the dispatch; after the dispatch and before the event's ack; a
 * timer fired but not acked; an activity done but its completion not published; the completion
 * published but the task not acked), 3 runtimes SIGKILL themselves there with some probability
 * and the harness restarts them. Every workflow completes and no step is recorded twice.
 */
import { CRASH_POINTS, type CrashPointName } from "../../test/fixtures/crash-functions.js";
import { readCrashes, readExecutions, verify } from "../lib/verify.js";
import { diagnoseStuck } from "../lib/diagnose.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, primitives, startAll } from "../lib/workload.js";
import { sleep } from "../lib/util.js";

/**
 * How often each point is reached per order (about), to aim at a number of crashes. The workload
 * is `n` orders and n/5 primitives (a third each: parents of two children, loops that continue as
 * new twice, cancelled orders), which alone reach the last five points.
 */
const CALLS_PER_WORKFLOW: Partial<Record<CrashPointName, number>> = {
  "after-run-entry-before-state": 1,
  "after-state-write-before-dispatch": 5,
  "after-dispatch-before-ack": 4,
  "timer-fired-before-ack": 1,
  "after-activity-before-completion": 4,
  "after-completion-before-ack": 4,
  // Reached by a few workflows only: kept at a probability of 0.2 (not the cap of 0.5), because a
  // runtime that dies at such a point dies while recording its step's completion, and a task whose
  // runtime dies 5 times running is failed by design (worker.maxDeliveries): at 0.5, 5 crashes in a
  // row came in about one run in thirty (CI saw it once), at 0.2 one in three thousand per point reached.
  "after-child-step-before-child-start": 0.67,
  "after-child-end-before-parent-event": 0.67,
  "after-run-archived-before-switch": 0.67,
  "after-run-switch-before-dispatch": 0.67,
  "after-cancel-recorded-before-dispatch": 0.67,
};

export const crashPoints: Scenario = {
  id: 8,
  name: "crash-points",
  defaultN: 300,
  quickN: 30,
  timeoutMs: 8 * 60_000,
  async run(ctx, n, options) {
    const nats = await ctx.nats();
    const targetCrashes = options.quick ? 4 : 10;
    const perPoint: Record<string, unknown> = {};
    const totals = { started: 0, completed: 0, cancelled: 0, lost: 0, failed: 0, duplicates: 0, executions: 0, expected: 0, crashes: 0 };
    const byStep: Record<string, number> = {};
    const extra = { total: 0, afterRuntimeKill: 0, releasedAtShutdown: 0, afterNatsFault: 0, unexplained: 0 };
    const violations: string[] = [];
    let ok = true;

    for (const point of CRASH_POINTS) {
      const calls = CALLS_PER_WORKFLOW[point];
      if (calls === undefined) continue;
      const namespace = `${ctx.namespace.slice(0, 24)}_p${CRASH_POINTS.indexOf(point)}`;
      const probability = Math.min(0.5, targetCrashes / (n * calls));
      const fleet = ctx.fleet({ natsUrl: nats.url, namespace, workerAckWait: "2s", orchestratorAckWait: "2s", slots: 16, crashPoint: point, crashProbability: probability });
      const client = await ctx.client([nats.url], { namespace, orchestratorAckWait: "2s" });
      const observer = await ctx.observer(client);
      await Promise.all([fleet.spawn(), fleet.spawn(), fleet.spawn()]);
      fleet.supervise(3, 6 * targetCrashes);

      // Timers fire only for retries: at the timer point every workflow has one.
      const prefix = `cp${CRASH_POINTS.indexOf(point)}`;
      const items = [...orders(prefix, n, { sagaShare: 0.2, retryShare: point === "timer-fired-before-ack" ? 1 : 0.2, delayMs: [5, 40] }), ...primitives(`${prefix}-p`, Math.ceil(n / 5), { delayMs: [5, 40] })];
      const ids = items.map((i) => i.id);
      const t0 = Date.now();
      await startAll(client, items, n / (options.quick ? 4 : 12));
      const pending = await observer.waitForTerminal(ids, 150_000, { onProgress: (d, t) => ctx.log(`${point}: ${d}/${t} finished`) });
      const runMs = Date.now() - t0;
      await diagnoseStuck(client, namespace, pending, readExecutions(ctx.markerDir), (l) => ctx.log(`${point}: ${l}`));
      await sleep(2_500);
      fleet.stopSupervising();
      await fleet.close();

      const crashes = readCrashes(ctx.markerDir).filter((c) => c.point === point);
      const executions = readExecutions(ctx.markerDir).filter((e) => e.workflowId.startsWith(`${prefix}-`));
      const states = await observer.finalStates(ids);
      const verdict = verify({ expected: expectationsOf(items), states, executions, disruptions: fleet.disruptions, observer });
      await observer.close();
      const pointOk = verdictOk(verdict) && pending.length === 0;
      ok &&= pointOk;
      ctx.log(`${point}: ${crashes.length} crash(es), ${verdict.completed + verdict.cancelled}/${verdict.started} ended as expected, ${verdict.duplicateStepCompletions.total} duplicate(s), extra executions ${JSON.stringify(verdict.extraExecutions)}`);
      perPoint[point] = {
        ok: pointOk,
        crashes: crashes.length,
        probability: Number(probability.toFixed(4)),
        completed: verdict.completed,
        lost: verdict.lost,
        duplicateStepCompletions: verdict.duplicateStepCompletions.total,
        activityExecutions: verdict.activityExecutions,
        expectedExecutions: verdict.expectedExecutions,
        extraExecutions: verdict.extraExecutions,
        retries: verdict.retries,
        runMs,
      };
      totals.started += verdict.started;
      totals.completed += verdict.completed;
      totals.cancelled += verdict.cancelled;
      totals.lost += verdict.lost;
      totals.failed += verdict.failed;
      totals.duplicates += verdict.duplicateStepCompletions.total;
      totals.executions += verdict.activityExecutions;
      totals.expected += verdict.expectedExecutions;
      totals.crashes += crashes.length;
      for (const [step, count] of Object.entries(verdict.duplicateStepCompletions.byStep)) byStep[step] = (byStep[step] ?? 0) + count;
      for (const key of Object.keys(extra) as Array<keyof typeof extra>) extra[key] += verdict.extraExecutions[key];
      violations.push(...verdict.violations.map((v) => `${point}: ${v}`));
    }
    return {
      ok,
      started: totals.started,
      completed: totals.completed,
      cancelled: totals.cancelled,
      lost: totals.lost,
      failed: totals.failed,
      duplicateStepCompletions: { total: totals.duplicates, byStep },
      activityExecutions: totals.executions,
      expectedExecutions: totals.expected,
      extraExecutions: extra,
      faultsInjected: faults({ selfCrashes: totals.crashes }),
      perPoint,
      natsServer: nats.version,
      violations: violations.slice(0, 30),
    };
  },
};
