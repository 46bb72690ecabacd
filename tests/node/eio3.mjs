#!/usr/bin/env node
// socket.io-client 2.x (Engine.IO v3 / Socket.IO v4), driven line by line from
// tests/test_eio3.py: it reads one JSON command per line on stdin and writes one JSON line
// per thing that happened on stdout.
//
//   node tests/node/eio3.mjs
//
// Commands ({"op": ..., "id": <client name>, ...}):
//   connect    {url, opts}: io(url, {forceNew: true, reconnection: false, ...opts})
//              -> {id, ev: "connect", transport, sid} once connected (after the upgrade when
//                 opts.transports has both), or {id, ev: "error", data} if refused
//   emit       {event, args, ack}: socket.emit(event, ...args[, cb])
//              -> {id, ev: "ack", event, args} when ack is true
//   close      socket.close()
//   stop_pinging   the client stops its heartbeat (and stops watching the server's)
// Events reported by every client:
//   {id, ev: "event", name, args}: an event from the server; if the server asked for an ack,
//     the client answers ["got", name, ...args]
//   {id, ev: "disconnect", reason}
// Binary data travels in JSON as {"$bin": "<base64>"}, anywhere in the arguments.

import { createInterface } from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const io = require("socket.io-client-v2");

const sockets = new Map();

function out(obj) {
  process.stdout.write(JSON.stringify(obj, (_, v) => v) + "\n");
}

function toWire(v) {
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === "object") {
    if (typeof v.$bin === "string") return Buffer.from(v.$bin, "base64");
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toWire(x)]));
  }
  return v;
}

function fromWire(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("base64") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("base64") };
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromWire(x)]));
  }
  return v;
}

function connect(cmd) {
  const { id, url, opts } = cmd;
  const socket = io(url, { forceNew: true, reconnection: false, ...(opts || {}) });
  sockets.set(id, socket);
  const upgrading = (opts?.transports || ["polling", "websocket"]).length > 1;
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    out({ id, ev: "connect", transport: socket.io.engine.transport.name, sid: socket.id });
  };
  socket.on("connect", () => {
    if (!upgrading || socket.io.engine.transport.name === "websocket") return report();
    socket.io.engine.once("upgrade", report);
  });
  socket.on("error", (data) => out({ id, ev: "error", data: fromWire(data) }));
  socket.on("connect_error", (err) => out({ id, ev: "connect_error", data: String(err) }));
  socket.on("disconnect", (reason) => out({ id, ev: "disconnect", reason }));
  // Every event, whatever its name (2.x has no onAny): reported, and acked when asked.
  socket.onevent = function (packet) {
    const [name, ...args] = packet.data || [];
    out({ id, ev: "event", name, args: fromWire(args) });
    if (packet.id != null) this.ack(packet.id)("got", name, ...args);
  };
}

function run(cmd) {
  const socket = sockets.get(cmd.id);
  switch (cmd.op) {
    case "connect":
      return connect(cmd);
    case "emit": {
      const args = toWire(cmd.args || []);
      if (cmd.ack) {
        socket.emit(cmd.event, ...args, (...answer) =>
          out({ id: cmd.id, ev: "ack", event: cmd.event, args: fromWire(answer) }),
        );
      } else {
        socket.emit(cmd.event, ...args);
      }
      return;
    }
    case "close":
      return socket.close();
    case "stop_pinging": {
      const engine = socket.io.engine;
      clearTimeout(engine.pingIntervalTimer);
      clearTimeout(engine.pingTimeoutTimer);
      engine.setPing = () => {};
      engine.onHeartbeat = () => {};
      out({ id: cmd.id, ev: "stopped_pinging" });
      return;
    }
    case "exit":
      for (const s of sockets.values()) s.close();
      process.exit(0);
  }
  out({ ev: "bad_command", cmd });
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  try {
    run(JSON.parse(line));
  } catch (e) {
    out({ ev: "driver_error", error: String(e && e.stack) });
  }
});
rl.on("close", () => process.exit(0));
