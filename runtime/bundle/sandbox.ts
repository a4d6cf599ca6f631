/**
 * The node:vm sandbox workflow code runs in. Inside it, `Date` and `Math.random` answer for the
 * current activation (so replay sees the same values), timers throw, and there is no `require` of
 * Node modules (the bundler already refused them with the file and line). Isolation is for
 * determinism, not security: workflow code is the user's own trusted code.
 */
import vm from "node:vm";
import { DeterminismViolationError } from "../errors.js";
import type { WorkflowRealm } from "../journal/execution.js";
import type { Logger } from "../logger.js";

export interface SandboxModule {
  realm: WorkflowRealm;
  /** `module.exports` of the workflow bundle. */
  exports: Record<string, unknown>;
}

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
  const host = {
    now: () => (clock ? clock.now() : Date.now()),
    random: () => (clock ? clock.random() : Math.random()),
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
  const module = { exports: {} as Record<string, unknown> };
  const requireInSandbox = (id: string) => {
    throw new DeterminismViolationError("WF_SANDBOX_REQUIRE", `workflow code cannot require("${id}") at run time`, {
      hint: "Import it statically so the bundler includes it, or move the code that needs it into an activity.",
    });
  };
  wrapper(module, module.exports, requireInSandbox);

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
  };
  return { realm, exports: module.exports };
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
