/**
 * The web UI in real Chromium (issue 16): the list shows a workflow that starts after the page
 * opened and its status changing live; a DAG workflow's page shows the step timeline (with a
 * retried step) and the graph with each node's status; a workflow is cancelled and another
 * signalled through the page, each after its confirmation dialog; a dead letter is replayed and
 * the workflow it carried starts; the deployments page shows the version the workflows run on.
 * One browser and one runtime for the file. Screenshots of each page go to a temporary folder
 * (its path is printed).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createClient, type WorkflowClient } from "../runtime/client/client.js";
import { loadConfig, type Config } from "../runtime/config.js";
import { recordDeadLetter } from "../runtime/dead-letters.js";
import { createConsoleLogger } from "../runtime/logger.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import { createUiServer, type UiServer } from "../runtime/ui/server.js";
import { launchChromium } from "./helpers/browser.js";
import { startNatsServer, type TestNats } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

const FUNCTIONS = fileURLToPath(new URL("./fixtures/ui/functions", import.meta.url));
const logger = createConsoleLogger({ level: "warn" });

let nats: TestNats;
let config: Config;
let runtime: Runtime;
let client: WorkflowClient;
let ui: UiServer;
let browser: Browser;
let page: Page;
/** A missing Chromium fails every test with the install hint (counted as failures, never skips). */
let noBrowser: unknown;
const shots = mkdtempSync(join(tmpdir(), "jetflow-ui-shots-"));

beforeAll(async () => {
  try {
    browser = await launchChromium();
  } catch (err) {
    noBrowser = err;
    return;
  }
  nats = await startNatsServer();
  config = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] }, namespace: "ui", functions: { dir: FUNCTIONS }, log: { level: "warn" } } });
  runtime = await createRuntime({ config, logger });
  await runtime.start();
  client = await createClient({ config, logger });
  // No registry handed over: DAG definitions come from the stored bundle, as for `wf ui`.
  ui = createUiServer({ client, config, port: 0, logger });
  await ui.start();
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(15_000);
});

beforeEach(() => {
  if (noBrowser) throw noBrowser;
});

afterAll(async () => {
  await browser?.close();
  await ui?.stop();
  await client?.close();
  await runtime?.stop("test done");
  await nats?.stop();
  console.log(`web UI screenshots: ${shots}`);
});

const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

