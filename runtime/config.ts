/**
 * The one configuration schema. Precedence: defaults, then wf.config.json (or WF_CONFIG), then the
 * environment, then flags. Unknown keys and wrong types fail at start with the key and the file
 * named. The result is compiled once into a frozen `Config`; nothing else reads process.env.
 */
import convict from "convict";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { parseDuration } from "./duration.js";
import { ConfigError } from "./errors.js";
import type { LogLevel } from "./logger.js";
import type { RetryPolicy } from "./retry-policy.js";

export const DEFAULT_CONFIG_FILE = "wf.config.json";
/** The shortest worker.ackWait and orchestrator.ackWait accepted. */
export const MIN_ACK_WAIT_MS = 1_000;

convict.addFormat({
  name: "duration",
  validate(value: unknown) {
    parseDuration(value as string | number);
  },
  coerce(value: string) {
    return /^\d+$/.test(value) ? Number(value) : value;
  },
});

convict.addFormat({
  name: "string-list",
  validate(value: unknown) {
    if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
      throw new Error("must be an array of strings, or a comma-separated string in the environment");
    }
  },
  coerce(value: string) {
    return value.split(",").map((s) => s.trim()).filter(Boolean);
  },
});

convict.addFormat({
  name: "namespace",
  validate(value: unknown) {
    if (typeof value !== "string" || !/^[A-Za-z0-9_-]{0,32}$/.test(value)) {
      throw new Error("must be empty or up to 32 letters, digits, '_' or '-'");
    }
  },
});

convict.addFormat({
  name: "codec-keys",
  validate(value: unknown) {
    if (value === null || typeof value !== "object" || Array.isArray(value) || Object.values(value).some((v) => typeof v !== "string")) {
      throw new Error('must be an object of key id → base64 key, e.g. {"k1": "<openssl rand -base64 32>"} (in the environment: that JSON)');
    }
    for (const id of Object.keys(value)) if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new Error(`key id ${JSON.stringify(id)} must be 1-64 characters of A-Z a-z 0-9 _ . -`);
  },
  coerce(value: string) {
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return value;
    }
  },
});

