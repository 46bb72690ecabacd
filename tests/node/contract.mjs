#!/usr/bin/env node
// Reference-app contract checked with the official npm socket.io-client, against a live
// server. The contract is CONTRACT.md in the project's shared material (../shared/reference/,
// checked out beside the repository; not part of it).
//
//   node tests/node/contract.mjs http://127.0.0.1:PORT TRANSPORTS
//
// TRANSPORTS is the client's `transports` option as a comma list:
//   websocket          -> websocket only
//   polling            -> HTTP long-polling only
//   polling,websocket  -> start on polling, upgrade to websocket
//
// Output: one JSON object per line, one per check:
//   {"name": "...", "ok": true|false, "detail": ..., "error": "..."}
// The exit code is 0 when every check ran (pass or fail); anything else means
// the script itself broke.  Driven by tests/test_contract_node_client.py,
// which knows the list of check names (CHECKS below) and fails on any missing
// or failed check.
//
// Determinism: no assertion depends on speed.  Every wait is bounded (WAIT_MS)
// and only guards against hangs.  Negative checks ("X did NOT receive Y") use
// a fence: after the action, the same sender triggers a second emit that the
// observer is known to receive; the server delivers emits to one connection
// in order (CONTRACT "Per-sender ordering"), so once the fence has arrived
// the unwanted event can no longer arrive before it.

import assert from "node:assert/strict";
import { io } from "socket.io-client";

const [URL, TRANSPORTS_ARG] = process.argv.slice(2);
if (!URL || !TRANSPORTS_ARG) {
  console.error("usage: node contract.mjs URL TRANSPORTS");
  process.exit(2);
}
const TRANSPORTS = TRANSPORTS_ARG.split(",");
const FINAL_TRANSPORT = TRANSPORTS[TRANSPORTS.length - 1];
const UPGRADE = TRANSPORTS.length > 1;

const WAIT_MS = 20000; // upper bound for any single wait; only guards against hangs
const ASK_TIMEOUT_MS = 5000; // server-side timeout of "ask" (CONTRACT)
const MAX_PAYLOAD = 1_000_000;
const TAG = Math.random().toString(36).slice(2, 8); // unique room/event names per run

export const CHECKS = [
  "connect",
  "transport",
  "echo_ack_mixed",
  "echo_ack_no_args",
  "echo_no_ack",
  "acks_in_flight",
  "ask_ack",
  "ask_binary",
  "ask_timeout",
  "binary_ack_top_level",
  "binary_ack_nested",
  "binary_event_nested",
  "rooms_join_leave",
  "to_room_includes_sender",
  "bcast_others_only",
  "admin_echo",
  "admin_refused_wrong_token",
  "admin_refused_no_auth",
  "disconnect_me",
  "burst_1000_in_order",
  "payload_under_limit",
  "payload_over_limit",
];

// ----------------------------------------------------------------- helpers --
const sockets = new Set();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function client(nsp = "/", opts = {}) {
  const s = io(URL + nsp, {
    transports: TRANSPORTS,
    forceNew: true, // one Engine.IO connection per client
    reconnection: false,
    timeout: WAIT_MS,
    ...opts,
  });
  sockets.add(s);
  return s;
}

function connected(s) {
  if (s.connected) return Promise.resolve(s);
  return withTimeout(
    new Promise((resolve, reject) => {
      s.once("connect", () => resolve(s));
      s.once("connect_error", (err) => reject(new Error(`connect_error: ${err && err.message}`)));
    }),
    WAIT_MS,
    "connect",
  );
}

async function connectedClient(nsp = "/", opts = {}) {
  return connected(client(nsp, opts));
}

function connectError(s) {
  return withTimeout(
    new Promise((resolve, reject) => {
      s.once("connect", () => reject(new Error("connected, expected connect_error")));
      s.once("connect_error", (err) => resolve(err));
    }),
    WAIT_MS,
    "connect_error",
  );
}

// Records every occurrence of `event` on `s`; next() returns the next arg list.
class Inbox {
  constructor(s, event) {
    this.event = event;
    this.items = [];
    this.waiters = [];
    s.on(event, (...args) => {
      const w = this.waiters.shift();
      if (w) w(args);
      else this.items.push(args);
    });
  }
  get count() {
    return this.items.length;
  }
  next(ms = WAIT_MS) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return withTimeout(new Promise((r) => this.waiters.push(r)), ms, `event "${this.event}"`);
  }
}

// emit with an ack callback; resolves with the FULL list of ack args
// (emitWithAck() would only give the first one).
function ack(s, event, ...args) {
  return new Promise((resolve, reject) => {
    s.timeout(WAIT_MS).emit(event, ...args, (err, ...resp) => {
      if (err) reject(new Error(`no ack for "${event}" within ${WAIT_MS} ms`));
      else resolve(resp);
    });
  });
}

