#!/usr/bin/env node
// Official socket.io-client against `ferrosio.run(workers=N)` (tests/test_workers.py): COUNT
// clients with the given transports connect; each reports the pid of the worker that greeted
// it, acked `whoami` and `echo`, and the transport it ended on (websocket after an upgrade);
// then client 0 broadcasts and every client must receive it, whichever worker it is on.
// Prints one JSON line. Every wait bounded.
//
//   node tests/node/workers.mjs http://127.0.0.1:PORT TRANSPORTS COUNT

import { io } from "socket.io-client";

const [URL, TRANSPORTS, COUNT] = process.argv.slice(2);
const WAIT_MS = 20000;

const bounded = (promise, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), WAIT_MS)),
  ]);

const transports = TRANSPORTS.split(",");
const sockets = [];
try {
  const clients = await Promise.all(
    Array.from({ length: Number(COUNT) }, async (_, i) => {
      const socket = io(URL, { transports, reconnection: false, forceNew: true });
      sockets.push(socket);
      const hello = new Promise((resolve) => socket.once("hello", resolve));
      await bounded(
        new Promise((resolve, reject) => {
          socket.once("connect", resolve);
          socket.once("connect_error", reject);
        }),
        `connect ${i}`,
      );
      const greeted = await bounded(hello, `hello ${i}`);
      if (transports.includes("websocket") && transports.length > 1) {
        // Wait for the upgrade (a new TCP connection, wherever the kernel puts it).
        await bounded(
          new Promise((resolve) => {
            if (socket.io.engine.transport.name === "websocket") resolve();
            else socket.io.engine.once("upgrade", resolve);
          }),
          `upgrade ${i}`,
        );
      }
      const who = await bounded(socket.emitWithAck("whoami"), `whoami ${i}`);
      const echo = await bounded(socket.emitWithAck("echo", { n: i }), `echo ${i}`);
      return { hello: greeted.pid, whoami: who.pid, echo, transport: socket.io.engine.transport.name };
    }),
  );
  const received = sockets.map(
    (socket, i) =>
      bounded(
        new Promise((resolve) => socket.once("bcast", resolve)),
        `bcast to ${i}`,
      ),
  );
  const published = await bounded(sockets[0].emitWithAck("bcast", "from-node"), "bcast ack");
  const bcasts = await Promise.all(received);
  console.log(JSON.stringify({ clients, published, bcasts }));
} finally {
  for (const socket of sockets) socket.disconnect();
}
process.exit(0);
