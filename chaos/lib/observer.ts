/**
 * Watches every revision of every workflow state (a KV watch: an ordered consumer, so only
 * revisions JetStream stored, never a losing CAS write) and checks, as the states go by, that no
 * step is recorded as settled twice:
 *
 * - each (workflow, step, attempt) gets one outcome: the first revision that shows the attempt
 *   settled (completed, failed, or retrying) fixes its worker, startedAt and finishedAt; a later
 *   revision showing the same attempt settled by another execution is a duplicate completion;
 * - a step once completed stays completed, and the journal never names a step twice.
 *
 * It also keeps the newest state of every workflow, so scenarios can wait for terminal states
 * without polling NATS for each id; the final verdict is always made on fresh reads.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { WorkflowState } from "../../runtime/index.js";
import { isArchivedRunKey } from "../../runtime/orchestrator/runs.js";
import { mapLimit, sleep } from "./util.js";

export interface DuplicateRecord {
  workflowId: string;
  step: string;
  attempt: number;
  first: string;
  second: string;
}

const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);

export class StateObserver {
  readonly latest = new Map<string, { revision: number; state: WorkflowState }>();
  /** `<id>|<step>|<attempt>` → signature of the execution recorded as its outcome. */
  private readonly settled = new Map<string, string>();
  private readonly completedSteps = new Set<string>();
  readonly duplicates: DuplicateRecord[] = [];
  readonly journalDuplicates: Array<{ workflowId: string; journal: string[] }> = [];
  readonly regressions: string[] = [];
  /** Fresh reads older than a revision already seen: the server lost stored writes. */
  readonly rollbacks: string[] = [];
  revisionsSeen = 0;
  private watcher: QueuedIterator<KvWatchEntry> | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;

  private constructor(private readonly kv: KV) {}

  static async open(kv: KV): Promise<StateObserver> {
    const observer = new StateObserver(kv);
    await observer.startWatch();
    return observer;
  }

  private async startWatch(): Promise<void> {
    this.watcher = await this.kv.watch({ key: ">", ignoreDeletes: true });
    const watcher = this.watcher;
    this.loop = (async () => {
      for await (const entry of watcher) {
        if (entry.operation !== "PUT" || entry.length === 0) continue;
        // An archived run (`<id>/r.<n>`, orchestrator/runs.ts) is written before the CAS that switches
        // `<id>` to the next run, and rewritten by the retry of a switch that crashed in between (its
        // last step may have run again meanwhile): no reader sees it until the switch. Its steps were
        // observed in `<id>`'s revisions; the archive is no second record of them.
        if (isArchivedRunKey(entry.key)) continue;
        try {
          this.observe(entry.key, entry.revision, entry.json<WorkflowState>());
        } catch {
          // not a state document: not ours to judge
        }
      }
    })().catch(() => undefined);
  }

  /**
   * Apply one revision of a state (from the watch or from a fresh read). `seenBeforeRead`: for a
   * fresh read, the newest revision the watch had shown when the read was sent. Only a read older
   * than that is a rollback: a read served before a later write can reach us after the watch
   * delivered that write (the two come through different server paths), which loses nothing.
   */
  observe(id: string, revision: number, state: WorkflowState, fresh = false, seenBeforeRead?: number): void {
    this.revisionsSeen += 1;
    const previous = this.latest.get(id);
    const rolledBack = fresh && seenBeforeRead !== undefined && revision < seenBeforeRead;
    if (rolledBack) {
      // The stream lost the revisions we saw (a NATS crash before they reached the disk).
      this.rollbacks.push(`${id}: revision ${seenBeforeRead} (${previous?.state.status}) seen, then a fresh read returned revision ${revision} (${state.status})`);
    }
    if (!previous || revision >= previous.revision || rolledBack) this.latest.set(id, { revision, state });
    const seenInJournal = new Set<string>();
    for (const step of state.journal ?? []) {
      if (seenInJournal.has(step)) {
        if (!this.journalDuplicates.some((d) => d.workflowId === id)) this.journalDuplicates.push({ workflowId: id, journal: [...state.journal] });
        break;
      }
      seenInJournal.add(step);
    }
    for (const [name, step] of Object.entries(state.steps ?? {})) {
      if (step.kind !== "activity") continue;
      // A later run (continue-as-new) reuses the step names of the run before: steps are per run.
      const stepKey = `${id}|${state.runId ?? ""}|${name}`;
      if (step.status === "completed") this.completedSteps.add(stepKey);
      else if (this.completedSteps.has(stepKey) && revision >= (previous?.revision ?? 0)) {
        this.regressions.push(`${id} step ${name}: completed before, ${step.status} (attempt ${step.attempt}) at revision ${revision}`);
      }
      if (step.status !== "completed" && step.status !== "failed" && step.status !== "retrying") continue;
      if (!step.startedAt && !step.finishedAt) continue; // settled without an execution (e.g. the workflow failed)
      const key = `${stepKey}|${step.attempt}`;
      const signature = `${step.worker ?? "?"}@${step.startedAt ?? "?"}..${step.finishedAt ?? "?"}`;
      const first = this.settled.get(key);
      if (first === undefined) this.settled.set(key, signature);
      else if (first !== signature) this.duplicates.push({ workflowId: id, step: name, attempt: step.attempt, first, second: signature });
    }
  }

  isTerminal(id: string): boolean {
    const entry = this.latest.get(id);
    return entry !== undefined && TERMINAL.has(entry.state.status);
  }

  /** Read these states afresh (the watch may have missed revisions while NATS was away). */
  async refresh(ids: string[], concurrency = 32): Promise<void> {
    await mapLimit(ids, concurrency, async (id) => {
      const seenBeforeRead = this.latest.get(id)?.revision;
      const entry = await this.kv.get(id).catch(() => null);
      if (entry && entry.operation === "PUT" && entry.length > 0) this.observe(id, entry.revision, entry.json<WorkflowState>(), true, seenBeforeRead);
    });
  }

  /**
   * Wait until every id has a terminal state (or `timeoutMs` passed); ids the watch has not
   * settled are re-read every `refreshMs`. Returns the ids still not terminal.
   */
  async waitForTerminal(ids: string[], timeoutMs: number, options: { refreshMs?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const refreshMs = options.refreshMs ?? 5_000;
    let lastRefresh = Date.now();
    let lastProgress = 0;
    for (;;) {
      const pending = ids.filter((id) => !this.isTerminal(id));
      if (pending.length === 0) return [];
      if (Date.now() > deadline) return pending;
      if (Date.now() - lastRefresh > refreshMs) {
        lastRefresh = Date.now();
        await this.refresh(pending.slice(0, 2_000));
      }
      if (options.onProgress && Date.now() - lastProgress > 5_000) {
        lastProgress = Date.now();
        options.onProgress(ids.length - pending.length, ids.length);
      }
      await sleep(100);
    }
  }

  /** Fresh reads of every id: the states the verdict is made on. */
  async finalStates(ids: string[]): Promise<Map<string, WorkflowState | undefined>> {
    const out = new Map<string, WorkflowState | undefined>();
    await mapLimit(ids, 32, async (id) => {
      let entry = null;
      const seenBeforeRead = this.latest.get(id)?.revision;
      for (let attempt = 1; attempt <= 5 && entry === null; attempt++) {
        try {
          entry = await this.kv.get(id);
          break;
        } catch {
          await sleep(500);
        }
      }
      if (entry && entry.operation === "PUT" && entry.length > 0) {
        const state = entry.json<WorkflowState>();
        this.observe(id, entry.revision, state, true, seenBeforeRead);
        out.set(id, state);
      } else out.set(id, undefined);
    });
    return out;
  }

  duplicatesByStep(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const d of this.duplicates) out[d.step] = (out[d.step] ?? 0) + 1;
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.stop();
    await Promise.race([this.loop, sleep(2_000)]);
  }
}
