/**
 * Streams, consumers and the state bucket, created idempotently by every runtime and client that
 * needs them: a second runtime starting against the same NATS finds them and joins.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { createClaimCheck } from "../payloads/claim-check.js";
import type { PayloadCodec } from "../payloads/codec.js";
import { createPayloads, type Payloads } from "../payloads/payloads.js";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config.js";
import { eventSubjects, type Names } from "./names.js";

const NANOS_PER_MS = 1_000_000;
export const nanos = (ms: number): number => ms * NANOS_PER_MS;

/** How long JetStream remembers a Nats-Msg-Id. Outbox re-publishes within it are dropped as duplicates. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;
/**
 * Redelivery delay of a timer that a runtime pulled but neither parked nor fired (it died
 * meanwhile), and of a parked timer after a NATS restart forgot its NAK delay. A timer service
 * handles each timer at once (park or fire), so this only bounds how late a crash makes a timer:
 * as the default ack waits of events and tasks, within the 5 s of failover (docs/ARCHITECTURE.md).
 */
export const DEFAULT_TIMER_ACK_WAIT_MS = 4_000;
/**
 * Redelivery delay of a schedule tick a runtime pulled and did not finish (it died), and of a
 * parked tick after a NATS restart forgot its NAK delay: bounds how late a crash makes a tick.
 */
export const DEFAULT_SCHEDULER_ACK_WAIT_MS = 4_000;
export const DEFAULT_ORCHESTRATOR_MAX_ACK_PENDING = 20_000;
export const DEFAULT_DEAD_LETTER_MAX_AGE_MS = 30 * 86_400_000;

/** How long a signal to a workflow id that has not started is kept (docs/protocol.md, "Signal"). */
export const PENDING_SIGNAL_RETENTION_MS = 24 * 60 * 60 * 1000;

/** How long a fleet lease key nobody writes is kept (nats/fleet-lease.ts). */
export const FLEET_LEASE_RETENTION_MS = 24 * 60 * 60 * 1000;

export interface Topology {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: Names;
  states: KV;
  /** Signals for ids that have no state yet (orchestrator/pending-signals.ts). */
  pendingSignals: KV;
  /** Schedules: spec and progress per schedule id (schedules/store.ts). */
  schedules: KV;
  /** The payload boundary (payloads/payloads.ts): codec and claim check, over the WORKFLOW_PAYLOADS Object Store. */
  payloads: Payloads;
}

export interface TopologyOptions {
  names: Names;
  replicas: number;
  storage: Config["storage"];
  orchestratorAckWaitMs: number;
  /** Events delivered to the orchestrators and not yet acked, across all runtimes (orchestrator.maxAckPending). */
  orchestratorMaxAckPending?: number;
  /**
   * Bring existing consumers' settings in line with this config (runtimes). Clients only create
   * what is missing: a client with default settings must not reset a fleet's ack waits.
   */
  updateConsumers?: boolean;
  /**
   * How payloads are encoded (payloads/payloads.ts). Absent: no codec, claim check over 64 KiB,
   * at most 32 MiB (the config defaults).
   */
  payloads?: { codec?: PayloadCodec | undefined; inlineBytes: number; maxBytes: number };
}

export const DEFAULT_INLINE_PAYLOAD_BYTES = 64 * 1024;
export const DEFAULT_MAX_INPUT_BYTES = 32 * 1024 * 1024;

