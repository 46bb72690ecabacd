"""At-least-once emits (``retries`` + ``ack_timeout``, as socket.io-client) and ack timeouts,
observed from the server side: a hand-written Engine.IO/Socket.IO server (the ``websockets``
package, in this process) records every delivery and leaves chosen attempts unanswered.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import websockets

import ferrosio

if TYPE_CHECKING:
    from _harness import Until

WAIT = 15.0


class CountingServer:
    """Records each ``work`` event's argument in arrival order; ``answer(n, attempt)`` says
    whether to acknowledge that attempt (1-based) of ``n``."""

    def __init__(self, answer: Callable[[Any, int], bool]) -> None:
        self.answer = answer
        self.seen: list[Any] = []
        self.requests: list[tuple[str, str | None]] = []  # (path, X-Token header)
        self.port = 0

    async def handler(self, ws: Any) -> None:
        self.requests.append((ws.request.path, ws.request.headers.get("x-token")))
        await ws.send(
            "0"
            + json.dumps(
                {
                    "sid": "e",
                    "upgrades": [],
                    "pingInterval": 25000,
                    "pingTimeout": 20000,
                    "maxPayload": 1_000_000,
                }
            )
        )
        try:
            async for msg in ws:
                if msg.startswith("40"):
                    await ws.send('40{"sid":"s"}')
                elif m := re.match(r"42(\d*)\[\"work\",(.*)\]$", msg):
                    n = json.loads(m.group(2))
                    self.seen.append(n)
                    if m.group(1) and self.answer(n, self.seen.count(n)):
                        await ws.send(f"43{m.group(1)}[{json.dumps(n)}]")
        except websockets.ConnectionClosed:
            pass


@pytest_asyncio.fixture
async def counting() -> AsyncIterator[Callable[[Callable[[Any, int], bool]], Any]]:
    servers: list[Any] = []

    async def start(answer: Callable[[Any, int], bool]) -> CountingServer:
        srv = CountingServer(answer)
        ws_server = await websockets.serve(srv.handler, "127.0.0.1", 0)
        servers.append(ws_server)
        srv.port = next(iter(ws_server.sockets)).getsockname()[1]
        return srv

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_each_emit_is_resent_until_acknowledged_once_per_attempt_in_order(
    counting: Any, clients: list[Any], until: Until
) -> None:
    # every item is answered on its third attempt only
    srv = await counting(lambda n, attempt: attempt == 3)
    c = ferrosio.AsyncClient(retries=5, ack_timeout=0.1)
    clients.append(c)
    await c.connect(f"http://127.0.0.1:{srv.port}", transports=["websocket"])
    results: list[Any] = []
    for n in range(5):
        await c.emit("work", n, callback=lambda err, *a: results.append((err, *a)))
    await until(lambda: len(results) == 5, what="every ack")
    assert results == [(None, n) for n in range(5)]
    assert srv.seen == [n for n in range(5) for _ in range(3)]
    assert await c.call("work", "x", timeout=WAIT) == "x"  # call() uses the same queue


async def test_retries_run_out_then_the_queue_moves_on(
    counting: Any, clients: list[Any], until: Until
) -> None:
    srv = await counting(lambda n, attempt: n != "lost")
    c = ferrosio.AsyncClient(retries=2, ack_timeout=0.1)
    clients.append(c)
    await c.connect(f"http://127.0.0.1:{srv.port}", transports=["websocket"])
    results: list[Any] = []
    for n in ("a", "lost", "b"):
        await c.emit("work", n, callback=lambda err, *a: results.append((err, *a)))
    await until(lambda: len(results) == 3, what="every callback")
    assert results[0] == (None, "a")
    assert isinstance(results[1][0], ferrosio.exceptions.TimeoutError)
    assert results[2] == (None, "b")
    assert srv.seen == ["a", "lost", "lost", "lost", "b"]  # 1 + 2 retries
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await c.call("work", "lost", timeout=WAIT)
    assert srv.seen[5:] == ["lost"] * 3


async def test_ack_timeouts_without_retries(
    counting: Any, clients: list[Any], until: Until
) -> None:
    srv = await counting(lambda n, attempt: n >= 0)  # negative numbers are never answered
    c = ferrosio.AsyncClient(ack_timeout=0.3)
    clients.append(c)
    await c.connect(f"http://127.0.0.1:{srv.port}", transports=["websocket"])
    results: list[Any] = []

    def record(err: BaseException | None, *args: Any) -> None:
        results.append(type(err).__name__ if err is not None else args)

    # several deadlines of different lengths share one timer: they expire in deadline order
    await c.emit("work", -1, callback=record, timeout=0.6)
    await c.emit("work", -2, callback=record)  # ack_timeout: 0.3
    await c.emit("work", -3, callback=record, timeout=0.1)
    await c.emit("work", 4, callback=record)
    await until(lambda: len(results) == 4, what="every callback")
    assert results == [(4,), "TimeoutError", "TimeoutError", "TimeoutError"]
    assert srv.seen == [-1, -2, -3, 4]  # each sent once: no retries
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await c.call("work", -5, timeout=0.1)
    assert await c.call("work", 6, timeout=WAIT) == 6
    # without ack_timeout and timeout, a plain callback just gets the arguments
    plain = ferrosio.AsyncClient()
    clients.append(plain)
    await plain.connect(f"http://127.0.0.1:{srv.port}", transports=["websocket"])
    got: list[Any] = []
    await plain.emit("work", 7, callback=lambda *a: got.append(a))
    await until(lambda: bool(got), what="the plain callback")
    assert got == [(7,)]


async def test_headers_query_and_path_reach_the_server(counting: Any, clients: list[Any]) -> None:
    srv = await counting(lambda n, attempt: True)
    c = ferrosio.AsyncClient()
    clients.append(c)
    tokens = iter(["t1", "t2"])
    await c.connect(
        f"ws://127.0.0.1:{srv.port}/ignored?room=5&x=%20y",
        headers=lambda: {"X-Token": next(tokens)},
        transports="websocket",
        socketio_path="/custom/",
    )
    assert await c.call("work", 1, timeout=WAIT) == 1
    path, token = srv.requests[0]
    assert token == "t1"
    assert path.startswith("/custom/?EIO=4&transport=websocket&")
    assert "&room=5&x=%20y" in path
