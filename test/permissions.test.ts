/**
 * Least privilege: every role runs with exactly the permissions `wf permissions` generates
 * (nats/permissions.ts), as users of a real nats-server. Each does its job with no permission
 * violation in the server's log, and what lies outside its role is refused by the server.
 * Namespaces: the users of one cannot see the streams, states or subjects of another.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createRuntime, loadConfig, type Runtime, type WorkflowContext } from "../runtime/index.js";
import { createNames } from "../runtime/nats/names.js";
import { inboxPrefixOf, permissionsConf, rolePermissions, type PermissionOptions } from "../runtime/nats/permissions.js";
import { provisionNamespace } from "../runtime/provision.js";
import { connectNats } from "../runtime/nats/connect.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { spawnWf, wf } from "./fixtures/function-host/harness.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PASSWORD = "pw";

/** user name → its role's permissions. */
const USERS: Record<string, PermissionOptions> = {
  admin_pa: { role: "admin", namespace: "pa" },
  client_pa: { role: "client", namespace: "pa" },
  allowed_pa: { role: "worker", namespace: "pa", activities: ["allowed"] },
  other_pa: { role: "worker", namespace: "pa", activities: ["other"] },
  orchestrator_pa: { role: "orchestrator", namespace: "pa" },
  runtime_pa: { role: "runtime", namespace: "pa" },
  admin_pb: { role: "admin", namespace: "pb" },
  client_pb: { role: "client", namespace: "pb" },
  runtime_pb: { role: "runtime", namespace: "pb" },
};

const workflows = {
  flow: async (ctx: WorkflowContext, input: string) => {
    const a = await ctx.activity<string>("allowed", input);
    await ctx.sleep(50);
    return ctx.activity<string>("other", a);
  },
  waiter: async (ctx: WorkflowContext) => ctx.waitForSignal<string>("go"),
  once: async (ctx: WorkflowContext, input: string) => ctx.activity<string>("allowed", input),
};
const activities = { allowed: async (s: string) => `${s}+a`, other: async (s: string) => `${s}+o` };

let nats: TestNats;
const cleanups: Array<() => Promise<unknown>> = [];

function serverConfig(): string {
  const users = Object.entries(USERS).map(([user, options]) => `    { user: "${user}", password: "${PASSWORD}"\n${permissionsConf(rolePermissions(options), "      ")}\n    }`);
  return `authorization {\n  users: [\n${users.join("\n")}\n  ]\n}`;
}

function configOf(user: string, extra: Record<string, unknown> = {}) {
  const { namespace } = USERS[user]!;
  return loadConfig({ env: {}, overrides: { nats: { servers: [nats.url], user, password: PASSWORD }, namespace, log: { level: "warn" }, ...extra } });
}

/** Lines of the server log that report a permission violation, from `from` (a byte offset) on. */
function violations(from = 0): string[] {
  return readFileSync(nats.logFile).subarray(from).toString("utf8").split("\n").filter((l) => /violation/i.test(l));
}
const logSize = () => readFileSync(nats.logFile).length;

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await check()); i++) await new Promise((r) => setTimeout(r, 50));
}

/** A raw nats.js connection as `user`, with its namespace's inbox prefix (as jetflow connects). */
async function raw(user: string): Promise<NatsConnection> {
  const nc = await connect({ servers: nats.url, user, pass: PASSWORD, inboxPrefix: inboxPrefixOf(USERS[user]!.namespace ?? ""), timeout: 3_000 });
  cleanups.push(() => nc.close());
  return nc;
}

/** Resolves with the error the server's refusal caused (a rejected call, or a permissions violation on the connection). */
async function refused(nc: NatsConnection, action: () => Promise<unknown>): Promise<string> {
  const errors: string[] = [];
  const watcher = (async () => {
    for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error?.message ?? s.error));
  })();
  void watcher;
  let outcome: string;
  try {
    await action();
    await nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    outcome = errors.join("; ");
  } catch (err) {
    outcome = `${(err as Error).message} ${errors.join("; ")}`;
  }
  expect(outcome, "the server should have refused this").toMatch(/permission/i);
  return outcome;
}

async function runtimeAs(user: string, options: Partial<Parameters<typeof createRuntime>[0]> & { activities?: Record<string, unknown> } = {}): Promise<Runtime> {
  const permission = USERS[user]!;
  const hosted = permission.activities ? Object.fromEntries(permission.activities.map((a) => [a, activities[a as keyof typeof activities]])) : activities;
  const runtime = await createRuntime({ config: configOf(user, { worker: { activities: permission.activities ?? [] } }), workflows, activities: hosted, ...options });
  await runtime.start();
  cleanups.push(() => runtime.stop());
  return runtime;
}

