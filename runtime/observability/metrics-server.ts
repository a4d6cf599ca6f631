/**
 * The Prometheus endpoint: `GET /metrics` on node:http, the text of one runtime's registry
 * (metrics.ts). Anything else is a 404; a scrape that fails is a 500 with the reason.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError } from "../errors.js";
import type { Metrics } from "./metrics.js";

export interface MetricsServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** `http://host:port/metrics`, once started (the port bound, when 0 was asked for). */
  readonly url: string;
}

export interface MetricsServerOptions {
  metrics: Metrics;
  port: number;
  host?: string;
}

export function createMetricsServer(options: MetricsServerOptions): MetricsServer {
  const host = options.host ?? "127.0.0.1";
  let server: Server | undefined;
  let url = "";
  return {
    get url() {
      return url;
    },
    async start() {
      server = createServer((req, res) => {
        const path = (req.url ?? "/").split("?")[0];
        if (req.method !== "GET" || path !== "/metrics") {
          res.writeHead(404, { "content-type": "text/plain" }).end("jetflow serves Prometheus metrics at GET /metrics\n");
          return;
        }
        options.metrics.text().then(
          (text) => res.writeHead(200, { "content-type": options.metrics.contentType }).end(text),
          (err) => res.writeHead(500, { "content-type": "text/plain" }).end(`collecting metrics failed: ${(err as Error)?.message ?? err}\n`),
        );
      });
      const listening = server;
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) =>
          reject(
            new ConfigError("WF_METRICS_PORT_IN_USE", `cannot serve metrics on ${host}:${options.port}: ${err.code === "EADDRINUSE" ? "the port is in use" : err.message}`, {
              hint: "Pick another port with `wf run --metrics-port N` (or metrics.port), or stop what listens there.",
            }),
          );
        listening.once("error", onError);
        listening.listen(options.port, host, () => {
          listening.off("error", onError);
          resolve();
        });
      });
      const address = listening.address() as AddressInfo;
      url = `http://${host.includes(":") ? `[${host}]` : host}:${address.port}/metrics`;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections?.();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
