/**
 * The node:vm sandbox workflow code runs in. Inside it, `Date`, `Math.random` and
 * `Intl.DateTimeFormat#format()` answer for the current activation (so replay sees the same
 * values), timers throw, and there is no `require` of Node modules (the bundler already refused
 * them with the file and line). Isolation is for determinism, not security: workflow code is the
 * user's own trusted code.
 *
 * Module state: one sandbox serves every workflow mapped to it, so the bundle's module-level
 * variables would be shared by all of them, and would differ between a live run and a replay
 * elsewhere. Instead each execution gets its own instance of the bundle's modules (instantiate(),
 * called by the execution's first activation): the compiled bundle function is run again in the
 * same context, which costs a few microseconds (bench/sandbox-start.ts), where a vm context per
 * execution would cost a fresh realm. Its top-level code then reads the activation's clock, the
 * same live and on replay. Only globalThis is still shared: code that assigns globals shares them.
 */
import vm from "node:vm";
import { DeterminismViolationError } from "../errors.js";
import type { ChildFailureFactory, WorkflowInstance, WorkflowRealm } from "../journal/execution.js";
import { realmErrorsOf } from "../journal/cancellation.js";
import type { Logger } from "../logger.js";
import type { WorkflowFunction } from "../workflow-api.js";

export interface SandboxModule {
  realm: WorkflowRealm;
  /** `module.exports` of the workflow bundle, as evaluated at load (to find the workflows). */
  exports: Record<string, unknown>;
  /** A fresh instance of the bundle's modules; call it inside an activation (see the top). */
  instantiate(): Record<string, unknown>;
}

/** The clock while the bundle is evaluated at load: fixed, so top-level code cannot read the real one. */
const LOAD_TIME_MS = 0;

const FORBIDDEN_GLOBALS: Record<string, string> = {
  setTimeout: "use `await ctx.sleep(ms)` for a durable delay",
  setInterval: "use a loop with `await ctx.sleep(ms)`",
  setImmediate: "workflow code needs no scheduling; just await",
  clearTimeout: "timers are not available in workflow code",
  clearInterval: "timers are not available in workflow code",
  clearImmediate: "timers are not available in workflow code",
  fetch: "do I/O in an activity and call it with ctx.activity()",
  WeakRef: "garbage collection is not deterministic",
  FinalizationRegistry: "garbage collection is not deterministic",
};

/** Evaluate a CommonJS workflow bundle in a fresh deterministic context. */
export function loadSandbox(code: string, filename: string, logger: Logger): SandboxModule {
  let clock: { now(): number; random(): number } | undefined;
  const outside = (what: string): never => {
    throw new DeterminismViolationError("WF_SANDBOX_CLOCK", `${what} was called outside a workflow activation, where it has no deterministic value`, {
      hint: "Read the time and random numbers inside the workflow function (or code it calls), or use ctx.now() / ctx.random().",
    });
  };
  const host = {
    now: () => (clock ? clock.now() : outside("Date.now() (or new Date(), Intl.DateTimeFormat#format())")),
    random: () => (clock ? clock.random() : outside("Math.random()")),
    forbidden(name: string) {
      throw new DeterminismViolationError("WF_SANDBOX_FORBIDDEN", `${name}() is not allowed in workflow code: ${FORBIDDEN_GLOBALS[name]}`, {
        hint: 'Workflow code is replayed after crashes and must be deterministic; see "Writing workflows" in the README.',
      });
    },
    log: (level: "info" | "warn" | "error", args: unknown[]) =>
      logger[level](args.map((a) => (typeof a === "string" ? a : safeJson(a))).join(" "), { component: "workflow-console" }),
  };

  const context = vm.createContext({ __jetflowHost: host }, { name: `jetflow workflows ${filename}`, codeGeneration: { strings: false, wasm: false } });
  vm.runInContext(PRELUDE, context, { filename: "jetflow:sandbox-prelude" });
  const wrapper = vm.runInContext(`(function (module, exports, require) {\n${code}\n})`, context, { filename }) as (
    module: { exports: Record<string, unknown> },
    exports: Record<string, unknown>,
    require: (id: string) => unknown,
  ) => void;
  const requireInSandbox = (id: string) => {
    throw new DeterminismViolationError("WF_SANDBOX_REQUIRE", `workflow code cannot require("${id}") at run time`, {
      hint: "Import it statically so the bundler includes it, or move the code that needs it into an activity.",
    });
  };
  const instantiate = (): Record<string, unknown> => {
    const module = { exports: {} as Record<string, unknown> };
    wrapper(module, module.exports, requireInSandbox);
    return module.exports;
  };
  // The load's own instance only tells which workflows there are; it runs on a fixed clock.
  clock = { now: () => LOAD_TIME_MS, random: loadRandom() };
  let module: { exports: Record<string, unknown> };
  try {
    module = { exports: instantiate() };
  } finally {
    clock = undefined;
  }

  const ActivityFailure = module.exports.__ActivityFailure as new (...args: unknown[]) => unknown;
  const realm: WorkflowRealm = {
    exclusive: true,
    enter(c) {
      clock = c;
    },
    exit() {
      clock = undefined;
    },
    activityFailure: (step, type, attempts, failure) => new ActivityFailure(step, type, attempts, failure),
    errors: realmErrorsOf(module.exports),
    ...childFailureOf(module.exports),
  };
  return { realm, exports: module.exports, instantiate };
}

