/**
 * The NATS permissions each jetflow role needs, and nothing more: publish and subscribe allow
 * lists built from the same names (names.ts) the code uses, so they cannot drift from the real
 * subjects. `wf permissions` prints them; docs/security.md explains the roles, and
 * test/permissions.test.ts runs every role with exactly these against a real server.
 *
 * What a role may do is what it must do:
 * - client: start, signal, cancel and terminate workflows; read states, results, lists and the
 *   deployments; wait for results. It cannot pull tasks, apply events or write states.
 * - worker: pull the tasks of its activity types (all, or `activities`), publish their
 *   completions, read states, load code. It cannot pull other types' tasks or write states.
 * - orchestrator: apply events, write states and their index, publish tasks and timers, run
 *   timers, retention and parked events. It cannot pull tasks.
 * - runtime: orchestrator and worker together (`wf run`, role all).
 * - admin: everything in the namespace, including creating and deleting streams, consumers and
 *   buckets (provisioning), `wf deploy` and `wf delete`.
 * Streams and buckets are created by admin once (provisioning); other roles only look them up,
 * except a worker, which may create the durable consumer of its own activity types (the filter
 * is part of the permitted subject, so it cannot create one that reads another type's tasks).
 */
import { ValidationError } from "../errors.js";
import { validateName } from "../ids.js";
import { createNames, eventSubjects, type Names } from "./names.js";

export const PERMISSION_ROLES = ["client", "worker", "orchestrator", "runtime", "admin"] as const;
export type PermissionRole = (typeof PERMISSION_ROLES)[number];

export interface PermissionOptions {
  role: PermissionRole;
  namespace?: string;
  /** Worker and runtime: the activity types it may pull (default: every type). */
  activities?: string[];
}

export interface RolePermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/** The inbox prefix of a namespace's connections (nats.js `inboxPrefix`): replies of one namespace are not visible to another's users. */
export function inboxPrefixOf(namespace: string): string {
  return namespace ? `_INBOX_${namespace}` : "_INBOX";
}

const API = "$JS.API";

/** `a.b.*.*` (an id, which may hold dots, then a name) → `a.b.>`. */
const tail = (subject: string) => subject.replace(/(\.\*)+$/, ".>");

/** Look a stream up (ensureTopology, KV and Object Store binds). */
const streamInfo = (stream: string) => [`${API}.STREAM.INFO.${stream}`];
/** Read single messages: KV get (direct or not), Object Store meta. */
const getMessages = (stream: string) => [`${API}.DIRECT.GET.${stream}`, `${API}.DIRECT.GET.${stream}.>`, `${API}.STREAM.MSG.GET.${stream}`];
/** Short-lived filtered consumers: stream-read.ts readers, KV watch/keys, Object Store reads. */
const readers = (stream: string) => [
  `${API}.CONSUMER.CREATE.${stream}`,
  `${API}.CONSUMER.CREATE.${stream}.>`,
  `${API}.CONSUMER.MSG.NEXT.${stream}.>`,
  `${API}.CONSUMER.INFO.${stream}.>`,
  `${API}.CONSUMER.DELETE.${stream}.>`,
];
/** Flow control replies of ordered push consumers (KV watch, keys). */
const flowControl = (stream: string) => [`$JS.FC.${stream}.>`];
/** Pull and acknowledge from one durable consumer (`consumer` may be `*`). */
const pull = (stream: string, consumer: string) => [`${API}.CONSUMER.INFO.${stream}.${consumer}`, `${API}.CONSUMER.MSG.NEXT.${stream}.${consumer}`, `$JS.ACK.${stream}.${consumer}.>`];

const kvStream = (bucket: string) => `KV_${bucket}`;
const kvSubjects = (bucket: string) => [`$KV.${bucket}.>`];
const objStream = (bucket: string) => `OBJ_${bucket}`;

/** Read a KV bucket: look it up, get keys, watch and list them. */
function readKv(bucket: string): string[] {
  const stream = kvStream(bucket);
  return [...streamInfo(stream), ...getMessages(stream), ...readers(stream), ...flowControl(stream)];
}

/** Load code: the deployments KV and the bundles Object Store. */
function readCode(names: Names): string[] {
  const obj = objStream(names.bundlesStore);
  return [...readKv(names.deploymentsBucket), ...streamInfo(obj), ...getMessages(obj), ...readers(obj), ...flowControl(obj)];
}

/**
 * Claim-checked payloads (payloads/claim-check.ts): read objects, write them (chunks and meta
 * under `$O.<bucket>.>`), and purge them (an overwrite purges the old chunks; removal with the
 * workflow purges chunks and meta). Clients write start inputs and signal payloads, workers
 * activity outputs, orchestrators workflow results and activity inputs.
 */
function payloadObjects(names: Names): string[] {
  const obj = objStream(names.payloadsStore);
  return [...getMessages(obj), ...readers(obj), ...flowControl(obj), `$O.${names.payloadsStore}.>`, `${API}.STREAM.PURGE.${obj}`];
}

