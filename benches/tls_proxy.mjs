// node benches/tls_proxy.mjs LISTEN_PORT TARGET_PORT [CA_FILE]: plain TCP in, plain TCP or TLS (trusting CA_FILE) out.
// Lets the plain-WebSocket load generator (sio-load.js) measure a TLS server: see docs/design.md.
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
const [listen, target, ca] = process.argv.slice(2);
net.createServer((c) => {
  c.setNoDelay(true);
  const t = ca
    ? tls.connect({ host: "127.0.0.1", port: +target, ca: readFileSync(ca), servername: "localhost" })
    : net.connect({ host: "127.0.0.1", port: +target });
  t.setNoDelay && t.setNoDelay(true);
  c.pipe(t); t.pipe(c);
  c.on("error", () => t.destroy()); t.on("error", () => c.destroy());
}).listen(+listen, "127.0.0.1", () => console.log("ready"));
