"""Reconnection, the offline buffer and at-least-once retries, against real servers that are
killed (SIGKILL) mid-stream and started again on the same port: the official Node
``socket.io`` server and ferrosio's reference app, over each transport.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import TYPE_CHECKING, Any

import pytest

import ferrosio
from ferrosio.client import BadNamespaceError, BufferFullError, _Backoff

if TYPE_CHECKING:
    from collections.abc import Callable

    from _harness import ServerProcess, Until

WAIT = 15.0


def fast_client(**kwargs: Any) -> ferrosio.AsyncClient:
    kwargs.setdefault("reconnection_delay", 0.1)
    kwargs.setdefault("reconnection_delay_max", 0.4)
    kwargs.setdefault("request_timeout", 2)
    return ferrosio.AsyncClient(**kwargs)


class Recorder:
    """What a client's connect/disconnect handlers saw."""

    def __init__(self, c: ferrosio.AsyncClient, namespace: str = "/") -> None:
        self.connects = 0
        self.reasons: list[str] = []
        c.on("connect", self._connect, namespace=namespace)
        c.on("disconnect", self.reasons.append, namespace=namespace)

    def _connect(self) -> None:
        self.connects += 1


def test_backoff_follows_the_js_client() -> None:
    b = _Backoff(1, 5, 0)
    assert [b.duration() for _ in range(6)] == [1, 2, 4, 5, 5, 5]
    b.reset()
    assert b.duration() == 1
    b = _Backoff(0.1, 2, 0.5)
    for attempt in range(12):
        nominal = min(0.1 * 2**attempt, 2)
        d = b.duration()
        assert 0.5 * nominal - 1e-9 <= d <= min(1.5 * nominal, 2) + 1e-9, (attempt, d)


async def test_kill_and_restart_buffered_emits_arrive_in_order(
    own_server: ServerProcess,
    transports: list[str],
    clients: list[Any],
    until: Until,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ferrosio.client")
    c = fast_client()
    clients.append(c)
    rec = Recorder(c)
    got: list[int] = []
    c.on("echo", got.append)
    await c.connect(own_server.url, transports=transports, wait_timeout=WAIT)
    for i in range(10):
        await c.emit("echo", i)
    await until(lambda: len(got) == 10, what="the first echoes")

    own_server.kill()
    await until(lambda: bool(rec.reasons), what="the disconnect")
    assert rec.reasons[0] in (c.reason.TRANSPORT_CLOSE, c.reason.TRANSPORT_ERROR)
    assert not c.connected
    for i in range(10, 40):  # made while the server is down: buffered
        await c.emit("echo", i)
    await asyncio.sleep(0.5)  # a few failed attempts
    await asyncio.to_thread(own_server.start)

    await until(lambda: len(got) == 40, what="the buffered echoes")
    assert got == list(range(40))
    assert rec.connects == 2
    assert rec.reasons == rec.reasons[:1]
    assert await c.call("echo", "after", timeout=WAIT) == "after"
    # the attempts were spaced by the backoff: 0.1 s * 2**n, ±50 %, at most 0.4 s
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.match(r"ferrosio: reconnecting in ([0-9.]+) s", r.getMessage()))
    ]
    assert delays, "no reconnection attempt was logged"
    assert 0.05 - 1e-3 <= delays[0] <= 0.15 + 1e-3
    assert all(d <= 0.4 + 1e-3 for d in delays)


