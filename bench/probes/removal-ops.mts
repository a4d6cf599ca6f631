/**
 * Probe for issue 12: nats-server CPU of one removal of an index entry, by how it is removed.
 * N entries in a KV bucket (with states and updates around them, as on the hot path), then each removed:
 * purge (filter, unacknowledged), msgdel (by sequence, no_erase, unacknowledged), marker (a KV delete
 * marker: a plain publish), ttlmarker (a purge marker with Nats-TTL, 2.11+), lastdel (a direct
 * get of the key's last message answered to one subscription that deletes that sequence: what
 * runtime/nats/key-removal.ts does), none. The entries are the oldest keys of the stream.
 *   MODES=purge,msgdel,lastdel NATS_SERVER_BIN=… node --import tsx bench/probes/removal-ops.mts
 * Measured 2026-12-03, server CPU per removal, N 20,000 (40,000 messages stored): 2.10.27 purge
 * 808-908 µs, msgdel 17-20, lastdel 23-24, marker 7-9 (but the markers stay); 2.15.1 purge 18-21,
 * msgdel 20-22, marker 8, ttlmarker 4-5. N 5,000: 2.9.10 purge 74-76, lastdel 24; 2.15.1 22 and 22.
 */
import { readFileSync } from "node:fs";
import { connect, headers } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { startNatsServer } from "../../test/helpers/nats-server.js";

const N = Number(process.env.N ?? 20000);
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
};
const server = await startNatsServer();
const nc = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const enc = new TextEncoder();
const state = enc.encode(JSON.stringify({ id: "x", status: "running", pad: "p".repeat(400) }));
const entry = enc.encode(JSON.stringify({ id: "x", workflow: "order", status: "running", createdAt: new Date().toISOString() }));
const modes = (process.env.MODES ?? "none,purge,msgdel,marker").split(",");

async function round(mode: string) {
  const kv = await new Kvm(nc).create(`B${mode}${Date.now() % 100000}`, { history: 1, allow_msg_ttl: mode === "ttlmarker" } as never);
  const bucket = (kv as unknown as { bucket: string }).bucket;
  const prefix = `$KV.${bucket}.`;
  const stream = `KV_${bucket}`;
  const seqs: number[] = [];
  for (let i = 0; i < N; i += 500) {
    const acks = await Promise.all(Array.from({ length: 500 }, (_, k) => js.publish(`${prefix}idx/run.order.w${i + k}`, entry)));
    for (const a of acks) seqs.push(a.seq);
    await Promise.all(Array.from({ length: 500 }, (_, k) => kv.put(`w${i + k}`, state)));
  }
  await js.publish(`${prefix}sync`, entry);
  await new Promise((r) => setTimeout(r, 500));
  const t0 = cpu(server.pid);
  const h = headers();
  h.set("KV-Operation", "DEL");
  const th = headers();
  th.set("KV-Operation", "PURGE");
  th.set("Nats-Rollup", "sub");
  th.set("Nats-TTL", "1s");
  // lastdel: a direct get of the subject's last message, answered to one subscription that deletes
  // what it is told by sequence (no promise or timer per removal).
  const deleter = nc.subscribe(`_DEL.${mode}`, {
    callback: (_e, m) => {
      const seq = m.headers?.get("Nats-Sequence");
      if (seq) nc.publish(`$JS.API.STREAM.MSG.DELETE.${m.headers!.get("Nats-Stream")}`, enc.encode(JSON.stringify({ seq: Number(seq), no_erase: true })));
    },
  });
  for (let i = 0; i < N; i++) {
    const subject = `${prefix}idx/run.order.w${i}`;
    if (mode === "purge") nc.publish(`$JS.API.STREAM.PURGE.${stream}`, enc.encode(JSON.stringify({ filter: subject })));
    else if (mode === "msgdel") nc.publish(`$JS.API.STREAM.MSG.DELETE.${stream}`, enc.encode(JSON.stringify({ seq: seqs[i], no_erase: true })));
    else if (mode === "lastdel") nc.publish(`$JS.API.DIRECT.GET.${stream}.${subject}`, undefined, { reply: `_DEL.${mode}` });
    else if (mode === "marker") nc.publish(subject, undefined, { headers: h });
    else if (mode === "ttlmarker") nc.publish(subject, undefined, { headers: th });
    if (i % 500 === 499) await nc.flush();
  }
  await nc.flush();
  await js.publish(`${prefix}sync`, entry);
  await new Promise((r) => setTimeout(r, 2500));
  await js.publish(`${prefix}sync`, entry);
  const used = cpu(server.pid) - t0;
  deleter.unsubscribe();
  const info = await jsm.streams.info(stream);
  console.log(JSON.stringify({ mode, N, us_per_removal: Math.round((used * 1000) / N), messages: info.state.messages }));
  await jsm.streams.delete(stream);
}

for (let r = 0; r < 3; r++) for (const mode of modes) await round(mode);
await nc.close();
await server.stop();
