/** Configuration precedence and loud failures (STYLE.md §8). */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../runtime/index.js";

describe("config precedence", () => {
  it("defaults < file < environment < flags", () => {
    const dir = mkdtempSync(join(tmpdir(), "jetflow-config-"));
    const file = join(dir, "wf.config.json");
    writeFileSync(file, JSON.stringify({ worker: { slots: 4 }, namespace: "from-file", defaults: { activityTimeout: "5s" } }));
    const fileOnly = loadConfig({ file, env: {} });
    expect(fileOnly.worker.slots).toBe(4);
    expect(fileOnly.defaults.activityTimeoutMs).toBe(5_000);
    expect(fileOnly.defaults.retry.maxRetries).toBe(3); // default
    const withEnv = loadConfig({ file, env: { WF_WORKER_SLOTS: "7", NATS_URL: "nats://a:1,nats://b:2" } });
    expect(withEnv.worker.slots).toBe(7);
    expect(withEnv.nats.servers).toEqual(["nats://a:1", "nats://b:2"]);
    const withFlags = loadConfig({ file, env: { WF_WORKER_SLOTS: "7", NATS_URL: "nats://a:1" }, overrides: { worker: { slots: 3 }, nats: { servers: ["nats://c:3"] } } });
    expect(withFlags.worker.slots).toBe(3);
    expect(withFlags.nats.servers).toEqual(["nats://c:3"]);
    expect(withFlags.namespace).toBe("from-file");
  });

  it("a wrong value in the environment names the key", () => {
    expect(() => loadConfig({ env: { WF_WORKER_SLOTS: "many" } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { WF_WORKER_SLOTS: "many" } })).toThrow(/worker\.slots/);
  });

  it("an unknown key in a flag override is an error too", () => {
    expect(() => loadConfig({ env: {}, overrides: { worker: { slot: 3 } } })).toThrow(/unknown key "worker\.slot" \(did you mean "worker\.slots"\?\)/);
  });
});
