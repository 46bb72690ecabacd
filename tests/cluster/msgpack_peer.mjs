#!/usr/bin/env node
// Node peers of tests/test_msgpack.py, all with npm's socket.io-msgpack-parser:
//
//   node msgpack_peer.mjs server --port N --host 127.0.0.1
//       a socket.io server (the app below) until killed
//   node msgpack_peer.mjs client URL TRANSPORTS [PARSER]
//       the official socket.io-client runs the checks against URL (an app like the one
//       below); one JSON line per check: {"name", "ok", "detail"?, "error"?}
//   node msgpack_peer.mjs mismatch URL TRANSPORTS PARSER
//       one client with PARSER ("msgpack" or "default") against a server using the other:
//       prints {"name": "mismatch", "outcome": "connect" | "connect_error" | "disconnect", ...}
//
// The app (the same in tests/test_msgpack.py's ferrosio server): CONNECT with auth
// {refuse: true} is refused with message "refused" and data {why: 1}; "echo" acks its
// arguments; "join" enters a room and acks true; "shout" (room, payload) sends "shout" to the
// room except the sender, then "fence" to everyone; "ask" asks the sender "question" with
// {b: <bytes 1 2>} and acks the answer; namespace /chat has "echo" too. Every wait is bounded
// (WAIT_MS) and only guards against hangs.

import http from "node:http";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";

const WAIT_MS = 15000;
const [mode, ...args] = process.argv.slice(2);

function serve() {
  const port = Number(args[args.indexOf("--port") + 1]);
  const host = args[args.indexOf("--host") + 1];
  const httpServer = http.createServer();
  const sio = new Server(httpServer, { parser: msgpackParser, cors: { origin: "*" } });
  const refuse = (socket, next) => {
    if (socket.handshake.auth && socket.handshake.auth.refuse) {
      const err = new Error("refused");
      err.data = { why: 1 };
      return next(err);
    }
    next();
  };
  sio.use(refuse);
  sio.of("/chat").use(refuse);
  sio.on("connection", (socket) => {
    socket.on("echo", (...a) => {
      const ack = typeof a[a.length - 1] === "function" ? a.pop() : null;
      if (ack) ack(...a);
    });
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack(true);
    });
    socket.on("shout", (room, payload) => {
      socket.to(room).emit("shout", payload);
      sio.emit("fence");
    });
    socket.on("ask", async (ack) => {
      const answer = await socket.timeout(WAIT_MS).emitWithAck("question", { b: Buffer.from([1, 2]) });
      ack(answer);
    });
    socket.on("auth", (ack) => ack(socket.handshake.auth));
  });
  sio.of("/chat").on("connection", (socket) => {
    socket.on("echo", (...a) => {
      const ack = typeof a[a.length - 1] === "function" ? a.pop() : null;
      if (ack) ack(...a);
    });
  });
  httpServer.listen(port, host, () => console.log(`listening on ${host}:${port}`));
}

function connect(url, opts) {
  return io(url, { forceNew: true, reconnection: false, parser: msgpackParser, ...opts });
}

