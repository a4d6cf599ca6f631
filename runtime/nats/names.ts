/**
 * Every stream, consumer, bucket and subject name, derived from the namespace. The default names
 * (empty namespace) are the seed's and part of the wire contract in docs/protocol.md.
 */

export interface Names {
  namespace: string;
  eventsStream: string;
  tasksStream: string;
  timersStream: string;
  deadLettersStream: string;
  /** Events of blocked workflows, parked outside the events consumer's window (orchestrator/blocked.ts). */
  parkedStream: string;
  statesBucket: string;
  /** KV of releases of activity tasks by workers, so they are not counted as crashes (worker/release.ts). */
  releasesBucket: string;
  /** Signals sent to workflow ids that have no state yet, kept until the workflow starts (or for 24 h). */
  pendingSignalsBucket: string;
  /** KV of fleet leases: which runtime does a job only one should (nats/fleet-lease.ts). */
  leasesBucket: string;
  /** KV of schedules: key `<scheduleId>`, value spec + progress (schedules/store.ts). */
  schedulesBucket: string;
  /** Work-queue stream of the schedules' parked next ticks, one message per schedule (schedules/scheduler.ts). */
  scheduleTicksStream: string;
  /** The durable consumer of the tick stream, shared by every runtime's scheduler. */
  schedulerConsumer: string;
  /** Where a schedule's next tick (or its buffered tick) is parked until due. */
  scheduleTickSubject(scheduleId: string): string;
  /** Object Store of code bundles, by content hash. */
  bundlesStore: string;
  /** KV of deployments: `current` and one record per deployed version. */
  deploymentsBucket: string;
  /** Object Store of claim-checked payloads, named by workflow id and slot (payloads/claim-check.ts). */
  payloadsStore: string;
  orchestratorConsumer: string;
  timersConsumer: string;
  /** Durable consumer of one activity type's tasks, shared by every runtime that hosts it. */
  activityConsumer(activityType: string): string;
  startSubject(workflowType: string): string;
  /** Filter for every start subject. */
  startFilter: string;
  completedSubject(workflowId: string, step: string): string;
  timerFiredSubject(workflowId: string, timerKey: string): string;
  signalSubject(workflowId: string, name: string): string;
  cancelSubject(workflowId: string): string;
  /**
   * Core NATS only (no stream captures it): the orchestrator tells the workers which steps of a
   * workflow to abort (a cancel request reached them, or the workflow ended). Best effort.
   */
  abortSubject(workflowId: string): string;
  /**
   * Core NATS request/reply, no stream: a query of a workflow (protocol.ts QueryRequest), answered
   * by one runtime of the queue group `<namespace>queries` (orchestrator/queries.ts).
   */
  querySubject(workflowId: string): string;
  /** An update to apply (protocol.ts UpdateMessage), on the events stream. */
  updateSubject(workflowId: string): string;
  /** Where a child's start and end are reported to its parent (protocol.ts ChildEventMessage). */
  childSubject(parentId: string): string;
  taskSubject(activityType: string): string;
  timerScheduleSubject(workflowId: string): string;
  /** Where timers parked together are published (protocol.ts TimerBatchMessage). */
  timerBatchSubject: string;
  deadLetterSubject(reason: string): string;
  /** Where a blocked workflow's events are parked: one subject per workflow, so the subjects list the blocked workflows. */
  parkedSubject(workflowId: string): string;
  /** The workflow id of a parked subject. */
  workflowIdOfParked(subject: string): string;
  /**
   * Core NATS (not stored): the orchestrator publishes a workflow's terminal state here right
   * after writing it, so waiting clients need no KV watch. A hint; the state is the record.
   */
  finishedSubject(workflowId: string): string;
  /**
   * Core NATS (not stored): where a runtime answers whether it still holds a continued step's
   * lease (worker/leases.ts). `instance` is the runtime's `continued` id.
   */
  leaseSubject(instance: string): string;
  /** The event kind of a subject on the events stream, or undefined when it is not one of ours. */
  eventKind(subject: string): "start" | "completed" | "timer" | "signal" | "cancel" | "child" | "update" | undefined;
  /** The workflow type of a start subject. */
  workflowTypeOfStart(subject: string): string;
}