export const configSchema = {
  nats: {
    servers: {
      doc: "NATS server URL(s); a comma-separated list for a cluster.",
      format: "string-list",
      default: ["nats://localhost:4222"],
      env: "NATS_URL",
    },
    user: { doc: "NATS user name.", format: String, default: "", env: "NATS_USER" },
    password: { doc: "NATS password.", format: String, default: "", env: "NATS_PASSWORD", sensitive: true },
    token: { doc: "NATS auth token.", format: String, default: "", env: "NATS_TOKEN", sensitive: true },
    creds: { doc: "Path of a NATS .creds file (user JWT + NKey seed), for servers in operator (decentralized JWT) mode.", format: String, default: "", env: "NATS_CREDS" },
    nkeySeed: {
      doc: "NKey seed (SU…) of a user the server lists under `nkey:`; prefer nats.nkeyFile, which keeps the seed out of the config and the environment.",
      format: String,
      default: "",
      env: "NATS_NKEY_SEED",
      sensitive: true,
    },
    nkeyFile: { doc: "Path of a file holding the NKey seed (SU…) of a user the server lists under `nkey:`.", format: String, default: "", env: "NATS_NKEY_FILE" },
    tls: {
      ca: { doc: "Path of the CA certificate that signed the server's certificate.", format: String, default: "", env: "NATS_TLS_CA" },
      cert: { doc: "Path of the client certificate (mutual TLS).", format: String, default: "", env: "NATS_TLS_CERT" },
      key: { doc: "Path of the client certificate's key (mutual TLS).", format: String, default: "", env: "NATS_TLS_KEY" },
    },
  },
  namespace: {
    doc: "Prefix for every stream, consumer, bucket and subject, so several applications share one NATS.",
    format: "namespace",
    default: "",
    env: "WF_NAMESPACE",
  },
  replicas: { doc: "Replicas of every stream and bucket: 1, or 3 on a NATS cluster.", format: [1, 3, 5], default: 1, env: "WF_REPLICAS" },
  storage: { doc: "JetStream storage of streams and buckets.", format: ["file", "memory"], default: "file", env: "WF_STORAGE" },
  retention: {
    doc: "How long a finished workflow (completed, failed, cancelled, timed out) is kept, with its history and index entries, before it is removed (0: until `wf delete`). A workflow type may set its own (defineWorkflow/defineDag `retention`); the value in force at a workflow's start applies to it.",
    format: "duration",
    default: "7d" as string | number,
    env: "WF_RETENTION",
  },
  functions: {
    dir: { doc: "Folder with activities/ and workflows/.", format: String, default: "functions", env: "WF_FUNCTIONS_DIR" },
  },
  worker: {
    id: { doc: "This runtime's id in logs and step records (default: host-pid).", format: String, default: "", env: "WORKER_ID" },
    slots: {
      doc: "Activities this runtime runs at once. A slot is held while the activity runs; recording its completion afterwards does not hold it (up to orchestrator.concurrency are recorded at once). Activities mostly wait on I/O: lower it for CPU-heavy ones.",
      format: "nat",
      default: 64,
      env: "WF_WORKER_SLOTS",
    },
    activities: {
      doc: "Activity types this runtime pulls (empty: every type it has code for).",
      format: "string-list",
      default: [] as string[],
      env: "WF_ACTIVITIES",
    },
    ackWait: {
      doc: "How long a task may go unacknowledged before JetStream redelivers it: how soon another runtime takes over the activities of one that died. A live runtime extends it for what it runs (an in-progress ack every quarter of it, at most every second), so it does not bound how long an activity may run; an activity that blocks the event loop longer than this may run twice. At least 1s.",
      format: "duration",
      default: "4s" as string | number,
      env: "WF_ACK_WAIT",
    },
    continuations: {
      doc: "Run the next step of a workflow in the runtime that recorded the previous one, without publishing its task, when that runtime hosts the activity (both roles only); the step waits for the runtime's next free slot, ahead of new tasks. The previous task's message stays unacknowledged as the step's lease until the chain ends, so a crash is repaired as if the task had been published. Turn off to send every task through the tasks stream.",
      format: Boolean,
      default: true,
      env: "WF_CONTINUATIONS",
    },
    maxDeliveries: {
      doc: "Crashes of one attempt (deliveries that ended without an answer: its runtime died running it; a task a worker gives back does not count) before the attempt fails as a crash loop.",
      format: "nat",
      default: 5,
    },
    shutdownGrace: {
      doc: "On SIGTERM, how long in-flight activities may run before they are released to other runtimes.",
      format: "duration",
      default: "30s" as string | number,
    },
  },
  orchestrator: {
    ackWait: {
      doc: "Redelivery delay of an event whose runtime died while applying it: how soon another runtime takes over. A live runtime extends it for the events it holds. At least 1s.",
      format: "duration",
      default: "4s" as string | number,
    },
    concurrency: { doc: "Events applied at once by one runtime; also how many of its own workers' completions it records at once.", format: "nat", default: 128 },
    maxAckPending: {
      doc: "Events the orchestrators of all runtimes may hold unacknowledged at once (the events consumer's max_ack_pending); delivery of further events waits.",
      format: "nat",
      default: 20_000,
    },
    onNonDeterminism: {
      doc: "When a replay diverges from the journal: fail the workflow, or block it (it stays running and its events are parked in WORKFLOW_PARKED, until code that replays cleanly is deployed or a runtime starts, or it is cancelled).",
      format: ["fail", "block"],
      default: "fail",
    },
    maxDeliveries: {
      doc: "Deliveries after which an event that keeps failing is given up: it is dead-lettered (event_failed) and its workflow fails with PoisonEventError. Retries back off from 1 s to 60 s (20 deliveries: about 15 minutes). An error that cannot heal (the stack overflows on the event's data) gives up at once.",
      format: "nat",
      default: 20,
    },
    retentionSweepInterval: {
      doc: "How often the fleet removes finished workflows past their retention (one runtime at a time, under a lease in WORKFLOW_LEASES).",
      format: "duration",
      default: "1m" as string | number,
    },
    cacheSize: { doc: "Workflows whose state and live execution a runtime keeps in memory (each saves a replay when its next event comes; about 8 KiB each).", format: "nat", default: 2_000 },
    cacheDistantWaits: {
      doc: "A workflow that waits only on timers (sleeps, retry backoffs) due later than this is dropped from that cache; it is read and replayed when it wakes.",
      format: "duration",
      default: "30s" as string | number,
    },
  },
  defaults: {
    activityTimeout: { doc: "Start-to-close timeout of an activity attempt.", format: "duration", default: "1m" as string | number },
    workflowTimeout: { doc: "Timeout of a whole workflow (0: none).", format: "duration", default: 0 as string | number },
    retry: {
      maxRetries: { doc: "Retries after the first attempt.", format: "nat", default: 3 },
      initialInterval: { doc: "Delay before the first retry.", format: "duration", default: "1s" as string | number },
      backoffFactor: { doc: "Each retry's delay is the previous one times this.", format: Number, default: 2 },
      maxInterval: { doc: "Upper bound of a retry's delay.", format: "duration", default: "1m" as string | number },
      nonRetryableErrors: { doc: "Error types (error.name) that are never retried.", format: "string-list", default: [] as string[] },
    },
  },
  codec: {
    keys: {
      doc: 'AES-256-GCM keys that encrypt payloads (workflow inputs and results, activity inputs and outputs, signal payloads, memos, error messages) before they reach NATS: key id → base64 of 32 bytes (`openssl rand -base64 32`). Every key decrypts; keep retired ones here. Empty: payloads are stored as plain JSON. In the environment, the JSON object. See docs/security.md, "Payload encryption".',
      format: "codec-keys",
      default: {} as Record<string, string>,
      env: "WF_CODEC_KEYS",
      sensitive: true,
    },
    current: {
      doc: "Id of the key in codec.keys that encrypts new payloads (rotation: add a key, point this at it). Required when codec.keys is set.",
      format: String,
      default: "",
      env: "WF_CODEC_CURRENT",
    },
  },
  limits: {
    maxInputBytes: {
      doc: "Largest payload accepted, in bytes of JSON: a workflow input (the whole start message), a signal payload, an update's arguments, an activity output. Payloads over limits.inlinePayloadBytes travel as Object Store references, so this may be far above the NATS server's max_payload.",
      format: "nat",
      default: 32 * 1024 * 1024,
    },
    inlinePayloadBytes: {
      doc: "A payload whose JSON (or encrypted envelope) is larger is stored in the namespace's WORKFLOW_PAYLOADS Object Store and referenced from the message or state (claim check); removed with its workflow. 0: never (payloads stay inline, bounded by the NATS server's max_payload).",
      format: "nat",
      default: 64 * 1024,
    },
    maxInputDepth: {
      doc: "Deepest nesting of arrays and objects accepted in a start message or a signal (the message's own object counts as 1). Deeper ones are dead-lettered (invalid_message) and the start's workflow fails: deep data overflows the stack wherever it is copied or serialized.",
      format: "nat",
      default: 64,
    },
  },
  ui: {
    port: {
      doc: "Port of the web UI. `wf run` serves it only when this is set (0, the default: off); `wf dev` always serves it, on this port or else 8233 (the next free one when it is taken); `wf ui --port` overrides it.",
      format: "port",
      default: 0,
      env: "WF_UI_PORT",
    },
    host: {
      doc: "Interface the web UI listens on. Anything but a loopback address (127.0.0.1, ::1, localhost) requires `ui.token`.",
      format: String,
      default: "127.0.0.1",
      env: "WF_UI_HOST",
    },
    token: {
      doc: "Bearer token the web UI's API requires (`Authorization: Bearer <token>`; the page asks for it once, or takes it from `?token=`). Empty: none, allowed on loopback only.",
      format: String,
      default: "",
      env: "WF_UI_TOKEN",
      sensitive: true,
    },
    readOnly: { doc: "The web UI shows everything but refuses every action (cancel, terminate, signal, replay, discard) with 403.", format: Boolean, default: false, env: "WF_UI_READ_ONLY" },
  },
  metrics: {
    port: {
      doc: "Port of the Prometheus endpoint (`GET /metrics`, docs/metrics.md) that `wf run` serves (0, the default: off); `wf run --metrics-port` overrides it.",
      format: "port",
      default: 0,
      env: "WF_METRICS_PORT",
    },
    host: { doc: "Interface the metrics endpoint listens on (`0.0.0.0` for a scraper on another machine).", format: String, default: "127.0.0.1", env: "WF_METRICS_HOST" },
  },
  log: {
    level: { doc: "Log level.", format: ["debug", "info", "warn", "error", "silent"], default: "info", env: "WF_LOG_LEVEL" },
    format: { doc: "Log line format.", format: ["text", "json"], default: "text", env: "WF_LOG_FORMAT" },
  },
};

