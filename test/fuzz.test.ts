/**
 * Hostile input: property-based tests (fast-check) of every parser and validator that takes
 * outside input. Each returns a value or throws a coded JetflowError: never another exception,
 * never a hang, and the work grows linearly with the input (counted as property reads of the
 * input, not timed). Then a runtime fed 10,000 fuzzed messages on every subject it consumes stays
 * up, dead-letters each with a reason, and completes a normal workflow afterwards.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JetflowError } from "../runtime/errors.js";
import { createClient, createRuntime, loadConfig, type WorkflowContext } from "../runtime/index.js";
import { parseCancel, parseChildEvent, parseCompletion, parseQueryRequest, parseUpdate, parseJson, parseSignal, parseStart, parseTask, parseTimer, parseTimerBatch } from "../runtime/protocol.js";
import { validateName, validateWorkflowId } from "../runtime/ids.js";
import { parseDuration } from "../runtime/duration.js";
import { validateDag } from "../runtime/definitions.js";
import { createNames } from "../runtime/nats/names.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";

const RUNS = 500;

/** Calls `f`; a JetflowError with a code is fine, so is a value; anything else fails the property. */
function returnsOrThrowsCoded(f: () => unknown): void {
  try {
    f();
  } catch (err) {
    if (!(err instanceof JetflowError) || !/^WF_[A-Z0-9_]+$/.test(err.code)) {
      throw new Error(`threw ${(err as Error)?.name}: ${(err as Error)?.message} (not a coded JetflowError)`, { cause: err });
    }
  }
}

/** A deep proxy of plain data that counts every read of it (gets, key listings, descriptors). */
function counted<T>(value: T, counter: { reads: number }): T {
  if (typeof value !== "object" || value === null) return value;
  return new Proxy(value as object, {
    get(target, key, receiver) {
      counter.reads++;
      return counted(Reflect.get(target, key, receiver), counter);
    },
    ownKeys(target) {
      counter.reads++;
      return Reflect.ownKeys(target);
    },
    getOwnPropertyDescriptor(target, key) {
      counter.reads++;
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    has(target, key) {
      counter.reads++;
      return Reflect.has(target, key);
    },
  }) as T;
}

function readsOf(f: (input: unknown) => unknown, input: unknown): number {
  const counter = { reads: 0 };
  try {
    f(counted(input, counter));
  } catch {
    /* refusals count too */
  }
  return counter.reads;
}

/** Reads for an input of size n and 8n: linear work reads about 8 times as much, quadratic 64 times. */
function expectLinear(f: (input: unknown) => unknown, make: (n: number) => unknown, n = 500): void {
  const small = readsOf(f, make(n));
  const large = readsOf(f, make(8 * n));
  expect(large, `reads: ${small} for n=${n}, ${large} for n=${8 * n}`).toBeLessThanOrEqual(12 * small + 50);
}

/** Arbitrary message bodies: any JSON, and objects with the fields a parser looks at set to anything. */
const anything = fc.oneof(fc.jsonValue(), fc.anything({ withNullPrototype: true, withBigInt: false }));
const messageLike = (fields: string[]) =>
  fc.oneof(
    anything,
    fc.record(Object.fromEntries(fields.map((f) => [f, anything])), { requiredKeys: [] }),
    fc.dictionary(fc.oneof(fc.constantFrom(...fields), fc.string()), anything),
  );

const PARSERS: Array<[string, (body: unknown) => unknown, string[]]> = [
  ["start", parseStart, ["id", "input", "searchAttributes", "signal", "timeoutMs", "memo", "idReusePolicy", "parent"]],
  ["query", parseQueryRequest, ["workflowId", "name", "args"]],
  ["update", parseUpdate, ["workflowId", "name", "updateId", "args"]],
  ["child event", parseChildEvent, ["parentId", "step", "childId", "workflow", "parentRunId", "event", "status", "result", "error"]],
  ["completion", parseCompletion, ["workflowId", "step", "attempt", "ok", "error", "output", "runId"]],
  ["timer", parseTimer, ["workflowId", "key", "fireAt", "kind", "runId"]],
  ["timer batch", parseTimerBatch, ["fireAt", "timers"]],
  ["signal", parseSignal, ["workflowId", "name", "signalId", "payload"]],
  ["cancel", parseCancel, ["workflowId", "reason", "terminate"]],
  ["task", parseTask, ["workflowId", "step", "activity", "attempt", "timeoutMs", "input"]],
];

describe("message parsers", () => {
  it.each(PARSERS)("%s: any body gives a message or a coded error", (_name, parse, fields) => {
    fc.assert(fc.property(messageLike(fields), (body) => returnsOrThrowsCoded(() => parse(body))), { numRuns: RUNS });
  });

  it("a completion that says ok with a non-object error is accepted, not a TypeError (found by fuzzing)", () => {
    expect(() => parseCompletion({ workflowId: "w", step: "s", attempt: 1, ok: true, error: "x" })).not.toThrow();
  });

  it.each(PARSERS)("%s: reads of the body grow linearly with its size", (_name, parse, fields) => {
    const wide = (n: number) => Object.fromEntries([...fields.map((f) => [f, "x"]), ...Array.from({ length: n }, (_, i) => [`k${i}`, i])]);
    expectLinear(parse, wide);
    const attrs = (n: number) => ({ id: "a", searchAttributes: Object.fromEntries(Array.from({ length: n }, (_, i) => [`a${i}`, { type: "number", value: i }])) });
    expectLinear(parse, attrs);
    const batch = (n: number) => ({ fireAt: 1, timers: Array.from({ length: n }, (_, i) => ({ workflowId: `w${i}`, key: "k", fireAt: 1, kind: "sleep" })) });
    expectLinear(parse, batch);
  });

  it("parseJson: any bytes give a value or a coded error, depth limited, for large inputs too", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json().map((t) => new TextEncoder().encode(t)), fc.string().map((t) => new TextEncoder().encode(t))), fc.integer({ min: 1, max: 70 }), (bytes, maxDepth) =>
        returnsOrThrowsCoded(() => parseJson(bytes, { maxDepth })),
      ),
      { numRuns: RUNS },
    );
    const deep = new TextEncoder().encode("[".repeat(1_000_000));
    expect(() => parseJson(deep, { maxDepth: 64 })).toThrow(JetflowError);
    const strings = new TextEncoder().encode(`"${'\\"['.repeat(300_000)}`);
    returnsOrThrowsCoded(() => parseJson(strings, { maxDepth: 64 }));
  });
});