// Buffers/ArrayBuffers/typed arrays -> {"$bytes": hex} so that deepStrictEqual
// compares content, whatever binary class the client hands back.
function norm(v) {
  if (Buffer.isBuffer(v)) return { $bytes: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bytes: Buffer.from(v).toString("hex") };
  if (ArrayBuffer.isView(v)) return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = norm(v[k]);
    return o;
  }
  return v;
}

function same(actual, expected, msg) {
  assert.deepStrictEqual(norm(actual), norm(expected), msg);
}

function binaryKinds(v, acc = []) {
  if (Buffer.isBuffer(v)) acc.push("Buffer");
  else if (v instanceof ArrayBuffer) acc.push("ArrayBuffer");
  else if (ArrayBuffer.isView(v)) acc.push(v.constructor.name);
  else if (Array.isArray(v)) v.forEach((x) => binaryKinds(x, acc));
  else if (v && typeof v === "object") Object.values(v).forEach((x) => binaryKinds(x, acc));
  return acc;
}

function close(...ss) {
  for (const s of ss) {
    s.disconnect();
    sockets.delete(s);
  }
}

// ------------------------------------------------------------------ checks --
const MIXED = [
  1,
  "two",
  { three: 3, nested: { a: [1, 2, { b: null }] } },
  [4, "4", false],
  null,
  true,
  1.5,
  -7,
  "ünïcødé ✓ 😀 \"quoted\" \\ /",
  "",
  {},
  [],
];

