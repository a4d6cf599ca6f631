import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../errors.js";
import { color, print } from "../output.js";
import type { CommandContext } from "../wf.js";

/** The root of the jetflow package this command runs from (a checkout or an installed copy). */
function jetflowRoot(): { root: string; version: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "jetflow") return { root: realpathSync(dir), version: pkg.version ?? "0.0.0" };
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find jetflow's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** How the new project depends on jetflow, and the sentence its README says about it. */
interface JetflowDependency {
  spec: string;
  readme: string;
  /** A tarball to write into the project (an installed copy, packed). */
  pack?: { root: string; into: string };
}

/**
 * No flag: the jetflow that runs this command, so that `npm install` works with nothing published.
 * A checkout is linked (`file:` its root: a rebuild of the checkout is what the project runs); an
 * installed copy (under node_modules, an npx cache, a global install) may vanish, so it is packed
 * into the project's vendor/ as a tarball. `--jetflow <spec>` overrides both.
 */
function jetflowDependency(dir: string, flag: string | boolean | undefined): JetflowDependency {
  if (typeof flag === "string") {
    return { spec: flag, readme: `It depends on jetflow \`${flag}\` (as \`wf init --jetflow ${flag}\` was told).` };
  }
  const { root, version } = jetflowRoot();
  if (root.split(sep).includes("node_modules")) {
    const tarball = `vendor/jetflow-${version}.tgz`;
    return {
      spec: `file:${tarball}`,
      readme: `It depends on jetflow ${version} packed from ${root} by \`wf init\` into \`${tarball}\`. ` +
        "To use another jetflow, run `npm install <spec>` (a version, a tarball or a folder), or create the project with `wf init --jetflow <spec>`.",
      pack: { root, into: join(dir, "vendor") },
    };
  }
  // Relative when the checkout is near (the project can move with it), else absolute (readable).
  const near = relative(dir, root) || ".";
  const link = near.split(sep).filter((part) => part === "..").length > 2 ? root : near;
  return {
    spec: `file:${link}`,
    readme: `It depends on the jetflow checkout at ${root} (\`file:${link}\`, linked by npm): rebuild that checkout (\`npm run build\`) and this project runs the new code. ` +
      "To use another jetflow, run `npm install <spec>` (a version, a tarball or a folder), or create the project with `wf init --jetflow <spec>`.",
  };
}

