/**
 * The web UI: a node:http server for the page bundled at build time (dist/ui: Preact + esbuild;
 * nothing fetched at run time) and its JSON API under /api/ (api.ts). Served by `wf ui`, by
 * `wf dev`, and by `wf run` when `ui.port` is set.
 *
 * Safety: with `ui.token` set, every /api/ request needs `Authorization: Bearer <token>` (or
 * `?token=` for the event stream, which browsers cannot give headers); without one the server
 * listens on loopback only (refuses to start otherwise) and answers only requests whose Host is
 * loopback, so another site cannot reach it through DNS rebinding. Actions are POSTs with a JSON
 * body from the same origin: a cross-site form cannot send one. `readOnly` refuses every action.
 *
 * Live updates: the workflow page follows its one workflow with server-sent events from a KV
 * watch of that key; the list page re-reads the page it shows every few seconds. Neither grows
 * with the number of workflows.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openDeploymentStore, type DeploymentStore } from "../bundle/deployments.js";
import type { WorkflowClient } from "../client/client.js";
import type { Config } from "../config.js";
import type { Registry } from "../definitions.js";
import { ConnectionError, JetflowError, UiError, ValidationError, WorkflowNotFoundError } from "../errors.js";
import type { Logger } from "../logger.js";
import * as api from "./api.js";
import { createDagDefinitions } from "./dag-definitions.js";

export const DEFAULT_UI_PORT = 8233;
export const DEFAULT_UI_HOST = "127.0.0.1";
/** `portFallback`: ports tried after the one asked for, before any free one. */
const FALLBACK_PORTS = 10;
const MAX_BODY_BYTES = 1024 * 1024;
const SSE_KEEPALIVE_MS = 15_000;

export interface UiServerOptions {
  client: WorkflowClient;
  /** For the deployments store's replicas and storage, and the `ui.*` defaults. */
  config: Config;
  /** Default `ui.port`, else 8233; 0 picks a free port. */
  port?: number;
  /** Default `ui.host`. */
  host?: string;
  /** Default `ui.readOnly`. */
  readOnly?: boolean;
  /** Default `ui.token`. */
  token?: string;
  /** When the port is taken, try the next few, then any free one (wf dev); otherwise fail with WF_UI_PORT_IN_USE. */
  portFallback?: boolean;
  /** The code of a runtime in this process, for DAG definitions without a fetch. */
  registry?: () => Registry | undefined;
  logger: Logger;
  /** Where the built page is (default: dist/ui of this package). */
  assetsDir?: string;
}

export interface UiServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** `http://host:port/`, once started. */
  readonly url: string;
}

const CONTENT_TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml", ".map": "application/json" };

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * dist/ui, from dist/runtime/ui/server.js or from runtime/ui/server.ts (tests, tsx). By its
 * app.js: from the sources, ../../ui is the unbuilt ui/ folder.
 */
function defaultAssetsDir(): string {
  for (const candidate of ["../../ui/", "../../dist/ui/"]) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(join(dir, "index.html")) && existsSync(join(dir, "app.js"))) return dir;
  }
  throw new UiError("WF_UI_ASSETS_MISSING", "the web UI's page is not built (no dist/ui/index.html next to jetflow)", {
    hint: "Run `npm run build` in the jetflow checkout (it bundles ui/ into dist/ui), or reinstall jetflow.",
  });
}

