#!/usr/bin/env node
// Official socket.io 4.x server with a short heartbeat (ping every 300 ms, 500 ms to answer):
// the Node twin of short_ping_app.py, for tests/test_client_heartbeat.py.
//
//   NODE_PATH=<node_modules with socket.io> node tests/apps/short_ping_app.js --port N [--host H]
//
// Handler: `echo` acknowledges with its arguments.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const httpServer = http.createServer();
const io = new Server(httpServer, { pingInterval: 300, pingTimeout: 500 });
io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });
});
process.on("SIGTERM", () => process.exit(0));
httpServer.listen(parseInt(arg("--port", "3000"), 10), arg("--host", "127.0.0.1"));
