#!/usr/bin/env node
// The official socket.io-client on a port shared with an ASGI app (tests/test_one_port.py):
// connects with the given transports, asks for an echo ack while fetching an HTTP route of
// the app on the same port, and prints one JSON line with what it got. Every wait bounded.
//
//   node tests/node/one_port.mjs http://127.0.0.1:PORT TRANSPORTS /http/path

import { io } from "socket.io-client";

const [URL, TRANSPORTS, HTTP_PATH] = process.argv.slice(2);
const WAIT_MS = 20000;

const bounded = (promise, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), WAIT_MS)),
  ]);

const socket = io(URL, { transports: TRANSPORTS.split(","), reconnection: false });
try {
  await bounded(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    "connect",
  );
  const [ack, http] = await Promise.all([
    bounded(socket.emitWithAck("echo", { from: "node" }), "ack"),
    bounded(
      fetch(URL + HTTP_PATH).then(async (r) => ({ status: r.status, body: await r.json() })),
      "fetch",
    ),
  ]);
  console.log(JSON.stringify({ ack, http, transport: socket.io.engine.transport.name }));
} finally {
  socket.disconnect();
}
// The bounding timers and fetch's keep-alive connection would keep Node alive.
process.exit(0);