/** `wf init [dir]`: a new project whose example workflow runs with `npx wf dev` at once. */
export async function initCommand(ctx: CommandContext): Promise<number> {
  const dir = resolve(ctx.positionals[0] ?? ".");
  if (existsSync(dir) && readdirSync(dir).filter((f) => !f.startsWith(".")).length > 0 && !ctx.values.force) {
    throw new UsageError(`${dir} is not empty`, "Choose a new folder (`wf init my-app`), or pass --force to add the files anyway (existing files are kept).");
  }
  const jetflow = jetflowDependency(dir, ctx.values.jetflow);
  const jetflowSpec = jetflow.spec;
  const name = basename(dir).toLowerCase().replace(/[^a-z0-9-]/g, "-") || "jetflow-app";
  const files: Record<string, string> = {
    "package.json": JSON.stringify(
      {
        name,
        private: true,
        type: "module",
        scripts: { dev: "wf dev", start: "wf run", build: "wf build", deploy: "wf deploy", test: "node --test test/" },
        dependencies: { jetflow: jetflowSpec },
        devDependencies: { typescript: "^5.9.3", "@types/node": "^20.0.0" },
      },
      null,
      2,
    ) + "\n",
    "tsconfig.json": JSON.stringify(
      { compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, skipLibCheck: true, noEmit: true }, include: ["functions"] },
      null,
      2,
    ) + "\n",
    "wf.config.json": JSON.stringify({ namespace: "", worker: { slots: 64 }, defaults: { activityTimeout: "1m", retry: { maxRetries: 3, initialInterval: "1s" } } }, null, 2) + "\n",
    ".gitignore": "node_modules/\n.wf/\ndist/\n",
    "functions/activities/greetings.ts": `import type { ActivityContext } from "jetflow/workflow";

/** An activity: any exported async function. Its export name is its type. */
export async function compose_greeting(input: { name: string }, ctx: ActivityContext) {
  ctx.log.info(\`greeting \${input.name} (attempt \${ctx.attempt})\`);
  return { message: \`Hello, \${input.name}!\` };
}
`,
    "functions/workflows/hello.ts": `import type { WorkflowContext } from "jetflow/workflow";
import type * as activities from "../activities/greetings.js";

/** A workflow: deterministic code; every effect goes through ctx and survives crashes. */
export async function hello(ctx: WorkflowContext<typeof activities>, input: { name: string }) {
  const greeting = await ctx.activities.compose_greeting({ name: input.name });
  await ctx.sleep("1s"); // a durable timer
  return { greeting: greeting.message, at: new Date(ctx.now()).toISOString() };
}
`,
    // A passing test from the first minute, written with jetflow/testing (docs/testing.md): plain
    // JavaScript and node:test, so it needs nothing beyond jetflow (and a nats-server binary).
    "test/hello.test.mjs": `import { test } from "node:test";
import assert from "node:assert/strict";
import { createTestEnv } from "jetflow/testing";

test("hello greets by name, and its 1 s sleep is skipped", async () => {
  // A real nats-server of its own, a runtime running functions/, and a client.
  const env = await createTestEnv({ functionsDir: "functions" });
  try {
    const handle = await env.client.start("hello", { name: "Ada" }, { id: "hello-test-1" });
    await env.skipTime("1s"); // the durable sleep ends now, not in a second
    const result = await handle.result({ signal: AbortSignal.timeout(10_000) });
    assert.equal(result.greeting, "Hello, Ada!");
    const steps = await env.stepsOf("hello-test-1");
    assert.deepEqual(steps.map((s) => [s.kind, s.status, s.attempts]), [
      ["activity", "completed", 1],
      ["sleep", "completed", 0],
    ]);
  } finally {
    await env.close();
  }
});
`,
    "README.md": `# ${name}

A jetflow project: durable workflows on NATS JetStream. ${jetflow.readme}

\`\`\`bash
npm install
npx wf dev                                          # NATS (NATS_URL if it answers, else it starts nats-server
                                                    # with its store in .wf/nats), hot reload, live log
npx wf start hello --input '{"name":"Ada"}' --wait  # in another terminal
\`\`\`

Activities live in \`functions/activities\`, workflows in \`functions/workflows\`.
\`npm test\` runs \`test/hello.test.mjs\` with \`jetflow/testing\`: its own nats-server, the workflow's
1 s sleep skipped (docs/testing.md in the jetflow package).
Production: \`npx wf deploy\` publishes the code to NATS; \`npx wf run\` runs it (start as many as you need).
`,
  };
  if (jetflow.pack) {
    mkdirSync(jetflow.pack.into, { recursive: true });
    // --ignore-scripts: an installed copy has dist/ already and no sources to build it from.
    execFileSync(process.platform === "win32" ? "npm.cmd" : "npm", ["pack", jetflow.pack.root, "--ignore-scripts", "--silent", "--pack-destination", jetflow.pack.into], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  const written: string[] = [];
  for (const [path, text] of Object.entries(files)) {
    const target = join(dir, path);
    if (existsSync(target)) continue;
    mkdirSync(join(target, ".."), { recursive: true });
    writeFileSync(target, text);
    written.push(path);
  }
  print(`${color.green("created")} ${dir}  ${color.dim(`(jetflow: ${jetflowSpec})`)}`);
  for (const path of written) print(color.dim(`  ${path}`));
  print("");
  print("next:");
  if (ctx.positionals[0]) print(`  cd ${ctx.positionals[0]}`);
  print("  npm install");
  print("  npx wf dev");
  print(`  npx wf start hello --input '{"name":"Ada"}' --wait`);
  return 0;
}
