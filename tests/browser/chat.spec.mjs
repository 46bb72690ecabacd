// Real-browser test of the chat demo (examples/chat): Debian's Chromium driven by
// playwright-core, the official socket.io-client bundle in the page, ferrosio behind it.
//
//   npm install --prefix tests/browser          # playwright-core only, no browser download
//   apt-get install -y chromium                 # /usr/bin/chromium
//   python examples/chat/server.py --port 5055 &
//   node tests/browser/chat.spec.mjs --url http://127.0.0.1:5055 [--screenshot /tmp/chat.png]
//
// Page A is forced to long-polling (?transport=polling), page B uses the defaults (polling,
// then the WebSocket upgrade). Both sign in, join one room and talk. Prints one JSON line:
//   {"ok": bool, "checks": {name: bool}, "transports": {...}, "errors": [...], "elapsed_ms": n}
// and exits 0 only if every check passed. Every wait is bounded; the whole run is < 60 s.

import { chromium } from "playwright-core";

const started = Date.now();
const WAIT_MS = 10_000; // any single wait
const TOTAL_MS = 55_000; // the whole run

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const BASE = arg("--url", "http://127.0.0.1:5055").replace(/\/+$/, "");
const SCREENSHOT = arg("--screenshot", null);
// An https page whose certificate was made for the test (its CA is not Chromium's): said explicitly.
const IGNORE_HTTPS_ERRORS = process.argv.includes("--ignore-https-errors");
const EXECUTABLE = arg("--chromium", process.env.CHROMIUM_PATH || "/usr/bin/chromium");

const ROOM = "lobby";
const ALICE = "alice";
const BOB = "bob";
const A_TEXT = "Hello from alice, over long-polling";
const B_TEXT = "Hi alice! bob here, over WebSocket";

const CHECKS = [
  "a_connected",
  "b_connected",
  "a_joined",
  "b_joined",
  "members_listed",
  "join_notice_seen",
  "a_to_b",
  "b_to_a",
  "sender_sees_own",
  "a_stays_polling",
  "b_upgraded_websocket",
  "duplicate_username_refused",
  "oversized_text_rejected",
  "no_page_errors",
];
const checks = Object.fromEntries(CHECKS.map((c) => [c, false]));
const transports = {};
const errors = [];
let browser = null;
let reported = false;

function report() {
  if (reported) return;
  reported = true;
  const ok = CHECKS.every((c) => checks[c] === true);
  const line = { ok, checks, transports, errors, elapsed_ms: Date.now() - started, url: BASE };
  process.stdout.write(JSON.stringify(line) + "\n");
  return ok;
}

async function finish(code) {
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
  } catch {
    // the browser is going away anyway
  }
  process.exit(code);
}

// Hard stop: whatever hangs, the run ends in time with a report.
const hardStop = setTimeout(() => {
  errors.push(`hard timeout after ${TOTAL_MS} ms`);
  report();
  finish(1);
}, TOTAL_MS);

// Runs one named check; a failure is recorded and the run goes on where it can.
async function check(name, fn) {
  try {
    const r = await fn();
    checks[name] = r !== false;
    if (r === false) errors.push(`${name}: condition false`);
  } catch (e) {
    errors.push(`${name}: ${String(e && e.message ? e.message : e).split("\n")[0]}`);
  }
  return checks[name];
}

const css = (s) => JSON.stringify(s); // attribute values in selectors

