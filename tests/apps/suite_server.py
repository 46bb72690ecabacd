#!/usr/bin/env python3
"""Server for the official protocol test suites, on ferrosio.

    python tests/apps/suite_server.py [--port 3000] [--host 127.0.0.1]

One listener serves both suites, with their settings (ping interval 300 ms, ping timeout
200 ms, max payload 1e6, connect timeout 1 s, CORS any origin):
- ``/engine.io/``: a bare Engine.IO endpoint echoing every message (engine.io-protocol);
- ``/socket.io/``: the Socket.IO handlers the socket.io-protocol suite expects.

Also the "suite app" of the raw-protocol tests (tests/test_raw_protocol.py, test_raw_http.py).
Run the official suites with ``../shared/protocol/run-suites.sh`` (see the README; ../shared is
the project's shared material checked out beside the repository, not part of it).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import ferrosio

sio = ferrosio.AsyncServer(
    ping_interval=0.3,
    ping_timeout=0.2,
    max_http_buffer_size=1_000_000,
    cors_allowed_origins="*",
    connect_timeout=1.0,
    attachment_timeout=0.5,  # caught at the next 300 ms heartbeat tick
    engineio_path="engine.io",
)
assert sio.engineio is not None
eio = sio.engineio


@eio.on("message")
async def eio_echo(sid: str, data: str | bytes) -> None:
    await eio.send(sid, data)


@sio.on("connect")
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    await sio.emit("auth", auth if auth is not None else {}, to=sid)


@sio.on("message")
async def message(sid: str, *args: Any) -> None:
    await sio.emit("message-back", args, to=sid)


@sio.on("message-with-ack")
def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
    return args


@sio.on("connect", namespace="/custom")
async def custom_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    await sio.emit("auth", auth if auth is not None else {}, to=sid, namespace="/custom")


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    ferrosio.run(sio, host=a.host, port=a.port)


if __name__ == "__main__":
    main()
