#!/usr/bin/env python3
"""Connection state recovery: the memory a server keeps per lost socket.

    python benches/recovery.py [--sockets 2000] [--missed 100] [--rounds 3] [--off]

Starts a server (this file with ``serve``, recovery on unless ``--off``) in a child process,
then, ``--rounds`` times: opens ``--sockets`` raw WebSocket connections (each a socket of
``/`` in room ``all``), aborts every one of them (TCP reset: the server keeps their sessions
for recovery), has the server broadcast ``--missed`` packets of 32 B that all of them miss,
and samples the server's RSS (``/proc/<pid>/status``) and ``recovery_stats()``.

Connections come and go each round, so their own memory is reused by the next round; what
stays is what recovery keeps: the sessions (sid, private id, rooms) and the packet log (shared
by every session: a broadcast is logged once). The slope of RSS over rounds divided by
``--sockets`` is the memory per kept socket (``--off``: the same without recovery, the
baseline). Prints one JSON line per round and a summary line.

The cost per packet of stamping and logging offsets is measured end to end with the shared
``compare.py`` and ``examples/reference_app.py --recovery`` (benches/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import websockets


def serve(port: int, recovery: bool) -> None:
    import ferrosio

    sio = ferrosio.AsyncServer(
        connection_state_recovery={"max_sessions": 1_000_000, "max_log_size": 256_000_000}
        if recovery
        else None
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        await sio.enter_room(sid, "all")

    @sio.on("stats")
    def stats(sid: str) -> dict[str, Any]:
        return sio.recovery_stats() or {}

    @sio.on("burst")
    async def burst(sid: str, n: int) -> int:
        for i in range(n):
            await sio.emit("missed", {"i": i, "pad": "x" * 32}, room="all", skip_sid=sid)
        return n

    ferrosio.run(sio, host="127.0.0.1", port=port)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_socket(url: str) -> Any:
    ws = await websockets.connect(url, max_size=None, ping_interval=None)
    await ws.recv()  # the Engine.IO open packet
    await ws.send("40")
    while not str(await ws.recv()).startswith("40"):
        pass
    return ws


class Control:
    """One more socket that asks the server for its stats and broadcasts."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = 0

    async def call(self, *args: Any) -> Any:
        self.ids += 1
        await self.ws.send(f"42{self.ids}" + json.dumps(list(args)))
        prefix = f"43{self.ids}"
        while True:
            msg = str(await self.ws.recv())
            if msg == "2":
                await self.ws.send("3")
            elif msg.startswith(prefix):
                return json.loads(msg[len(prefix) :])[0]


def start_server(off: bool) -> tuple[subprocess.Popen[bytes], int]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, __file__, "serve", "--port", str(port)]
    return subprocess.Popen(argv + (["--off"] if off else [])), port


async def run(a: argparse.Namespace, server: subprocess.Popen[bytes], port: int) -> None:
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    try:
        for _ in range(100):
            try:
                control = Control(await open_socket(url))
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        base = rss_kib(server.pid)
        samples = []
        for round_ in range(1, a.rounds + 1):
            opened = []
            for start in range(0, a.sockets, 100):
                batch = min(100, a.sockets - start)
                opened += await asyncio.gather(*(open_socket(url) for _ in range(batch)))
            connected = rss_kib(server.pid)
            for ws in opened:
                ws.transport.abort()
            kept = round_ * a.sockets if not a.off else 0
            deadline = time.monotonic() + 30
            while (await control.call("stats")).get("sessions", 0) < kept:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not keep every session")
                await asyncio.sleep(0.05)
            await control.call("burst", a.missed)
            stats = await control.call("stats")
            await asyncio.sleep(0.5)  # let the engine free what the aborted connections held
            sample = {
                "round": round_,
                "rss_connected_kib": connected,
                "rss_kib": rss_kib(server.pid),
                **stats,
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
        first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
        per_round = (last - first) / max(1, a.rounds - 1)
        summary = {
            "recovery": not a.off,
            "sockets_per_round": a.sockets,
            "missed_per_round": a.missed,
            "rss_base_kib": base,
            "rss_growth_per_round_kib": round(per_round),
            "bytes_per_kept_socket": round(per_round * 1024 / a.sockets),
            "log_bytes": samples[-1].get("bytes"),
        }
        print(json.dumps(summary), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--off", action="store_true")
    p.add_argument("--sockets", type=int, default=2000)
    p.add_argument("--missed", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--off", action="store_true", help="recovery off (the baseline)")
    a = p.parse_args()
    if a.cmd == "serve":
        serve(a.port, not a.off)
    else:
        server, port = start_server(a.off)
        asyncio.run(run(a, server, port))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
