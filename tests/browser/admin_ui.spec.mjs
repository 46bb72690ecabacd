// The Socket.IO Admin UI itself (the build shipped in @socket.io/admin-ui's ui/dist, served by
// the ferrosio server under test) in Debian's Chromium, driven by playwright-core.
//
//   node tests/browser/admin_ui.spec.mjs --url http://127.0.0.1:PORT --ui /admin-ui/ \
//        --sid SID --server-id NAME
//
// The UI is pointed at the server as a returning user would be (its saved server URL in
// localStorage), so it connects at once to /admin (the server runs with auth=False). Requests
// leaving the server (the UI's web fonts) are aborted: no network beyond 127.0.0.1.
// Prints one JSON line {"ok", "checks": {name: bool}, "errors": [...]}; every wait is bounded.

import { chromium } from "playwright-core";

const WAIT_MS = 15_000;

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const BASE = arg("--url", "").replace(/\/+$/, "");
const UI = arg("--ui", "/admin-ui/");
const SID = arg("--sid", "");
const SERVER_ID = arg("--server-id", "");
const EXECUTABLE = arg("--chromium", process.env.CHROMIUM_PATH || "/usr/bin/chromium");

const checks = { ui_loaded: false, socket_listed: false, server_listed: false, no_page_errors: false };
const errors = [];
let browser = null;
const hardStop = setTimeout(() => {
  errors.push("hard timeout");
  done(1);
}, 50_000);

async function done(code) {
  clearTimeout(hardStop);
  const ok = Object.values(checks).every(Boolean);
  process.stdout.write(JSON.stringify({ ok, checks, errors }) + "\n");
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
  } catch {
    // going away anyway
  }
  process.exit(code === 0 && ok ? 0 : 1);
}

try {
  browser = await chromium.launch({ executablePath: EXECUTABLE, args: ["--no-sandbox"] });
  const context = await browser.newContext();
  await context.route("**/*", (route) =>
    route.request().url().startsWith(BASE) ? route.continue() : route.abort(),
  );
  await context.addInitScript((base) => {
    localStorage.setItem("server_url", base);
    localStorage.setItem("namespace", "/admin");
  }, BASE);
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  await page.goto(`${BASE}${UI}#/sockets`, { timeout: WAIT_MS });
  await page.waitForSelector("#app", { timeout: WAIT_MS });
  checks.ui_loaded = (await page.title()) === "Socket.IO Admin UI";

  // The socket of the app's client, from all_sockets, in the Sockets view.
  await page.getByText(SID).first().waitFor({ timeout: WAIT_MS });
  checks.socket_listed = true;

  // This server, from server_stats, in the Servers view.
  await page.goto(`${BASE}${UI}#/servers`, { timeout: WAIT_MS });
  await page.getByText(SERVER_ID).first().waitFor({ timeout: WAIT_MS });
  checks.server_listed = true;

  checks.no_page_errors = pageErrors.length === 0;
  errors.push(...pageErrors);
  await done(0);
} catch (e) {
  errors.push(String(e && e.stack ? e.stack : e));
  await done(1);
}