async def test_kill_and_restart_with_retries_nothing_is_lost(
    own_server: ServerProcess, transports: list[str], clients: list[Any], until: Until
) -> None:
    c = fast_client(retries=100, ack_timeout=2)
    clients.append(c)
    rec = Recorder(c)
    acked: list[int] = []
    errors: list[BaseException] = []

    def done(err: BaseException | None, *args: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append(args[0])

    await c.connect(own_server.url, transports=transports, wait_timeout=WAIT)
    n = 60
    for i in range(n):
        await c.emit("echo", i, callback=done)
        if i == 20:
            own_server.kill()  # mid-stream: some of them are in flight
        if i == 40:
            await asyncio.to_thread(own_server.start)
        await asyncio.sleep(0.01)
    await until(lambda: len(acked) + len(errors) == n, timeout=45, what="every ack")
    assert errors == []
    assert acked == list(range(n))  # each acknowledged once, in order
    assert rec.connects == 2
    # call() goes through the same queue
    assert await c.call("echo", ("x", b"\x01"), timeout=WAIT) == ("x", b"\x01")


async def test_volatile_emits_are_dropped_and_the_buffer_is_bounded(
    own_server: ServerProcess, clients: list[Any], until: Until
) -> None:
    c = fast_client(max_buffered=5)
    clients.append(c)
    rec = Recorder(c)
    got: list[Any] = []
    c.on("echo", got.append)
    await c.connect(own_server.url, transports=["websocket"], wait_timeout=WAIT)
    await c.emit("echo", "v0", volatile=True)  # connected: sent
    await until(lambda: got == ["v0"], what="the volatile echo")
    own_server.kill()
    await until(lambda: bool(rec.reasons), what="the disconnect")
    await c.emit("echo", "dropped", volatile=True)
    for i in range(5):
        await c.emit("echo", i)
    with pytest.raises(BufferFullError):
        await c.emit("echo", 5)
    await asyncio.to_thread(own_server.start)
    await until(lambda: len(got) == 6, what="the buffered echoes")
    await c.call("rooms", timeout=WAIT)  # fence
    assert got == ["v0", 0, 1, 2, 3, 4]


async def test_a_call_buffered_while_down_times_out_and_is_not_sent_later(
    own_server: ServerProcess, clients: list[Any], until: Until
) -> None:
    c = fast_client()
    clients.append(c)
    rec = Recorder(c)
    late: list[Any] = []
    c.on("late", late.append)
    await c.connect(own_server.url, transports=["websocket"], wait_timeout=WAIT)
    own_server.kill()
    await until(lambda: bool(rec.reasons), what="the disconnect")
    # would make the server emit "late" to room "all" (us) if it were ever sent
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await c.call("to_room", ("all", "late", 1), timeout=0.2)
    errors: list[Any] = []
    await c.emit("to_room", ("all", "late", 2), callback=errors.append, timeout=0.2)
    await until(lambda: bool(errors), what="the emit's ack timeout")
    assert isinstance(errors[0], ferrosio.exceptions.TimeoutError)
    await asyncio.to_thread(own_server.start)
    await until(lambda: rec.connects == 2, what="the reconnection")
    assert await c.call("to_room", ("all", "late", 3), timeout=WAIT) is True
    await until(lambda: bool(late), what="the late event")
    await c.call("rooms", timeout=WAIT)  # fence
    assert late == [3]


async def test_a_call_in_flight_fails_when_the_connection_is_lost(
    own_server: ServerProcess, clients: list[Any], until: Until
) -> None:
    c = fast_client()
    clients.append(c)
    stall = asyncio.Event()

    @c.on("stall")
    async def on_stall(*args: Any) -> None:
        await stall.wait()

    await c.connect(own_server.url, transports=["websocket"], wait_timeout=WAIT)
    # "ask" is answered only after our "stall" handler returns: never, until the kill
    call = asyncio.ensure_future(c.call("ask", ("stall",), timeout=WAIT))
    await asyncio.sleep(0.2)
    own_server.kill()
    with pytest.raises(ferrosio.exceptions.DisconnectedError):
        await call
    stall.set()


async def test_gives_up_after_the_reconnection_attempts(
    own_server: ServerProcess, clients: list[Any], until: Until
) -> None:
    c = fast_client(reconnection_attempts=2, reconnection_delay=0.05, reconnection_delay_max=0.1)
    clients.append(c)
    rec = Recorder(c)
    await c.connect(own_server.url, transports=["websocket"], wait_timeout=WAIT)
    own_server.kill()
    await asyncio.wait_for(c.wait(), WAIT)
    assert len(rec.reasons) == 1
    assert rec.connects == 1
    with pytest.raises(BadNamespaceError):
        await c.emit("echo", 1)


async def test_no_reconnection_after_disconnect(
    own_server: ServerProcess, clients: list[Any], until: Until
) -> None:
    c = fast_client(reconnection_delay=0.05, reconnection_delay_max=0.05)
    clients.append(c)
    rec = Recorder(c)
    await c.connect(own_server.url, transports=["websocket"], wait_timeout=WAIT)
    await c.disconnect()
    assert rec.reasons == [c.reason.CLIENT_DISCONNECT]
    await asyncio.wait_for(c.wait(), WAIT)
    await asyncio.sleep(0.3)
    assert rec.connects == 1 and not c.connected
    # disconnect() while reconnecting stops the attempts
    await c.connect(own_server.url, transports=["websocket"], wait_timeout=WAIT)
    own_server.kill()
    await until(lambda: len(rec.reasons) == 2, what="the disconnect")
    await asyncio.sleep(0.2)
    await c.disconnect()
    await asyncio.wait_for(c.wait(), WAIT)
    await asyncio.to_thread(own_server.start)
    await asyncio.sleep(0.5)
    assert rec.connects == 2 and not c.connected


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connect_to_nothing_fails_then_retry_waits_for_the_server(
    peer_kind: str,
    transports: list[str],
    clients: list[Any],
    make_peer: Callable[..., ServerProcess],
) -> None:
    port = _dead_port()
    c = fast_client()
    clients.append(c)
    errors: list[Any] = []
    c.on("connect_error", errors.append)
    with pytest.raises(ferrosio.exceptions.ConnectionError):
        await c.connect(f"http://127.0.0.1:{port}", transports=transports)
    assert len(errors) == 1 and isinstance(errors[0], str)
    assert not c.connected
    with pytest.raises(BadNamespaceError):
        await c.emit("echo", 1)

    srv = make_peer(peer_kind, port=port, start=False)
    connecting = asyncio.ensure_future(
        c.connect(srv.url, transports=transports, retry=True, wait_timeout=WAIT)
    )
    await asyncio.sleep(0.5)
    assert not connecting.done()
    await asyncio.to_thread(srv.start)
    await asyncio.wait_for(connecting, WAIT)
    assert await c.call("echo", 1, timeout=WAIT) == 1


async def test_auth_is_evaluated_on_each_connection_and_a_refusal_ends_the_namespace(
    own_server: ServerProcess, clients: list[Any], until: Until
) -> None:
    tokens = iter(["secret", "expired"])
    calls: list[str] = []

    async def auth() -> dict[str, str]:
        token = next(tokens, "expired")
        calls.append(token)
        return {"token": token}

    c = fast_client()
    clients.append(c)
    rec = Recorder(c, namespace="/admin")
    errors: list[Any] = []
    c.on("connect_error", errors.append, namespace="/admin")
    await c.connect(
        own_server.url,
        transports=["websocket"],
        namespaces=["/admin"],
        auth=auth,
        wait_timeout=WAIT,
    )
    assert await c.call("echo", 1, namespace="/admin", timeout=WAIT) == 1
    own_server.kill()
    await until(lambda: bool(rec.reasons), what="the disconnect")
    await asyncio.to_thread(own_server.start)
    # the reconnection asks for auth again, and the server refuses it this time
    await until(lambda: bool(errors), what="the refusal")
    assert errors == [{"message": "unauthorized"}]
    assert calls == ["secret", "expired"]
    await asyncio.wait_for(c.wait(), WAIT)  # nothing left to reconnect
    assert rec.connects == 1
    with pytest.raises(BadNamespaceError):
        await c.emit("echo", 2, namespace="/admin")
