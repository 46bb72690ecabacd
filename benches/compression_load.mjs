// Load with the official socket.io-client, permessage-deflate offered or not, for
// benches/compression.py: what compression costs the server (CPU per message) and saves on
// the wire (bytes per message). The shared generator (sio-load.js) speaks no
// permessage-deflate, hence this one.
//
//   node benches/compression_load.mjs --port P --server-pid PID --scenario echo-ack|broadcast
//        [--deflate] [--conns 50] [--inflight 4] [--payload-bytes 2000] [--duration 6]
//        [--warmup 2] [--rate 200]
//
// echo-ack: each connection keeps --inflight `echo` emits with an ack in flight (the reference
// app acks with the same data). broadcast: one more connection emits `bcast` --rate times a
// second; every other connection receives it. The payload is JSON of about --payload-bytes
// bytes that looks like application data (objects with repeated keys, varying values).
// Prints one JSON line: messages/s, server CPU µs per message, wire bytes per message.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

// The client the tests install (npm install --prefix tests/node).
const require = createRequire(new URL("../tests/node/package.json", import.meta.url));
const { io } = require("socket.io-client");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const PORT = Number(arg("--port", "3000"));
const PID = Number(arg("--server-pid", "0"));
const SCENARIO = arg("--scenario", "echo-ack");
const DEFLATE = process.argv.includes("--deflate");
const CONNS = Number(arg("--conns", "50"));
const INFLIGHT = Number(arg("--inflight", "4"));
const PAYLOAD = Number(arg("--payload-bytes", "2000"));
const DURATION = Number(arg("--duration", "6"));
const WARMUP = Number(arg("--warmup", "2"));
const RATE = Number(arg("--rate", "200"));

const TICKS = 100; // clock ticks per second of /proc/<pid>/stat (Linux USER_HZ)
function serverCpuSeconds() {
  const stat = readFileSync(`/proc/${PID}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime + stime
}

let seq = 0;
function payload() {
  const items = [];
  let size = 2;
  while (size < PAYLOAD) {
    const item = { id: seq++, user: `user-${seq % 97}`, room: "lobby", kind: "message",
      text: `hello number ${(seq * 7919) % 100000}`, ts: 1764700000000 + seq };
    size += JSON.stringify(item).length + 1;
    items.push(item);
  }
  return items;
}

function connect() {
  return new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${PORT}`, {
      transports: ["websocket"],
      reconnection: false,
      perMessageDeflate: DEFLATE ? { threshold: 1024 } : false,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

function wire(sockets) {
  let bytes = 0;
  for (const s of sockets) {
    const raw = s.io.engine.transport.ws._socket;
    bytes += raw.bytesRead + raw.bytesWritten;
  }
  return bytes;
}

const guard = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out" }));
  process.exit(1);
}, (DURATION + WARMUP + 60) * 1000);

const sockets = [];
for (let i = 0; i < CONNS; i++) sockets.push(await connect());
const negotiated = sockets[0].io.engine.transport.ws._extensions["permessage-deflate"] !== undefined;
let counted = 0;
let running = true;
const data = payload();

if (SCENARIO === "echo-ack") {
  for (const s of sockets) {
    const loop = async () => {
      while (running) {
        await s.emitWithAck("echo", data);
        counted++;
      }
    };
    for (let k = 0; k < INFLIGHT; k++) loop();
  }
} else {
  for (const s of sockets) s.on("bcast", () => counted++);
  const sender = await connect();
  sockets.push(sender);
  const timer = setInterval(() => running && sender.emit("bcast", data), 1000 / RATE);
  setTimeout(() => clearInterval(timer), (WARMUP + DURATION) * 1000);
}

await new Promise((r) => setTimeout(r, WARMUP * 1000));
const c0 = counted, cpu0 = serverCpuSeconds(), w0 = wire(sockets), t0 = Date.now();
await new Promise((r) => setTimeout(r, DURATION * 1000));
const c1 = counted, cpu1 = serverCpuSeconds(), w1 = wire(sockets), t1 = Date.now();
running = false;
const messages = c1 - c0;
console.log(JSON.stringify({
  ok: messages > 0,
  scenario: SCENARIO,
  deflate_offered: DEFLATE,
  deflate_negotiated: negotiated,
  payload_json_bytes: JSON.stringify(data).length,
  messages,
  messages_per_s: messages / ((t1 - t0) / 1000),
  server_cpu_us_per_msg: ((cpu1 - cpu0) * 1e6) / messages,
  wire_bytes_per_msg: (w1 - w0) / messages,
}));
clearTimeout(guard);
for (const s of sockets) s.disconnect();
process.exit(0);
