#!/usr/bin/env node
// The Node side of the Redis cluster tests (tests/test_cluster_redis.py), in one process:
// a socket.io server on --port with @socket.io/redis-adapter, the @socket.io/redis-emitter,
// and official socket.io-client clients connected to any node of the cluster.
//
//   REDIS_URL=redis://127.0.0.1:N node tests/cluster/peer.mjs --port P --host 127.0.0.1
//
// Driven by JSON lines on stdin, answered by JSON lines on stdout ({"id", "ok", ...}):
//   {"op":"client","name","url","rooms"}        connect a client; the server it reaches
//                                               joins it to `rooms` (from its auth)
//   {"op":"received","name"}                    what that client got: [[event, ...args]]
//   {"op":"emit","event","args","rooms","except","local"}   broadcast from this Node server
//   {"op":"emitter","event","args","rooms","except","nsp"}  publish with the redis emitter
//   {"op":"bulk","from","action","rooms","except","names"}  socketsJoin (action "join"),
//                                               socketsLeave ("leave"), disconnectSockets
//                                               ("disconnect") from this server or the emitter
//                                               (from "emitter"); a client's disconnect is
//                                               recorded as ["__disconnect", reason]
//   {"op":"fetch","rooms","except","nsp"}       io.in(rooms).except(..).fetchSockets():
//                                               {sockets: [{id, rooms, handshake, data}]}
//   {"op":"allRooms","nsp"}                     {rooms: [...]} (adapter.allRooms())
//   {"op":"serverSideEmit","event","args"}      io.serverSideEmit(event, ...args)
//   {"op":"serverSideCall","event","args"}      io.serverSideEmitWithAck: {responses} or
//                                               {error}
//   {"op":"serverSideReceived"}                 {events: [[event, ...args]]} this server got
//   {"op":"callAll","event","args","rooms","timeout"}  io.to(rooms).timeout(ms)
//                                               .emitWithAck(): {responses} or {error}
//   {"op":"close"}                              disconnect the clients
// Every client answers a "question" event with "<name>:<first arg>". This server answers
// the server-side event "ss-ask" with {"node": [...args]}; it records "ss-hello" and
// "ss-ask"; "ss-never" is recorded and never answered.
// Binary values are {"$bin": "<hex>"} in both directions.

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const port = Number(arg("--port"));
const host = arg("--host") || "127.0.0.1";
const redisUrl = process.env.REDIS_URL;

// Reconnect quickly and forever: the tests restart Redis under the nodes.
const redisOptions = {
  url: redisUrl,
  socket: { reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 1000) },
};
const pub = createClient(redisOptions);
const sub = pub.duplicate();
const emitterClient = pub.duplicate();
for (const c of [pub, sub, emitterClient]) {
  c.on("error", () => {}); // outages are expected; the client reconnects by itself
}
await Promise.all([pub.connect(), sub.connect(), emitterClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
const onConnection = (socket) => {
  socket.data = { server: "node" };
  for (const room of socket.handshake.auth?.rooms || []) socket.join(room);
};
io.on("connection", onConnection);
io.of("/chat").on("connection", onConnection);
const serverSide = [];
io.on("ss-hello", (...args) => serverSide.push(["ss-hello", ...args]));
io.on("ss-ask", (...args) => {
  const callback = args.pop();
  serverSide.push(["ss-ask", ...args]);
  callback({ node: args });
});
io.on("ss-never", (...args) => {
  args.pop();
  serverSide.push(["ss-never", ...args]);
});
const emitter = new Emitter(emitterClient);

const toWire = (v) => {
  if (Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    return { $bin: Buffer.from(v instanceof ArrayBuffer ? new Uint8Array(v) : v).toString("hex") };
  }
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toWire(x)]));
  }
  return v;
};
const fromWire = (v) => {
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === "object") {
    if (typeof v.$bin === "string") return Buffer.from(v.$bin, "hex");
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromWire(x)]));
  }
  return v;
};

const clients = new Map(); // name -> {socket, got}