describe("ids, names and durations", () => {
  const text = fc.oneof(fc.string(), fc.string({ unit: "grapheme", maxLength: 300 }), fc.stringMatching(/^[A-Za-z0-9_=.-]{0,260}$/));
  it("workflow ids and names: any value is accepted as given or refused with a coded error", () => {
    fc.assert(
      fc.property(fc.oneof(text, anything), (value) => {
        returnsOrThrowsCoded(() => expect(validateWorkflowId(value)).toBe(value));
        returnsOrThrowsCoded(() => expect(validateName("step", value)).toBe(value));
      }),
      { numRuns: RUNS * 2 },
    );
    for (const huge of ["a".repeat(1_000_000), `${"a.".repeat(500_000)}!`]) {
      expect(() => validateWorkflowId(huge)).toThrow(JetflowError);
      expect(() => validateName("step", huge)).toThrow(JetflowError);
    }
  });

  it("durations: any value gives whole milliseconds from 0 to 100 years, or a coded error", () => {
    const durationText = fc.array(fc.tuple(fc.stringMatching(/^\d{1,30}(\.\d{1,5})?$/), fc.constantFrom("ms", "s", "m", "h", "d", "x", "")), { maxLength: 8 }).map((parts) => parts.map(([n, u]) => n + u).join(""));
    fc.assert(
      fc.property(fc.oneof(durationText, fc.string(), fc.double(), fc.integer(), anything), (value) => {
        try {
          const ms = parseDuration(value as string);
          expect(Number.isSafeInteger(ms) && ms >= 0).toBe(true);
        } catch (err) {
          returnsOrThrowsCoded(() => {
            throw err;
          });
        }
      }),
      { numRuns: RUNS * 2 },
    );
    // Found by fuzzing: 400 digits parsed to Infinity, which was accepted.
    expect(() => parseDuration("9".repeat(400))).toThrow(JetflowError);
    expect(() => parseDuration(1e300)).toThrow(JetflowError);
    for (const huge of ["1".repeat(1_000_000) + "x", "1m".repeat(300_000) + "x", `1.${"1".repeat(1_000_000)}`]) expect(() => parseDuration(huge)).toThrow(JetflowError);
  });
});

