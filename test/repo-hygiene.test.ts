/**
 * The repository itself: no tracked file names a package registry's or a mirror's host (the
 * machine's own apt and npm configuration say where those are; the repo must not), and README's
 * configuration table says what the schema says, so it cannot drift from it (docs/config.md is
 * generated from the schema; README's table is a hand-picked summary, checked against it here).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { renderConfigDoc, schemaKeys } from "../scripts/gen-config-doc.js";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Hosts of package registries and mirrors, by name (written as regexes: this file must not match itself). */
const KNOWN_HOSTS: RegExp[] = [
  /\b(?:[a-z0-9-]+\.)*debian\.(?:org|net)\b/i, // deb., security., ftp.<cc>., snapshot., httpredir. …
  /\b(?:[a-z0-9-]+\.)*ubuntu\.com\b/i,
  /\b(?:[a-z0-9-]+\.)*npmjs\.(?:org|com)\b/i,
  /\bregistry\.yarnpkg\.com\b/i,
  /\bregistry\.npmmirror\.com\b/i,
  /\bnpm\.pkg\.github\.com\b/i,
  /\b(?:[a-z0-9-]+\.)*nodesource\.com\b/i,
  /\bpypi\.(?:org|python\.org)\b/i,
  /\bfiles\.pythonhosted\.org\b/i,
  /\bproxy\.golang\.org\b/i,
  /\b(?:static\.)?crates\.io\b/i,
  /\brubygems\.org\b/i,
  /\brepo1?\.maven(?:\.apache)?\.org\b/i,
  /\bdl-cdn\.alpinelinux\.org\b/i,
  /\b(?:api\.)?nuget\.org\b/i,
];

/**
 * Any http(s)/ftp URL whose host looks like a package mirror or registry. Only URL hosts, and
 * only these schemes: nats://127.0.0.1:4222, https://pay.example/charge and the like pass.
 */
const MIRROR_URL = /\b(?:https?|ftp):\/\/([a-z0-9.-]*(?:mirror|registry|archive|packages|repo|apt|pkgs?)[a-z0-9.-]*)(?::\d+)?(?:[/\s"'`)]|$)/i;

/** The hosts this machine's apt sources and npm actually use: whatever they are, the repo must not name them. */
function configuredHosts(): string[] {
  const hosts = new Set<string>();
  const files: string[] = ["/etc/apt/sources.list"];
  if (existsSync("/etc/apt/sources.list.d")) for (const f of readdirSync("/etc/apt/sources.list.d")) files.push(join("/etc/apt/sources.list.d", f));
  for (const file of files) {
    if (!/\.(?:list|sources)$/.test(file) || !existsSync(file)) continue;
    for (const m of readFileSync(file, "utf8").matchAll(/\b(?:https?|ftp):\/\/([^/\s:]+)/g)) hosts.add(m[1]!.toLowerCase());
  }
  try {
    const registry = execFileSync("npm", ["config", "get", "registry"], { encoding: "utf8", cwd: root }).trim();
    hosts.add(new URL(registry).hostname.toLowerCase());
  } catch {
    /* no npm config: nothing to add */
  }
  // Loopback and documentation hosts are never a registry.
  for (const host of [...hosts]) if (/^(?:localhost|127\.|\[?::1)/.test(host) || host.endsWith("example.com")) hosts.delete(host);
  return [...hosts];
}

/** Tracked files, as they are in the work tree (an app made with `wf init my-app` in the checkout is not ours). */
function repoFiles(): string[] {
  const out = execFileSync("git", ["ls-files", "-z", "--cached"], { cwd: root, encoding: "utf8" });
  return out.split("\0").filter((f) => f && existsSync(join(root, f)));
}

/** Where `text` names a registry or mirror host: "file:line: match" for each. */
export function findRegistryHosts(file: string, text: string, extraHosts: string[] = []): string[] {
  const found: string[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    for (const pattern of KNOWN_HOSTS) {
      const m = pattern.exec(line);
      if (m) found.push(`${file}:${i + 1}: ${m[0]}`);
    }
    const url = MIRROR_URL.exec(line);
    if (url) found.push(`${file}:${i + 1}: ${url[1]}`);
    for (const host of extraHosts) if (line.toLowerCase().includes(host)) found.push(`${file}:${i + 1}: ${host} (a host this machine's apt or npm uses)`);
  });
  return found;
}

describe("repository hygiene", () => {
  it("the patterns catch registry and mirror hosts, and let loopback and example hosts pass", () => {
    const host = (...parts: string[]) => parts.join(".");
    const bad = [
      `MIRROR=http://${host("deb", "debian", "org")}/debian`,
      `see https://www.${host("npmjs", "com")}/package/jetflow`,
      `"resolved": "https://${host("registry", "npmjs", "org")}/x/-/x-1.0.0.tgz"`,
      `deb http://${host("ftp", "de", "debian", "org")}/debian bookworm main`,
      `URIs: http://${host("mirror", "internal")}:3142/debian`,
      `curl https://${host("packages", "corp", "lan")}/pool/x.deb`,
    ];
    for (const line of bad) expect(findRegistryHosts("f", line), line).not.toEqual([]);
    const good = [
      "NATS_URL=nats://127.0.0.1:4222",
      'fetch("https://pay.example/charge")',
      "x@example.com and http://example.com/a",
      "nats://10.0.0.5:4222,nats://10.0.0.6:4222",
      "registry.workflows.get(name) and the package registry's address",
      "file:../jetflow and vendor/jetflow-0.1.0.tgz",
    ];
    for (const line of good) expect(findRegistryHosts("f", line), line).toEqual([]);
    expect(findRegistryHosts("f", "URIs: http://cache.lan/debian", ["cache.lan"])).not.toEqual([]);
  });

  it("no tracked file names a package registry's or mirror's host", () => {
    const extra = configuredHosts();
    const found: string[] = [];
    for (const file of repoFiles()) {
      const data = readFileSync(join(root, file));
      if (data.includes(0)) continue; // binary
      found.push(...findRegistryHosts(file, data.toString("utf8"), extra));
    }
    expect(found, "take the host from the machine's configuration (apt's sources, npm's registry) instead").toEqual([]);
  });
});

interface DocRow {
  env: string;
  default: string;
}

/** docs/config.md's rows (rendered from the schema): key -> env and default cells. */
function schemaRows(): Map<string, DocRow> {
  const rows = new Map<string, DocRow>();
  for (const line of renderConfigDoc().split("\n")) {
    const m = /^\| `([^`]+)` \| ([^|]*) \| ([^|]*) \|/.exec(line);
    if (m) rows.set(m[1]!, { env: m[2]!.trim() === "—" ? "" : m[2]!.trim(), default: m[3]!.trim() });
  }
  return rows;
}

/** README's configuration table: [key cell, env cell, default cell] of each row. */
function readmeRows(): string[][] {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("\n## ", readme.indexOf("## Configuration") + 1));
  return section
    .split("\n")
    .filter((line) => /^\| `/.test(line))
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim()));
}

