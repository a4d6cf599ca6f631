/**
 * The newcomer path, as README says it, on a fresh copy of the repository (its tracked files, and
 * new ones not ignored, as they are in the work tree): `npm ci`; `npm run example` with nothing
 * at NATS_URL (it starts nats-server, runs, stops it); `wf init` into another folder, `npm install`
 * there with nothing published, `wf dev` with nothing at NATS_URL, `wf start hello --wait` prints
 * the greeting; then SIGKILL wf dev, and nothing it started is left: not its nats-server (by pid),
 * not the watchdog, not the port. Last, `wf init` from an installed copy (a packed tarball
 * installed elsewhere) makes a project that installs and builds after that copy is gone.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { natsServerBinary } from "./helpers/nats-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund"];
const temps: string[] = [];
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function temp(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

/** The environment of a newcomer's shell: nothing of ours that points jetflow elsewhere. */
function newcomerEnv(natsUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NATS_URL: natsUrl, NO_COLOR: "1", NATS_SERVER_BIN: natsServerBinary() };
  for (const key of Object.keys(env)) if (/^(WF_|WORKER_ID$|npm_)/.test(key)) delete env[key];
  return env;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Alive and not a zombie (an orphan whose reaper is slow is dead for our purposes). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A copy of the repository as a fresh clone would have it, plus files not yet committed. */
function freshCopy(): string {
  const copy = join(temp("jetflow-newcomer-repo-"), "jetflow");
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: ROOT, encoding: "utf8" }).split("\0");
  for (const file of files) {
    if (!file || !existsSync(join(ROOT, file))) continue;
    mkdirSync(dirname(join(copy, file)), { recursive: true });
    cpSync(join(ROOT, file), join(copy, file));
  }
  return copy;
}

