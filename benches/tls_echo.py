"""Server CPU per message with and without TLS: echo-ack, 100 connections x 16 in flight.

The shared load generator (``sio-load.js``) speaks plain WebSocket only, so this uses ferrosio's
own AsyncClient load (``ferrosio.testing.drive_load``, clients in a child process) against the
reference app (``examples/reference_app.py``) run by ``ferrosio.run`` in a child process, plain
and over TLS (a CA and certificate made with ``trustme``; the clients trust it through
``SSL_CERT_FILE``), interleaved plain, TLS, plain, TLS... Prints server CPU µs per ack.

    .venv/bin/python benches/tls_echo.py [--repeat 3] [--duration 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

from ferrosio.testing import drive_load

REPO = Path(__file__).resolve().parent.parent
SERVER = """
import sys
sys.path.insert(0, {examples!r})
import ferrosio, reference_app
tls = {tls!r}
ferrosio.run(reference_app.sio, host="127.0.0.1", port={port},
             ssl_certfile=tls and tls[0], ssl_keyfile=tls and tls[1])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


def measure(tls: tuple[str, str] | None, args: argparse.Namespace) -> float:
    port = free_port()
    code = SERVER.format(examples=str(REPO / "examples"), tls=tls, port=port)
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        scheme = "https" if tls else "http"
        report = drive_load(
            f"{scheme}://127.0.0.1:{port}",
            "echo",
            "x" * 32,
            clients=args.conns,
            inflight=args.inflight,
            duration=args.duration,
            warmup=args.warmup,
            server_pid=proc.pid,
        )
        if report.errors:
            raise RuntimeError(f"{report.errors} errors")
        return report.server_cpu_us_per_message
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--inflight", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        ca_file, cert, key = Path(tmp, "ca.pem"), Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        ca.cert_pem.write_to_path(str(ca_file))
        cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        os.environ["SSL_CERT_FILE"] = str(ca_file)  # the load clients trust the test CA
        results: dict[str, list[float]] = {"plain": [], "tls": []}
        for _ in range(args.repeat):
            results["plain"].append(measure(None, args))
            results["tls"].append(measure((str(cert), str(key)), args))
            print(f"plain {results['plain'][-1]:.2f} µs/ack, tls {results['tls'][-1]:.2f}")
    plain, tls = statistics.median(results["plain"]), statistics.median(results["tls"])
    print(f"| {args.conns} x {args.inflight} | plain | TLS | TLS / plain |")
    print(f"| median µs/ack | {plain:.2f} | {tls:.2f} | {tls / plain:.2f} |")
    print(f"| all runs | {results['plain']} | {results['tls']} | |")


if __name__ == "__main__":
    main()