describe("README's configuration table", () => {
  const rows = schemaRows();
  const table = readmeRows();

  it("has rows, and every key in it is a schema key", () => {
    expect(table.length).toBeGreaterThan(10);
    expect(rows.size).toBe(schemaKeys().length);
    for (const [keys] of table) {
      const tokens = [...keys!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      const parent = tokens[0]!.slice(0, tokens[0]!.lastIndexOf("."));
      for (const key of tokens.map((t) => (t.startsWith(".") ? parent + t : t))) {
        if (key.endsWith(".*")) expect([...rows.keys()].some((k) => k.startsWith(key.slice(0, -1))), key).toBe(true);
        else expect(rows.has(key), `README names config key ${key}, which the schema does not have`).toBe(true);
      }
    }
  });

  it("says each key's default and environment variable as the schema does", () => {
    for (const [keys, env, defaults] of table) {
      const names = [...keys!.matchAll(/`([a-zA-Z][\w.]*(?:\.\*)?)`/g)].map((m) => m[1]!);
      const first = names[0]!;
      // `nats.tls.ca` / `.cert` / `.key`: one row for several keys.
      const several = [...keys!.matchAll(/`([^`]+)`/g)].length > 1;
      if (first.endsWith(".*")) {
        // `defaults.retry.*`: every key under the prefix, in schema order.
        const under = [...rows.entries()].filter(([k]) => k.startsWith(first.slice(0, -1)));
        expect(defaults, `README default of ${first}`).toBe(under.map(([, r]) => r.default).join(", "));
        continue;
      }
      const row = rows.get(first)!;
      // A README default may explain itself after the schema's value: `""` (`<host>-<pid>`).
      if (!several || defaults) expect(defaults!.startsWith(row.default), `README default of ${first} is ${defaults}; the schema says ${row.default}`).toBe(true);
      if (!several) expect(env, `README env of ${first}`).toBe(row.env);
      else expect(env!.startsWith(row.env), `README env of ${first}`).toBe(true);
    }
  });
});