export interface NatsConnectionConfig {
  servers: string[];
  user?: string;
  password?: string;
  token?: string;
  creds?: string;
  /** NKey seed, from nats.nkeySeed or read from nats.nkeyFile (then `nkeyFile` names the file). */
  nkeySeed?: string;
  nkeyFile?: string;
  tls?: { ca?: string; cert?: string; key?: string };
}

export interface Config {
  /** The file the values came from, if any. */
  file: string | undefined;
  nats: NatsConnectionConfig;
  namespace: string;
  replicas: number;
  storage: "file" | "memory";
  /** Default retention of finished workflows, in ms (0: kept until deleted). */
  retentionMs: number;
  functionsDir: string;
  worker: {
    id: string;
    slots: number;
    activities: string[];
    ackWaitMs: number;
    continuations: boolean;
    maxDeliveries: number;
    shutdownGraceMs: number;
  };
  orchestrator: { ackWaitMs: number; concurrency: number; maxAckPending: number; cacheSize: number; cacheDistantWaitsMs: number; onNonDeterminism: "fail" | "block"; maxDeliveries: number; retentionSweepIntervalMs: number };
  defaults: { activityTimeoutMs: number; workflowTimeoutMs: number; retry: RetryPolicy };
  limits: { maxInputBytes: number; maxInputDepth: number; inlinePayloadBytes: number };
  /** Payload encryption (payloads/codec.ts): `keys` empty when off. */
  codec: { keys: Record<string, string>; current: string };
  /** The web UI (runtime/ui/server.ts); `token` absent when empty. */
  ui: { port: number; host: string; token?: string; readOnly: boolean };
  /** The Prometheus endpoint (runtime/observability/metrics.ts); port 0: off. */
  metrics: { port: number; host: string };
  log: { level: LogLevel; format: "text" | "json" };
}

