#!/usr/bin/env node
// The official Node socket.io server with connectionStateRecovery, for ferrosio's AsyncClient
// (tests/test_recovery.py). Lives here because tests/cluster has socket.io installed.
//
//   node tests/cluster/recovery_server.mjs PORT
//
// Every socket joins room "r" on its first connection. Prints one JSON object per line:
//   {"listening": port}
//   {"connection": id, "recovered": bool}
//   {"disconnect": id, "reason": reason}
//   {"emitted": n}                         after the "emit" command
// Commands, one JSON object per line on stdin:
//   {"cmd": "emit", "count": n}   emits "tick" i to everyone and "rtick" i to room "r", for
//                                 the next n values of i
//   {"cmd": "quit"}

import { createServer } from "node:http";
import readline from "node:readline";
import { Server } from "socket.io";

const port = Number(process.argv[2]);
const print = (o) => console.log(JSON.stringify(o));
const guard = setTimeout(() => process.exit(0), 120000);

const httpServer = createServer();
const io = new Server(httpServer, {
  connectionStateRecovery: { maxDisconnectionDuration: 60000 },
  pingInterval: 2000,
  pingTimeout: 2000,
});
io.on("connection", (socket) => {
  print({ connection: socket.id, recovered: socket.recovered });
  if (!socket.recovered) socket.join("r");
  socket.on("disconnect", (reason) => print({ disconnect: socket.id, reason }));
});

let next = 0;
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const { cmd, count } = JSON.parse(line);
  if (cmd === "emit") {
    for (let k = 0; k < count; k++, next++) {
      io.emit("tick", next);
      io.to("r").emit("rtick", next);
    }
    print({ emitted: next });
  } else if (cmd === "quit") {
    clearTimeout(guard);
    io.close();
    process.exit(0);
  }
});
httpServer.listen(port, "127.0.0.1", () => print({ listening: port }));