describe("web UI in Chromium", () => {
  it("lists a workflow started after the page opened, and shows its status change live", async () => {
    await page.goto(ui.url);
    await page.locator('[data-testid="workflows"]').waitFor();
    await client.start("approval", { order: "o-1" }, { id: "ui-live-1", searchAttributes: { customer: "c-7" } });
    const row = page.locator('tr[data-id="ui-live-1"]');
    await row.and(page.locator('[data-status="running"]')).waitFor();
    await shot("workflows");
    await client.signal("ui-live-1", "approve", { by: "test" });
    await row.and(page.locator('[data-status="completed"]')).waitFor();
    expect(await row.locator(".attrs").textContent()).toContain("customer=c-7");

    // The status filter is applied by the index: a completed one is not in the running list.
    // While the filtered page loads (its request held here), the previous filter's rows are not
    // shown under the new one (CI once counted the completed row there, in the "running" list).
    let answer!: () => void;
    const held = new Promise<void>((resolve) => (answer = resolve));
    const filtered = /\/api\/workflows\?.*status=running/;
    await page.route(filtered, async (route) => {
      await held;
      await route.continue();
    });
    await page.goto(`${ui.url}#/?status=running`);
    await page.locator("p.empty", { hasText: "Loading" }).waitFor({ timeout: 5_000 });
    expect(await page.locator('tr[data-id="ui-live-1"]').count()).toBe(0);
    answer();
    await page.locator('[data-testid="workflows"][data-loaded="true"]').waitFor();
    await page.unroute(filtered);
    expect(await page.locator('tr[data-id="ui-live-1"]').count()).toBe(0);
  });

  it("a DAG workflow's page shows the timeline with its retry and the graph with each node's status", async () => {
    await client.start("diamond", { order: "o-2" }, { id: "ui-dag-1" });
    await client.result("ui-dag-1", { signal: AbortSignal.timeout(20_000) });
    await page.goto(`${ui.url}#/workflows/ui-dag-1`);
    await page.locator('[data-testid="workflow"][data-status="completed"]').waitFor();
    const timeline = page.locator('[data-testid="timeline"]');
    for (const step of ["prepare", "left", "right", "join"]) await timeline.locator(`[data-step="${step}"][data-status="completed"]`).waitFor();
    expect(await timeline.locator('[data-step="right"] .attempts').getAttribute("data-attempts")).toBe("2");
    const dag = page.locator('[data-testid="dag"]');
    for (const node of ["prepare", "left", "right", "join"]) await dag.locator(`[data-node="${node}"][data-status="completed"]`).waitFor();
    expect(await dag.locator(".dag-edge").count()).toBe(4);
    // Layers: prepare left of left/right, which are left of join.
    const x = async (node: string) => (await dag.locator(`[data-node="${node}"]`).boundingBox())!.x;
    expect(await x("prepare")).toBeLessThan(await x("left"));
    expect(await x("left")).toBe(await x("right"));
    expect(await x("right")).toBeLessThan(await x("join"));
    expect(await page.locator('[data-testid="journal"] li').count()).toBe(4);
    await shot("workflow-dag");
  });

  it("cancels a running workflow through the page, after a confirmation, and the page follows it live", async () => {
    await client.start("approval", {}, { id: "ui-cancel-1" });
    await page.goto(`${ui.url}#/workflows/ui-cancel-1`);
    await page.locator('[data-testid="workflow"][data-status="running"]').waitFor();
    await page.getByRole("button", { name: "Cancel…" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain("Cancel ui-cancel-1?");
    await dialog.locator('input[name="reason"]').fill("changed my mind");
    await shot("confirm-cancel");
    await dialog.locator("[data-confirm]").click();
    await page.locator('[data-testid="workflow"][data-status="cancelled"]').waitFor();
    expect((await client.describe("ui-cancel-1")).status).toBe("cancelled");
  });

  it("retries a cancelled workflow through the page, after a confirmation: the new run reuses the completed step and the page follows it live", async () => {
    await client.start("approval", { order: "o-retry" }, { id: "ui-retry-1" });
    await waitFor("its step completed", async () => (await client.describe("ui-retry-1")).steps.step?.status === "completed");
    await client.cancel("ui-retry-1", "by mistake");
    await waitFor("cancelled", async () => (await client.describe("ui-retry-1")).status === "cancelled");
    const before = await client.describe("ui-retry-1");
    await page.goto(`${ui.url}#/workflows/ui-retry-1`);
    await page.locator('[data-testid="workflow"][data-status="cancelled"]').waitFor();
    await page.getByRole("button", { name: "Retry…" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain("Retry ui-retry-1?");
    await shot("confirm-retry");
    await dialog.locator("[data-confirm]").click();
    await page.locator('[data-testid="workflow"][data-status="running"]').waitFor();
    expect(await page.locator(".notice").textContent()).toContain("Retry of ui-retry-1 started as run 2");
    const run2 = await client.describe("ui-retry-1");
    expect(run2).toMatchObject({ run: 2, retryOf: { run: 1 } });
    expect(run2.steps.step).toEqual(before.steps.step); // reused, not run again
    await client.signal("ui-retry-1", "approve", { by: "retry test" });
    await page.locator('[data-testid="workflow"][data-status="completed"]').waitFor();
    expect(await client.result("ui-retry-1")).toEqual({ order: "o-retry", decision: { by: "retry test" } });
  });

  it("a workflow's page opened before the workflow exists says so, and shows it once it starts", async () => {
    await page.goto(`${ui.url}#/workflows/ui-later-1`);
    const missing = page.locator('[data-testid="workflow-missing"]');
    await missing.waitFor();
    expect(await missing.textContent()).toContain("no workflow with id ui-later-1");
    await client.start("approval", { order: "o-later" }, { id: "ui-later-1" });
    await page.locator('[data-testid="workflow"][data-status="running"]').waitFor();
    await client.signal("ui-later-1", "approve", { by: "later test" });
    await page.locator('[data-testid="workflow"][data-status="completed"]').waitFor();
  });

  it("sends a signal with a JSON payload through the page", async () => {
    await client.start("approval", { order: "o-3" }, { id: "ui-signal-1" });
    await page.goto(`${ui.url}#/workflows/ui-signal-1`);
    await page.locator('[data-testid="workflow"][data-status="running"]').waitFor();
    await page.getByRole("button", { name: "Signal…" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.locator('input[name="signal-name"]').fill("approve");
    await dialog.locator('textarea[name="signal-payload"]').fill("{not json");
    await dialog.locator("[data-confirm]").click();
    await dialog.getByRole("alert").waitFor();
    expect(await dialog.getByRole("alert").textContent()).toContain("not JSON");
    await dialog.locator('textarea[name="signal-payload"]').fill('{"approved": true}');
    await dialog.locator("[data-confirm]").click();
    await page.locator('[data-testid="workflow"][data-status="completed"]').waitFor();
    expect(await client.result("ui-signal-1")).toEqual({ order: "o-3", decision: { approved: true } });
  });

  it("replays a dead letter: the start it kept runs, and the letter is gone", async () => {
    const topology = client.topology;
    // What the orchestrator records when it refuses a start of a type no code had (yet).
    await recordDeadLetter(topology, logger, {
      reason: "unknown_workflow",
      message: 'workflow type "approval" is not in the loaded code',
      subject: topology.names.startSubject("approval"),
      data: new TextEncoder().encode(JSON.stringify({ id: "ui-dl-1", input: { order: "o-4" } })),
      workflowId: "ui-dl-1",
    });
    await page.goto(`${ui.url}#/dead-letters`);
    const row = page.locator('[data-testid="dead-letters"] tr[data-reason="unknown_workflow"]');
    await row.waitFor();
    await row.getByRole("button", { name: "Show" }).click();
    await page.locator("tr.detail").waitFor();
    expect(await page.locator("tr.detail").textContent()).toContain('"order": "o-4"');
    await shot("dead-letters");
    await row.getByRole("button", { name: "Replay…" }).click();
    await page.getByRole("dialog").locator("[data-confirm]").click();
    await page.locator(".notice").waitFor();
    await row.waitFor({ state: "detached" });
    const state = await waitFor("the replayed start's workflow", () => client.describe("ui-dl-1").catch(() => undefined), 15_000);
    expect(state.input).toEqual({ order: "o-4" });
  });

  it("the deployments page shows the current version and the running workflows pinned to it", async () => {
    await client.start("approval", {}, { id: "ui-pinned-1" });
    await waitFor("ui-pinned-1 to run", () => client.describe("ui-pinned-1").catch(() => undefined));
    await page.goto(`${ui.url}#/deployments`);
    const current = page.locator(`[data-testid="deployments"] tr[data-version="${runtime.registry.version}"]`);
    await current.waitFor();
    expect(await current.textContent()).toContain("current");
    expect(await current.textContent()).toContain("ui-pinned-1");
    await shot("deployments");
    // The list with everything this file ran, running ones first.
    await page.goto(ui.url);
    await page.locator('tr[data-id="ui-pinned-1"]').waitFor();
    await shot("workflows-all");
  });
});