export function createUiServer(options: UiServerOptions): UiServer {
  const host = options.host ?? options.config.ui.host ?? DEFAULT_UI_HOST;
  const token = options.token ?? options.config.ui.token ?? "";
  const readOnly = options.readOnly ?? options.config.ui.readOnly ?? false;
  const wantedPort = options.port ?? (options.config.ui.port || DEFAULT_UI_PORT);
  if (!token && !isLoopbackHost(host)) {
    throw new UiError("WF_UI_TOKEN_REQUIRED", `the web UI would listen on ${host}, which is not loopback, without a token: anyone who reaches it could cancel workflows`, {
      hint: "Set ui.token (WF_UI_TOKEN) to a long random secret, or listen on 127.0.0.1 (--host 127.0.0.1) and reach it through an SSH tunnel.",
    });
  }
  if (!Number.isInteger(wantedPort) || wantedPort < 0 || wantedPort > 65_535) {
    throw new UiError("WF_UI_PORT_IN_USE", `the web UI's port must be a whole number from 0 to 65535, got ${String(wantedPort)}`, { hint: "Pass --port 8233, or 0 for any free port." });
  }
  const assetsDir = options.assetsDir ?? defaultAssetsDir();
  const tokenDigest = createHash("sha256").update(token).digest();
  const logger = options.logger.child({ component: "ui" });
  let store: Promise<DeploymentStore> | undefined;
  const deployments = () => (store ??= openDeploymentStore(options.client.topology, { replicas: options.config.replicas, storage: options.config.storage }).catch((err) => {
    store = undefined;
    throw err;
  }));
  const ctx: api.ApiContext = {
    client: options.client,
    deployments,
    dags: createDagDefinitions({ store: deployments, logger, ...(options.registry ? { registry: options.registry } : {}) }),
  };
  const streams = new Set<AbortController>();
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!(err instanceof JetflowError)) logger.error(`${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
      sendError(res, err);
    });
  });
  let url = "";

  function authorized(req: IncomingMessage, query: URLSearchParams): boolean {
    if (!token) return true;
    const header = req.headers.authorization ?? "";
    const given = header.startsWith("Bearer ") ? header.slice(7) : (query.get("token") ?? "");
    return timingSafeEqual(createHash("sha256").update(given).digest(), tokenDigest);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parsed = new URL(req.url ?? "/", "http://ui.invalid");
    const path = parsed.pathname;
    if (!token) {
      const hostHeader = (req.headers.host ?? "").replace(/:\d+$/, "");
      if (!isLoopbackHost(hostHeader) && hostHeader !== host) {
        throw new UiError("WF_UI_FORBIDDEN_HOST", `request for host ${JSON.stringify(req.headers.host)} refused: a UI without ui.token answers loopback names only`, {
          hint: "Open it as http://127.0.0.1:<port>/, or set ui.token to serve other names.",
        });
      }
    }
    if (!path.startsWith("/api/")) return serveAsset(res, path);
    if (!authorized(req, parsed.searchParams)) {
      res.setHeader("WWW-Authenticate", 'Bearer realm="jetflow"');
      throw new UiError("WF_UI_UNAUTHORIZED", "this UI needs its token (ui.token): none or a wrong one was given", {
        hint: "Enter the token the page asks for, open the page with ?token=<token>, or send Authorization: Bearer <token>.",
      });
    }
    const method = req.method ?? "GET";
    const parts = path.slice("/api/".length).split("/").map(decodeURIComponent);
    if (method === "POST") {
      const origin = req.headers.origin;
      if (origin && new URL(origin).host !== req.headers.host) {
        throw new UiError("WF_UI_FORBIDDEN_HOST", `action from another origin (${origin}) refused`, { hint: "Use the page this server serves, or the wf CLI." });
      }
      if (readOnly) {
        throw new UiError("WF_UI_READ_ONLY", `this UI is read-only (ui.readOnly / --read-only): ${parts.at(-1)} refused`, {
          hint: "Use the wf CLI (wf cancel, wf signal, wf dead-letters replay …), or serve the UI without --read-only.",
        });
      }
      const body = await readJson(req);
      if (parts[0] === "workflows" && parts.length === 3 && (parts[2] === "cancel" || parts[2] === "terminate" || parts[2] === "signal" || parts[2] === "retry")) {
        return sendJson(res, 200, await api.act(ctx, parts[1]!, parts[2], body));
      }
      if (parts[0] === "dead-letters" && parts.length === 3 && parts[2] === "replay") return sendJson(res, 200, await api.replay(ctx, seqOf(parts[1]!)));
      if (parts[0] === "dead-letters" && parts.length === 3 && parts[2] === "discard") return sendJson(res, 200, await api.discard(ctx, seqOf(parts[1]!)));
      throw notFound(path);
    }
    if (method !== "GET") throw new UiError("WF_UI_BAD_REQUEST", `${method} ${path}: the API answers GET and POST only`, { hint: "Use the page, or GET the /api/ routes." });
    const q = parsed.searchParams;
    if (parts[0] === "info" && parts.length === 1) return sendJson(res, 200, { namespace: options.config.namespace, readOnly, deadLetterReasons: api.deadLetterReasons() });
    if (parts[0] === "workflows" && parts.length === 1) return sendJson(res, 200, await api.listWorkflows(ctx, q));
    if (parts[0] === "workflows" && parts.length === 2) return sendJson(res, 200, await api.describeWorkflow(ctx, parts[1]!, q));
    if (parts[0] === "workflows" && parts.length === 3 && parts[2] === "events") return streamWorkflow(req, res, parts[1]!);
    if (parts[0] === "dead-letters" && parts.length === 1) return sendJson(res, 200, await api.deadLetters(ctx, q));
    if (parts[0] === "dead-letters" && parts.length === 2) return sendJson(res, 200, await api.deadLetter(ctx, seqOf(parts[1]!)));
    if (parts[0] === "deployments" && parts.length === 1) return sendJson(res, 200, await api.deployments(ctx));
    throw notFound(path);
  }

  /** Server-sent events: the workflow's state whole, on every change, until it ends or the page goes. */
  async function streamWorkflow(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const abort = new AbortController();
    streams.add(abort);
    const iterator = options.client.watch(id, { signal: abort.signal })[Symbol.asyncIterator]();
    // The first state before the headers: an unknown id is a 404, not an empty stream.
    let first: IteratorResult<unknown>;
    try {
      await options.client.describe(id);
      first = await iterator.next();
    } catch (err) {
      streams.delete(abort);
      abort.abort();
      throw err;
    }
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
    const keepalive = setInterval(() => res.write(": keepalive\n\n"), SSE_KEEPALIVE_MS);
    const close = () => abort.abort();
    req.on("close", close);
    try {
      for (let next = first; !next.done; next = await iterator.next()) res.write(`event: state\ndata: ${JSON.stringify(next.value)}\n\n`);
      if (!abort.signal.aborted) res.write("event: end\ndata: {}\n\n");
    } catch (err) {
      if (!abort.signal.aborted) logger.warn(`event stream of ${id} ended: ${(err as Error).message}`);
    } finally {
      clearInterval(keepalive);
      req.off("close", close);
      streams.delete(abort);
      abort.abort();
      res.end();
    }
  }

  function serveAsset(res: ServerResponse, path: string): void {
    // Every page is the one index.html (the page routes by its #hash); assets by exact name only.
    const name = path === "/" || path === "/index.html" ? "index.html" : path.slice(1);
    if (!/^[a-z0-9_-]+(\.[a-z0-9]+)+$/i.test(name)) throw notFound(path);
    const file = join(assetsDir, name);
    if (!existsSync(file)) throw notFound(path);
    res.writeHead(200, { "Content-Type": CONTENT_TYPES[extname(name)] ?? "application/octet-stream", "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:" });
    res.end(readFileSync(file));
  }

  async function listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        server.off("listening", onListening);
        reject(err);
      };
      const onListening = () => {
        server.off("error", onError);
        resolve();
      };
      server.once("error", onError);
      server.once("listening", onListening);
      server.listen(port, host);
    });
  }

  return {
    get url() {
      return url;
    },
    async start() {
      const candidates = options.portFallback && wantedPort !== 0 ? [...Array.from({ length: FALLBACK_PORTS + 1 }, (_, i) => wantedPort + i).filter((p) => p <= 65_535), 0] : [wantedPort];
      for (const [i, port] of candidates.entries()) {
        try {
          await listen(port);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "EADDRINUSE" && i < candidates.length - 1) continue;
          if (code === "EADDRINUSE") {
            throw new UiError("WF_UI_PORT_IN_USE", `the web UI cannot listen on ${host}:${port}: the port is taken`, { hint: "Pick another with --port (or ui.port), or stop what holds it.", cause: err });
          }
          throw new UiError("WF_UI_PORT_IN_USE", `the web UI cannot listen on ${host}:${port}: ${(err as Error).message}`, { hint: "Check --host (an address of this machine) and --port.", cause: err });
        }
      }
      const address = server.address() as AddressInfo;
      const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
      url = `http://${shown === "0.0.0.0" || shown === "[::]" ? "127.0.0.1" : shown}:${address.port}/`;
      logger.debug(`web UI on ${url}`);
    },
    async stop() {
      for (const stream of streams) stream.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function seqOf(text: string): number {
  const seq = Number(text);
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new ValidationError("WF_INVALID_DEAD_LETTER", `dead letter ${JSON.stringify(text)} is not a sequence number`, { hint: "Use the number the dead-letters page shows." });
  }
  return seq;
}

