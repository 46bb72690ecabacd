// Chromium receiving and sending compressed WebSocket messages, for tests/test_compression.py
// (which checks the RSV1 bits on the wire through a proxy).
//
//   node tests/browser/compression.spec.mjs --url http://127.0.0.1:PORT --client <socket.io.min.js>
//
// A blank page loads the official socket.io-client bundle, connects over WebSocket only (the
// browser offers permessage-deflate by itself), asks for the events in WANTS one at a time,
// then uploads a large message and waits for its ack. Prints one JSON line:
//   {"ok": bool, "got": {event: length}, "upload_ack": n, "error": ...}
// Every wait is bounded; the whole run is < 40 s.

import { chromium } from "playwright-core";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const URL = arg("--url", "http://127.0.0.1:5055");
const CLIENT = arg("--client", null);
const EXECUTABLE = arg("--chromium", process.env.CHROMIUM_PATH || "/usr/bin/chromium");

const result = { ok: false, got: {}, upload_ack: null, error: null };
let browser = null;
const guard = setTimeout(async () => {
  result.error = "timed out";
  console.log(JSON.stringify(result));
  process.exit(1);
}, 40_000);

try {
  browser = await chromium.launch({
    executablePath: EXECUTABLE,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage();
  await page.addScriptTag({ path: CLIENT });
  const got = await page.evaluate(async (url) => {
    const socket = io(url, { transports: ["websocket"], reconnection: false });
    const once = (event) => new Promise((resolve) => socket.once(event, resolve));
    const bounded = (p) =>
      Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error("wait")), 10_000))]);
    await bounded(once("connect"));
    const out = { got: {}, upload_ack: null };
    for (const want of ["big", "small", "plain_big", "big_binary"]) {
      const arrived = once(want);
      socket.emit("want", want);
      const data = await bounded(arrived);
      out.got[want] = typeof data === "string" ? data.length : data.byteLength;
    }
    out.upload_ack = await socket.timeout(10_000).emitWithAck("upload", "u".repeat(5000) + "p".repeat(5000));
    socket.disconnect();
    return out;
  }, URL);
  Object.assign(result, got);
  result.ok = true;
} catch (err) {
  result.error = String(err);
} finally {
  if (browser) await browser.close();
  clearTimeout(guard);
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}