/** A nested partial of wf.config.json's shape, for flags and programmatic overrides. */
export type ConfigOverrides = { [key: string]: unknown };

export interface LoadConfigOptions {
  /** Path of the config file; default WF_CONFIG, else ./wf.config.json when it exists. */
  file?: string;
  /** Environment to read; default process.env. Tests pass {}. */
  env?: Record<string, string | undefined>;
  /** Highest precedence: values from flags or code, in the file's shape. */
  overrides?: ConfigOverrides;
  cwd?: string;
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.file ?? env.WF_CONFIG;
  const file = explicit ? resolve(cwd, explicit) : existsSync(resolve(cwd, DEFAULT_CONFIG_FILE)) ? resolve(cwd, DEFAULT_CONFIG_FILE) : undefined;
  const label = file ?? "configuration";

  const config = convict(configSchema, { env: env as NodeJS.ProcessEnv, args: [] });
  try {
    if (file) {
      if (!existsSync(file)) {
        throw new ConfigError("WF_CONFIG_FILE_NOT_FOUND", `config file ${file} does not exist`, {
          hint: "Create it (`wf init` writes one) or point WF_CONFIG / --config at an existing file.",
        });
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(file, "utf8"));
      } catch (err) {
        throw new ConfigError("WF_CONFIG_INVALID_JSON", `${file} is not valid JSON: ${(err as Error).message}`, {
          hint: "Fix the JSON syntax (no comments or trailing commas).",
        });
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new ConfigError("WF_CONFIG_INVALID_JSON", `${file} must hold a JSON object`, { hint: 'Start from `{ "namespace": "" }`.' });
      }
      config.load(parsed as object);
    }
    // Flags beat the environment: convict re-applies the environment on every load(), so
    // overrides are set leaf by leaf after it (strict validation still catches unknown keys).
    if (options.overrides) for (const [path, value] of leaves(options.overrides)) config.set(path, value);
    config.validate({ allowed: "strict" });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw explainConvictError(err as Error, label);
  }

  const raw = config.getProperties();
  const tls = raw.nats.tls;
  // NATS authenticates a connection one way; two configured ways means one is silently ignored.
  const ways = [
    raw.nats.user || raw.nats.password ? "nats.user/nats.password" : "",
    raw.nats.token ? "nats.token" : "",
    raw.nats.nkeySeed || raw.nats.nkeyFile ? "nats.nkeySeed/nats.nkeyFile" : "",
    raw.nats.creds ? "nats.creds" : "",
  ].filter(Boolean);
  if (ways.length > 1 || (raw.nats.nkeySeed && raw.nats.nkeyFile)) {
    const both = ways.length > 1 ? ways.join(" and ") : "nats.nkeySeed and nats.nkeyFile";
    throw new ConfigError("WF_CONFIG_INVALID_VALUE", `${label}: ${both} are both set; NATS authenticates a connection one way`, {
      hint: "Keep the one your server expects and remove the other (from wf.config.json or the NATS_* environment variables).",
    });
  }
  // Short ack waits are kept alive by in-progress acks every quarter of them (nats/keep-alive.ts);
  // below a second, a garbage collection or a busy moment would hand live work to another runtime.
  const ackWaitMs = (key: string, value: string | number): number => {
    const ms = parseDuration(value, key);
    if (ms >= MIN_ACK_WAIT_MS) return ms;
    throw new ConfigError("WF_CONFIG_INVALID_VALUE", `${label}: ${key} is ${JSON.stringify(value)}, below the minimum of 1s`, {
      hint: `Set ${key} to 1s or more (the default, 4s, lets another runtime take over within about 4 s of a crash).`,
    });
  };
  const workerAckWaitMs = ackWaitMs("worker.ackWait", raw.worker.ackWait);
  const orchestratorAckWaitMs = ackWaitMs("orchestrator.ackWait", raw.orchestrator.ackWait);
  const codecKeys = Object.keys(raw.codec.keys as object);
  if ((codecKeys.length > 0 || raw.codec.current) && !codecKeys.includes(raw.codec.current)) {
    throw new ConfigError(
      "WF_CONFIG_INVALID_VALUE",
      codecKeys.length === 0
        ? `${label}: codec.current is "${raw.codec.current}", but codec.keys is empty`
        : `${label}: codec.current is ${JSON.stringify(raw.codec.current)}, which is not one of codec.keys (${codecKeys.join(", ")})`,
      { hint: 'Set codec.current to the id of the key that should encrypt new payloads, e.g. { "codec": { "keys": { "k1": "<base64>" }, "current": "k1" } }.' },
    );
  }
  return deepFreeze({
    file,
    nats: {
      servers: raw.nats.servers,
      ...(raw.nats.user ? { user: raw.nats.user } : {}),
      ...(raw.nats.password ? { password: raw.nats.password } : {}),
      ...(raw.nats.token ? { token: raw.nats.token } : {}),
      ...(raw.nats.creds ? { creds: resolve(cwd, raw.nats.creds) } : {}),
      ...(raw.nats.nkeySeed ? { nkeySeed: raw.nats.nkeySeed } : {}),
      ...(raw.nats.nkeyFile ? { nkeyFile: resolve(cwd, raw.nats.nkeyFile) } : {}),
      ...(tls.ca || tls.cert || tls.key
        ? {
            tls: {
              ...(tls.ca ? { ca: resolve(cwd, tls.ca) } : {}),
              ...(tls.cert ? { cert: resolve(cwd, tls.cert) } : {}),
              ...(tls.key ? { key: resolve(cwd, tls.key) } : {}),
            },
          }
        : {}),
    },
    namespace: raw.namespace,
    replicas: raw.replicas,
    storage: raw.storage as "file" | "memory",
    retentionMs: parseDuration(raw.retention, "retention"),
    functionsDir: resolve(cwd, raw.functions.dir),
    worker: {
      id: raw.worker.id || `${hostname()}-${process.pid}`,
      slots: raw.worker.slots,
      activities: raw.worker.activities,
      ackWaitMs: workerAckWaitMs,
      continuations: raw.worker.continuations,
      maxDeliveries: raw.worker.maxDeliveries,
      shutdownGraceMs: parseDuration(raw.worker.shutdownGrace, "worker.shutdownGrace"),
    },
    orchestrator: {
      ackWaitMs: orchestratorAckWaitMs,
      concurrency: Math.max(1, raw.orchestrator.concurrency),
      maxAckPending: Math.max(1, raw.orchestrator.maxAckPending),
      cacheSize: raw.orchestrator.cacheSize,
      cacheDistantWaitsMs: parseDuration(raw.orchestrator.cacheDistantWaits, "orchestrator.cacheDistantWaits"),
      onNonDeterminism: raw.orchestrator.onNonDeterminism as "fail" | "block",
      maxDeliveries: Math.max(1, raw.orchestrator.maxDeliveries),
      retentionSweepIntervalMs: Math.max(1_000, parseDuration(raw.orchestrator.retentionSweepInterval, "orchestrator.retentionSweepInterval")),
    },
    defaults: {
      activityTimeoutMs: parseDuration(raw.defaults.activityTimeout, "defaults.activityTimeout"),
      workflowTimeoutMs: parseDuration(raw.defaults.workflowTimeout, "defaults.workflowTimeout"),
      retry: {
        maxRetries: raw.defaults.retry.maxRetries,
        initialIntervalMs: parseDuration(raw.defaults.retry.initialInterval, "defaults.retry.initialInterval"),
        backoffFactor: raw.defaults.retry.backoffFactor,
        maxIntervalMs: parseDuration(raw.defaults.retry.maxInterval, "defaults.retry.maxInterval"),
        nonRetryableErrors: raw.defaults.retry.nonRetryableErrors,
      },
    },
    limits: { maxInputBytes: raw.limits.maxInputBytes, maxInputDepth: Math.max(1, raw.limits.maxInputDepth), inlinePayloadBytes: raw.limits.inlinePayloadBytes },
    codec: { keys: { ...(raw.codec.keys as Record<string, string>) }, current: raw.codec.current },
    ui: { port: raw.ui.port, host: raw.ui.host, ...(raw.ui.token ? { token: raw.ui.token } : {}), readOnly: raw.ui.readOnly },
    metrics: { port: raw.metrics.port, host: raw.metrics.host },
    log: { level: raw.log.level as LogLevel, format: raw.log.format as "text" | "json" },
  });
}