function notFound(path: string): UiError {
  return new UiError("WF_UI_NOT_FOUND", `nothing at ${path}`, { hint: "The page is at /; the API's routes are under /api/ (docs/ui.md)." });
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) {
    throw new UiError("WF_UI_BAD_REQUEST", "an action's body must be JSON (Content-Type: application/json)", { hint: "Send {} when there is nothing to say." });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new UiError("WF_UI_BAD_REQUEST", `an action's body is limited to ${MAX_BODY_BYTES} bytes`, { hint: "Send a smaller payload (a reference to the data, not the data)." });
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch (err) {
    throw new UiError("WF_UI_BAD_REQUEST", `an action's body is not JSON: ${(err as Error).message}`, { hint: "Fix the JSON (the signal form checks it before sending)." });
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) throw new UiError("WF_UI_BAD_REQUEST", "an action's body must be a JSON object", { hint: 'Send { "reason": "…" } or { "name": "…", "payload": … }.' });
  return body as Record<string, unknown>;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" });
  res.end(text);
}

/** A coded error as `{ error: { code, message, hint } }`, with the status it stands for. */
function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const status =
    err instanceof UiError
      ? { WF_UI_UNAUTHORIZED: 401, WF_UI_READ_ONLY: 403, WF_UI_FORBIDDEN_HOST: 403, WF_UI_NOT_FOUND: 404 }[err.code] ?? 400
      : err instanceof WorkflowNotFoundError
        ? 404
        : err instanceof ConnectionError
          ? 503
          : err instanceof JetflowError
            ? 400
            : 500;
  const body =
    err instanceof JetflowError
      ? { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) }
      : { code: "WF_UI_INTERNAL", message: (err as Error)?.message ?? String(err), hint: "This looks like a bug in jetflow; the server's log has more." };
  sendJson(res, status, { error: body });
}
