"""Polling round trips against a running server, to price ``run(workers=N)``'s handoff.

    python benches/workers_polling.py --port 3000 [--calls 2000]

Two measurements, each one session and sequential echo acks (the reference app's ``echo``):

- ``client``: a polling-only python-socketio client (aiohttp: keep-alive when the server
  allows it; among workers the server closes every connection after one request);
- ``fresh``: raw HTTP, each POST and GET on a new TCP connection (so with N workers about
  (N-1)/N of them land on a worker that hands the connection to the session's owner).

Prints one JSON line: round trips per second and mean microseconds per round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

import socketio

HOST = "127.0.0.1"


def request(port: int, method: str, target: str, body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
    if method == "POST":
        head += f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def fresh(port: int, calls: int) -> float:
    base = "/socket.io/?EIO=4&transport=polling"
    sid = json.loads(request(port, "GET", base)[1:])["sid"]
    url = f"{base}&sid={sid}"
    request(port, "POST", url, b"40")
    request(port, "GET", url)
    start = time.perf_counter()
    for n in range(calls):
        request(port, "POST", url, f'42{n}["echo",{n}]'.encode())
        answer = request(port, "GET", url)
        assert answer.startswith(f"43{n}".encode()), answer
    return time.perf_counter() - start


async def client(port: int, calls: int) -> float:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(f"http://{HOST}:{port}", transports=["polling"])
    start = time.perf_counter()
    for n in range(calls):
        await sio.call("echo", n, timeout=10)
    elapsed = time.perf_counter() - start
    await sio.disconnect()
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--calls", type=int, default=2000)
    a = p.parse_args()
    result = {}
    for name, elapsed in (
        ("client", asyncio.run(client(a.port, a.calls))),
        ("fresh", fresh(a.port, a.calls)),
    ):
        result[name] = {
            "round_trips_per_s": round(a.calls / elapsed),
            "us_per_round_trip": round(elapsed / a.calls * 1e6),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
