/**
 * Probe for issue 12 (not a bench figure): what removing the visibility index's run entries costs
 * nats-server. N workflows are written the way the hot path writes them into one KV bucket (run
 * entry, state create, 4 CAS updates, end entry), then their run entries are
 * - none: left in place (what the index costs without any removal),
 * - each: purged one subject per workflow, unacknowledged, as index-writer.ts purgeLater does today,
 * - bulk: purged at once with one filter over all of them (what run entries in generations would do).
 * Prints nats-server's CPU per workflow for each, three rounds.
 *   NATS_SERVER_BIN=… node --import tsx bench/probes/run-entry-removal.mts
 * Measured 2026-12-03 (2.10.27, 2 shared cores, N 20,000): none 110-143 µs, each 162-188 µs,
 * bulk 129-137 µs per workflow: one purge per workflow costs 40-50 µs of server CPU, a bulk purge
 * about a fifth of that.
 */
import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { startNatsServer } from "../../test/helpers/nats-server.js";

const N = Number(process.env.N ?? 20000);
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // ms (100 Hz)
};
const server = await startNatsServer();
const nc = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const enc = new TextEncoder();
const state = enc.encode(JSON.stringify({ id: "x", status: "running", steps: { a: { status: "completed", output: { v: 1234567 } } }, pad: "p".repeat(400) }));
const entry = enc.encode(JSON.stringify({ id: "x", workflow: "order", status: "running", createdAt: new Date().toISOString() }));

async function round(mode: string) {
  const kv = await new Kvm(nc).create(`B${mode}${Date.now() % 100000}`, { history: 1 });
  const bucket = (kv as unknown as { bucket: string }).bucket;
  const prefix = `$KV.${bucket}.`;
  const stream = `KV_${bucket}`;
  // The hot path's shape: run entry, state create, 4 state updates, end entry, per workflow, interleaved.
  const t0 = cpu(server.pid);
  for (let i = 0; i < N; i += 200) {
    await Promise.all(
      Array.from({ length: 200 }, async (_, k) => {
        const id = `w${i + k}`;
        nc.publish(`${prefix}idx/run.g1.order.${id}`, entry);
        let rev = await kv.create(id, state);
        for (let s = 0; s < 4; s++) rev = await kv.update(id, state, rev);
        nc.publish(`${prefix}idx/end.0.completed.order.${id}`, entry);
        if (mode === "each") nc.publish(`$JS.API.STREAM.PURGE.${stream}`, enc.encode(JSON.stringify({ filter: `${prefix}idx/run.g1.order.${id}` })));
      }),
    );
  }
  await nc.flush();
  await js.publish(`${prefix}sync`, entry); // everything before is stored
  if (mode === "bulk") await jsm.streams.purge(stream, { filter: `${prefix}idx/run.g1.>` });
  await new Promise((r) => setTimeout(r, 300));
  await js.publish(`${prefix}sync`, entry);
  const used = cpu(server.pid) - t0;
  const info = await jsm.streams.info(stream);
  console.log(JSON.stringify({ mode, N, server_cpu_ms: used, us_per_workflow: Math.round((used * 1000) / N), messages: info.state.messages }));
  await jsm.streams.delete(stream);
}

for (let r = 0; r < 3; r++) for (const mode of ["none", "each", "bulk"]) await round(mode);
await nc.close();
await server.stop();
