#!/usr/bin/env python3
"""ferrosio server with small buffer bounds, for the overload tests (tests/test_bounds.py).

    python tests/apps/bounds_app.py --port N [--host 127.0.0.1] [--send-buffer B]
        [--poll-response B] [--inbound-buffer B] [--handler-delay S]

Handlers:

- ``join``: the client joins the room ``flood``;
- ``flood(size, count, binary=False, volatile=False)``: ``count`` events ``blob`` of ``size``
  bytes to the room ``flood`` (text, or a binary attachment), acked with ``count``;
- ``echo``: acknowledges with its arguments;
- ``count``: counts calls (each takes ``--handler-delay`` seconds of the event loop, so the
  handlers fall behind a flood); acked with the running count;
- ``reasons``: acked with the disconnect reasons seen so far, in order.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import ferrosio

REASONS: list[str] = []
COUNT = 0
DELAY = 0.0


def make_server(a: argparse.Namespace) -> ferrosio.AsyncServer:
    sio = ferrosio.AsyncServer(
        ping_interval=a.ping_interval,
        ping_timeout=a.ping_timeout,
        max_send_buffer_size=a.send_buffer,
        max_poll_response_size=a.poll_response,
        max_inbound_buffer_size=a.inbound_buffer,
        logger=True,
    )

    @sio.event
    async def join(sid: str) -> None:
        await sio.enter_room(sid, "flood")

    @sio.event
    async def flood(
        sid: str, size: int, count: int, binary: bool = False, vol: bool = False
    ) -> int:
        blob: Any = b"x" * size if binary else "x" * size
        for _ in range(count):
            await sio.emit("blob", blob, room="flood", volatile=vol)
        return count

    @sio.event
    def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.event
    def count(sid: str, *args: Any) -> int:
        global COUNT
        COUNT += 1
        if DELAY:
            time.sleep(DELAY)  # a handler that blocks the loop: the host falls behind
        return COUNT

    @sio.event
    def reasons(sid: str) -> list[str]:
        return REASONS

    @sio.event
    def disconnect(sid: str, reason: str) -> None:
        REASONS.append(reason)

    return sio


def main() -> None:
    global DELAY
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--send-buffer", type=int, default=1_000_000)
    p.add_argument("--poll-response", type=int, default=1_000_000)
    p.add_argument("--inbound-buffer", type=int, default=1_000_000)
    p.add_argument("--handler-delay", type=float, default=0.0)
    p.add_argument("--ping-interval", type=float, default=25)
    p.add_argument("--ping-timeout", type=float, default=20)
    a = p.parse_args()
    DELAY = a.handler_delay
    ferrosio.run(make_server(a), host=a.host, port=a.port)


if __name__ == "__main__":
    main()
