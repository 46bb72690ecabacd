"""Dead-server detection: a server that stops pinging, or hangs without closing the TCP
connection (SIGSTOP), is declared dead within ``pingInterval + pingTimeout`` and the client
reconnects once it is back.

- a raw Engine.IO server (the ``websockets`` package, in this process) that answers the
  handshake and the namespace CONNECT, then never pings; its next connection pings normally;
- the Node ``socket.io`` server and a ferrosio server with a 0.3 s ping interval and a 0.5 s
  timeout, frozen with SIGSTOP and thawed with SIGCONT, over each transport.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest_asyncio
import websockets

import ferrosio

if TYPE_CHECKING:
    from collections.abc import Callable

    from _harness import ServerProcess, Until

WAIT = 15.0
PING_WINDOW = 0.8  # the short-ping servers: 300 ms interval + 500 ms timeout
SLACK = 3.0  # a generous allowance for a loaded machine


class RawServer:
    """Engine.IO/Socket.IO by hand: connection 0 never pings, later ones ping every 0.1 s."""

    def __init__(self) -> None:
        self.connections = 0
        self.pongs: list[int] = []
        self.port = 0

    async def handler(self, ws: Any) -> None:
        n = self.connections
        self.connections += 1
        open_packet = {
            "sid": f"eio{n}",
            "upgrades": [],
            "pingInterval": 200,
            # connection 0 goes silent: dead 0.4 s after the open; later ones ping
            "pingTimeout": 200 if n == 0 else 2000,
            "maxPayload": 1_000_000,
        }
        await ws.send("0" + json.dumps(open_packet))
        pinger = asyncio.ensure_future(self._ping(ws)) if n > 0 else None
        try:
            async for msg in ws:
                if msg == "3":
                    self.pongs.append(n)
                elif msg.startswith("40"):
                    await ws.send("40" + json.dumps({"sid": f"sio{n}"}))
                elif m := re.match(r"42(\d+)\[\"echo\",(.*)\]$", msg):
                    await ws.send(f"43{m.group(1)}[{m.group(2)}]")
        except websockets.ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()

    async def _ping(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(0.1)
            await ws.send("2")


@pytest_asyncio.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    srv = RawServer()
    async with websockets.serve(srv.handler, "127.0.0.1", 0) as ws_server:
        srv.port = next(iter(ws_server.sockets)).getsockname()[1]
        yield srv


class Recorder:
    def __init__(self, c: ferrosio.AsyncClient) -> None:
        self.connects = 0
        self.reasons: list[tuple[float, str]] = []
        c.on("connect", self._connect)
        c.on("disconnect", lambda reason: self.reasons.append((time.monotonic(), reason)))

    def _connect(self) -> None:
        self.connects += 1


async def test_a_server_that_stops_pinging_is_dead_after_the_ping_window(
    raw_server: RawServer, clients: list[Any], until: Until
) -> None:
    c = ferrosio.AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.1)
    clients.append(c)
    rec = Recorder(c)
    await c.connect(
        f"http://127.0.0.1:{raw_server.port}", transports=["websocket"], wait_timeout=WAIT
    )
    opened = time.monotonic()
    assert await c.call("echo", 1, timeout=WAIT) == 1
    await until(lambda: bool(rec.reasons), what="the ping timeout")
    at, reason = rec.reasons[0]
    assert reason == c.reason.PING_TIMEOUT
    assert at - opened <= 0.4 + SLACK
    # the next connection pings: the client answers and stays connected
    await until(lambda: rec.connects == 2, what="the reconnection")
    await asyncio.sleep(1.0)  # ten ping periods
    assert len(rec.reasons) == 1 and c.connected
    assert raw_server.pongs.count(1) >= 5
    assert await c.call("echo", [2, "x"], timeout=WAIT) == [2, "x"]


async def test_a_frozen_server_is_detected_and_the_client_reconnects_after_it_thaws(
    peer_kind: str,
    transports: list[str],
    clients: list[Any],
    until: Until,
    make_peer: Callable[..., ServerProcess],
) -> None:
    srv = make_peer(peer_kind, "short-ping")
    c = ferrosio.AsyncClient(reconnection_delay=0.1, reconnection_delay_max=0.5, request_timeout=1)
    clients.append(c)
    rec = Recorder(c)
    await c.connect(srv.url, transports=transports, wait_timeout=WAIT)
    assert await c.call("echo", 1, timeout=WAIT) == 1
    await asyncio.sleep(1.0)  # pings flow: still connected
    assert not rec.reasons and c.connected

    frozen = time.monotonic()
    srv.signal(signal.SIGSTOP)  # hangs without closing anything
    try:
        await until(lambda: bool(rec.reasons), what="the ping timeout")
        at, reason = rec.reasons[0]
        assert reason == c.reason.PING_TIMEOUT
        assert at - frozen <= PING_WINDOW + SLACK
        await asyncio.sleep(1.0)  # attempts against the frozen server fail (request_timeout)
        assert rec.connects == 1
    finally:
        srv.signal(signal.SIGCONT)
    await until(lambda: rec.connects == 2, what="the reconnection")
    assert await c.call("echo", 2, timeout=WAIT) == 2
