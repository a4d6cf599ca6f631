/**
 * 6. Crash loops: an activity that takes its runtime down (process.exit) on every attempt. The
 * harness keeps restarting runtimes (a bounded number of times); after worker.maxDeliveries
 * deliveries the workflow fails with ActivityCrashLoopError, saying how many times the activity
 * crashed its runtime, and the fleet is healthy again: fresh workflows complete with no crash.
 */
import { readExecutions, verify } from "../lib/verify.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, startAll, type WorkItem } from "../lib/workload.js";
import { sleep } from "../lib/util.js";

const MAX_DELIVERIES = 3;

export const crashLoops: Scenario = {
  id: 6,
  name: "crash-loops",
  defaultN: 50,
  quickN: 10,
  timeoutMs: 3 * 60_000,
  async run(ctx, n) {
    const nats = await ctx.nats();
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: "2s", orchestratorAckWait: "2s", maxDeliveries: MAX_DELIVERIES, slots: 8 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: "2s" });
    const observer = await ctx.observer(client);
    await Promise.all([fleet.spawn(), fleet.spawn()]);
    const maxRespawns = 3 * MAX_DELIVERIES;
    fleet.supervise(2, maxRespawns);

    const loopJob: WorkItem = {
      id: "crash-loop-1",
      workflow: "crash_loop_job",
      input: null,
      expectation: { workflow: "crash_loop_job", status: "failed", errorType: "ActivityCrashLoopError" },
    };
    const t0 = Date.now();
    await startAll(client, [loopJob]);
    const stuck = await observer.waitForTerminal([loopJob.id], 90_000);
    const failedAfterMs = Date.now() - t0;
    const crashesDuringLoop = fleet.disruptions.filter((d) => d.kind === "crash").length;
    ctx.log(`crash_loop_job ended after ${failedAfterMs} ms and ${crashesDuringLoop} runtime crash(es)`);

    // The fleet afterwards: n ordinary workflows, and no more crashes.
    await fleet.waitLive(2, 30_000);
    const items = orders("after-loop", n, { sagaShare: 0.2 });
    await startAll(client, items);
    const pending = await observer.waitForTerminal(items.map((i) => i.id), 60_000);
    const crashesAfter = fleet.disruptions.filter((d) => d.kind === "crash").length - crashesDuringLoop;
    await sleep(500);

    const all = [loopJob, ...items];
    const states = await observer.finalStates(all.map((i) => i.id));
    const executions = readExecutions(ctx.markerDir);
    const verdict = verify({ expected: expectationsOf(all), states, executions, disruptions: fleet.disruptions, observer });
    const violations = [...verdict.violations];
    const loopState = states.get(loopJob.id);
    const message = loopState?.error?.message ?? "";
    if (!new RegExp(`${MAX_DELIVERIES} times`).test(message)) violations.push(`crash_loop_job error does not say it crashed its runtime ${MAX_DELIVERIES} times: ${JSON.stringify(loopState?.error)}`);
    const loopRuns = executions.filter((e) => e.workflowId === loopJob.id && e.event === "start").length;
    if (loopRuns !== MAX_DELIVERIES) violations.push(`crash_loop_step ran ${loopRuns} times, expected worker.maxDeliveries = ${MAX_DELIVERIES}`);
    if (crashesAfter > 0) violations.push(`${crashesAfter} runtime crash(es) after the crash-looping workflow failed`);
    return {
      ok: verdictOk(verdict) && stuck.length === 0 && pending.length === 0 && violations.length === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ selfCrashes: crashesDuringLoop }),
      maxDeliveries: MAX_DELIVERIES,
      crashLoopRuns: loopRuns,
      crashLoopFailedAfterMs: failedAfterMs,
      crashLoopError: loopState?.error ?? null,
      runtimesRestarted: fleet.respawns,
      crashesAfterLoop: crashesAfter,
      natsServer: nats.version,
      violations,
    };
  },
};