export function createNames(namespace = ""): Names {
  const s = namespace ? `${namespace}.` : ""; // subject prefix
  const n = namespace ? `${namespace}_` : ""; // stream / bucket / consumer prefix
  // Ids may contain dots; subjects carry them for routing and observation only. Consumers of the
  // events read the id from the payload, never by splitting the subject.
  const token = (id: string) => id;
  const eventsPrefix = `${s}workflow.`;
  return {
    namespace,
    eventsStream: `${n}WORKFLOW_EVENTS`,
    tasksStream: `${n}ACTIVITY_TASKS`,
    timersStream: `${n}WORKFLOW_TIMERS`,
    deadLettersStream: `${n}WORKFLOW_DEAD_LETTERS`,
    parkedStream: `${n}WORKFLOW_PARKED`,
    statesBucket: `${n}WORKFLOW_STATES`,
    releasesBucket: `${n}WORKFLOW_RELEASES`,
    pendingSignalsBucket: `${n}WORKFLOW_PENDING_SIGNALS`,
    leasesBucket: `${n}WORKFLOW_LEASES`,
    schedulesBucket: `${n}WORKFLOW_SCHEDULES`,
    scheduleTicksStream: `${n}WORKFLOW_SCHEDULE_TICKS`,
    schedulerConsumer: `${n}schedules`,
    scheduleTickSubject: (id) => `${eventsPrefix}schedule.${id}`,
    bundlesStore: `${n}WORKFLOW_BUNDLES`,
    deploymentsBucket: `${n}WORKFLOW_DEPLOYMENTS`,
    payloadsStore: `${n}WORKFLOW_PAYLOADS`,
    orchestratorConsumer: `${n}orchestrator`,
    timersConsumer: `${n}timers`,
    activityConsumer: (type) => `${n}activity_${type}`,
    startSubject: (type) => `${eventsPrefix}start.${type}`,
    startFilter: `${eventsPrefix}start.>`,
    completedSubject: (id, step) => `${eventsPrefix}activity.completed.${token(id)}.${step}`,
    timerFiredSubject: (id, key) => `${eventsPrefix}timer.${token(id)}.${key}`,
    signalSubject: (id, name) => `${eventsPrefix}signal.${token(id)}.${name}`,
    cancelSubject: (id) => `${eventsPrefix}cancel.${token(id)}`,
    abortSubject: (id) => `${eventsPrefix}abort.${token(id)}`,
    childSubject: (parentId) => `${eventsPrefix}child.${token(parentId)}`,
    querySubject: (id) => `${eventsPrefix}query.${token(id)}`,
    updateSubject: (id) => `${eventsPrefix}update.${token(id)}`,
    taskSubject: (type) => `${s}activity.tasks.${type}`,
    timerScheduleSubject: (id) => `${eventsPrefix}delay.${token(id)}`,
    timerBatchSubject: `${eventsPrefix}delay.batch/timers`,
    deadLetterSubject: (reason) => `${eventsPrefix}deadletter.${reason}`,
    parkedSubject: (id) => `${eventsPrefix}parked.${token(id)}`,
    workflowIdOfParked: (subject) => subject.slice(`${eventsPrefix}parked.`.length),
    finishedSubject: (id) => `${eventsPrefix}finished.${token(id)}`,
    leaseSubject: (instance) => `${eventsPrefix}lease.${instance}`,
    eventKind(subject) {
      if (!subject.startsWith(eventsPrefix)) return undefined;
      const rest = subject.slice(eventsPrefix.length);
      if (rest.startsWith("start.")) return "start";
      if (rest.startsWith("activity.completed.")) return "completed";
      if (rest.startsWith("timer.")) return "timer";
      if (rest.startsWith("signal.")) return "signal";
      if (rest.startsWith("cancel.")) return "cancel";
      if (rest.startsWith("child.")) return "child";
      if (rest.startsWith("update.")) return "update";
      return undefined;
    },
    workflowTypeOfStart: (subject) => subject.slice(`${eventsPrefix}start.`.length),
  };
}

/** Subjects of the events stream: every event kind, but not delays or dead letters (their own streams). */
export function eventSubjects(names: Names): string[] {
  const p = names.namespace ? `${names.namespace}.workflow.` : "workflow.";
  return [`${p}start.>`, `${p}activity.>`, `${p}timer.>`, `${p}signal.>`, `${p}cancel.>`, `${p}child.>`, `${p}update.>`];
}
