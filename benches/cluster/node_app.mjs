#!/usr/bin/env node
// One Node node of the cluster broadcast benchmark (benches/cluster_broadcast.py): socket.io
// with @socket.io/redis-adapter (from tests/cluster/node_modules); "bcast" from a client goes
// to every client of every node but the sender.
//   node node_app.mjs --port P --redis redis://127.0.0.1:N
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../tests/cluster/package.json"));
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const arg = (name) => process.argv[process.argv.indexOf(name) + 1];
const pub = createClient({ url: arg("--redis") });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);
const httpServer = createServer();
const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
io.on("connection", (socket) => {
  socket.on("bcast", (data) => socket.broadcast.emit("bcast", data));
});
httpServer.listen(Number(arg("--port")), "127.0.0.1");
