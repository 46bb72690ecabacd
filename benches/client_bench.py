#!/usr/bin/env python3
"""Client-side benchmark: emit-with-ack throughput of ferrosio's ``AsyncClient`` beside
python-socketio's ``AsyncClient``, against the same server.

    python benches/client_bench.py                      # node and ferrosio servers, ~3 min
    python benches/client_bench.py --server node --repeat 5 --out .bench/client.md
    python benches/client_bench.py --smoke              # tiny sizes: checks that it all runs

Run it with the interpreter that has ferrosio and python-socketio installed (``.venv``).

Each measurement is one client process (a fresh ``python`` running this file with
``--worker``) on its own connection to a server started once per server kind: the official
Node ``socket.io`` 4.x (``../shared/reference/node_app.js``; socket.io from ``make node-deps``,
or ``NODE_PATH``) and/or ferrosio's reference app (``examples/reference_app.py``). Both
clients use the WebSocket transport and the same event loop (uvloop when installed). The
client does ``await client.call("echo", payload)`` in ``inflight`` concurrent coroutines: a
closed loop, ``inflight`` acks outstanding at any time. After a warm-up, it counts the acks
of the measured window and its own CPU time (every thread of the process: for ferrosio that
includes the Rust I/O thread). Runs alternate ferrosio, python-socketio, ferrosio, ... and
the table reports medians.

- **client CPU µs/ack**: the client's CPU time over the window / acks in the window; the figure
  that says what the client costs. Lower is better.
- **acks/s**: a shared-machine figure (the client and the server share the cores).
- **server CPU µs/ack**: for reference; the same server serves both clients.

The shared folder is ``<repo>/../shared`` unless FERROSIO_SHARED says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FERROSIO_SHARED", REPO.parent / "shared")).resolve()
HOST = "127.0.0.1"
CLIENTS = ("ferrosio", "psio")

# (key, inflight, payload bytes)
SCENARIOS = [
    ("ack-1x32B", 1, 32),
    ("ack-64x32B", 64, 32),
    ("ack-64x1KiB", 64, 1024),
]


# ------------------------------------------------------------------ worker ----
async def _worker(
    client: str, url: str, inflight: int, size: int, warmup: float, duration: float
) -> dict[str, Any]:
    payload = "x" * size
    if client == "ferrosio":
        import ferrosio

        c: Any = ferrosio.AsyncClient(reconnection=False)
    else:
        import socketio

        c = socketio.AsyncClient(reconnection=False)
    await c.connect(url, transports=["websocket"], wait_timeout=10)
    assert await c.call("echo", payload, timeout=10) == payload

    count = 0
    running = True

    async def loop() -> None:
        nonlocal count
        while running:
            await c.call("echo", payload, timeout=30)
            count += 1

    tasks = [asyncio.ensure_future(loop()) for _ in range(inflight)]
    await asyncio.sleep(warmup)
    n0, cpu0, t0 = count, time.process_time(), time.perf_counter()
    await asyncio.sleep(duration)
    n1, cpu1, t1 = count, time.process_time(), time.perf_counter()
    running = False
    await asyncio.wait(tasks, timeout=30)
    await c.disconnect()
    acks = n1 - n0
    return {
        "client": client,
        "acks": acks,
        "seconds": t1 - t0,
        "acks_per_s": acks / (t1 - t0),
        "client_cpu_us_per_ack": (cpu1 - cpu0) * 1e6 / acks if acks else None,
    }


def worker_main(a: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        _worker(a.worker, a.url, a.inflight, a.payload_bytes, a.warmup, a.duration)
    )
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------ driver ----
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _handshake_ok(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(
                f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while b"0{" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return b"0{" in data
    except OSError:
        return False


def _node_modules() -> Path:
    for candidate in (
        os.environ.get("NODE_PATH"),
        REPO / ".deps" / "node" / "node_modules",
        REPO / ".bench" / "node" / "node_modules",
    ):
        if candidate and (Path(candidate) / "socket.io").is_dir():
            return Path(candidate)
    sys.exit("socket.io is not installed: run `make node-deps` (or set NODE_PATH)")


class Server:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = _free_port()
        env = dict(os.environ)
        if kind == "node":
            env["NODE_PATH"] = str(_node_modules())
            argv = ["node", str(SHARED / "reference" / "node_app.js")]
        else:
            argv = [sys.executable, str(REPO / "examples" / "reference_app.py")]
        argv += ["--port", str(self.port), "--host", HOST]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not _handshake_ok(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"the {kind} server did not start")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """utime + stime of the server process, from /proc."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def run_worker(
    client: str, server: Server, inflight: int, size: int, warmup: float, duration: float
) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--worker", client, "--url", server.url]
    argv += ["--inflight", str(inflight), "--payload-bytes", str(size)]
    argv += ["--warmup", str(warmup), "--duration", str(duration)]
    cpu0 = server.cpu_seconds()
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=warmup + duration + 120, check=False
    )
    cpu1 = server.cpu_seconds()
    if out.returncode != 0:
        raise RuntimeError(f"{client} worker failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # the server also worked during warm-up and connection: scale to the measured window
    total = warmup + duration
    if result["acks"]:
        result["server_cpu_us_per_ack"] = (cpu1 - cpu0) * (duration / total) * 1e6 / result["acks"]
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--server", default="both", choices=["node", "ferrosio", "both"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--only", help="scenario key prefix")
    p.add_argument("--smoke", action="store_true", help="tiny sizes; checks that it all runs")
    p.add_argument("--out", help="also write the markdown report to this file")
    # worker mode (internal)
    p.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--inflight", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--payload-bytes", type=int, default=32, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker_main(a)
        return
    if a.smoke:
        a.repeat, a.duration, a.warmup = 1, 0.5, 0.2
    kinds = ["node", "ferrosio"] if a.server == "both" else [a.server]
    scenarios = [s for s in SCENARIOS if not a.only or s[0].startswith(a.only)]

    lines = [
        "# Client emit-with-ack: ferrosio.AsyncClient vs python-socketio AsyncClient",
        "",
        f"{dt.datetime.now().isoformat(timespec='seconds')}, {platform.platform()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{a.repeat} runs each (interleaved), {a.warmup:g} s warm-up + {a.duration:g} s "
        "measured; WebSocket; medians.",
        "",
        "| server | scenario | client | acks/s | client CPU µs/ack | server CPU µs/ack |",
        "|---|---|---|---:|---:|---:|",
    ]
    summary: list[str] = []
    for kind in kinds:
        server = Server(kind)
        try:
            for key, inflight, size in scenarios:
                runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CLIENTS}
                for _ in range(a.repeat):
                    for client in CLIENTS:
                        r = run_worker(client, server, inflight, size, a.warmup, a.duration)
                        runs[client].append(r)
                        print(f"  {kind} {key} {client}: {r}", file=sys.stderr, flush=True)
                cpu: dict[str, float | None] = {}
                for client in CLIENTS:
                    cpu[client] = _median(runs[client], "client_cpu_us_per_ack")
                    lines.append(
                        f"| {kind} | {key} | {client} | "
                        f"{_fmt(_median(runs[client], 'acks_per_s'), 0)} | "
                        f"{_fmt(cpu[client], 2)} | "
                        f"{_fmt(_median(runs[client], 'server_cpu_us_per_ack'), 2)} |"
                    )
                f_cpu, p_cpu = cpu["ferrosio"], cpu["psio"]
                if f_cpu and p_cpu:
                    summary.append(
                        f"- {kind}, {key}: python-socketio spends {p_cpu / f_cpu:.1f}x "
                        "the client CPU per ack of ferrosio"
                    )
        finally:
            server.stop()
    report = "\n".join([*lines, "", *summary, ""])
    print(report)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(report)


if __name__ == "__main__":
    main()
