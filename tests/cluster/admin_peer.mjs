#!/usr/bin/env node
// The Admin UI's client side for tests/test_admin_ui.py: the official socket.io-client
// connected to the admin namespace with the options the UI's bundle uses
// (@socket.io/admin-ui ui/dist, src/App.vue: forceNew, reconnection off, withCredentials,
// transports polling+websocket, the path, the parser, auth {username, password} or
// {sessionId}), listening to every event the UI listens to.
//
//   node admin_peer.mjs URL PATH PARSER
//
// stdin, one JSON command per line:
//   {"op": "connect", "nsp": "/admin", "auth": {...}}    a new admin connection
//   {"op": "emit", "args": ["_disconnect", "/", false, "sid"]}   what the UI's buttons send
//   {"op": "disconnect"}                                  the admin socket leaves (the process stays)
//   {"op": "close"}                                       the process exits
// stdout, one JSON line per thing seen:
//   {"event": "connect"} | {"event": "connect_error", "args": [message]} |
//   {"event": "disconnect", "args": [reason]} | {"event": <admin event>, "args": [...]}

import readline from "node:readline";
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";

const [URL, PATH, PARSER] = process.argv.slice(2);
const EVENTS = [
  "session",
  "config",
  "server_stats",
  "all_sockets",
  "socket_connected",
  "socket_updated",
  "socket_disconnected",
  "room_joined",
  "room_left",
  "event_received",
  "event_sent",
];

// Buffers as {bin: [...]} so that they survive JSON.
function plain(v) {
  if (Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    return { bin: [...new Uint8Array(v.buffer ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v)] };
  }
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const out = (record) => console.log(JSON.stringify(record));
let socket = null;

function connect(nsp, auth) {
  if (socket) socket.disconnect();
  socket = io(URL + nsp, {
    forceNew: true,
    reconnection: false,
    withCredentials: true,
    transports: ["polling", "websocket"],
    path: PATH,
    parser: PARSER === "msgpack" ? msgpackParser : null,
    auth,
  });
  socket.on("connect", () => out({ event: "connect" }));
  socket.on("connect_error", (err) => out({ event: "connect_error", args: [err.message] }));
  socket.on("disconnect", (reason) => out({ event: "disconnect", args: [reason] }));
  for (const event of EVENTS) socket.on(event, (...args) => out({ event, args: plain(args) }));
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "connect") connect(cmd.nsp, cmd.auth);
  else if (cmd.op === "emit") socket.emit(...cmd.args);
  else if (cmd.op === "disconnect") socket.disconnect();
  else if (cmd.op === "close") {
    if (socket) socket.disconnect();
    process.exit(0);
  }
});
lines.on("close", () => process.exit(0));
