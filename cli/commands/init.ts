import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, join, resolve } from "node:path";
import { UsageError } from "../errors.js";
import { color, print } from "../output.js";
import type { CommandContext } from "../wf.js";

/** `wf init [dir]`: a new project whose example workflow runs with `npx wf dev` at once. */
export async function initCommand(ctx: CommandContext): Promise<number> {
  const dir = resolve(ctx.positionals[0] ?? ".");
  if (existsSync(dir) && readdirSync(dir).filter((f) => !f.startsWith(".")).length > 0 && !ctx.values.force) {
    throw new UsageError(`${dir} is not empty`, "Choose a new folder (`wf init my-app`), or pass --force to add the files anyway (existing files are kept).");
  }
  const version = (createRequire(import.meta.url)("../../../package.json") as { version: string }).version;
  const jetflowSpec = typeof ctx.values.jetflow === "string" ? ctx.values.jetflow : `^${version}`;
  const name = basename(dir).toLowerCase().replace(/[^a-z0-9-]/g, "-") || "jetflow-app";
  const files: Record<string, string> = {
    "package.json": JSON.stringify(
      {
        name,
        private: true,
        type: "module",
        scripts: { dev: "wf dev", start: "wf run", build: "wf build", deploy: "wf deploy" },
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
    "README.md": `# ${name}

A [jetflow](https://www.npmjs.com/package/jetflow) project: durable workflows on NATS JetStream.

\`\`\`bash
npm install
npx wf dev                                          # NATS (found or started), hot reload, live log
npx wf start hello --input '{"name":"Ada"}' --wait  # in another terminal
\`\`\`

Activities live in \`functions/activities\`, workflows in \`functions/workflows\`.
Production: \`npx wf deploy\` publishes the code to NATS; \`npx wf run\` runs it (start as many as you need).
`,
  };
  const written: string[] = [];
  for (const [path, text] of Object.entries(files)) {
    const target = join(dir, path);
    if (existsSync(target)) continue;
    mkdirSync(join(target, ".."), { recursive: true });
    writeFileSync(target, text);
    written.push(path);
  }
  print(`${color.green("created")} ${dir}`);
  for (const path of written) print(color.dim(`  ${path}`));
  print("");
  print("next:");
  if (ctx.positionals[0]) print(`  cd ${ctx.positionals[0]}`);
  print("  npm install");
  print("  npx wf dev");
  print(`  npx wf start hello --input '{"name":"Ada"}' --wait`);
  return 0;
}
