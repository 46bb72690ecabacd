#!/usr/bin/env node
// Socket.IO 4.x features of ferrosio's server, seen by the official npm socket.io-client.
// Driven by tests/test_features.py, which runs the server in its own loop.
//
//   node tests/node/features.mjs MODE URL [ARG]
//
// Output: one JSON object per line. Every wait is bounded (WAIT_MS); the script exits 0
// when it ran to the end, whatever it saw (the pytest side judges what it printed).
//
// Modes:
//   multi-ack URL N   N sockets join room "r" (event "join", acked); each answers "ask"
//                     with `${x}:${i}`, except socket 0 which never answers when the first
//                     argument of "ask" is "silent". Prints {"ready":true,"sids":[...]}, then
//                     waits for "bye" (sent to everyone) and disconnects.
//   refused URL       connects with auth {token:"bad"}: prints the connect_error's message
//                     and data.
//   dynamic URL       joins /dynamic-42 (accepted by a pattern) and asks "whoami"; joins
//                     /other (no such namespace): prints both outcomes.
//   packets URL       emits "allowed" and "blocked" with acks (the server drops "blocked"
//                     in a packet middleware): prints the ack or the timeout.

import { io } from "socket.io-client";

const [MODE, URL, ARG] = process.argv.slice(2);
const WAIT_MS = 15000;
const opts = { transports: ["websocket"], reconnection: false, forceNew: true };
const print = (o) => console.log(JSON.stringify(o));
const guard = setTimeout(() => { print({ error: "hang guard" }); process.exit(0); }, 60000);

function connected(socket) {
  return new Promise((resolve) => {
    socket.on("connect", () => resolve({ ok: true }));
    socket.on("connect_error", (err) => resolve({ ok: false, message: err.message, data: err.data ?? null }));
  });
}

async function multiAck() {
  const n = Number(ARG);
  const sockets = [];
  const byes = [];
  for (let i = 0; i < n; i++) {
    const s = io(URL, opts);
    s.on("ask", (x, cb) => {
      if (x === "silent" && i === 0) return;
      cb(`${x}:${i}`);
    });
    byes.push(new Promise((resolve) => s.on("bye", resolve)));
    const r = await connected(s);
    if (!r.ok) { print({ error: "connect", detail: r }); process.exit(0); }
    await s.timeout(WAIT_MS).emitWithAck("join", "r");
    sockets.push(s);
  }
  print({ ready: true, sids: sockets.map((s) => s.id) });
  await Promise.race([Promise.all(byes), new Promise((r) => setTimeout(r, WAIT_MS * 2))]);
  for (const s of sockets) s.disconnect();
  print({ done: true });
}

async function refused() {
  const s = io(URL, { ...opts, auth: { token: "bad" } });
  print({ result: await connected(s) });
  s.close();
}

async function dynamic() {
  const s = io(URL + "/dynamic-42", opts);
  const r = await connected(s);
  let whoami = null;
  if (r.ok) whoami = await s.timeout(WAIT_MS).emitWithAck("whoami", 1);
  const other = io(URL + "/other", opts);
  print({ dynamic: r, whoami, other: await connected(other) });
  s.close();
  other.close();
}

async function packets() {
  const s = io(URL, opts);
  await connected(s);
  const allowed = await s.timeout(WAIT_MS).emitWithAck("allowed", 1);
  let blocked;
  try {
    blocked = { ack: await s.timeout(1000).emitWithAck("blocked", 2) };
  } catch (err) {
    blocked = { error: err.message };
  }
  // the fence: a later event still goes through
  const after = await s.timeout(WAIT_MS).emitWithAck("allowed", 3);
  print({ allowed, blocked, after });
  s.close();
}

const modes = { "multi-ack": multiAck, refused, dynamic, packets };
await modes[MODE]();
clearTimeout(guard);
process.exit(0);
