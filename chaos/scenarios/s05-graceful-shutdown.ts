/**
 * 5. Graceful shutdown: SIGTERM to runtimes under load (activities of 0.2-2 s, shutdown grace
 * 1 s, ack waits of 30 s). Each runtime exits soon after the grace; its in-flight activities either
 * finish or are released at once and run elsewhere; no event or task waits for an ack timeout;
 * nothing is lost.
 */
import { readExecutions, verify } from "../lib/verify.js";
import { faults, verdictFigures, verdictOk, type Scenario } from "../lib/scenario.js";
import { expectationsOf, orders, startAll } from "../lib/workload.js";
import { percentile, pick, sleep } from "../lib/util.js";
import type { WorkflowState } from "../../runtime/index.js";

const ACK_WAIT_MS = 30_000;
const GRACE_MS = 1_000;

export const gracefulShutdown: Scenario = {
  id: 5,
  name: "graceful-shutdown",
  defaultN: 300,
  quickN: 40,
  timeoutMs: 4 * 60_000,
  async run(ctx, n, options) {
    const nats = await ctx.nats();
    const fleet = ctx.fleet({ natsUrl: nats.url, workerAckWait: ACK_WAIT_MS, orchestratorAckWait: ACK_WAIT_MS, shutdownGrace: GRACE_MS, slots: 32 });
    const client = await ctx.client([nats.url], { orchestratorAckWait: ACK_WAIT_MS });
    const observer = await ctx.observer(client);
    await Promise.all([fleet.spawn(), fleet.spawn(), fleet.spawn()]);
    fleet.supervise(3, 20);

    const items = orders("term", n, { sagaShare: 0.2, delayMs: [200, 2_000] });
    const ids = items.map((i) => i.id);
    const startSeconds = options.quick ? 6 : 18;
    const t0 = Date.now();
    const starting = startAll(client, items, n / startSeconds);
    const startAcks = starting.then((r) => r.ackedAt);

    const terms: Array<{ pid: number; at: number; exitMs: number; code: number | null; timedOut: boolean }> = [];
    const count = options.quick ? 2 : 6;
    const terminating = (async () => {
      await sleep(2_000);
      for (let i = 0; i < count; i++) {
        const ready = fleet.live().filter((h) => h.readyAt > 0);
        if (ready.length) {
          const victim = pick(ready);
          const at = Date.now();
          const exit = await fleet.terminate(victim, 20_000);
          terms.push({ pid: victim.pid, at, exitMs: exit.ms, code: exit.code, timedOut: exit.timedOut });
          ctx.log(`runtime ${victim.pid} SIGTERMed: exited ${exit.ms} ms later with code ${String(exit.code)}`);
        }
        await sleep(2_500);
      }
    })();
    await Promise.all([starting, terminating]);
    const lastTerm = Math.max(...terms.map((t) => t.at));
    const pending = await observer.waitForTerminal(ids, 120_000);
    const doneMs = Date.now() - lastTerm;
    await sleep(1_000);

    const executions = readExecutions(ctx.markerDir);
    const states = await observer.finalStates(ids);
    const verdict = verify({ expected: expectationsOf(items), states, executions, disruptions: fleet.disruptions, observer });
    const violations = [...verdict.violations];

    // Exits: code 0, soon after the grace period.
    for (const t of terms) {
      if (t.code !== 0 || t.timedOut || t.exitMs > GRACE_MS + 5_000) violations.push(`runtime ${t.pid}: exit code ${String(t.code)} ${t.exitMs} ms after SIGTERM (grace ${GRACE_MS} ms)`);
    }
    // Released activities ran again at once, not after the 30 s ack wait.
    const releaseGaps: number[] = [];
    const byAttempt = new Map<string, typeof executions>();
    for (const e of executions) {
      const k = `${e.key}#${e.attempt}`;
      byAttempt.set(k, [...(byAttempt.get(k) ?? []), e]);
    }
    let finishedInGrace = 0;
    for (const t of terms) {
      for (const [k, list] of byAttempt) {
        const onVictim = list.filter((e) => e.pid === t.pid);
        if (!onVictim.some((e) => e.event === "start" && e.at <= t.at)) continue;
        const end = onVictim.find((e) => e.event !== "start");
        if (end && end.event !== "abort") {
          if (end.at >= t.at) finishedInGrace += 1;
          continue;
        }
        // Aborted at the end of the grace period (or cut off): released for another runtime.
        const again = list.filter((e) => e.event === "start" && e.pid !== t.pid && e.at > t.at).sort((a, b) => a.at - b.at)[0];
        if (!again) violations.push(`${k}: released by runtime ${t.pid} at shutdown and never run again`);
        else releaseGaps.push(again.at - t.at);
      }
    }
    // No workflow stalled on an event left unacknowledged by a stopping orchestrator: the gap
    // between one step's end and the next step's dispatch stays far below the 30 s ack wait.
    const finals = [...states.values()].filter((s): s is WorkflowState => !!s);
    const maxStall = Math.max(0, ...finals.map(maxDispatchGap));
    if (maxStall > ACK_WAIT_MS / 2) violations.push(`a workflow waited ${maxStall} ms between a step's end and the next dispatch (a completion waited for its ack timeout)`);
    // Nor on a start event, nor a task left with a stopped runtime.
    const acks = await startAcks;
    const startDelays = finals.map((s) => Date.parse(s.createdAt) - (acks.get(s.id) ?? Date.parse(s.createdAt)));
    const maxStartDelay = Math.max(0, ...startDelays);
    if (maxStartDelay > ACK_WAIT_MS / 2) violations.push(`a start event was applied ${maxStartDelay} ms after it was published (it waited for its ack timeout)`);
    const pickups = finals.flatMap((s) => Object.values(s.steps).map((step) => Date.parse(step.startedAt ?? "") - Date.parse(step.scheduledAt))).filter(Number.isFinite);
    const maxPickup = Math.max(0, ...pickups);
    if (maxPickup > ACK_WAIT_MS / 2) {
      violations.push(`a task started ${maxPickup} ms after its dispatch (it waited for its ack timeout)`);
      const slow = finals
        .flatMap((s) => Object.entries(s.steps).map(([name, step]) => ({ id: s.id, name, step, wait: Date.parse(step.startedAt ?? "") - Date.parse(step.scheduledAt) })))
        .filter((x) => x.wait > ACK_WAIT_MS / 2)
        .slice(0, 5);
      for (const x of slow) {
        const runs = executions.filter((e) => e.key === `${x.id}/${x.name}`).map((e) => `${e.event}@${e.at - t0} pid ${e.pid}`);
        ctx.log(`slow pickup ${x.id}/${x.name}: scheduled ${Date.parse(x.step.scheduledAt) - t0}, started ${Date.parse(x.step.startedAt!) - t0} on ${x.step.worker}; runs ${runs.join(", ")}; SIGTERMs ${terms.map((t) => `${t.pid}@${t.at - t0}`).join(", ")}`);
      }
    }
    const maxGap = Math.max(0, ...releaseGaps);
    if (maxGap > ACK_WAIT_MS / 2) violations.push(`a released activity ran again only ${maxGap} ms after the SIGTERM (ack wait ${ACK_WAIT_MS} ms)`);

    return {
      ok: verdictOk(verdict) && pending.length === 0 && violations.length === 0,
      ...verdictFigures(verdict),
      faultsInjected: faults({ sigterms: terms.length }),
      exitAfterSigtermMs: terms.map((t) => t.exitMs),
      activitiesFinishedInGrace: finishedInGrace,
      activitiesReleased: releaseGaps.length,
      releasedRerunAfterMs: { p50: percentile(releaseGaps, 50), max: maxGap },
      maxDispatchGapMs: maxStall,
      maxStartDelayMs: maxStartDelay,
      maxTaskPickupMs: maxPickup,
      allDoneAfterLastSigtermMs: doneMs,
      ackWaitMs: ACK_WAIT_MS,
      runMs: Date.now() - t0,
      natsServer: nats.version,
      violations,
    };
  },
};

/** The longest wait, in one workflow, between a step's recorded finish and the dispatch of a later step. */
function maxDispatchGap(state: WorkflowState): number {
  const steps = Object.values(state.steps).sort((a, b) => a.seq - b.seq);
  let gap = Date.parse(steps[0]?.scheduledAt ?? state.createdAt) - Date.parse(state.createdAt);
  for (let i = 1; i < steps.length; i++) {
    const prev = Date.parse(steps[i - 1]!.finishedAt ?? "");
    const next = Date.parse(steps[i]!.scheduledAt);
    if (Number.isFinite(prev) && Number.isFinite(next)) gap = Math.max(gap, next - prev);
  }
  return gap;
}
