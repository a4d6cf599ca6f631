// Free TCP ports on 127.0.0.1, for servers a test or the bench starts (nats-server, /metrics, wf ui).
import { createServer } from "node:net";

const HOST = "127.0.0.1";

/** Ports reserved by binding to port 0 (all held at once so they differ), then released. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.once("error", reject);
          srv.listen(0, HOST, () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((srv) => {
    const address = srv.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    return address.port;
  });
  await Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  return ports;
}

/** A port nothing listens on (bound to 0 and released). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}