const ops = {
  async client({ name, url, rooms, nsp }) {
    const socket = connect(url + (nsp || ""), {
      transports: ["websocket"],
      auth: { rooms: rooms || [] },
      reconnection: false,
      forceNew: true,
    });
    const entry = { socket, got: [] };
    socket.onAny((event, ...args) => entry.got.push([event, ...args.map(toWire)]));
    socket.on("disconnect", (reason) => entry.got.push(["__disconnect", reason]));
    socket.on("question", (...args) => {
      const callback = args.pop();
      if (typeof callback === "function") callback(`${name}:${args[0]}`);
    });
    clients.set(name, entry);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("connect timeout")), 10000);
      socket.once("connect", () => { clearTimeout(timer); resolve(); });
      socket.once("connect_error", (e) => { clearTimeout(timer); reject(e); });
    });
    return { sid: socket.id };
  },
  async received({ name }) {
    return { events: clients.get(name).got };
  },
  async emit({ event, args, rooms, except, local, nsp }) {
    let op = io.of(nsp || "/");
    if (local) op = op.local;
    if (rooms && rooms.length) op = op.to(rooms);
    if (except && except.length) op = op.except(except);
    op.emit(event, ...fromWire(args || []));
    return {};
  },
  async emitter({ event, args, rooms, except, nsp }) {
    let op = emitter.of(nsp || "/");
    if (rooms && rooms.length) op = op.to(rooms);
    if (except && except.length) op = op.except(except);
    op.emit(event, ...fromWire(args || []));
    await emitterClient.ping(); // published before the answer (see bulk)
    return {};
  },
  // socketsJoin / socketsLeave / disconnectSockets, from this server or the emitter.
  async bulk({ from, action, rooms, except, names, nsp }) {
    let op = from === "emitter" ? emitter.of(nsp || "/") : io.of(nsp || "/");
    if (rooms && rooms.length) op = op.in(rooms);
    if (except && except.length) op = op.except(except);
    if (action === "join") op.socketsJoin(names);
    else if (action === "leave") op.socketsLeave(names);
    else op.disconnectSockets();
    // Once Redis has answered a later command on the same connection, the request is
    // published: what the test does next is ordered after it.
    await (from === "emitter" ? emitterClient : pub).ping();
    return {};
  },
  async fetch({ rooms, except, nsp }) {
    let op = io.of(nsp || "/");
    if (rooms && rooms.length) op = op.in(rooms);
    if (except && except.length) op = op.except(except);
    const sockets = await op.fetchSockets();
    return {
      sockets: sockets.map((s) => ({
        id: s.id,
        rooms: [...s.rooms],
        handshake: toWire(s.handshake),
        data: toWire(s.data),
      })),
    };
  },
  async allRooms({ nsp }) {
    return { rooms: [...(await io.of(nsp || "/").adapter.allRooms())] };
  },
  async serverSideEmit({ event, args }) {
    io.serverSideEmit(event, ...fromWire(args || []));
    await pub.ping();
    return {};
  },
  async serverSideCall({ event, args }) {
    try {
      return { responses: toWire(await io.serverSideEmitWithAck(event, ...fromWire(args || []))) };
    } catch (e) {
      return { error: String(e) };
    }
  },
  async serverSideReceived() {
    return { events: toWire(serverSide) };
  },
  async callAll({ event, args, rooms, timeout }) {
    let op = io.timeout(timeout || 5000);
    if (rooms && rooms.length) op = op.to(rooms);
    try {
      return { responses: toWire(await op.emitWithAck(event, ...fromWire(args || []))) };
    } catch (e) {
      return { error: String(e) };
    }
  },
  async close() {
    for (const { socket } of clients.values()) socket.disconnect();
    clients.clear();
    return {};
  },
};

httpServer.listen(port, host, () => {
  console.error(`node cluster peer on ${host}:${port}, redis ${redisUrl}`);
});

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  try {
    const result = await ops[msg.op](msg);
    process.stdout.write(JSON.stringify({ id: msg.id, ok: true, ...result }) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: msg.id, ok: false, error: String(e) }) + "\n");
  }
});
lines.on("close", () => process.exit(0));