describe("the newcomer path (README's quick start and dev loop) on a fresh copy", () => {
  it("npm ci, npm run example, wf init, npm install, wf dev, wf start --wait; SIGKILL wf dev leaves nothing", { timeout: 300_000 }, async () => {
    const repo = freshCopy();
    expect(existsSync(join(repo, "node_modules"))).toBe(false);

    // Quick start: npm ci (README: npm install; CI and a clean checkout: npm ci), then the example.
    const installed = await run("npm", ["ci", ...NPM_FLAGS], repo, newcomerEnv("nats://127.0.0.1:1"));
    expect(installed.code, installed.stderr).toBe(0);
    expect(existsSync(join(repo, "dist", "cli", "wf.js")), "npm ci builds dist/").toBe(true);

    const examplePort = await freePort();
    const example = await run("npm", ["run", "example"], repo, newcomerEnv(`nats://127.0.0.1:${examplePort}`), 120_000);
    expect(example.code, `${example.stdout}\n${example.stderr}`).toBe(0);
    expect(example.stdout).toContain(`NATS nats://127.0.0.1:${examplePort} (started for this example`);
    expect(example.stdout).toMatch(/order_processing-\S+\s+order_processing\s+completed/);
    expect(example.stdout).toMatch(/order_saga-\S+\s+order_saga\s+failed/);
    expect(await portOpen(examplePort), "the example stopped the nats-server it started").toBe(false);

    // No nats-server to start: it fails at once with the install command, instead of waiting forever.
    const t0 = Date.now();
    const noBinary = await run("npm", ["run", "example"], repo, { ...newcomerEnv(`nats://127.0.0.1:${examplePort}`), NATS_SERVER_BIN: join(repo, "no-nats-server") }, 30_000);
    expect(noBinary.code).not.toBe(0);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(noBinary.stderr).toContain(`no NATS server answers at nats://127.0.0.1:${examplePort}`);
    expect(noBinary.stderr).toMatch(/hint: Install it: `[^`]*nats-server[^`]*`/);

    // The dev loop: npx wf init my-app && cd my-app && npm install; npx wf dev.
    const apps = temp("jetflow-newcomer-app-");
    const devPort = await freePort();
    const env = newcomerEnv(`nats://127.0.0.1:${devPort}`);
    const init = await run("npx", ["wf", "init", join(apps, "my-app")], repo, env, 60_000);
    expect(init.code, init.stderr).toBe(0);
    const app = join(apps, "my-app");
    const manifest = JSON.parse(readFileSync(join(app, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(manifest.dependencies.jetflow).toMatch(/^file:/);
    expect(readFileSync(join(app, "README.md"), "utf8")).toContain(`jetflow checkout at ${repo}`);
    const appInstalled = await run("npm", ["install", ...NPM_FLAGS], app, env);
    expect(appInstalled.code, appInstalled.stderr).toBe(0);

    // `npx wf dev` runs node_modules/.bin/wf; run that directly so that the pid killed is wf dev's.
    const dev = spawn(join(app, "node_modules", ".bin", "wf"), ["dev"], { cwd: app, env, stdio: ["ignore", "pipe", "pipe"] });
    children.push(dev);
    let out = "";
    dev.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
    dev.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
    await until(() => out.includes("loaded") || dev.exitCode !== null, "wf dev to load the functions", 60_000);
    expect(out).toContain("loaded");
    const pid = Number(/started by wf dev, pid (\d+)/.exec(out)?.[1]);
    expect(pid, out).toBeGreaterThan(0);
    expect(alive(pid)).toBe(true);
    // Its parent is the watchdog (field 4 of /proc/<pid>/stat; no procps on a minimal machine).
    const watchdog = Number(readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[1]);
    expect(watchdog).toBeGreaterThan(1);
    expect(alive(watchdog)).toBe(true);

    const started = await run("npx", ["wf", "start", "hello", "--input", '{"name":"Ada"}', "--wait"], app, env, 60_000);
    expect(started.code, `${started.stderr}\n${out}`).toBe(0);
    expect(JSON.parse(started.stdout).greeting).toBe("Hello, Ada!");

    dev.kill("SIGKILL");
    await until(() => dev.exitCode !== null || dev.signalCode !== null, "wf dev to die");
    await until(() => !alive(pid), `the nats-server wf dev started (pid ${pid}) to end`);
    await until(() => !alive(watchdog), `its watchdog (pid ${watchdog}) to end`);
    await until(async () => !(await portOpen(devPort)), `port ${devPort} to be free`);

    // The scaffold's own test (jetflow/testing, node:test) passes from the first minute.
    const tested = await run("npm", ["test"], app, env, 120_000);
    expect(tested.code, `${tested.stdout}\n${tested.stderr}`).toBe(0);
    expect(tested.stdout).toMatch(/# pass 1\b/);

    // From an installed copy (what `npm install jetflow` would give): wf init packs it into the
    // project, so the project does not depend on where that copy lives.
    const host = temp("jetflow-newcomer-host-");
    const packed = await run("npm", ["pack", repo, "--ignore-scripts", "--silent", "--pack-destination", host], host, env, 60_000);
    expect(packed.code, packed.stderr).toBe(0);
    const tarball = join(host, packed.stdout.trim().split("\n").pop()!);
    const hostInstalled = await run("npm", ["install", ...NPM_FLAGS, tarball], host, env);
    expect(hostInstalled.code, hostInstalled.stderr).toBe(0);
    const app2 = join(apps, "app2");
    const init2 = await run(join(host, "node_modules", ".bin", "wf"), ["init", app2], apps, env, 60_000);
    expect(init2.code, init2.stderr).toBe(0);
    const manifest2 = JSON.parse(readFileSync(join(app2, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(manifest2.dependencies.jetflow).toMatch(/^file:vendor\/jetflow-[\d.]+\.tgz$/);
    rmSync(host, { recursive: true, force: true }); // the installed copy is gone: the project still installs
    const app2Installed = await run("npm", ["install", ...NPM_FLAGS], app2, env);
    expect(app2Installed.code, app2Installed.stderr).toBe(0);
    const built = await run("npx", ["wf", "build"], app2, env, 60_000);
    expect(built.code, built.stderr).toBe(0);
    expect(built.stdout).toContain("hello (code)");
  });
});

describe("the install command in the hint", () => {
  it("is this platform's one-liner", async () => {
    const { natsInstallHint } = await import("../runtime/nats/local-server.js");
    const only = (path: string) => (p: string) => p === path;
    expect(natsInstallHint("darwin", () => false)).toBe("brew install nats-server");
    expect(natsInstallHint("linux", only("/usr/bin/apt-get"))).toMatch(/^(sudo )?apt-get install -y nats-server$/);
    expect(natsInstallHint("linux", only("/usr/bin/dnf"))).toMatch(/^(sudo )?dnf install -y nats-server$/);
    expect(natsInstallHint("linux", () => false)).toContain("NATS_SERVER_BIN");
  });
});
