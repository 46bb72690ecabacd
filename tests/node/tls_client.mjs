// The official socket.io-client over TLS, for tests/test_server_tls.py.
// Usage: node tls_client.mjs URL TRANSPORTS CA_FILE [CERT_FILE KEY_FILE]
// Connects (trusting CA_FILE, presenting the client certificate if given), sends "echo" with an
// ack, waits for the upgrade when both transports are allowed, prints one JSON line
// {ok, echoed, transport} or {ok: false, error}, and exits. Every wait is bounded.
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";

const [url, transports, caFile, certFile, keyFile] = process.argv.slice(2);
const opts = {
  transports: transports.split(","),
  ca: readFileSync(caFile),
  reconnection: false,
  timeout: 10000,
};
if (certFile) {
  opts.cert = readFileSync(certFile);
  opts.key = readFileSync(keyFile);
}
const done = (result) => {
  console.log(JSON.stringify(result));
  process.exit(0);
};
setTimeout(() => done({ ok: false, error: "timeout" }), 20000).unref();
const socket = io(url, opts);
socket.on("connect_error", (err) => done({ ok: false, error: String(err && (err.description || err.message || err)) }));
socket.on("connect", async () => {
  try {
    const payload = { text: "héllo", n: [1, 2.5, null] };
    const echoed = await socket.timeout(10000).emitWithAck("echo", payload);
    if (opts.transports.length > 1) {
      const deadline = Date.now() + 10000;
      while (socket.io.engine.transport.name !== "websocket" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const again = await socket.timeout(10000).emitWithAck("echo", payload);
    const transport = socket.io.engine.transport.name;
    socket.disconnect();
    done({ ok: true, echoed, again, transport });
  } catch (err) {
    done({ ok: false, error: String(err) });
  }
});
