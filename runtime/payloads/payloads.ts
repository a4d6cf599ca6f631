/**
 * The payload boundary: every user payload passes through here on its way to NATS and back.
 * A payload is one JSON value: a workflow's input or result, an activity's input or output, a
 * signal's payload, an update's arguments and result, a query's arguments and answer, a memo, an
 * error's message (with its stack and details).
 *
 * Encoding, in this order: the codec (codec.ts) turns the JSON text into an envelope
 * `{"$enc": …}`; then, if the text (or the envelope's) is over `limits.inlinePayloadBytes`, the
 * claim check (claim-check.ts) stores it as an object and leaves `{"$ref": …}`. Decoding undoes
 * both. With no codec and a payload under the threshold, the value stays exactly as it was: a
 * state written without a codec is the plain JSON it always was (zero cost by default).
 *
 * Who calls what (docs/security.md, "Payload encryption"):
 * - the client encodes start inputs, memos, signal payloads, update and query arguments, and
 *   decodes results, states, update outcomes and query answers;
 * - a worker decodes its task's input and encodes its output and error;
 * - the orchestrator decodes what workflow code reads (its input, each step's result) and seals
 *   what the code produced (activity and child inputs, its result or error, update outcomes)
 *   before the state is written; a runtime answering a query decodes its arguments and encodes
 *   its answer (encodeInline: no state references a query, so nothing of it is claim-checked).
 *   States at rest, tasks, completions and events all hold the encoded form; only workflow
 *   code, activities and client callers see decoded values.
 */
import { createHash } from "node:crypto";
import { CodecError, type ErrorRecord } from "../errors.js";
import type { StepResult } from "../journal/execution.js";
import type { StepState, UpdateRecord, WorkflowState } from "../state.js";
import { isRef, objectNameOf, type ClaimCheck, type PayloadRef } from "./claim-check.js";
import { codecFromConfig, isEncoded, type EncodedPayload, type PayloadCodec } from "./codec.js";
import type { Config } from "../config.js";

/** What `wf show`, the UI and describe({ undecodable: "mark" }) show in place of a payload they cannot decode. */
export const ENCRYPTED_PLACEHOLDER = "[encrypted; configure codec.keys to read]";
/** The message of an encoded error record: the real one is in its `encoded` envelope. */
export const ENCODED_ERROR_MESSAGE = "[encoded error]";
/** Claim-checked payloads kept in memory (their JSON text), by total size: a runtime's own just-written outputs are read back from here. */
const RECENT_TEXT_BYTES = 64 * 1024 * 1024;

export interface PayloadsOptions {
  codec?: PayloadCodec | undefined;
  /** Absent, or `inlineBytes` 0: no claim check (payloads stay inline, bounded by NATS max_payload). */
  claimCheck?: ClaimCheck | undefined;
  /** limits.inlinePayloadBytes. */
  inlineBytes: number;
  /** limits.maxInputBytes: the largest payload a client or worker may hand in (and a reference may claim). */
  maxBytes: number;
}

export interface EncodeOptions {
  /** Refuse a payload over limits.maxInputBytes (input from users: starts, signals, activity outputs). */
  limit?: string;
}

