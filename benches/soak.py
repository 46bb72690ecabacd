#!/usr/bin/env python3
"""Soak: connection churn and traffic against examples/reference_app.py, leak check.

    SOAK_SECONDS=1800 python benches/soak.py [--workers 3] [--json out.json]

Starts the reference app in a child process, then for ``SOAK_SECONDS`` (default 60) runs
``--workers`` client loops per transport (websocket, polling, polling upgraded to websocket;
python-socketio clients, an independent peer). Each loop connects, does a round of traffic
(acked echo of text and of binary, a plain emit echoed back, join/to_room/leave, a broadcast
to everyone else, the rooms list) and disconnects, again and again.

Once a second it samples the server's RSS (``/proc/<pid>/status`` VmRSS) and its open
descriptors (``/proc/<pid>/fd``). The verdict:

- **RSS slope**: least-squares slope of RSS over the samples after the warm-up (the first
  third of the run, at least 10 s), in KiB/min. FAIL above ``SOAK_MAX_SLOPE_KIB_MIN``
  (default 1024: a leak of one 1 KiB object per connection at the churn rate this reaches on
  2 shared cores, ~100 connections/s, is ~6000 KiB/min; allocator noise stays far below).
- **descriptors**: after every client has left, the server's descriptor count must come
  back to at most the baseline (measured before the first client) + 2 within 15 s.
- **errors**: a wrong ack or echo fails at once; connection failures above 1 % of the
  attempts fail.

Prints one report (also as JSON with ``--json``) and exits 1 on FAIL. ``make soak`` runs it
(``SOAK_SECONDS`` from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "reference_app.py"
TRANSPORTS: dict[str, list[str]] = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in KiB per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    num = sum((t - mt) * (v - mv) for t, v in samples)
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 60.0 * num / den if den else 0.0


@dataclass
class Counters:
    connects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    connect_failures: int = 0
    acks: int = 0
    emits: int = 0
    broadcasts_received: int = 0
    upgraded: int = 0
    wrong: list[str] = field(default_factory=list)


class Stop(Exception):
    pass


async def one_session(kind: str, url: str, n: int, c: Counters) -> None:
    client = socketio.AsyncClient(reconnection=False)
    echoed: asyncio.Queue[Any] = asyncio.Queue(maxsize=16)

    @client.on("echo")
    async def _echo(*args: Any) -> None:
        if not echoed.full():
            echoed.put_nowait(args)

    @client.on("bcast")
    async def _bcast(*_: Any) -> None:
        c.broadcasts_received += 1

    @client.on("room-msg")
    async def _room(*_: Any) -> None:
        pass

    try:
        await client.connect(url, transports=TRANSPORTS[kind], wait_timeout=10)
    except Exception:  # counted: the criterion decides
        c.connect_failures += 1
        return
    c.connects[kind] += 1
    try:
        text = f"{kind}-{n}"
        got = await client.call("echo", text, timeout=10)
        if got != text:
            c.wrong.append(f"echo ack {got!r} != {text!r}")
        blob = bytes(range(256)) * 4
        got = await client.call("echo", blob, timeout=10)
        if got != blob:
            c.wrong.append("binary echo ack differs")
        c.acks += 2
        await client.emit("echo", {"n": n, "s": text})
        got = await asyncio.wait_for(echoed.get(), 10)
        if got != ({"n": n, "s": text},):
            c.wrong.append(f"plain echo {got!r}")
        c.emits += 1
        room = f"r{n % 7}"
        if await client.call("join", room, timeout=10) is not True:
            c.wrong.append("join ack")
        await client.call("to_room", (room, "room-msg", n), timeout=10)
        rooms = await client.call("rooms", timeout=10)
        if room not in rooms or "all" not in rooms:
            c.wrong.append(f"rooms {rooms!r}")
        await client.call("leave", room, timeout=10)
        await client.call("bcast", {"from": text}, timeout=10)
        c.acks += 5
        if kind == "upgrade" and client.transport() == "websocket":
            c.upgraded += 1
    except Exception as e:  # a dropped session mid-traffic is a failure
        c.wrong.append(f"{kind}: {type(e).__name__}: {e}")
    finally:
        await client.disconnect()


async def worker(kind: str, url: str, deadline: float, c: Counters) -> None:
    n = 0
    while time.monotonic() < deadline and len(c.wrong) < 20:
        n += 1
        await one_session(kind, url, n, c)


async def sampler(
    pid: int, t0: float, out: list[tuple[float, int, int]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        out.append((time.monotonic() - t0, rss_kib(pid), fd_count(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen")


async def traffic(
    proc: subprocess.Popen[bytes], port: int, seconds: float, workers: int
) -> tuple[Counters, list[tuple[float, int, int]], float, int, int, int]:
    await asyncio.sleep(0.5)
    baseline_fds = fd_count(proc.pid)
    baseline_rss = rss_kib(proc.pid)
    url = f"http://127.0.0.1:{port}"
    c = Counters()
    samples: list[tuple[float, int, int]] = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    sample_task = asyncio.create_task(sampler(proc.pid, t0, samples, stop))
    deadline = t0 + seconds
    await asyncio.gather(
        *(worker(kind, url, deadline, c) for kind in TRANSPORTS for _ in range(workers))
    )
    stop.set()
    await sample_task
    elapsed = time.monotonic() - t0
    # every client has left: descriptors back to the baseline (bounded wait)
    fds_after = fd_count(proc.pid)
    settle_end = time.monotonic() + 15
    while fds_after > baseline_fds + 2 and time.monotonic() < settle_end:
        await asyncio.sleep(0.5)
        fds_after = fd_count(proc.pid)
    if proc.poll() is not None:
        raise RuntimeError(f"server died with {proc.returncode}")
    return c, samples, elapsed, baseline_fds, baseline_rss, fds_after


def run(seconds: float, workers: int, log_path: Path, app: Path = APP) -> dict[str, Any]:
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(app), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_port(port, proc)
            c, samples, elapsed, baseline_fds, baseline_rss, fds_after = asyncio.run(
                traffic(proc, port, seconds, workers)
            )
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    warm = max(10.0, elapsed / 3)
    steady = [(t, r) for t, r, _ in samples if t >= warm]
    slope = slope_per_min(steady)
    max_slope = float(os.environ.get("SOAK_MAX_SLOPE_KIB_MIN", "1024"))
    attempts = sum(c.connects.values()) + c.connect_failures
    failures: list[str] = []
    if len(steady) >= 5 and slope > max_slope:
        failures.append(f"RSS slope {slope:.0f} KiB/min > {max_slope:.0f} after warm-up")
    if fds_after > baseline_fds + 2:
        failures.append(f"descriptors {fds_after} not back to baseline {baseline_fds} (+2)")
    if c.wrong:
        failures.append(f"{len(c.wrong)} wrong answers, first: {c.wrong[:3]}")
    if attempts == 0 or c.connect_failures > 0.01 * attempts:
        failures.append(f"{c.connect_failures} of {attempts} connections failed")
    return {
        "seconds": round(elapsed, 1),
        "workers_per_transport": workers,
        "connections": c.connects,
        "connections_per_s": round(sum(c.connects.values()) / elapsed, 1),
        "connect_failures": c.connect_failures,
        "upgraded": c.upgraded,
        "acks": c.acks,
        "emits": c.emits,
        "broadcasts_received": c.broadcasts_received,
        "rss_kib": {
            "baseline": baseline_rss,
            "at_warmup_end": steady[0][1] if steady else None,
            "final": samples[-1][1] if samples else None,
            "max": max(r for _, r, _ in samples) if samples else None,
        },
        "rss_slope_kib_per_min_after_warmup": round(slope, 1),
        "warmup_s": round(warm, 1),
        "fds": {
            "baseline": baseline_fds,
            "max_during": max(f for _, _, f in samples) if samples else None,
            "after_clients_left": fds_after,
        },
        "failures": failures,
        "verdict": "FAIL" if failures else "PASS",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "60")))
    p.add_argument("--workers", type=int, default=3, help="client loops per transport")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--server-log", default="/tmp/ferrosio-soak-server.log")
    p.add_argument("--app", default=str(APP), help="the server (reference_app.py's interface)")
    a = p.parse_args()
    report = run(a.seconds, a.workers, Path(a.server_log), Path(a.app))
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