const impl = {
  async connect() {
    const s = await connectedClient();
    assert.equal(typeof s.id, "string");
    assert.ok(s.id.length > 0, "socket id empty");
    const transport = s.io.engine.transport.name;
    close(s);
    return { id: s.id, transport };
  },

  async transport() {
    const s = await connectedClient();
    const engine = s.io.engine;
    if (UPGRADE && engine.transport.name !== "websocket") {
      await withTimeout(new Promise((r) => engine.once("upgrade", r)), WAIT_MS, "upgrade to websocket");
    }
    assert.equal(engine.transport.name, FINAL_TRANSPORT);
    // still usable after the (possible) upgrade
    same(await ack(s, "echo", "after-upgrade"), ["after-upgrade"]);
    close(s);
    return { transport: FINAL_TRANSPORT };
  },

  async echo_ack_mixed() {
    const s = await connectedClient();
    same(await ack(s, "echo", ...MIXED), MIXED);
    close(s);
  },

  async echo_ack_no_args() {
    const s = await connectedClient();
    same(await ack(s, "echo"), []);
    close(s);
  },

  async echo_no_ack() {
    const s = await connectedClient();
    const inbox = new Inbox(s, "echo");
    s.emit("echo", "a", 2, { b: [1, null] }, [true]);
    same(await inbox.next(), ["a", 2, { b: [1, null] }, [true]]);
    close(s);
  },

  async acks_in_flight() {
    // 200 acks outstanding at once: each reply must go to its own ack id
    const s = await connectedClient();
    const n = 200;
    const resps = await Promise.all(Array.from({ length: n }, (_, i) => ack(s, "echo", i, `v${i}`)));
    resps.forEach((r, i) => same(r, [i, `v${i}`], `ack #${i}`));
    close(s);
  },

  async ask_ack() {
    const s = await connectedClient();
    const ev = `q_ask_${TAG}`;
    let received = null;
    s.on(ev, (...args) => {
      const cb = args.pop();
      assert.equal(typeof cb, "function", "server did not request an ack");
      received = args;
      cb("r1", { n: 2 }, [3, null]);
    });
    const resp = await ack(s, "ask", ev, "x", 5, { y: true });
    same(received, ["x", 5, { y: true }], "args of the server's emit");
    same(resp, ["r1", { n: 2 }, [3, null]], "ask ack = client's ack args");
    close(s);
  },

  async ask_binary() {
    // server -> client BINARY_EVENT with ack id; client -> server BINARY_ACK;
    // server -> client BINARY_ACK for the original "ask".
    const s = await connectedClient();
    const ev = `q_bin_${TAG}`;
    let received = null;
    s.on(ev, (...args) => {
      const cb = args.pop();
      received = args;
      cb(Buffer.from([9, 8, 7]), { k: Buffer.from([0]), l: [Buffer.from([255, 1])] });
    });
    const resp = await ack(s, "ask", ev, Buffer.from([1, 2]), { z: Buffer.from([3]) });
    same(received, [Buffer.from([1, 2]), { z: Buffer.from([3]) }]);
    same(resp, [Buffer.from([9, 8, 7]), { k: Buffer.from([0]), l: [Buffer.from([255, 1])] }]);
    close(s);
    return { received_kinds: binaryKinds(received), ack_kinds: binaryKinds(resp) };
  },

  async ask_timeout() {
    // No handler for the asked event: socket.io-client then never acks, so the
    // server's 5 s timeout fires and it acks "ask" with "timeout".
    const s = await connectedClient();
    const ev = `q_never_${TAG}`;
    const resp = await new Promise((resolve, reject) => {
      s.timeout(ASK_TIMEOUT_MS + WAIT_MS).emit("ask", ev, 1, (err, ...r) =>
        err ? reject(new Error("no ack for ask")) : resolve(r),
      );
    });
    same(resp, ["timeout"]);
    same(await ack(s, "echo", "alive"), ["alive"], "connection still usable");
    close(s);
  },

  async binary_ack_top_level() {
    const s = await connectedClient();
    const args = [Buffer.from([1, 2, 3]), "s", Buffer.from([0, 255]), 7, Buffer.from([])];
    const resp = await ack(s, "echo", ...args);
    same(resp, args);
    close(s);
    return { kinds: binaryKinds(resp) };
  },

  async binary_ack_nested() {
    const s = await connectedClient();
    const args = [
      { a: Buffer.from([1]), b: [1, Buffer.from([2, 2]), { c: Buffer.from([3, 3, 3]) }], d: "x" },
      [Buffer.from("hello"), [Buffer.from([0])]],
    ];
    same(await ack(s, "echo", ...args), args);
    close(s);
  },

  async binary_event_nested() {
    // no ack -> server emits "echo" back as a BINARY_EVENT
    const s = await connectedClient();
    const inbox = new Inbox(s, "echo");
    const args = [Buffer.from([10, 20]), { deep: [{ bin: Buffer.from([30]) }] }, "t"];
    s.emit("echo", ...args);
    same(await inbox.next(), args);
    close(s);
  },

  async rooms_join_leave() {
    const s = await connectedClient();
    const [ra, rb] = [`r-a-${TAG}`, `r-b-${TAG}`];
    same(await ack(s, "rooms"), [["all"]], "fresh socket");
    same(await ack(s, "join", rb), [true]);
    same(await ack(s, "join", ra), [true]);
    same(await ack(s, "rooms"), [["all", ra, rb].sort()], "after joins (sorted)");
    same(await ack(s, "leave", rb), [true]);
    same(await ack(s, "rooms"), [["all", ra].sort()], "after leave");
    close(s);
  },

  async to_room_includes_sender() {
    const room = `room-${TAG}`;
    const ev = `hello_${TAG}`;
    const fence = `fence_tr_${TAG}`;
    const a = await connectedClient(); // sender, member
    const c = await connectedClient(); // member
    const b = await connectedClient(); // not a member
    const [ia, ib, ic, fb] = [new Inbox(a, ev), new Inbox(b, ev), new Inbox(c, ev), new Inbox(b, fence)];
    same(await ack(a, "join", room), [true]);
    same(await ack(c, "join", room), [true]);
    same(await ack(a, "to_room", room, ev, 1, { x: 2 }), [true]);
    same(await ia.next(), [1, { x: 2 }], "sender (member) receives");
    same(await ic.next(), [1, { x: 2 }], "other member receives");
    // fence: every socket is in "all"; once b has it, b can no longer get `ev`
    a.emit("to_room", "all", fence);
    await fb.next();
    assert.equal(ib.count, 0, "non-member received the room emit");
    close(a, b, c);
  },

  async bcast_others_only() {
    const ev = "bcast";
    const fence = `fence_bc_${TAG}`;
    const a = await connectedClient();
    const b = await connectedClient();
    const [ia, ib, fa] = [new Inbox(a, ev), new Inbox(b, ev), new Inbox(a, fence)];
    a.emit("bcast", `from-a-${TAG}`, 1);
    // other sockets may exist on the server; wait for ours
    let got;
    do got = await ib.next(); while (got[0] !== `from-a-${TAG}`);
    same(got, [`from-a-${TAG}`, 1]);
    a.emit("to_room", "all", fence);
    await fa.next();
    const mine = ia.items.filter((x) => x[0] === `from-a-${TAG}`);
    assert.equal(mine.length, 0, "sender received its own bcast");
    close(a, b);
  },

  async admin_echo() {
    const s = await connectedClient("/admin", { auth: { token: "secret" } });
    same(await ack(s, "echo", 1, "a", { b: [Buffer.from([5])] }), [1, "a", { b: [Buffer.from([5])] }]);
    const inbox = new Inbox(s, "echo");
    s.emit("echo", "no-ack", 2);
    same(await inbox.next(), ["no-ack", 2], "echo without ack on /admin");
    close(s);
  },

  async admin_refused_wrong_token() {
    const s = client("/admin", { auth: { token: "wrong" } });
    const err = await connectError(s);
    assert.equal(err.message, "unauthorized");
    assert.equal(s.connected, false);
    close(s);
    return { message: err.message, data: err.data ?? null };
  },

  async admin_refused_no_auth() {
    const s = client("/admin");
    const err = await connectError(s);
    assert.equal(err.message, "unauthorized");
    close(s);
  },

  async disconnect_me() {
    // Fast reconnection settings: if the client wrongly decided to reconnect,
    // it would do so within ~100 ms, well inside the observation window.
    const s = await connectedClient("/", {
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    });
    let connects = 1;
    s.on("connect", () => connects++);
    const reason = withTimeout(new Promise((r) => s.once("disconnect", (why) => r(why))), WAIT_MS, "disconnect");
    s.emit("disconnect_me");
    assert.equal(await reason, "io server disconnect");
    assert.equal(s.active, false, "client still active (would reconnect)");
    await sleep(1500); // observation window only: can produce a pass, never a spurious failure
    assert.equal(connects, 1, "client reconnected after io server disconnect");
    assert.equal(s.connected, false);
    close(s);
    return { reason: "io server disconnect" };
  },

  async burst_1000_in_order() {
    const s = await connectedClient();
    const inbox = new Inbox(s, "echo");
    const n = 1000;
    for (let i = 0; i < n; i++) s.emit("echo", i);
    const got = [];
    for (let i = 0; i < n; i++) got.push((await inbox.next(60000))[0]);
    same(got, Array.from({ length: n }, (_, i) => i));
    close(s);
  },

  async payload_under_limit() {
    // packet on the wire: 42<id>["echo","xxx..."] -> ~100 bytes under the limit
    const s = await connectedClient();
    const data = "x".repeat(MAX_PAYLOAD - 100);
    const resp = await ack(s, "echo", data);
    assert.equal(resp.length, 1);
    assert.equal(resp[0].length, data.length);
    assert.ok(resp[0] === data, "payload changed");
    same(await ack(s, "echo", "after"), ["after"]);
    close(s);
  },

  async payload_over_limit() {
    const b = await connectedClient(); // already connected bystander
    const bDisconnects = [];
    b.on("disconnect", (why) => bDisconnects.push(why));
    const bId = b.id;
    const a = await connectedClient();
    if (UPGRADE && a.io.engine.transport.name !== "websocket") {
      // make the transport under test deterministic: the oversized packet goes over websocket
      await withTimeout(new Promise((r) => a.io.engine.once("upgrade", r)), WAIT_MS, "upgrade");
    }
    const reason = withTimeout(new Promise((r) => a.once("disconnect", (why) => r(why))), WAIT_MS, "disconnect of the oversized sender");
    a.emit("echo", "x".repeat(MAX_PAYLOAD + 100));
    const why = await reason;
    assert.notEqual(why, "io server disconnect", "expected a transport-level close, got a namespace disconnect");
    assert.notEqual(why, "io client disconnect");
    // the bystander keeps being served, on the same connection
    same(await ack(b, "echo", "still-here"), ["still-here"]);
    assert.equal(b.connected, true);
    assert.equal(b.id, bId);
    assert.deepEqual(bDisconnects, []);
    // and the server still accepts new clients
    const c = await connectedClient();
    same(await ack(c, "echo", "new-client"), ["new-client"]);
    close(a, b, c);
    return { sender_disconnect_reason: why };
  },
};