function waitFor(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${WAIT_MS} ms`)), WAIT_MS);
    socket.once(event, (...a) => {
      clearTimeout(timer);
      resolve(a);
    });
  });
}

async function connected(url, opts) {
  const socket = connect(url, opts);
  await Promise.race([
    waitFor(socket, "connect"),
    waitFor(socket, "connect_error").then(([e]) => {
      throw new Error(`connect_error: ${e.message}`);
    }),
  ]);
  return socket;
}

// What a value looks like once compared: Buffers as {bin: [...]}, the rest as it is.
// Every argument of an ack (emitWithAck resolves with the first one only).
function ackAll(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, ...res) => (err ? reject(err) : resolve(res)));
  });
}

// Keys sorted, so that comparing JSON text does not depend on their order.
function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
  return v;
}

function plain(v) {
  if (Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    return { bin: [...new Uint8Array(v.buffer ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v)] };
  }
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

async function clientChecks(url, transports) {
  const opts = { transports };
  const sockets = [];
  const checks = {
    async echo_ack() {
      const s = await connected(url, opts);
      sockets.push(s);
      const sent = [1, -2, 2.5, "s", null, true, { a: [1, { b: "c" }] }, Buffer.from([1, 2, 3]), { nested: [Buffer.from([4])] }];
      const got = await ackAll(s, "echo", ...sent);
      return { got: plain(got), want: plain(sent) };
    },
    async big_binary() {
      const s = await connected(url, opts);
      sockets.push(s);
      const big = Buffer.alloc(200_000, 7);
      const got = await s.timeout(WAIT_MS).emitWithAck("echo", big);
      return { got: [Buffer.isBuffer(got) || got instanceof ArrayBuffer, got.byteLength ?? got.length], want: [true, 200_000] };
    },
    async date_as_iso_text() {
      const s = await connected(url, opts);
      sockets.push(s);
      const got = await s.timeout(WAIT_MS).emitWithAck("echo", new Date(Date.UTC(2024, 1, 29, 13, 5, 9, 250)));
      return { got, want: "2024-02-29T13:05:09.250Z" };
    },
    async auth_reaches_the_server() {
      const s = await connected(url, { ...opts, auth: { token: "t", n: 1 } });
      sockets.push(s);
      const got = await s.timeout(WAIT_MS).emitWithAck("auth");
      return { got, want: { token: "t", n: 1 } };
    },
    async server_asks_the_client() {
      const s = await connected(url, opts);
      sockets.push(s);
      s.on("question", (q, ack) => ack({ answer: plain(q) }));
      const got = await s.timeout(WAIT_MS).emitWithAck("ask");
      return { got: plain(got), want: { answer: { b: { bin: [1, 2] } } } };
    },
    async rooms_and_broadcast() {
      const [a, b, c] = await Promise.all([connected(url, opts), connected(url, opts), connected(url, opts)]);
      sockets.push(a, b, c);
      const room = `r-${Math.random().toString(36).slice(2, 8)}`;
      await a.timeout(WAIT_MS).emitWithAck("join", room);
      await b.timeout(WAIT_MS).emitWithAck("join", room);
      const seen = { a: [], b: [], c: [] };
      for (const [name, s] of Object.entries({ a, b, c })) s.on("shout", (p) => seen[name].push(plain(p)));
      const fences = [a, b, c].map((s) => waitFor(s, "fence"));
      a.emit("shout", room, { x: Buffer.from([9]) });
      await Promise.all(fences);
      return { got: seen, want: { a: [], b: [{ x: { bin: [9] } }], c: [] } };
    },
    async namespace() {
      const s = await connected(`${url}/chat`, opts);
      sockets.push(s);
      const got = await ackAll(s, "echo", "in chat", Buffer.from([5]));
      return { got: plain(got), want: ["in chat", { bin: [5] }] };
    },
    async connect_error() {
      const s = connect(`${url}/chat`, { ...opts, auth: { refuse: true } });
      sockets.push(s);
      const [err] = await waitFor(s, "connect_error");
      return { got: { message: err.message, data: err.data }, want: { message: "refused", data: { why: 1 } } };
    },
  };
  for (const [name, check] of Object.entries(checks)) {
    try {
      const { got, want } = await check();
      const ok = JSON.stringify(canonical(got)) === JSON.stringify(canonical(want));
      console.log(JSON.stringify({ name, ok, detail: { got, want } }));
    } catch (e) {
      console.log(JSON.stringify({ name, ok: false, error: String(e && e.stack) }));
    }
  }
  for (const s of sockets) s.disconnect();
}

async function mismatch(url, transports, parserName) {
  const opts = { transports, forceNew: true, reconnection: false };
  if (parserName === "msgpack") opts.parser = msgpackParser;
  const s = io(url, opts);
  const outcome = await Promise.race([
    waitFor(s, "connect").then(() => ({ outcome: "connect" })),
    waitFor(s, "connect_error").then(([e]) => ({ outcome: "connect_error", message: e.message })),
    waitFor(s, "disconnect").then(([reason]) => ({ outcome: "disconnect", reason })),
  ]).catch((e) => ({ outcome: "timeout", error: String(e) }));
  console.log(JSON.stringify({ name: "mismatch", ...outcome }));
  s.disconnect();
}

if (mode === "server") {
  serve();
} else if (mode === "client") {
  await clientChecks(args[0], args[1].split(","));
  process.exit(0);
} else if (mode === "mismatch") {
  await mismatch(args[0], args[1].split(","), args[2]);
  process.exit(0);
} else {
  console.error("usage: msgpack_peer.mjs server|client|mismatch ...");
  process.exit(2);
}
