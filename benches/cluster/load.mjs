#!/usr/bin/env node
// Broadcast load over two servers of one cluster (benches/cluster_broadcast.py): --conns
// receivers split evenly over --ports, one sender on the first port emitting
// 42["bcast",{"t":<µs>,"pad":...}] at --rate per second (--rate 0: closed loop, as
// ../shared/bench/sio-load.js's broadcast scenario: at most --inflight broadcasts' deliveries
// outstanding, the next sent as soon as there is room); every server broadcasts it to every
// client but the sender (on every node, through Redis). Raw Engine.IO v4 / Socket.IO v5 over
// the `ws` package (from tests/cluster/node_modules).
//
// Measures over --duration s after --warmup s: deliveries, delivery latency (receipt minus
// t, one clock: same process), and the CPU (utime+stime, /proc) of --pids over the window.
// Prints one JSON line.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../tests/cluster/package.json"));
const WebSocket = require("ws");

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const ports = arg("--ports").split(",").map(Number);
const conns = Number(arg("--conns", "1000"));
const rate = Number(arg("--rate", "20"));
const inflight = Number(arg("--inflight", "8"));
const duration = Number(arg("--duration", "10"));
const warmup = Number(arg("--warmup", "2"));
const pad = "x".repeat(Number(arg("--payload-bytes", "32")));
const pids = (arg("--pids", "") || "").split(",").filter(Boolean).map(Number);
const deadline = setTimeout(() => fail("deadline"), (duration + warmup + 60) * 1000);

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const CLK_TCK = 100;
const cpuSeconds = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime
};

function fail(why) {
  process.stdout.write(JSON.stringify({ ok: false, error: why }) + "\n");
  process.exit(1);
}

let measuring = false;
let delivered = 0;
let deliveredTotal = 0;
const latencies = [];

function open(port, onEvent) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, {
      perMessageDeflate: false,
    });
    const timer = setTimeout(() => reject(new Error("handshake timeout")), 20000);
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      if (text[0] === "0") ws.send("40");
      else if (text === "2") ws.send("3");
      else if (text.startsWith("40")) {
        clearTimeout(timer);
        resolve(ws);
      } else if (text.startsWith("42")) onEvent(text);
    });
    ws.on("error", reject);
    ws.on("close", () => {
      if (measuring) fail("a connection closed");
    });
  });
}

const T_FIELD = /"t":(\d+)/;
const onBroadcast = (text) => {
  deliveredTotal++;
  if (closedLoop && !pumpQueued && sent * conns - deliveredTotal < inflight * conns) {
    // Once per turn of the event loop, not per delivery.
    pumpQueued = true;
    setImmediate(pump);
  }
  if (!measuring) return;
  // 42["bcast",{"t":<µs>,...}]: the number only (cheaper than parsing the packet; the keys
  // may come in any order).
  latencies.push(nowUs() - Number(T_FIELD.exec(text)[1]));
  delivered++;
};

const receivers = [];
for (let i = 0; i < conns; i += 50) {
  const batch = [];
  for (let j = i; j < Math.min(i + 50, conns); j++) {
    batch.push(open(ports[j % ports.length], onBroadcast));
  }
  receivers.push(...(await Promise.all(batch)));
}
const sender = await open(ports[0], () => {});
// Every node subscribed and every client known: a short settle.
await new Promise((r) => setTimeout(r, 500));

let sent = 0;
let sentInWindow = 0;
let sending = true;
const send = () => {
  sender.send(`42["bcast",{"t":${nowUs()},"pad":"${pad}"}]`);
  sent++;
  if (measuring) sentInWindow++;
};
// Closed loop: a broadcast leaves once fewer than `inflight` broadcasts' deliveries are
// outstanding (a server that loses deliveries stalls here, and its rate shows it).
const closedLoop = rate === 0;
let pumpQueued = false;
function pump() {
  pumpQueued = false;
  while (sending && sent * conns - deliveredTotal < inflight * conns) send();
}
const interval = closedLoop ? null : setInterval(send, 1000 / rate);
if (closedLoop) pump();

await new Promise((r) => setTimeout(r, warmup * 1000));
const cpu0 = pids.map(cpuSeconds);
const t0 = nowUs();
measuring = true;
await new Promise((r) => setTimeout(r, duration * 1000));
measuring = false;
const window = (nowUs() - t0) / 1e6;
const cpu1 = pids.map(cpuSeconds);
sending = false;
if (interval) clearInterval(interval);
await new Promise((r) => setTimeout(r, 1000)); // the last broadcasts arrive
clearTimeout(deadline);

latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
const cpu = cpu1.map((c, i) => c - cpu0[i]);
const result = {
  ok: delivered > 0,
  conns,
  ports,
  rate,
  inflight: closedLoop ? inflight : null,
  window_s: window,
  broadcasts_sent: sent,
  deliveries: delivered,
  expected_deliveries_total: sent * conns,
  received_deliveries_total: deliveredTotal,
  deliveries_per_s: delivered / window,
  latency_ms: { p50: pct(0.5) / 1000, p99: pct(0.99) / 1000, max: latencies.at(-1) / 1000 },
  server_cpu_s: cpu,
  server_cpu_us_per_delivery: delivered ? (cpu.reduce((a, b) => a + b, 0) * 1e6) / delivered : null,
};
process.stdout.write(JSON.stringify(result) + "\n");
for (const ws of [...receivers, sender]) ws.terminate();
process.exit(0);