export interface Payloads {
  /** False: no codec and no claim check; every call returns what it was given. */
  readonly active: boolean;
  readonly codec: PayloadCodec | undefined;
  /** `slot`: the object name, should the payload be claim-checked (a function of the stored bytes: computed only then). */
  encode(value: unknown, slot: string | ((data: Uint8Array) => string), options?: EncodeOptions): Promise<unknown>;
  /**
   * The codec only, never the claim check: for a payload no state references (a query's
   * arguments and answer, on core NATS request/reply), whose object nothing would ever remove.
   * NATS's max_payload bounds it instead.
   */
  encodeInline(value: unknown): Promise<unknown>;
  /** The other way: an `$enc` envelope decoded; a `$ref` is refused (nothing inline is claim-checked, and a query must not make a runtime read objects). */
  decodeInline(value: unknown): Promise<unknown>;
  decode(value: unknown): Promise<unknown>;
  encodeError(error: ErrorRecord): Promise<ErrorRecord>;
  decodeError(error: ErrorRecord): Promise<ErrorRecord>;
  /** A step result as workflow code must see it (orchestrator deliveries and replay). */
  openResult(result: StepResult): Promise<StepResult>;
  /**
   * The state to write: every payload the workflow code produced since `previous` (the state it
   * was decided from) encoded. Values that are the very ones `previous` held are already sealed
   * and are not looked at, so a write costs what changed, not the whole state.
   */
  seal(next: WorkflowState, previous?: WorkflowState): Promise<WorkflowState>;
  /** A copy of the state with every payload decoded; "mark": one that cannot be is ENCRYPTED_PLACEHOLDER instead of an error. */
  open(state: WorkflowState, mode?: "throw" | "mark"): Promise<WorkflowState>;
  /** Object names of the claim-checked payloads a state references (for removal). */
  refsOf(state: WorkflowState): string[];
  readonly claimCheck: ClaimCheck | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What every name of an update's arguments starts with (SLOT.updateArgs). */
export const updateArgsPrefix = (id: string, updateId: string): string => `${id}/updates/${updateId}/args-`;

/** Object names of a workflow's payloads; `<id>/r.<run>` for runs after the first (runs.ts). */
export const SLOT = {
  scope: (id: string, run?: number) => (run !== undefined && run > 1 ? `${id}/r.${run}` : id),
  input: (scope: string) => `${scope}/input`,
  result: (scope: string) => `${scope}/result`,
  continueAsNew: (scope: string) => `${scope}/continue-as-new`,
  stepInput: (scope: string, step: string) => `${scope}/steps/${step}/input`,
  stepOutput: (scope: string, step: string, attempt: number) => `${scope}/steps/${step}/${attempt}/output`,
  signal: (id: string, signalId: string) => `${id}/signals/${signalId}`,
  /**
   * An update's arguments, as its caller sends them (the run that applies it is not known then).
   * The name carries the stored bytes' hash, as a start's does: a caller's retry of the same
   * update id must not overwrite the object an earlier message, maybe applied, references.
   */
  updateArgs: (id: string, updateId: string, data: Uint8Array) => `${updateArgsPrefix(id, updateId)}${createHash("sha256").update(data).digest("hex").slice(0, 16)}`,
  updateResult: (scope: string, updateId: string) => `${scope}/updates/${updateId}/result`,
  /**
   * A client's start: the run is not known yet, so the name carries the stored bytes' hash (a
   * retry of the same plain start overwrites; an encrypted one differs each time: its IV).
   */
  start: (id: string, field: "input" | "memo", data: Uint8Array) => `${id}/start/${field}-${createHash("sha256").update(data).digest("hex").slice(0, 16)}`,
};

export const isEnvelope = (value: unknown): boolean => isEncoded(value) || isRef(value);

export function createPayloads(options: PayloadsOptions): Payloads {
  const { codec } = options;
  const claim = options.inlineBytes > 0 ? options.claimCheck : undefined;
  const inline = options.inlineBytes;
  const active = codec !== undefined || claim !== undefined;
  /** JSON text of recently written or read objects, by reference (name + digest), least recent first. */
  const recent = new Map<string, string>();
  let recentBytes = 0;

  const remember = (ref: PayloadRef, text: string) => {
    const key = `${ref.$ref}#${ref.sha256}`;
    if (recent.has(key) || text.length > RECENT_TEXT_BYTES / 4) return;
    recent.set(key, text);
    recentBytes += text.length;
    for (const [k, v] of recent) {
      if (recentBytes <= RECENT_TEXT_BYTES) break;
      recent.delete(k);
      recentBytes -= v.length;
    }
  };

  function tooLarge(bytes: number, what: string): CodecError {
    return new CodecError("WF_PAYLOAD_TOO_LARGE", `${what} is ${bytes} bytes of JSON; limits.maxInputBytes is ${options.maxBytes}`, {
      hint: "Pass a reference (an object store key, a URL) instead of the data, or raise limits.maxInputBytes.",
    });
  }

  /** Claim-check `data` (the JSON of `text`, the value or its envelope) when it is over the threshold. */
  async function checked(envelope: unknown, text: string, slot: string | ((data: Uint8Array) => string)): Promise<unknown> {
    if (!claim || text.length * 3 <= inline) return envelope; // UTF-8 is at most 3 bytes a UTF-16 unit: no count needed
    const data = encoder.encode(text);
    if (data.length <= inline) return envelope;
    const ref = await claim.put(typeof slot === "string" ? slot : slot(data), data);
    remember(ref, text);
    return ref;
  }

  async function encode(value: unknown, slot: string | ((data: Uint8Array) => string), encodeOptions: EncodeOptions = {}): Promise<unknown> {
    if (!active) return value;
    const plain = value === undefined ? null : value;
    const text = JSON.stringify(plain) ?? "null";
    if (encodeOptions.limit && text.length > options.maxBytes) {
      const bytes = Buffer.byteLength(text);
      if (bytes > options.maxBytes) throw tooLarge(bytes, encodeOptions.limit);
    }
    if (!codec) return checked(plain, text, slot);
    const envelope = await codec.encode(encoder.encode(text));
    return checked(envelope, JSON.stringify(envelope), slot);
  }

  async function encodeInline(value: unknown): Promise<unknown> {
    if (!codec) return value;
    return codec.encode(encoder.encode(JSON.stringify(value === undefined ? null : value) ?? "null"));
  }

  async function decodeInline(value: unknown): Promise<unknown> {
    if (isRef(value)) {
      throw new CodecError("WF_PAYLOAD_MISSING", `a query's payload is an object reference (${value.$ref}); queries are never claim-checked`, {
        hint: 'Send the value itself (a plain JSON value, or a codec envelope); "$ref" objects starting with "obj:" are reserved (docs/protocol.md, "Payload envelopes").',
      });
    }
    return isEncoded(value) ? decodeEncoded(value) : value;
  }

  async function decodeEncoded(envelope: EncodedPayload): Promise<unknown> {
    if (!codec) {
      const key = typeof envelope.k === "string" ? ` with key "${envelope.k}"` : "";
      throw new CodecError("WF_CODEC_NOT_CONFIGURED", `a payload is encoded by codec "${envelope.$enc}"${key}, and no codec is configured here`, {
        hint: `Configure codec.keys (and codec.current) with the key${key ? ` "${String(envelope.k)}"` : ""} in wf.config.json or WF_CODEC_KEYS, or pass the custom codec to createClient/createRuntime({ codec }).`,
      });
    }
    if (envelope.$enc !== codec.name) {
      throw new CodecError("WF_CODEC_NOT_CONFIGURED", `a payload is encoded by codec "${envelope.$enc}", but the configured codec is "${codec.name}"`, {
        hint: `Configure the codec that wrote it ("${envelope.$enc}"): codec.keys for the built-in aes256gcm, or the same custom codec object.`,
      });
    }
    const text = decoder.decode(await codec.decode(envelope));
    return JSON.parse(text);
  }

  async function decode(value: unknown): Promise<unknown> {
    if (isRef(value)) {
      if (value.bytes > Math.max(options.maxBytes, inline) * 2) throw tooLarge(value.bytes, `payload object ${value.$ref}`); // an envelope adds ~4/3
      let text = recent.get(`${value.$ref}#${value.sha256}`);
      if (text === undefined) {
        if (!options.claimCheck) {
          throw new CodecError("WF_PAYLOAD_MISSING", `payload ${value.$ref} is claim-checked, and this reader has no Object Store for payloads`, {
            hint: "Read it through a jetflow client or runtime of the same namespace (they open the payloads bucket).",
          });
        }
        text = decoder.decode(await options.claimCheck.get(value));
        remember(value, text);
      }
      const inner: unknown = JSON.parse(text);
      return isEncoded(inner) ? decodeEncoded(inner) : inner;
    }
    if (isEncoded(value)) return decodeEncoded(value);
    return value;
  }

  async function encodeError(error: ErrorRecord): Promise<ErrorRecord> {
    if (!codec || error.encoded !== undefined) return error;
    const { message, stack, details, ...clear } = error;
    // Trimmed as the orchestrator trims a plain one (decide.ts trimError), which cannot see inside the envelope.
    const secret = { message: String(message).slice(0, 4_000), ...(stack !== undefined ? { stack: stack.split("\n").slice(0, 12).join("\n") } : {}), ...(details !== undefined ? { details } : {}) };
    return { ...clear, message: ENCODED_ERROR_MESSAGE, encoded: await codec.encode(encoder.encode(JSON.stringify(secret))) };
  }

  async function decodeError(error: ErrorRecord): Promise<ErrorRecord> {
    if (error.encoded === undefined) return error;
    const { encoded, ...clear } = error;
    const secret = (await decode(encoded)) as Pick<ErrorRecord, "message" | "stack" | "details">;
    return { ...clear, ...secret };
  }

  async function openResult(result: StepResult): Promise<StepResult> {
    if (result.ok) return isEnvelope(result.value) ? { ok: true, value: await decode(result.value) } : result;
    return result.error.encoded === undefined ? result : { ...result, error: await decodeError(result.error) };
  }

  async function seal(next: WorkflowState, previous?: WorkflowState): Promise<WorkflowState> {
    if (!active) return next;
    const scope = SLOT.scope(next.id, next.run);
    const out: WorkflowState = { ...next };
    const fresh = (key: "input" | "result" | "memo") => out[key] !== undefined && out[key] !== previous?.[key] && !isEnvelope(out[key]);
    if (fresh("input")) out.input = await encode(out.input, SLOT.input(scope));
    if (fresh("result")) out.result = await encode(out.result, SLOT.result(scope));
    if (codec && fresh("memo")) out.memo = await encode(out.memo, `${scope}/memo`);
    if (out.error && out.error !== previous?.error) out.error = (await encodeError(out.error)) as WorkflowState["error"];
    if (out.continuedAsNew && out.continuedAsNew !== previous?.continuedAsNew && !isEnvelope(out.continuedAsNew.input)) {
      out.continuedAsNew = { ...out.continuedAsNew, input: await encode(out.continuedAsNew.input, SLOT.continueAsNew(scope)) };
    }
    if (codec && out.signals && out.signals !== previous?.signals) {
      const known = new Set(previous?.signals ?? []);
      out.signals = await Promise.all(out.signals.map(async (s) => (known.has(s) || isEnvelope(s.payload) ? s : { ...s, payload: await encode(s.payload, SLOT.signal(next.id, s.id)) })));
    }
    if (out.updates && out.updates !== previous?.updates) {
      // Outcomes are what the code's update handlers returned or threw: sealed like its result.
      const known = new Set(previous?.updates ?? []);
      out.updates = await Promise.all(out.updates.map((u) => (known.has(u) ? u : sealUpdate(scope, u))));
    }
    let steps: Record<string, StepState> | undefined;
    for (const [name, step] of Object.entries(out.steps)) {
      const before = previous?.steps[name];
      if (step === before) continue;
      const sealed = await sealStep(scope, name, step, before);
      if (sealed !== step) (steps ??= { ...out.steps })[name] = sealed;
    }
    if (steps) out.steps = steps;
    return out;
  }

  async function sealUpdate(scope: string, record: UpdateRecord): Promise<UpdateRecord> {
    let out = record;
    if (record.result !== undefined && !isEnvelope(record.result)) out = { ...out, result: await encode(record.result, SLOT.updateResult(scope, record.id)) };
    if (codec && record.error && record.error.encoded === undefined) out = { ...out, error: await encodeError(record.error) };
    return out;
  }

  /** A step's new payloads: its input (activity, child), and with a codec its plain output and errors. */
  async function sealStep(scope: string, name: string, step: StepState, before: StepState | undefined): Promise<StepState> {
    let out = step;
    const edit = () => (out === step ? (out = { ...step }) : out);
    if (step.input !== undefined && step.input !== before?.input && !isEnvelope(step.input)) {
      const input = await encode(step.input, SLOT.stepInput(scope, name));
      if (input !== step.input) edit().input = input;
    }
    if (!codec) return out;
    // Outputs come encoded from workers, clients and children; a plain one came from a program
    // without the codec (a raw NATS publisher), and is encrypted at rest here. Upserts hold
    // search attributes, which stay clear (they are indexed).
    if (step.kind !== "upsert" && step.output !== undefined && step.output !== before?.output && !isEnvelope(step.output)) {
      edit().output = await encode(step.output, SLOT.stepOutput(scope, name, step.attempt));
    }
    if (step.error && step.error !== before?.error && step.error.encoded === undefined) edit().error = await encodeError(step.error);
    if (step.lastError && step.lastError !== before?.lastError && step.lastError.encoded === undefined) edit().lastError = await encodeError(step.lastError);
    return out;
  }

  async function open(state: WorkflowState, mode: "throw" | "mark" = "throw"): Promise<WorkflowState> {
    if (!mayHoldEnvelopes(state)) return state;
    const value = async (v: unknown): Promise<unknown> => {
      if (!isEnvelope(v)) return v;
      try {
        return await decode(v);
      } catch (err) {
        if (mode === "mark" && err instanceof CodecError) return ENCRYPTED_PLACEHOLDER;
        throw err;
      }
    };
    const error = async <E extends ErrorRecord | undefined>(e: E): Promise<E> => {
      if (!e || e.encoded === undefined) return e;
      try {
        return (await decodeError(e)) as E;
      } catch (err) {
        if (mode === "mark" && err instanceof CodecError) {
          const { encoded: _encoded, ...clear } = e;
          return { ...clear, message: ENCRYPTED_PLACEHOLDER } as E;
        }
        throw err;
      }
    };
    const out: WorkflowState = { ...state, input: await value(state.input) };
    if (state.result !== undefined) out.result = await value(state.result);
    if (state.memo !== undefined) out.memo = await value(state.memo);
    if (state.error) out.error = (await error(state.error as ErrorRecord)) as WorkflowState["error"];
    if (state.continuedAsNew) out.continuedAsNew = { ...state.continuedAsNew, input: await value(state.continuedAsNew.input) };
    if (state.signals) out.signals = await Promise.all(state.signals.map(async (s) => ({ ...s, payload: await value(s.payload) })));
    if (state.updates) {
      out.updates = await Promise.all(
        state.updates.map(async (u) => ({ ...u, ...(u.result !== undefined ? { result: await value(u.result) } : {}), ...(u.error ? { error: await error(u.error) } : {}) })),
      );
    }
    const steps: Record<string, StepState> = {};
    for (const [name, step] of Object.entries(state.steps)) {
      const s: StepState = { ...step };
      if (s.input !== undefined) s.input = await value(s.input);
      if (s.output !== undefined && s.kind !== "upsert") s.output = await value(s.output);
      if (s.error) s.error = await error(s.error);
      if (s.lastError) s.lastError = await error(s.lastError);
      if (s.child && (s.child.result !== undefined || s.child.error)) {
        s.child = { ...s.child, ...(s.child.result !== undefined ? { result: await value(s.child.result) } : {}), ...(s.child.error ? { error: await error(s.child.error) } : {}) };
      }
      steps[name] = s;
    }
    out.steps = steps;
    return out;
  }

  /** Without codec or claim check a state written by this code holds no envelope; one written by a runtime with them may. */
  function mayHoldEnvelopes(state: WorkflowState): boolean {
    if (active) return true;
    const text = JSON.stringify(state);
    return text.includes('"$enc"') || text.includes('"$ref"');
  }

  function refsOf(state: WorkflowState): string[] {
    const names: string[] = [];
    const add = (v: unknown) => {
      const name = options.claimCheck && objectNameOf(v, options.claimCheck.bucket);
      if (name) names.push(name);
    };
    add(state.input);
    add(state.result);
    add(state.memo);
    add(state.continuedAsNew?.input);
    for (const s of state.signals ?? []) add(s.payload);
    for (const u of state.updates ?? []) {
      add(u.result);
      add(u.args);
    }
    for (const step of Object.values(state.steps)) {
      add(step.input);
      add(step.output);
      add(step.child?.result);
    }
    return names;
  }

  return { active, codec, encode, encodeInline, decodeInline, decode, encodeError, decodeError, openResult, seal, open, refsOf, claimCheck: options.claimCheck };
}

/**
 * A payload decoded, or the codec's refusal of it (CodecError: a forged or tampered envelope, a
 * key not held here, a reference to no object), for a message whose sender is at fault: refused
 * or dead-lettered, never retried until it fails a workflow. NATS failing to return an object is
 * thrown (the event is retried).
 */
export async function decodeOrRefusal(payloads: Pick<Payloads, "decode">, value: unknown): Promise<{ ok: true; value: unknown } | { ok: false; error: CodecError }> {
  try {
    return { ok: true, value: await payloads.decode(value) };
  } catch (err) {
    if (err instanceof CodecError) return { ok: false, error: err };
    throw err;
  }
}

/** No codec, no claim check: what tests and tools that build a topology by hand get. */
export const PLAIN_PAYLOADS: Payloads = createPayloads({ inlineBytes: 0, maxBytes: Infinity });

/** The topology's payload options for a config: its codec (or the custom one given in code), threshold and limit. */
export function payloadOptionsOf(config: Pick<Config, "codec" | "limits">, codec?: PayloadCodec): { codec: PayloadCodec | undefined; inlineBytes: number; maxBytes: number } {
  return { codec: codec ?? codecFromConfig(config.codec), inlineBytes: config.limits.inlinePayloadBytes, maxBytes: config.limits.maxInputBytes };
}
