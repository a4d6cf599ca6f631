/**
 * Top self-time functions of V8 CPU profiles (`node --cpu-prof`), merged:
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile | dir> [...] [--top 10]
 *
 * npm run bench writes such profiles for the throughput runtimes when BENCH_CPU_PROF=<dir> is set.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileRow {
  function: string;
  location: string;
  self_ms: number;
  self_pct: number;
}

function profileFiles(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const entry of readdirSync(p)) out.push(...profileFiles([join(p, entry)]));
    } else if (p.endsWith(".cpuprofile")) out.push(p);
  }
  return out;
}

function shorten(url: string): string {
  if (!url) return "";
  const path = url.startsWith("file://") ? new URL(url).pathname : url;
  const nm = path.lastIndexOf("node_modules/");
  if (nm >= 0) return path.slice(nm + "node_modules/".length);
  return relative(process.cwd(), path) || path;
}

/** Self time by function (name + file + line), over every given profile; idle, GC and program rows included. */
export function topSelfTime(paths: string[], top = 10): { rows: ProfileRow[]; total_ms: number; files: string[] } {
  const files = profileFiles(paths);
  const self = new Map<string, { fn: string; loc: string; us: number }>();
  let totalUs = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < profile.samples.length; i++) {
      const node = byId.get(profile.samples[i]!);
      const dt = profile.timeDeltas[i] ?? 0;
      if (!node || dt <= 0) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      const fn = functionName || "(anonymous)";
      const loc = url ? `${shorten(url)}:${lineNumber + 1}` : "";
      const key = `${fn}\u0000${loc}`;
      const row = self.get(key) ?? { fn, loc, us: 0 };
      row.us += dt;
      self.set(key, row);
      totalUs += dt;
    }
  }
  const rows = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((r) => ({ function: r.fn, location: r.loc, self_ms: Math.round(r.us / 100) / 10, self_pct: Math.round((r.us / totalUs) * 1000) / 10 }));
  return { rows, total_ms: Math.round(totalUs / 1000), files };
}

export function formatRows(rows: ProfileRow[]): string {
  return rows.map((r, i) => `${String(i + 1).padStart(2)}. ${r.self_pct.toFixed(1).padStart(5)}%  ${String(r.self_ms).padStart(8)} ms  ${r.function}  ${r.location}`).join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 10;
  if (args.length === 0) {
    process.stderr.write("usage: node --import tsx bench/profile-summary.ts <file.cpuprofile | dir> [...] [--top 10]\n");
    process.exit(64);
  }
  const { rows, total_ms, files } = topSelfTime(args, top);
  process.stdout.write(`${files.length} profile(s), ${total_ms} ms sampled\n${formatRows(rows)}\n`);
}
