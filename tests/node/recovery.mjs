#!/usr/bin/env node
// The official npm socket.io-client against a server with connection state recovery.
// Driven by tests/test_recovery.py.
//
//   node tests/node/recovery.mjs URL TRANSPORTS
//
// TRANSPORTS: "websocket", "polling" or "polling,websocket". One socket, reconnecting
// quickly. It records the arguments of every "tick" and "rtick" event and prints one JSON
// object per line:
//   {"connect": id, "recovered": bool}           on every "connect"
//   {"disconnect": reason}                       on every "disconnect"
//   {"joined": true}                             once the first connection joined room "r"
//   {"report": {...}}                            on the "report" command
// Commands, one JSON object per line on stdin:
//   {"cmd": "close"}    closes the Engine.IO connection (socket.io.engine.close()): the
//                       socket sees "transport close" and reconnects, as after a network loss
//   {"cmd": "report"}   prints what was received
//   {"cmd": "quit"}     disconnects and exits
// Every wait is bounded by a hang guard.

import { io } from "socket.io-client";
import readline from "node:readline";

const [URL, TRANSPORTS] = process.argv.slice(2);
const print = (o) => console.log(JSON.stringify(o));
const guard = setTimeout(() => { print({ error: "hang guard" }); process.exit(0); }, 120000);

const socket = io(URL, {
  transports: TRANSPORTS.split(","),
  reconnectionDelay: 50,
  reconnectionDelayMax: 100,
  randomizationFactor: 0,
  forceNew: true,
});
const ticks = [];
const rticks = [];
const args = [];
let joined = false;

socket.on("connect", async () => {
  print({ connect: socket.id, recovered: socket.recovered });
  if (!joined) {
    joined = true;
    await socket.timeout(15000).emitWithAck("join", "r");
    print({ joined: true });
  }
});
socket.on("disconnect", (reason) => print({ disconnect: reason }));
socket.on("tick", (n, ...rest) => { ticks.push(n); if (args.length < 5) args.push(rest); });
socket.on("rtick", (n) => rticks.push(n));

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const { cmd } = JSON.parse(line);
  if (cmd === "close") {
    socket.io.engine.close();
  } else if (cmd === "report") {
    print({ report: { ticks, rticks, args, id: socket.id, connected: socket.connected } });
  } else if (cmd === "quit") {
    socket.disconnect();
    clearTimeout(guard);
    rl.close();
    process.exit(0);
  }
});