describe("wf.config.json", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "jetflow-fuzz-config-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("any file content gives a config or a coded ConfigError", () => {
    const key = fc.constantFrom("nats", "namespace", "worker", "orchestrator", "defaults", "limits", "log", "retention", "replicas", "storage", "functions", "servers", "slots", "ackWait", "retry", "__proto__", "constructor");
    const tree: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, anything, fc.dictionary(key, tie("node"), { maxKeys: 4 })),
    })).node;
    const content = fc.oneof(tree.map((v) => JSON.stringify(v) ?? "null"), fc.string(), fc.json());
    let i = 0;
    fc.assert(
      fc.property(content, (text) => {
        const file = join(dir, `c${i++ % 8}.json`);
        writeFileSync(file, text);
        returnsOrThrowsCoded(() => loadConfig({ file, env: {} }));
      }),
      { numRuns: 300 },
    );
  });
});

describe("DAG definitions", () => {
  const stepName = fc.oneof(fc.constantFrom("a", "b", "c", "d"), fc.string({ maxLength: 5 }));
  const step = fc.record(
    { name: stepName, type: fc.oneof(fc.constant("act"), anything), dependencies: fc.oneof(fc.array(stepName, { maxLength: 4 }), anything), timeout: fc.oneof(fc.constant("1s"), anything), retryPolicy: anything },
    { requiredKeys: [] },
  );
  it("any definition is accepted or refused with a coded DefinitionError", () => {
    const definition = fc.oneof(anything, fc.record({ name: fc.oneof(fc.constant("flow"), anything), activities: fc.oneof(fc.array(fc.oneof(step, anything), { maxLength: 6 }), anything), timeout: anything }, { requiredKeys: [] }));
    fc.assert(fc.property(definition, (d) => returnsOrThrowsCoded(() => validateDag(d as never))), { numRuns: RUNS * 2 });
    // Found by fuzzing: null was a TypeError.
    expect(() => validateDag(null as never)).toThrow(JetflowError);
  });

  it("a chain of 50,000 steps is checked without overflowing the stack (found by fuzzing), in reads linear in its size", () => {
    const chain = (n: number) => ({ name: "long", activities: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, type: "act", ...(i ? { dependencies: [`s${i - 1}`] } : {}) })) });
    expect(validateDag(chain(50_000) as never).activities).toHaveLength(50_000);
    const cyclic = chain(50_000);
    cyclic.activities[0]!.dependencies = ["s49999"];
    expect(() => validateDag(cyclic as never)).toThrow(/cycle/);
    expectLinear((d) => validateDag(d as never), chain, 1_000);
    const fan = (n: number) => ({ name: "fan", activities: [{ name: "root", type: "act" }, ...Array.from({ length: n }, (_, i) => ({ name: `s${i}`, type: "act", dependencies: ["root"] }))] });
    expectLinear((d) => validateDag(d as never), fan, 1_000);
  });
});

