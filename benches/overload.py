#!/usr/bin/env python3
"""Overload measurements against ``examples/reference_app.py`` (one process, loopback).

    python benches/overload.py flood PYTHON   # ack latency of a well-behaved client while a
                                              # raw client floods pipelined acked events
    python benches/overload.py slow PYTHON    # a WebSocket reader that stops reading while
                                              # 64 KiB broadcasts go to its room
    python benches/overload.py polling PYTHON # a polling session that never polls while
                                              # 64 KiB broadcasts go to its room, then one GET
    python benches/overload.py pong PYTHON    # a WebSocket reader that stops reading but keeps
                                              # sending a pong every 5 s
    python benches/overload.py bomb PYTHON    # a binary attachment bomb: an EVENT declaring
                                              # 10,000 attachments, then 1 MB binary frames

``PYTHON`` is the interpreter whose ferrosio serves the app (a virtual environment with the
wheel to measure). ``flood`` runs the shared ``sio-load.js`` (``echo-ack``, 1 connection, 1 in
flight) alone, then beside the flood. ``slow`` floods for 15 s at most (less if the server's
RSS passes 1.5 GiB). Each prints one JSON line: latencies in µs, RSS in MiB.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FERROSIO_SHARED", REPO.parent / "shared"))
LOAD = SHARED / "bench" / "sio-load.js"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def ws_connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    return s


def frame(text: str) -> bytes:
    """A masked text frame (mask key 0)."""
    p = text.encode()
    n = len(p)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0xFF]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + p


def start(python: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    app = str(REPO / "examples" / "reference_app.py")
    srv = subprocess.Popen(
        [python, app, "--port", str(port)],
        cwd="/tmp",  # so the interpreter's own ferrosio is imported, not this checkout's
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    return srv, port


def stop(srv: subprocess.Popen[bytes]) -> None:
    srv.terminate()
    try:
        srv.wait(10)
    except subprocess.TimeoutExpired:
        srv.kill()
        srv.wait()


def echo_ack(port: int, duration: int) -> dict[str, Any]:
    argv = ["node", str(LOAD), "--scenario", "echo-ack", "--port", str(port), "--conns", "1"]
    argv += ["--inflight", "1", "--duration", str(duration), "--warmup", "1", "--quiet"]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    results: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    return results


def flood(python: str) -> dict[str, Any]:
    srv, port = start(python)
    try:
        alone = echo_ack(port, 5)
        before = rss_mib(srv.pid)
        f = ws_connect(port)
        f.sendall(frame("40"))
        done = threading.Event()
        sent = [0]
        peak = [before]

        def reader() -> None:  # a flooder that reads its acks
            while not done.is_set():
                try:
                    if not f.recv(1 << 20):
                        return
                except OSError:
                    return

        def writer() -> None:
            i = 0
            while not done.is_set():
                batch = b"".join(frame(f'42{i + k}["echo","x"]') for k in range(1000))
                i += 1000
                try:
                    f.sendall(batch)
                except OSError:
                    return
                sent[0] += 1000

        def sampler() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mib(srv.pid))
                time.sleep(0.1)

        for fn in (reader, writer, sampler):
            threading.Thread(target=fn, daemon=True).start()
        time.sleep(1)
        flooded = echo_ack(port, 8)
        done.set()
        f.close()
        time.sleep(3)
        return {
            "alone": {"acks/s": alone["acks_per_s"], **alone["rtt_us"]},
            "beside_flood": {"acks/s": flooded["acks_per_s"], **flooded["rtt_us"]},
            "flood_events_sent": sent[0],
            "rss_mib": {"before": before, "peak": peak[0], "3s_after": rss_mib(srv.pid)},
        }
    finally:
        stop(srv)


def http(port: int, method: str, query: str, body: bytes = b"", timeout: float = 5.0) -> bytes:
    """One HTTP/1.1 request on a fresh connection; the whole answer (head and body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            f"{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        out = b""
        try:
            while chunk := s.recv(1 << 20):
                out += chunk
        except TimeoutError:
            pass
        return out


def flood_room(
    port: int, room: str, seconds: float, peak_mib: int, pid: int, pause: float = 0.01
) -> dict[str, Any]:
    """A WebSocket client that sends 64 KiB broadcasts to ``room`` (and reads its own acks)."""
    c = ws_connect(port)
    c.sendall(frame("40"))
    time.sleep(0.3)
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                if not c.recv(1 << 20):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    big = frame(f'42["to_room","{room}","big","' + "x" * 65536 + '"]')
    before = rss_mib(pid)
    t0 = time.monotonic()
    peak, sent = before, 0
    while time.monotonic() - t0 < seconds and peak < peak_mib:
        c.sendall(big * 16)
        sent += 16
        peak = max(peak, rss_mib(pid))
        time.sleep(pause)
    done.set()
    c.close()
    return {
        "broadcasts": sent,
        "seconds": round(time.monotonic() - t0, 1),
        "before": before,
        "peak": peak,
    }


def polling(python: str) -> dict[str, Any]:
    srv, port = start(python)
    try:
        head = http(port, "GET", "")
        sid = json.loads(head[head.index(b"{") :].split(b"\x1e")[0])["sid"]
        http(port, "POST", f"&sid={sid}", b"40")
        http(port, "GET", f"&sid={sid}")  # the CONNECT answer
        http(port, "POST", f"&sid={sid}", b'42["join","r"]')
        http(port, "GET", f"&sid={sid}", timeout=1.0)  # the join's ack
        f = flood_room(port, "r", 15, 1536, srv.pid)
        # One GET on the backlogged session: how big is the answer, and what does it cost?
        answer = http(port, "GET", f"&sid={sid}", timeout=3.0)
        after_get = rss_mib(srv.pid)
        time.sleep(5)
        return {
            "broadcasts": f["broadcasts"],
            "seconds": f["seconds"],
            "rss_mib": {
                "before": f["before"],
                "peak": f["peak"],
                "after_get": after_get,
                "5s_after": rss_mib(srv.pid),
            },
            "get_answer_bytes": len(answer),
            "get_answer_status": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        }
    finally:
        stop(srv)


def stalled_reader(python: str, seconds: float, pong_every: float | None) -> dict[str, Any]:
    """A WebSocket reader in room ``r`` that stops reading (optionally still sending a pong
    every ``pong_every`` s) while 64 KiB broadcasts go to its room."""
    srv, port = start(python)
    try:
        victim = ws_connect(port, rcvbuf=4096)
        victim.sendall(frame("40"))
        time.sleep(0.3)
        victim.sendall(frame('42["join","r"]'))
        time.sleep(0.5)
        done = threading.Event()

        def ponger() -> None:
            while pong_every is not None and not done.wait(pong_every):
                try:
                    victim.sendall(frame("3"))
                except OSError:
                    return

        threading.Thread(target=ponger, daemon=True).start()
        f = flood_room(port, "r", seconds, 1536, srv.pid, pause=0.01 if pong_every else 0.0)
        victim.settimeout(0.5)
        closed = False
        try:
            while victim.recv(1 << 20):
                pass
            closed = True
        except TimeoutError:
            pass
        except OSError:
            closed = True
        done.set()
        time.sleep(5)
        return {
            "broadcasts": f["broadcasts"],
            "seconds": f["seconds"],
            "rss_mib": {"before": f["before"], "peak": f["peak"], "5s_after": rss_mib(srv.pid)},
            "slow_reader_disconnected": closed,
        }
    finally:
        stop(srv)


def slow(python: str) -> dict[str, Any]:
    return stalled_reader(python, 15, None)


def pong(python: str) -> dict[str, Any]:
    return stalled_reader(python, 30, 5.0)


def binary_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0xFE]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0xFF]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def bomb(python: str) -> dict[str, Any]:
    srv, port = start(python)
    try:
        a = ws_connect(port)
        a.sendall(frame("40"))
        time.sleep(0.3)
        before = rss_mib(srv.pid)
        t0 = time.monotonic()
        peak, sent, closed = before, 0, False
        try:
            a.sendall(
                frame(
                    '451-["echo",'
                    + ",".join(f'{{"_placeholder":true,"num":{i}}}' for i in range(10_000))
                    + "]"
                )
            )
            chunk = binary_frame(b"\0" * 1_000_000)
            while time.monotonic() - t0 < 60 and peak < 4096:
                a.sendall(chunk)
                sent += 1
                peak = max(peak, rss_mib(srv.pid))
        except OSError:
            closed = True
        seconds = time.monotonic() - t0
        a.settimeout(1.0)
        close_frame = b""
        try:
            while chunk := a.recv(1 << 16):
                close_frame += chunk
            closed = True
        except TimeoutError:
            pass
        except OSError:
            closed = True
        alive = echo_ack(port, 2)
        return {
            "binary_frames_sent": sent,
            "seconds": round(seconds, 2),
            "connection_closed": closed,
            "last_bytes_from_server": close_frame[-16:].hex(),
            "rss_mib": {"before": before, "peak": peak, "after": rss_mib(srv.pid)},
            "others_still_served_acks_per_s": alive["acks_per_s"],
        }
    finally:
        stop(srv)


MODES = {"flood": flood, "slow": slow, "polling": polling, "pong": pong, "bomb": bomb}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in MODES:
        sys.exit(__doc__)
    print(json.dumps(MODES[sys.argv[1]](sys.argv[2])))


if __name__ == "__main__":
    main()