/** What ensureTopology looks up (it creates nothing when the namespace is provisioned). */
function lookUpTopology(names: Names): string[] {
  return [
    `${API}.INFO`,
    ...[names.eventsStream, names.tasksStream, names.timersStream, names.deadLettersStream, names.parkedStream, names.scheduleTicksStream, kvStream(names.statesBucket), kvStream(names.pendingSignalsBucket), kvStream(names.schedulesBucket), objStream(names.payloadsStore)].flatMap(streamInfo),
    `${API}.CONSUMER.INFO.${names.eventsStream}.${names.orchestratorConsumer}`,
    `${API}.CONSUMER.INFO.${names.timersStream}.${names.timersConsumer}`,
    `${API}.CONSUMER.INFO.${names.scheduleTicksStream}.${names.schedulerConsumer}`,
  ];
}

function subjectPrefix(names: Names): string {
  return names.namespace ? `${names.namespace}.` : "";
}

function checkActivities(activities: string[] | undefined): string[] {
  if (!activities || activities.length === 0) return ["*"];
  for (const type of activities) validateName("activity type", type);
  return [...new Set(activities)].sort();
}

function worker(names: Names, activities: string[]): RolePermissions {
  const types = checkActivities(activities);
  const publish = [
    ...lookUpTopology(names),
    ...types.flatMap((type) => [
      ...pull(names.tasksStream, type === "*" ? "*" : names.activityConsumer(type)),
      // Its own durable consumer, created when missing: the permitted subject carries the filter.
      `${API}.CONSUMER.CREATE.${names.tasksStream}.${type === "*" ? "*" : names.activityConsumer(type)}.${names.taskSubject(type)}`,
    ]),
    tail(names.completedSubject("*", "*")),
    names.deadLetterSubject(">"),
    // Leases of continued steps (worker/leases.ts): ask a runtime whether it still holds one.
    names.leaseSubject(">"),
    ...getMessages(kvStream(names.statesBucket)),
    ...readKv(names.releasesBucket),
    ...kvSubjects(names.releasesBucket),
    ...readCode(names),
    // A redelivered task of an ended workflow re-publishes the end's effects (worker/pool.ts
    // alreadyRecorded): the report to a parent, the close policy's cancels to children.
    names.childSubject(">"),
    names.cancelSubject(">"),
    ...payloadObjects(names),
  ];
  // Terminates (cancel subject) and the orchestrator's aborts of named steps (abort subject) stop running attempts.
  const subscribe = [`${inboxPrefixOf(names.namespace)}.>`, names.cancelSubject(">"), names.abortSubject(">"), names.leaseSubject(">")];
  return { publish: { allow: publish }, subscribe: { allow: subscribe } };
}

function orchestrator(names: Names): RolePermissions {
  const p = subjectPrefix(names);
  const states = kvStream(names.statesBucket);
  const publish = [
    ...lookUpTopology(names),
    ...pull(names.eventsStream, names.orchestratorConsumer),
    ...pull(names.timersStream, names.timersConsumer),
    // Schedules (schedules/scheduler.ts): every orchestrator takes due ticks, reads and writes the records.
    ...pull(names.scheduleTicksStream, names.schedulerConsumer),
    ...readKv(names.schedulesBucket),
    ...kvSubjects(names.schedulesBucket),
    // Everything it publishes: tasks, timers, signals, cancels, parked events, dead letters, starts, finished notices.
    `${p}workflow.>`,
    names.taskSubject(">"),
    // States, history chunks and the visibility index; pending signals; fleet leases.
    ...getMessages(states),
    ...readers(states),
    // Keys are removed by sequence (nats/key-removal.ts); a workflow's archived runs by one purge.
    `${API}.STREAM.MSG.DELETE.${states}`,
    `${API}.STREAM.PURGE.${states}`,
    ...kvSubjects(names.statesBucket),
    ...readKv(names.pendingSignalsBucket),
    ...kvSubjects(names.pendingSignalsBucket),
    ...readKv(names.leasesBucket),
    ...kvSubjects(names.leasesBucket),
    // Parked timers are deleted from the timers stream once fired (orchestrator/parked-timers.ts).
    `${API}.STREAM.MSG.DELETE.${names.timersStream}`,
    // Parked events of blocked workflows (orchestrator/blocked.ts).
    ...readers(names.parkedStream),
    `${API}.STREAM.PURGE.${names.parkedStream}`,
    ...streamInfo(names.parkedStream),
    ...readCode(names),
    ...payloadObjects(names),
  ];
  // Queries are answered by the orchestrator (orchestrator/queries.ts): a queue subscription.
  const subscribe = [`${inboxPrefixOf(names.namespace)}.>`, `$KV.${names.pendingSignalsBucket}.>`, names.leaseSubject(">"), names.querySubject("*")];
  return { publish: { allow: publish }, subscribe: { allow: subscribe } };
}