async function openPage(label, query) {
  const context = await browser.newContext({
    viewport: { width: 1100, height: 700 },
    ignoreHTTPSErrors: IGNORE_HTTPS_ERRORS,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (e) => errors.push(`${label} page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") {
      const where = m.location() && m.location().url ? ` (${m.location().url})` : "";
      errors.push(`${label} console error: ${m.text()}${where}`);
    }
  });
  await page.goto(BASE + "/" + query, { waitUntil: "load", timeout: WAIT_MS });
  return page;
}

async function signIn(page, name) {
  await page.fill("#username", name);
  await page.click("#connect-btn");
  await page.waitForSelector("#chat", { state: "visible" });
  await page.waitForFunction(() => window.socket && window.socket.connected, null, { timeout: WAIT_MS });
}

async function joinRoom(page, name) {
  await page.fill("#room", ROOM);
  await page.click("#join-btn");
  // our own join notice, then the member list from the ack
  await page.waitForSelector(`ul.messages[data-room=${css(ROOM)}] li.notice[data-type="join"][data-user=${css(name)}]`);
  await page.waitForSelector(`#members li[data-user=${css(name)}]`);
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send-btn");
}

async function seesMessage(page, user, text) {
  const sel = `ul.messages[data-room=${css(ROOM)}] li.message[data-user=${css(user)}]`;
  await page.locator(sel, { hasText: text }).first().waitFor({ state: "visible", timeout: WAIT_MS });
  const shown = await page.locator(sel, { hasText: text }).first().locator(".text").textContent();
  return shown === text;
}

const transportOf = (page) => page.evaluate(() => window.socket && window.socket.io.engine.transport.name);

async function main() {
  browser = await chromium.launch({
    executablePath: EXECUTABLE,
    headless: true,
    timeout: WAIT_MS * 2,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });

  const a = await openPage("A", "?transport=polling");
  const b = await openPage("B", "");

  await check("a_connected", () => signIn(a, ALICE));
  await check("b_connected", () => signIn(b, BOB));
  await check("a_joined", () => joinRoom(a, ALICE));
  await check("b_joined", () => joinRoom(b, BOB));
  await check("members_listed", async () => {
    const list = async (p) => p.$$eval("#members li", (lis) => lis.map((li) => li.dataset.user));
    await a.waitForSelector(`#members li[data-user=${css(BOB)}]`);
    const [la, lb] = [await list(a), await list(b)];
    return la.includes(ALICE) && la.includes(BOB) && lb.includes(ALICE) && lb.includes(BOB);
  });
  await check("join_notice_seen", () =>
    a.waitForSelector(`ul.messages[data-room=${css(ROOM)}] li.notice[data-type="join"][data-user=${css(BOB)}]`),
  );

  await check("a_to_b", async () => {
    await say(a, A_TEXT);
    return seesMessage(b, ALICE, A_TEXT);
  });
  await check("b_to_a", async () => {
    await say(b, B_TEXT);
    return seesMessage(a, BOB, B_TEXT);
  });
  // the sender sees its own message too (the server broadcasts to the whole room)
  await check("sender_sees_own", async () => (await seesMessage(a, ALICE, A_TEXT)) && seesMessage(b, BOB, B_TEXT));

  await check("b_upgraded_websocket", async () => {
    await b.waitForFunction(
      () => window.socket && window.socket.io.engine.transport.name === "websocket",
      null,
      { timeout: WAIT_MS },
    );
    return true;
  });
  await check("a_stays_polling", async () => {
    // long enough for an upgrade to have happened if the client had been allowed one
    await a.waitForTimeout(1500);
    transports.a = await transportOf(a);
    return transports.a === "polling" && (await a.evaluate(() => window.socket.connected));
  });
  transports.b = await transportOf(b).catch(() => null);

  await check("duplicate_username_refused", async () => {
    const c = await openPage("C", "");
    await c.fill("#username", ALICE.toUpperCase());
    // The refused page closes its socket; socket.io-client may still have a polling request on
    // the wire, and a request for a closed session gets 400 (as on the official server). The
    // browser logs that as a console error of this page; it is not a page error, so only that
    // exact message, from this page, from here on, is discounted.
    const before = errors.length;
    await c.click("#connect-btn");
    await c.waitForSelector("#login-error:not([hidden])");
    const msg = await c.textContent("#login-error");
    const stillOut = await c.isVisible("#login");
    await c.context().close();
    for (let i = errors.length - 1; i >= before; i--) {
      if (/^C console error: Failed to load resource: .* 400 /.test(errors[i])) errors.splice(i, 1);
    }
    return /taken/i.test(msg) && stillOut;
  });

  await check("oversized_text_rejected", async () => {
    const res = await b.evaluate(
      (room) => window.socket.timeout(5000).emitWithAck("message", { room, text: "x".repeat(2001) }),
      ROOM,
    );
    return res && res.ok === false && typeof res.error === "string";
  });

  if (SCREENSHOT) {
    try {
      await b.screenshot({ path: SCREENSHOT }); // bob's page; alice's beside it as NAME-a.png
      await a.screenshot({ path: SCREENSHOT.replace(/(\.png)?$/, "-a.png") });
    } catch (e) {
      errors.push(`screenshot: ${e.message}`);
    }
  }

  checks.no_page_errors = !errors.some((e) => / (page|console) error: /.test(e));
}

main()
  .catch((e) => errors.push(`fatal: ${String(e && e.message ? e.message : e).split("\n")[0]}`))
  .then(() => {
    clearTimeout(hardStop);
    const ok = report();
    return finish(ok ? 0 : 1);
  });
