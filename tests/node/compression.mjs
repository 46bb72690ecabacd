// The official socket.io-client against a server with compression on, for
// tests/test_compression.py (which watches the bytes on the wire through a proxy).
//
//   node tests/node/compression.mjs <url> websocket|polling
//
// websocket: the client's defaults, so `ws` offers permessage-deflate (threshold 1024).
// polling: engine.io-client's Fetch transport, so Node's fetch sends `Accept-Encoding` and
// decodes gzip (the default XHR transport of Node asks for no compression).
// Asks the server for each of the events named in WANTS one at a time (so each polling
// response holds one), then uploads a large message and waits for its ack. Prints one JSON
// line: {"ok": bool, "got": {event: length}, "upload_ack": n, "transport": name, "error": ...}.

import { io } from "socket.io-client";
import { Fetch } from "engine.io-client";

const [url, mode] = process.argv.slice(2);
const WANTS = ["big", "small", "plain_big", "big_binary"];
const UPLOAD = "u".repeat(5000) + "p".repeat(5000);
const result = { ok: false, got: {}, upload_ack: null, transport: null, error: null };

function finish(code) {
  console.log(JSON.stringify(result));
  process.exit(code);
}
setTimeout(() => {
  result.error = "timed out";
  finish(1);
}, 15_000);

const options = { reconnection: false };
if (mode === "websocket") options.transports = ["websocket"];
else options.transports = [Fetch];
const socket = io(url, options);

function next(event) {
  return new Promise((resolve) => socket.once(event, resolve));
}

socket.on("connect_error", (err) => {
  result.error = `connect_error: ${err.message}`;
  finish(1);
});
socket.on("connect", async () => {
  try {
    result.transport = socket.io.engine.transport.name;
    for (const want of WANTS) {
      const arrived = next(want);
      socket.emit("want", want);
      const data = await arrived;
      result.got[want] = typeof data === "string" ? data.length : data.byteLength;
    }
    result.upload_ack = await socket.timeout(10_000).emitWithAck("upload", UPLOAD);
    result.ok = true;
    socket.disconnect();
    finish(0);
  } catch (err) {
    result.error = String(err);
    finish(1);
  }
});