beforeAll(async () => {
  nats = await startNatsServer({ extraConfig: serverConfig() });
  // Provisioning, once per namespace, as admin.
  for (const admin of ["admin_pa", "admin_pb"]) {
    const config = configOf(admin);
    const nc = await connectNats(config.nats, { name: "provision", namespace: config.namespace, logger: createConsoleLogger({ level: "warn" }) });
    await provisionNamespace(nc, config);
    await nc.close();
  }
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  await nats?.stop();
});

describe("each role with exactly its generated permissions", () => {
  it("orchestrator, two workers limited to one activity type each, and a client run workflows without a single violation", async () => {
    const before = logSize();
    await runtimeAs("orchestrator_pa", { role: "orchestrator" });
    await runtimeAs("allowed_pa", { role: "worker" });
    await runtimeAs("other_pa", { role: "worker" });
    const client = await createClient({ config: configOf("client_pa") });
    cleanups.push(() => client.close());

    const handle = await client.start("flow", "x", { id: "flow-1" });
    expect(await handle.result({ signal: AbortSignal.timeout(20_000) })).toBe("x+a+o");
    const waiting = await client.start("waiter", undefined, { id: "waiter-1" });
    await client.signal("waiter-1", "go", "went");
    expect(await waiting.result({ signal: AbortSignal.timeout(20_000) })).toBe("went");
    // A signal to an id that has not started is held (pending signals) until it does.
    await client.signal("waiter-3", "go", "early");
    expect(await (await client.start("waiter", undefined, { id: "waiter-3" })).result({ signal: AbortSignal.timeout(20_000) })).toBe("early");
    await client.start("waiter", undefined, { id: "waiter-2" });
    await until(() => client.describe("waiter-2").then(() => true, () => false));
    await client.cancel("waiter-2", "not needed");
    expect((await client.waitForEnd("waiter-2", { signal: AbortSignal.timeout(20_000) })).status).toBe("cancelled");
    expect((await client.describe("flow-1")).status).toBe("completed");
    const listed = (await client.listPage({}, { limit: 10 })).workflows.map((w) => w.id).sort();
    expect(listed).toEqual(["flow-1", "waiter-1", "waiter-2", "waiter-3"]);
    expect(await client.count({ status: "completed" })).toBe(3);

    expect(violations(before)).toEqual([]);
  });

  it("a runtime (both roles) runs alone; an admin deletes what a client may not", async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    const before = logSize();
    await runtimeAs("runtime_pa");
    const client = await createClient({ config: configOf("client_pa") });
    cleanups.push(() => client.close());
    expect(await (await client.start("flow", "y", { id: "flow-2" })).result({ signal: AbortSignal.timeout(20_000) })).toBe("y+a+o");
    expect(violations(before)).toEqual([]);

    const admin = await createClient({ config: configOf("admin_pa") });
    cleanups.push(() => admin.close());
    expect(await admin.delete("flow-2")).toBe(true);
    await expect(client.describe("flow-2")).rejects.toThrow(/no workflow with id flow-2/);
    await expect(client.delete("flow-1")).rejects.toThrow(/permission/i);
  });

  it("a worker is refused the tasks of activity types outside its list", async () => {
    const before = logSize();
    const names = createNames("pa");
    const nc = await raw("allowed_pa");
    const js = jetstream(nc);
    await refused(nc, async () => {
      const consumer = await js.consumers.get(names.tasksStream, names.activityConsumer("other"));
      await consumer.next({ expires: 1_000 });
    });
    // Nor may it create a consumer of its own name that reads another type's tasks.
    const jsm = await jetstreamManager(nc);
    await refused(nc, () => jsm.consumers.add(names.tasksStream, { durable_name: names.activityConsumer("allowed"), filter_subject: names.taskSubject("other") }));
    // Nor write states.
    await refused(nc, async () => (await new Kvm(js).open(names.statesBucket)).put("flow-1", "{}"));
    // The server logs what it refused (so the "no violation" checks above are worth something).
    expect(violations(before).length).toBeGreaterThan(0);
  });

  it("a client cannot pull tasks, apply events or write states", async () => {
    const names = createNames("pa");
    const nc = await raw("client_pa");
    const js = jetstream(nc);
    await refused(nc, async () => (await js.consumers.get(names.tasksStream, names.activityConsumer("allowed"))).next({ expires: 1_000 }));
    await refused(nc, async () => (await js.consumers.get(names.eventsStream, names.orchestratorConsumer)).next({ expires: 1_000 }));
    await refused(nc, async () => (await new Kvm(js).open(names.statesBucket)).put("flow-1", '{"status":"completed"}'));
    await refused(nc, () => js.publish(names.taskSubject("allowed"), "{}"));
    await refused(nc, () => js.publish(names.completedSubject("flow-1", "s1"), "{}"));
    const jsm = await jetstreamManager(nc);
    await refused(nc, () => jsm.streams.delete(names.eventsStream));
  });

  it("an orchestrator cannot pull tasks; no role but admin can create or delete streams", async () => {
    const names = createNames("pa");
    const orch = await raw("orchestrator_pa");
    await refused(orch, async () => (await jetstream(orch).consumers.get(names.tasksStream, names.activityConsumer("allowed"))).next({ expires: 1_000 }));
    for (const user of ["client_pa", "allowed_pa", "orchestrator_pa", "runtime_pa"]) {
      const nc = await raw(user);
      const jsm = await jetstreamManager(nc);
      await refused(nc, () => jsm.streams.add({ name: "pa_EXTRA", subjects: ["pa.extra.>"] }));
      await refused(nc, () => jsm.streams.purge(names.eventsStream));
    }
  });
});

