/**
 * Bundles the web UI (ui/: Preact, TSX) with esbuild into dist/ui: app.js, style.css and
 * index.html, served by runtime/ui/server.ts. Run by `npm run build`; nothing is fetched at run time.
 *
 *   node --import tsx scripts/build-ui.ts
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = fileURLToPath(new URL("../", import.meta.url));
const out = `${root}dist/ui`;
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [`${root}ui/main.tsx`],
  outfile: `${out}/app.js`,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: true,
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(`${root}ui/index.html`, `${out}/index.html`);
copyFileSync(`${root}ui/style.css`, `${out}/style.css`);
console.log(`web UI built into ${out}`);