// -------------------------------------------------------------------- main --
function report(name, ok, detail, error) {
  const r = { name, ok };
  if (detail !== undefined) r.detail = detail;
  if (error !== undefined) r.error = error;
  out(r);
}

async function run(name, timeoutMs = 120000) {
  try {
    const detail = await withTimeout(impl[name](), timeoutMs, `check ${name}`);
    report(name, true, detail ?? null);
    return true;
  } catch (e) {
    report(name, false, null, (e && e.stack) || String(e));
    return false;
  }
}

async function main() {
  for (const n of CHECKS) if (!impl[n]) throw new Error(`no implementation for ${n}`);
  if (!(await run("connect", WAIT_MS + 5000))) {
    for (const n of CHECKS.slice(1)) report(n, false, null, "not run: could not connect (see check 'connect')");
    return;
  }
  // the slow one (server-side 5 s timeout) runs alongside the others, on its own connection
  const slow = run("ask_timeout", ASK_TIMEOUT_MS + 2 * WAIT_MS);
  for (const n of CHECKS) {
    if (n === "connect" || n === "ask_timeout") continue;
    await run(n);
  }
  await slow;
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 3;
  })
  .finally(() => {
    for (const s of sockets) s.disconnect();
    setTimeout(() => process.exit(), 100);
  });