function leaves(object: ConfigOverrides, prefix = ""): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  for (const [key, value] of Object.entries(object)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) out.push(...leaves(value as ConfigOverrides, path));
    else out.push([path, value]);
  }
  return out;
}

/** Every key of the schema as "a.b.c", for suggestions and `wf run --print-config`. */
export function configKeys(schema: object = configSchema, prefix = ""): string[] {
  const keys: string[] = [];
  for (const [name, value] of Object.entries(schema)) {
    const path = prefix ? `${prefix}.${name}` : name;
    if (value && typeof value === "object" && "default" in value) keys.push(path);
    else keys.push(...configKeys(value as object, path));
  }
  return keys;
}

/** Convict's messages name the key but not the file or the fix; restate them. */
function explainConvictError(err: Error, label: string): ConfigError {
  const lines = err.message.split("\n").map((l) => l.trim()).filter(Boolean);
  const problems = lines.map((line) => {
    const unknown = /configuration param '([^']+)' not declared in the schema/.exec(line);
    if (unknown) {
      const key = unknown[1]!;
      const suggestion = closestKey(key);
      return `unknown key "${key}"` + (suggestion ? ` (did you mean "${suggestion}"?)` : "");
    }
    return line.replace(/^([\w.]+): /, (_, key: string) => `"${key}": `);
  });
  const unknownKey = problems.some((p) => p.startsWith("unknown key"));
  return new ConfigError(unknownKey ? "WF_CONFIG_UNKNOWN_KEY" : "WF_CONFIG_INVALID_VALUE", `${label}: ${problems.join("; ")}`, {
    hint: unknownKey
      ? "Rename or remove it; `wf run --print-config` lists every valid key, docs/config.md explains them."
      : "Fix the value; docs/config.md gives each key's type and default.",
    cause: err,
  });
}

function closestKey(key: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of configKeys()) {
    const d = editDistance(key, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