/** The execution's own instance of workflow `name`: its function and its realm's ActivityFailure class. */
export function instanceOf(exports: Record<string, unknown>, name: string): WorkflowInstance {
  const modules = (exports.__modules ?? {}) as Record<string, Record<string, unknown>>;
  let fn: unknown;
  for (const moduleExports of Object.values(modules)) if (name in moduleExports) fn = moduleExports[name];
  const ActivityFailure = exports.__ActivityFailure as new (...args: unknown[]) => unknown;
  return { fn: fn as WorkflowFunction, activityFailure: (step, type, attempts, failure) => new ActivityFailure(step, type, attempts, failure), errors: realmErrorsOf(exports), ...childFailureOf(exports) };
}

/** The bundle's own ChildWorkflowFailure, so `instanceof` holds in its code (bundles built before it have none). */
function childFailureOf(exports: Record<string, unknown>): { childFailure?: ChildFailureFactory } {
  const ChildWorkflowFailure = exports.__ChildWorkflowFailure as (new (...args: unknown[]) => unknown) | undefined;
  return ChildWorkflowFailure ? { childFailure: (id, type, status, failure) => new ChildWorkflowFailure(id, type, status, failure) } : {};
}

/** A fixed sequence for Math.random() at load (an LCG: no quality needed, only the same values every time). */
function loadRandom(): () => number {
  let x = 0x2545f491;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 4294967296;
  };
}

const PRELUDE = `
(() => {
  const host = __jetflowHost;
  delete globalThis.__jetflowHost;
  const RealDate = Date;
  function WorkflowDate(...args) {
    if (!new.target) return new RealDate(host.now()).toString();
    return args.length === 0 ? new RealDate(host.now()) : new RealDate(...args);
  }
  WorkflowDate.prototype = RealDate.prototype;
  WorkflowDate.now = () => host.now();
  WorkflowDate.parse = RealDate.parse;
  WorkflowDate.UTC = RealDate.UTC;
  Object.defineProperty(RealDate.prototype, "constructor", { value: WorkflowDate });
  globalThis.Date = WorkflowDate;
  Math.random = () => host.random();
  // format() and formatToParts() without a date read the clock inside V8, not through Date.
  const DTF = Intl.DateTimeFormat.prototype;
  const formatGetter = Object.getOwnPropertyDescriptor(DTF, "format").get;
  Object.defineProperty(DTF, "format", {
    configurable: true,
    get() {
      const format = formatGetter.call(this);
      return (date) => format(date === undefined ? host.now() : date);
    },
  });
  const formatToParts = DTF.formatToParts;
  DTF.formatToParts = function (date) { return formatToParts.call(this, date === undefined ? host.now() : date); };
  for (const name of ${JSON.stringify(Object.keys(FORBIDDEN_GLOBALS))}) {
    globalThis[name] = function () { return host.forbidden(name); };
  }
  globalThis.console = {
    log: (...a) => host.log("info", a), info: (...a) => host.log("info", a), debug: (...a) => host.log("info", a),
    warn: (...a) => host.log("warn", a), error: (...a) => host.log("error", a),
  };
})();
`;

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
