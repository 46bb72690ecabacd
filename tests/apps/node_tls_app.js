#!/usr/bin/env node
// The official socket.io 4.x server over HTTPS, for tests/test_client_tls.py.
//
//   node node_tls_app.js --host 127.0.0.1 --listen PORT:KEY.pem:CERT.pem [--listen ...]
//
// One HTTPS server (with its own socket.io server) per --listen, each with its own
// certificate, so one process serves the good, wrong-host and expired certificates alike.
// Events: "echo" acknowledges with its arguments; "transport" acknowledges with the name of
// the connection's current transport (as the server sees it).
// Prints "ready" once every server listens; exits on SIGTERM.
"use strict";

const fs = require("fs");
const https = require("https");
const { Server } = require("socket.io");

const argv = process.argv.slice(2);
let host = "127.0.0.1";
const listens = [];
for (let i = 0; i < argv.length; i += 2) {
  if (argv[i] === "--host") host = argv[i + 1];
  else if (argv[i] === "--listen") listens.push(argv[i + 1]);
  else throw new Error(`unknown argument ${argv[i]}`);
}

function lastIsAck(args) {
  return args.length > 0 && typeof args[args.length - 1] === "function";
}

const servers = listens.map((spec) => {
  const [port, keyFile, certFile] = spec.split(":");
  const httpsServer = https.createServer({
    key: fs.readFileSync(keyFile),
    cert: fs.readFileSync(certFile),
  });
  const io = new Server(httpsServer, { transports: ["polling", "websocket"] });
  io.on("connection", (socket) => {
    socket.on("echo", (...args) => {
      if (lastIsAck(args)) args.pop()(...args);
    });
    socket.on("transport", (...args) => {
      if (lastIsAck(args)) args.pop()(socket.conn.transport.name);
    });
  });
  return new Promise((resolve) => httpsServer.listen(parseInt(port, 10), host, resolve));
});

Promise.all(servers).then(() => console.log("ready"));
process.on("SIGTERM", () => process.exit(0));