describe("namespace isolation", () => {
  it("a namespace's users cannot see another's streams, states, subjects or replies", async () => {
    const a = createNames("pa");
    for (const user of ["client_pb", "runtime_pb", "admin_pb"]) {
      const nc = await raw(user);
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      await refused(nc, () => jsm.streams.info(a.eventsStream));
      await refused(nc, async () => (await new Kvm(js).open(a.statesBucket)).get("flow-1"));
      await refused(nc, () => jsm.streams.names().next());
      await refused(nc, () => js.publish(a.startSubject("flow"), "{}"));
      await refused(nc, async () => {
        const sub = nc.subscribe(`pa.workflow.>`);
        await nc.flush();
        await sub.closed;
      });
      await refused(nc, async () => {
        const sub = nc.subscribe(`${inboxPrefixOf("pa")}.>`);
        await nc.flush();
        await sub.closed;
      });
    }
  });

  it("a worker-only runtime drops a redelivered task of a workflow that has ended, without touching the index", async () => {
    // The worker re-publishes an ended workflow's end effects for such a task, and used to repair
    // its index entries too: refused by a worker's permissions, the task was released and came
    // back for ever.
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await runtimeAs("orchestrator_pa", { role: "orchestrator" });
    const client = await createClient({ config: configOf("client_pa") });
    cleanups.push(() => client.close());
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const hang = async (_: string, actx: { signal: AbortSignal }) => {
      started();
      await new Promise((resolve) => actx.signal.addEventListener("abort", resolve));
      throw new Error("stopped");
    };
    const first = await createRuntime({ config: configOf("allowed_pa", { worker: { activities: ["allowed"], shutdownGrace: "100ms" } }), workflows, activities: { allowed: hang }, role: "worker" });
    await first.start();
    await client.start("once", "x", { id: "once-ended" });
    await running;
    await first.stop(); // the attempt is released: its task will be delivered again
    await client.cancel("once-ended", "ended while its task waits");
    expect((await client.waitForEnd("once-ended", { signal: AbortSignal.timeout(20_000) })).status).toBe("cancelled");

    const before = logSize();
    await runtimeAs("allowed_pa", { role: "worker" });
    const jsm = await jetstreamManager(await raw("admin_pa")); // the client may not read consumers
    const names = createNames("pa");
    const settled = async () => {
      const info = await jsm.consumers.info(names.tasksStream, names.activityConsumer("allowed"));
      return info.num_ack_pending === 0 && info.num_pending === 0;
    };
    await until(settled);
    expect(await settled(), "the redelivered task is still going round").toBe(true);
    expect(violations(before)).toEqual([]);
  });

  it("each namespace runs its own workflows with its own users", async () => {
    const before = logSize();
    await runtimeAs("runtime_pb");
    const client = await createClient({ config: configOf("client_pb") });
    cleanups.push(() => client.close());
    expect(await (await client.start("flow", "b", { id: "flow-1" })).result({ signal: AbortSignal.timeout(20_000) })).toBe("b+a+o");
    expect(violations(before)).toEqual([]);
  });
});

describe("`wf run` with a runtime role against a provisioned namespace", () => {
  it("provisioned and deployed once by admin, `wf run` as runtime serves the example app", async () => {
    const env = (user: string) => ({ NATS_URL: nats.url, NATS_USER: user, NATS_PASSWORD: PASSWORD, WF_NAMESPACE: "pa" });
    const deployed = await wf(["deploy", "--force"], { cwd: ROOT, env: env("admin_pa") });
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);

    const before = logSize();
    const runtime = spawnWf("wf run", ["run"], { cwd: ROOT, env: env("runtime_pa") });
    cleanups.push(() => runtime.stop("SIGKILL"));
    await runtime.waitFor(/ ready: role all/, { stream: "stderr", timeoutMs: 40_000 });
    const client = await createClient({ config: configOf("client_pa") });
    cleanups.push(() => client.close());
    const handle = await client.start("order_processing", { orderId: "perm-1", amount: 5, items: [{ sku: "a", qty: 1 }], email: "e@example.com" });
    expect(Object.keys((await handle.result({ signal: AbortSignal.timeout(30_000) })) as object)).toHaveLength(4);
    expect(violations(before), runtime.output).toEqual([]);
  });
});