describe("a runtime fed 10,000 fuzzed messages", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startNatsServer();
  });
  afterAll(() => nats?.stop());

  it("stays up, dead-letters each one with a reason, then completes a normal workflow", async () => {
    const namespace = "fuzz";
    const names = createNames(namespace);
    const config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace, log: { level: "silent" } } });
    const workflows = { greet: async (ctx: WorkflowContext, input: string) => ctx.activity<string>("shout", input) };
    const runtime = await createRuntime({ config, workflows, activities: { shout: async (s: string) => s.toUpperCase() } });
    await runtime.start();
    const nc = await connect({ servers: nats.url });
    try {
      // Every subject the runtime consumes, each with a body that is wrong by construction (not
      // JSON, not an object, or an object with one field that breaks its message's rules), so
      // each must end as exactly one dead letter.
      const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/);
      const fields = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 });
      const spoiled = (breaking: Record<string, unknown>) => fields.map((f) => JSON.stringify({ ...f, ...breaking }));
      const garbage = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 200 }).filter((b) => !isJson(b)), fc.jsonValue({ maxDepth: 3 }).filter((v) => typeof v !== "object" || v === null || Array.isArray(v)).map((v) => JSON.stringify(v)));
      const kinds: Array<fc.Arbitrary<[string, string | Uint8Array]>> = [
        fc.tuple(fc.constant(names.startSubject("greet")), fc.oneof(garbage, spoiled({ "unknown field": 1 }))),
        fc.tuple(id.map((w) => names.completedSubject(w, "s1")), fc.oneof(garbage, spoiled({ workflowId: "w", step: "s1", attempt: 0, ok: true }))),
        fc.tuple(id.map((w) => names.timerFiredSubject(w, "k")), fc.oneof(garbage, spoiled({ workflowId: "w", key: "k", fireAt: 1, kind: "never" }))),
        fc.tuple(id.map((w) => names.signalSubject(w, "go")), fc.oneof(garbage, spoiled({ workflowId: "w", name: "not a name!" }))),
        fc.tuple(id.map((w) => names.cancelSubject(w)), fc.oneof(garbage, spoiled({ workflowId: "w", terminate: "yes" }))),
        fc.tuple(id.map((w) => names.updateSubject(w)), fc.oneof(garbage, spoiled({ workflowId: "w", name: "not a name!", updateId: "u" }))),
        fc.tuple(id.map((w) => names.childSubject(w)), fc.oneof(garbage, spoiled({ parentId: "w", step: "s", childId: "c", workflow: "greet", event: "ended" }))),
        fc.tuple(id.map((w) => names.timerScheduleSubject(w)), fc.oneof(garbage, spoiled({ workflowId: "w", key: "k", fireAt: "soon" }))),
        fc.tuple(fc.constant(names.taskSubject("shout")), fc.oneof(garbage, spoiled({ workflowId: "w", step: "s", activity: "shout", attempt: 1, timeoutMs: -1 }))),
      ];
      const messages = fc.sample(fc.oneof(...kinds), { numRuns: 10_000, seed: 17 });
      const js = jetstream(nc);
      for (let i = 0; i < messages.length; i += 1_000) {
        await Promise.all(messages.slice(i, i + 1_000).map(([subject, body]) => js.publish(subject, body)));
      }

      const jsm = await jetstreamManager(nc);
      let letters = 0;
      for (let waited = 0; waited < 600 && letters < messages.length; waited++) {
        letters = (await jsm.streams.info(names.deadLettersStream)).state.messages;
        if (letters < messages.length) await new Promise((r) => setTimeout(r, 100));
      }
      expect(letters).toBe(messages.length);
      // Each with a reason, in its header and its record.
      const reasons = new Map<string, number>();
      const reader = await js.consumers.get(names.deadLettersStream);
      for await (const m of await reader.fetch({ max_messages: 500, expires: 2_000 })) {
        const reason = m.headers?.get("Jetflow-Reason") ?? "";
        expect(reason).toMatch(/^(invalid_json|invalid_message|invalid_event|unknown_workflow|invalid_id|input_too_large)$/);
        expect((m.json() as { message: string }).message.length).toBeGreaterThan(0);
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
        if ([...reasons.values()].reduce((a, b) => a + b, 0) >= 500) break;
      }
      expect(reasons.size).toBeGreaterThan(1);

      const client = await createClient({ config });
      try {
        expect(await (await client.start("greet", "still here")).result({ signal: AbortSignal.timeout(15_000) })).toBe("STILL HERE");
      } finally {
        await client.close();
      }
    } finally {
      await nc.close();
      await runtime.stop();
    }
  });
});

function isJson(bytes: Uint8Array): boolean {
  try {
    JSON.parse(new TextDecoder().decode(bytes));
    return true;
  } catch {
    return false;
  }
}