export async function ensureTopology(nc: NatsConnection, options: TopologyOptions): Promise<Topology> {
  const { names, replicas } = options;
  const storage = options.storage === "memory" ? StorageType.Memory : StorageType.File;
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);

  await Promise.all([
    ensureStream(jsm, {
      name: names.eventsStream,
      subjects: eventSubjects(names),
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: nanos(DEFAULT_DUPLICATE_WINDOW_MS),
    }),
    ensureStream(jsm, {
      name: names.tasksStream,
      subjects: [names.taskSubject(">")],
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: nanos(DEFAULT_DUPLICATE_WINDOW_MS),
    }),
    ensureStream(jsm, {
      name: names.timersStream,
      subjects: [names.timerScheduleSubject(">")],
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: nanos(DEFAULT_DUPLICATE_WINDOW_MS),
    }),
    ensureStream(jsm, {
      name: names.deadLettersStream,
      subjects: [names.deadLetterSubject(">")],
      retention: RetentionPolicy.Limits,
      storage,
      num_replicas: replicas,
      max_age: nanos(DEFAULT_DEAD_LETTER_MAX_AGE_MS),
      max_msgs: 100_000,
      discard: DiscardPolicy.Old,
    }),
    // One parked message per active schedule: its next tick (schedules/scheduler.ts).
    ensureStream(jsm, {
      name: names.scheduleTicksStream,
      subjects: [names.scheduleTickSubject(">")],
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: nanos(DEFAULT_DUPLICATE_WINDOW_MS),
    }),
    // No limits: a parked event is the only copy of an event a blocked workflow still needs. It
    // holds one message per event of a blocked workflow, and is emptied as they resume.
    ensureStream(jsm, {
      name: names.parkedStream,
      subjects: [names.parkedSubject(">")],
      retention: RetentionPolicy.Limits,
      storage,
      num_replicas: replicas,
      duplicate_window: nanos(DEFAULT_DUPLICATE_WINDOW_MS),
    }),
  ]);

  await Promise.all([
    ensureConsumer(jsm, options.updateConsumers ?? true, names.eventsStream, {
      durable_name: names.orchestratorConsumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(options.orchestratorAckWaitMs),
      max_deliver: -1,
      max_ack_pending: options.orchestratorMaxAckPending ?? DEFAULT_ORCHESTRATOR_MAX_ACK_PENDING,
    }),
    ensureConsumer(jsm, options.updateConsumers ?? true, names.timersStream, {
      durable_name: names.timersConsumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(DEFAULT_TIMER_ACK_WAIT_MS),
      max_deliver: -1,
      // Parked timers (NAK'd with a delay) hold an ack-pending slot each until they fire: this
      // bounds how many workflows may sleep or wait on a retry backoff at once. Unlimited.
      max_ack_pending: -1,
    }),
    ensureConsumer(jsm, options.updateConsumers ?? true, names.scheduleTicksStream, {
      durable_name: names.schedulerConsumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(DEFAULT_SCHEDULER_ACK_WAIT_MS),
      max_deliver: -1,
      // Each schedule's next tick is parked here (NAK'd with a delay) until due: unlimited, as for timers.
      max_ack_pending: -1,
    }),
  ]);

  const kvm = new Kvm(js);
  const states = await kvm.create(names.statesBucket, {
    replicas,
    history: 1,
    storage,
    // Direct gets may be answered by a follower that lags the leader. The orchestrator acks an
    // event as a duplicate only after a read that says so, which must be current: on a cluster,
    // reads go through the stream leader.
    allow_direct: replicas === 1,
  });

  const [pendingSignals, schedules] = await Promise.all([
    kvm.create(names.pendingSignalsBucket, {
      replicas,
      history: 1,
      storage,
      // Signals to an id that never starts must not accumulate forever: each key expires this long
      // after its last write.
      ttl: PENDING_SIGNAL_RETENTION_MS,
      allow_direct: replicas === 1,
    }),
    // A tick is decided by CAS on the schedule's revision, so reads must be current (as for states).
    kvm.create(names.schedulesBucket, { replicas, history: 1, storage, allow_direct: replicas === 1 }),
  ]);

  // Chunks and meta of claim-checked payloads; objects go with their workflow (visibility/index-writer.ts removeWorkflow).
  const objects = await new Objm(js).create(names.payloadsStore, { replicas, storage });
  const payloadOptions = options.payloads ?? { inlineBytes: DEFAULT_INLINE_PAYLOAD_BYTES, maxBytes: DEFAULT_MAX_INPUT_BYTES };
  const payloads = createPayloads({ ...payloadOptions, claimCheck: createClaimCheck(objects, names.payloadsStore, jsm) });

  return { nc, js, jsm, names, states, pendingSignals, schedules, payloads };
}

/** The durable consumer of one activity type's tasks; every runtime hosting the type shares it. */
export async function ensureActivityConsumer(topology: Topology, activityType: string, ackWaitMs: number): Promise<void> {
  const { names, jsm } = topology;
  await ensureConsumer(jsm, true, names.tasksStream, {
    durable_name: names.activityConsumer(activityType),
    filter_subject: names.taskSubject(activityType),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    // Crash loops are counted by the worker (worker.maxDeliveries), which then fails the attempt
    // with a clear error; a server-side limit would only leave the task stuck in the stream.
    max_deliver: -1,
    max_ack_pending: 10_000,
  });
}

async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    const info = await jsm.streams.info(config.name);
    const current = info.config;
    const drift =
      JSON.stringify([...(current.subjects ?? [])].sort()) !== JSON.stringify([...(config.subjects ?? [])].sort()) ||
      (config.duplicate_window !== undefined && current.duplicate_window !== config.duplicate_window);
    if (drift) await jsm.streams.update(config.name, { ...current, ...config } as StreamConfig);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.streams.add(config);
    } catch (addErr) {
      // Another runtime created it between our info and add: that is the idempotent outcome.
      if (!/already in use/i.test((addErr as Error).message)) throw addErr;
    }
  }
}

async function ensureConsumer(jsm: JetStreamManager, update: boolean, stream: string, config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
  try {
    const info = await jsm.consumers.info(stream, config.durable_name);
    const c = info.config;
    if (update && (c.ack_wait !== config.ack_wait || c.max_ack_pending !== config.max_ack_pending)) {
      await jsm.consumers.update(stream, config.durable_name, { ack_wait: config.ack_wait!, max_ack_pending: config.max_ack_pending! });
    }
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.consumers.add(stream, config);
    } catch (addErr) {
      if (!/already (in use|exists)/i.test((addErr as Error).message)) throw addErr;
    }
  }
}

function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === 10059 || err.code === 10014 || err.status === 404;
  return /not found/i.test((err as Error)?.message ?? "");
}