function client(names: Names): RolePermissions {
  const states = kvStream(names.statesBucket);
  const publish = [
    ...lookUpTopology(names),
    names.startSubject(">"),
    tail(names.signalSubject("*", "*")),
    names.cancelSubject(">"),
    names.querySubject("*"),
    names.updateSubject("*"),
    // client.schedules: the records, and a schedule's first (or triggered) tick.
    ...readKv(names.schedulesBucket),
    ...kvSubjects(names.schedulesBucket),
    names.scheduleTickSubject(">"),
    // Read states, history chunks, runs and the visibility index (lists, counts).
    ...getMessages(states),
    ...readers(states),
    ...readCode(names),
    ...payloadObjects(names),
  ];
  const subscribe = [`${inboxPrefixOf(names.namespace)}.>`, names.finishedSubject(">")];
  return { publish: { allow: publish }, subscribe: { allow: subscribe } };
}

function admin(names: Names): RolePermissions {
  const streams = [
    names.eventsStream,
    names.tasksStream,
    names.timersStream,
    names.deadLettersStream,
    names.parkedStream,
    names.scheduleTicksStream,
    ...[names.statesBucket, names.releasesBucket, names.pendingSignalsBucket, names.leasesBucket, names.deploymentsBucket, names.schedulesBucket].map(kvStream),
    objStream(names.bundlesStore),
    objStream(names.payloadsStore),
  ];
  const p = subjectPrefix(names);
  const publish = [
    `${API}.INFO`,
    ...streams.flatMap((s) => [
      `${API}.STREAM.*.${s}`,
      `${API}.STREAM.MSG.*.${s}`,
      `${API}.CONSUMER.*.${s}`,
      `${API}.CONSUMER.*.${s}.>`,
      `${API}.CONSUMER.MSG.NEXT.${s}.>`,
      `${API}.CONSUMER.DURABLE.CREATE.${s}.>`,
      `${API}.DIRECT.GET.${s}`,
      `${API}.DIRECT.GET.${s}.>`,
      `$JS.ACK.${s}.>`,
      `$JS.FC.${s}.>`,
    ]),
    ...(p ? [`${p}>`] : [...eventSubjects(names), `workflow.>`, names.taskSubject(">")]),
    ...[names.statesBucket, names.releasesBucket, names.pendingSignalsBucket, names.leasesBucket, names.deploymentsBucket, names.schedulesBucket].flatMap(kvSubjects),
    `$O.${names.bundlesStore}.>`,
    `$O.${names.payloadsStore}.>`,
  ];
  const subscribe = [`${inboxPrefixOf(names.namespace)}.>`, ...(p ? [`${p}>`] : ["workflow.>", names.taskSubject(">")]), `$KV.${names.pendingSignalsBucket}.>`];
  return { publish: { allow: dedupe(publish) }, subscribe: { allow: dedupe(subscribe) } };
}

function dedupe(list: string[]): string[] {
  return [...new Set(list)];
}

function union(a: RolePermissions, b: RolePermissions): RolePermissions {
  return { publish: { allow: dedupe([...a.publish.allow, ...b.publish.allow]) }, subscribe: { allow: dedupe([...a.subscribe.allow, ...b.subscribe.allow]) } };
}

/** The publish and subscribe allow lists of `role` in `namespace`. Pure: the same input gives the same lists. */
export function rolePermissions(options: PermissionOptions): RolePermissions {
  if (!(PERMISSION_ROLES as readonly string[]).includes(options.role)) {
    throw new ValidationError("WF_PERMISSIONS_ROLE", `unknown role "${String(options.role)}"`, { hint: `Use one of ${PERMISSION_ROLES.join(", ")}.` });
  }
  if (options.activities?.length && options.role !== "worker" && options.role !== "runtime") {
    throw new ValidationError("WF_PERMISSIONS_ROLE", `--activities applies to the worker and runtime roles, not ${options.role}`, {
      hint: "Drop --activities, or use --role worker / --role runtime.",
    });
  }
  const names = createNames(options.namespace ?? "");
  const activities = options.activities ?? [];
  let result: RolePermissions;
  switch (options.role) {
    case "client":
      result = client(names);
      break;
    case "worker":
      result = worker(names, activities);
      break;
    case "orchestrator":
      result = orchestrator(names);
      break;
    case "runtime":
      result = union(orchestrator(names), worker(names, activities));
      break;
    case "admin":
      result = admin(names);
      break;
  }
  return { publish: { allow: dedupe(result.publish.allow) }, subscribe: { allow: dedupe(result.subscribe.allow) } };
}

/** The allow lists as a nats-server `permissions` block (for a user in `authorization { users: [...] }`). */
export function permissionsConf(permissions: RolePermissions, indent = ""): string {
  const list = (items: string[]) => items.map((s) => `${indent}      ${JSON.stringify(s)}`).join("\n");
  return [
    `${indent}permissions: {`,
    `${indent}  publish: {`,
    `${indent}    allow: [`,
    list(permissions.publish.allow),
    `${indent}    ]`,
    `${indent}  }`,
    `${indent}  subscribe: {`,
    `${indent}    allow: [`,
    list(permissions.subscribe.allow),
    `${indent}    ]`,
    `${indent}  }`,
    `${indent}}`,
  ].join("\n");
}
