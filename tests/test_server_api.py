"""The python-socketio-style API of ferrosio.AsyncServer, in-process, against python-socketio's
real AsyncClient over WebSocket."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio

import ferrosio
from ferrosio.testing import wait_until

WAIT = 10.0  # upper bound for anything to happen; never a timing assertion


async def until(cond: Callable[[], bool], what: str) -> None:
    await wait_until(cond, WAIT, what)


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Any]]:
    made: list[socketio.AsyncClient] = []

    async def connect(url: str, **kw: Any) -> socketio.AsyncClient:
        c = socketio.AsyncClient(reconnection=False)
        handlers = kw.pop("handlers", {})
        for ev, fn in handlers.items():
            c.on(ev, fn, namespace=kw.get("namespaces", ["/"])[0])
        made.append(c)
        await c.connect(url, transports=["websocket"], wait_timeout=5, **kw)
        return c

    yield connect
    for c in made:
        if c.connected:
            await c.disconnect()


async def test_sync_and_async_handlers_and_return_value_acks(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()

    @sio.event
    def plain(sid: str, x: Any) -> Any:
        return x

    @sio.on("several")
    async def several(sid: str, a: Any, b: Any) -> Any:
        await asyncio.sleep(0)
        return (b, a)

    @sio.on("nothing")
    async def nothing(sid: str) -> None:
        return None

    url = await make_server(sio)
    c = await clients(url)
    assert await c.call("plain", {"k": [1, 2]}, timeout=WAIT) == {"k": [1, 2]}
    assert await c.call("several", (1, "two"), timeout=WAIT) == ("two", 1)
    assert await c.call("nothing", timeout=WAIT) is None
    # no handler: an empty ack, as python-socketio does
    assert await c.call("nobody-listens", timeout=WAIT) is None


async def test_catch_all_receives_the_event_name(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    seen: list[Any] = []

    @sio.on("*")
    def anything(event: str, sid: str, *args: Any) -> Any:
        seen.append((event, args))
        return event

    url = await make_server(sio)
    c = await clients(url)
    assert await c.call("whatever", (1, 2), timeout=WAIT) == "whatever"
    assert seen == [("whatever", (1, 2))]


async def test_class_based_namespace(make_server, clients) -> None:
    events: list[Any] = []

    class Chat(ferrosio.AsyncNamespace):
        async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
            events.append(("connect", auth))
            await self.enter_room(sid, "lobby")

        def on_disconnect(self, sid: str, reason: str) -> None:
            events.append(("disconnect", reason))

        async def on_hello(self, sid: str, name: str) -> str:
            await self.emit("greeting", f"hi {name}", room="lobby")
            return "ok"

    sio = ferrosio.AsyncServer()
    sio.register_namespace(Chat("/chat"))
    url = await make_server(sio)
    got: list[Any] = []
    c = await clients(url, namespaces=["/chat"], auth={"u": 1}, handlers={"greeting": got.append})
    assert await c.call("hello", "bob", namespace="/chat", timeout=WAIT) == "ok"
    await until(lambda: got == ["hi bob"], "greeting")
    await c.disconnect()
    await until(lambda: len(events) == 2, "disconnect")
    assert events[1] in (("disconnect", "client disconnect"), ("disconnect", "transport close"))
    assert events[0] == ("connect", {"u": 1})


async def test_a_raising_handler_is_logged_and_the_connection_survives(
    make_server, clients, caplog: pytest.LogCaptureFixture
) -> None:
    sio = ferrosio.AsyncServer()

    @sio.event
    def boom(sid: str) -> None:
        raise RuntimeError("kaboom")

    @sio.event
    async def aboom(sid: str) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async kaboom")

    @sio.event
    def ping(sid: str) -> str:
        return "pong"

    url = await make_server(sio)
    c = await clients(url)
    with caplog.at_level(logging.ERROR, logger="ferrosio.server"):
        await c.emit("boom")
        await c.emit("aboom")
        assert await c.call("ping", timeout=WAIT) == "pong"
        await until(lambda: "async kaboom" in caplog.text, "async log")
    assert "kaboom" in caplog.text
    assert "Traceback" in caplog.text
    assert c.connected


async def test_refused_connections_carry_message_and_data(make_server) -> None:
    sio = ferrosio.AsyncServer()

    @sio.on("connect")
    def connect(sid: str, environ: dict[str, Any], auth: Any) -> Any:
        if auth == {"mode": "false"}:
            return False
        if auth == {"mode": "raise"}:
            raise ferrosio.exceptions.ConnectionRefusedError("nope", {"retry": 3})
        return None

    url = await make_server(sio)
    for auth, expected in [
        ({"mode": "false"}, {"message": "Connection rejected by server"}),
        ({"mode": "raise"}, {"message": "nope", "data": {"retry": 3}}),
    ]:
        c = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        c.on("connect_error", errors.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await c.connect(url, transports=["websocket"], auth=auth, wait_timeout=5)
        await until(lambda errors=errors: bool(errors), "connect_error")
        # python-socketio's client hands the CONNECT_ERROR object to its handler
        assert errors[0] == expected
        await c.disconnect()
    ok = socketio.AsyncClient(reconnection=False)
    await ok.connect(url, transports=["websocket"], auth={"mode": "ok"}, wait_timeout=5)
    await ok.disconnect()


async def test_unknown_namespace_is_refused(make_server) -> None:
    sio = ferrosio.AsyncServer()
    url = await make_server(sio)
    c = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await c.connect(url, transports=["websocket"], namespaces=["/nowhere"], wait_timeout=5)
    await c.disconnect()


async def test_call_returns_the_client_answer_or_times_out(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    sids: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))
    url = await make_server(sio)
    c = await clients(url)
    c.on("add", lambda a, b: a + b)
    c.on("silent", lambda *a: None)  # returns None: python-socketio still acks with no args

    async def never(*a: Any) -> None:
        await asyncio.sleep(WAIT)

    c.on("never", never)
    await until(lambda: bool(sids), "connect")
    assert await sio.call("add", (2, 3), to=sids[0], timeout=WAIT) == 5
    assert await sio.call("silent", to=sids[0], timeout=WAIT) is None
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await sio.call("never", to=sids[0], timeout=0.3)


async def test_pending_call_fails_when_the_client_disconnects(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    sids: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))
    url = await make_server(sio)
    c = await clients(url)
    hold = asyncio.Event()

    async def slow(*a: Any) -> None:
        await hold.wait()

    c.on("slow", slow)
    await until(lambda: bool(sids), "connect")
    pending = asyncio.ensure_future(sio.call("slow", to=sids[0], timeout=WAIT))
    await asyncio.sleep(0.1)
    await c.disconnect()
    hold.set()
    with pytest.raises(ferrosio.exceptions.DisconnectedError):
        await pending


async def test_sessions_and_environ(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    environs: list[dict[str, Any]] = []

    @sio.on("connect")
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        environs.append(environ)
        await sio.save_session(sid, {"n": 0})

    @sio.event
    async def bump(sid: str) -> int:
        async with sio.session(sid) as session:
            session["n"] += 1
        return int((await sio.get_session(sid))["n"])

    url = await make_server(sio)
    c = await clients(url, headers={"X-Custom": "yes"})
    assert await c.call("bump", timeout=WAIT) == 1
    assert await c.call("bump", timeout=WAIT) == 2
    env = environs[0]
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert "EIO=4" in env["QUERY_STRING"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["PATH_INFO"] == "/socket.io/"


async def test_disconnect_reasons_and_server_side_disconnect(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    reasons: list[str] = []
    sids: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))
    sio.on("disconnect", lambda sid, reason: reasons.append(reason))
    url = await make_server(sio)
    c1 = await clients(url)
    await until(lambda: len(sids) == 1, "connect")
    await sio.disconnect(sids[0])
    await until(lambda: reasons == ["server disconnect"], "server disconnect")
    await until(lambda: not c1.connected, "client notices")
    c2 = await clients(url)
    await until(lambda: len(sids) == 2, "connect")
    await c2.disconnect()
    # python-socketio's client queues `41` then closes the WebSocket without waiting for its
    # writer, so the server may see the transport close first: both are a client's doing.
    await until(lambda: len(reasons) == 2, "client disconnect")
    assert reasons[1] in ("client disconnect", "transport close")
    assert sio.rooms(sids[0]) == []


async def test_rooms_skip_sid_and_close_room(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    sids: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))
    url = await make_server(sio)
    inbox: dict[int, list[Any]] = {0: [], 1: [], 2: []}
    cs = []
    for i in range(3):
        cs.append(await clients(url, handlers={"m": inbox[i].append}))
        await until(lambda i=i: len(sids) == i + 1, "connect")
    for sid in sids[:2]:
        await sio.enter_room(sid, "red")
    await sio.enter_room(sids[2], "blue")
    assert sorted(sio.rooms(sids[0])) == sorted([sids[0], "red"])
    await sio.emit("m", "to-red", room="red")
    await sio.emit("m", "red+blue-but-0", to=["red", "blue"], skip_sid=sids[0])
    await sio.emit("m", "all-but-1-2", skip_sid=[sids[1], sids[2]])
    await sio.close_room("red")
    await sio.emit("m", "red-after-close", room="red")
    await sio.emit("m", "done")
    await until(lambda: all(inbox[i][-1:] == ["done"] for i in range(3)), "done")
    assert inbox[0] == ["to-red", "all-but-1-2", "done"]
    assert inbox[1] == ["to-red", "red+blue-but-0", "done"]
    assert inbox[2] == ["red+blue-but-0", "done"]
    assert "red" not in sio.rooms(sids[0])


async def test_rooms_reflect_changes_made_in_the_same_handler(make_server, clients) -> None:
    # The handler runs inside a drain, whose commands are held in a batch: rooms() must still
    # see the joins and leaves just requested.
    sio = ferrosio.AsyncServer()
    sids: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))

    @sio.on("shuffle")
    async def shuffle(sid: str) -> list[list[str]]:
        seen = []
        await sio.enter_room(sid, "a")
        await sio.enter_room(sid, "b")
        seen.append(sio.rooms(sid))
        await sio.leave_room(sid, "a")
        seen.append(sio.rooms(sid))
        await sio.close_room("b")
        seen.append(sio.rooms(sid))
        seen.append(sio.rooms(sid, namespace="/other"))
        seen.append(sio.rooms("no-such-sid"))
        return seen

    url = await make_server(sio)
    c = await clients(url)
    await until(lambda: len(sids) == 1, "connect")
    sid = sids[0]
    got = await c.call("shuffle", timeout=WAIT)
    assert got == [[sid, "a", "b"], [sid, "b"], [sid], [], []]


async def test_emits_from_the_connect_handler_follow_the_connect_reply(
    make_server, clients
) -> None:
    sio = ferrosio.AsyncServer()

    @sio.on("connect")
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.emit("welcome", "first", to=sid)
        await sio.enter_room(sid, "r")
        await sio.emit("welcome", "second", room="r")

    url = await make_server(sio)
    got: list[Any] = []
    await clients(url, handlers={"welcome": got.append})
    await until(lambda: len(got) == 2, "welcome")
    assert got == ["first", "second"]


async def test_a_client_that_vanishes_mid_send_leaves_nothing_behind(make_server) -> None:
    sio = ferrosio.AsyncServer()
    sids: list[str] = []
    gone: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))
    sio.on("disconnect", lambda sid, reason: gone.append(reason))
    url = await make_server(sio)
    port = int(url.rsplit(":", 1)[1])
    # a raw client: handshake, join "/", then close the TCP socket abruptly
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    raw.sendall(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"40")  # masked text frame "40"
    await until(lambda: len(sids) == 1, "connect")
    for i in range(200):
        await sio.emit("flood", "x" * 1000, to=sids[0])
        if i == 50:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()
    await until(lambda: len(gone) == 1, "disconnect")
    assert gone[0] in ("transport close", "transport error")
    assert sio.rooms(sids[0]) == []
    assert not sio._sockets  # the Python side forgot it too
    # and the server still serves others
    c = socketio.AsyncClient(reconnection=False)
    await c.connect(url, transports=["websocket"], wait_timeout=5)
    await c.disconnect()


async def test_graceful_shutdown_flushes_queued_packets(clients) -> None:
    sio = ferrosio.AsyncServer()
    sids: list[str] = []
    reasons: list[str] = []
    sio.on("connect", lambda sid, environ: sids.append(sid))
    sio.on("disconnect", lambda sid, reason: reasons.append(reason))
    port = await sio.start("127.0.0.1", 0)
    got: list[int] = []
    c = await clients(f"http://127.0.0.1:{port}", handlers={"n": got.append})
    await until(lambda: bool(sids), "connect")
    for i in range(500):
        await sio.emit("n", i, to=sids[0])
    await sio.shutdown(timeout=5)
    await until(lambda: not c.connected, "client disconnected")
    assert got == list(range(500))
    assert reasons == ["server disconnect"]


def _polling_handshake(
    port: int, headers: dict[str, str], query: str = ""
) -> tuple[int, dict[str, str]]:
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling{query}"
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


async def test_allow_request_refuses_before_a_session_exists(make_server) -> None:
    environs: list[dict[str, Any]] = []

    def allow(environ: dict[str, Any]) -> bool:
        environs.append(environ)
        return environ.get("HTTP_X_TOKEN") == "ok"

    sio = ferrosio.AsyncServer(allow_request=allow)
    connects: list[str] = []
    sio.on("connect", lambda sid, environ: connects.append(sid))
    url = await make_server(sio)
    ok = socketio.AsyncClient(reconnection=False)
    await ok.connect(url, transports=["websocket"], headers={"X-Token": "ok"}, wait_timeout=5)
    await ok.disconnect()
    for transports in (["websocket"], ["polling"]):
        bad = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await bad.connect(url, transports=transports, headers={"X-Token": "no"}, wait_timeout=5)
        await bad.disconnect()
    port = int(url.rsplit(":", 1)[1])
    status, _ = await asyncio.to_thread(_polling_handshake, port, {"X-Token": "no"})
    assert status == 403
    assert len(connects) == 1
    assert [e.get("HTTP_X_TOKEN") for e in environs] == ["ok", "no", "no", "no"]


async def test_async_allow_request_and_callable_cors(make_server) -> None:
    async def allow(environ: dict[str, Any]) -> bool:
        await asyncio.sleep(0)
        return "let=me" in environ["QUERY_STRING"]

    asked: list[str] = []

    def origins(origin: str) -> bool:
        asked.append(origin)
        return origin.endswith(".example")

    sio = ferrosio.AsyncServer(allow_request=allow, cors_allowed_origins=origins)
    url = await make_server(sio)
    port = int(url.rsplit(":", 1)[1])
    c = socketio.AsyncClient(reconnection=False)
    await c.connect(f"{url}?let=me", transports=["websocket"], wait_timeout=5)
    await c.disconnect()
    good = {"Origin": "http://app.example"}
    status, headers = await asyncio.to_thread(_polling_handshake, port, good, "&let=me")
    assert status == 200
    assert headers["access-control-allow-origin"] == "http://app.example"
    status, _ = await asyncio.to_thread(_polling_handshake, port, good)
    assert status == 403  # the origin passes, allow_request does not (no "let=me")
    status, _ = await asyncio.to_thread(_polling_handshake, port, {"Origin": "http://evil.test"})
    assert status == 403
    assert asked == ["http://app.example", "http://evil.test"]  # each origin asked once


async def test_always_connect_accepts_first_and_a_refusal_disconnects(make_server) -> None:
    sio = ferrosio.AsyncServer(always_connect=True)
    reasons: list[str] = []

    @sio.on("connect")
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        await asyncio.sleep(0.05)  # the client is already connected meanwhile
        return auth != {"refuse": True}

    sio.on("disconnect", lambda sid, reason: reasons.append(reason))
    url = await make_server(sio)
    ok = socketio.AsyncClient(reconnection=False)
    await ok.connect(url, transports=["websocket"], auth={}, wait_timeout=5)
    assert ok.connected
    await ok.disconnect()
    refused = socketio.AsyncClient(reconnection=False)
    gone: list[Any] = []
    refused.on("disconnect", lambda *a: gone.append(a))
    await refused.connect(url, transports=["websocket"], auth={"refuse": True}, wait_timeout=5)
    await until(lambda: bool(gone), "refused client is disconnected")
    await until(lambda: "server disconnect" in reasons, "server-side reason")


async def test_namespaces_option(make_server) -> None:
    open_sio = ferrosio.AsyncServer(namespaces="*")
    url = await make_server(open_sio)
    c = socketio.AsyncClient(reconnection=False)
    await c.connect(url, transports=["websocket"], namespaces=["/anything"], wait_timeout=5)
    await c.disconnect()
    listed = ferrosio.AsyncServer(namespaces=["/a"])
    url = await make_server(listed)
    c = socketio.AsyncClient(reconnection=False)
    await c.connect(url, transports=["websocket"], namespaces=["/a"], wait_timeout=5)
    await c.disconnect()
    for refused in (["/b"], ["/"]):  # "/" too: the list replaces the default ["/"]
        c = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await c.connect(url, transports=["websocket"], namespaces=refused, wait_timeout=5)
        await c.disconnect()


async def test_rooms_per_socket_are_bounded(make_server, clients, caplog) -> None:
    """``max_rooms_per_socket``: a join past the bound is refused (the client stays out of that
    room), warned of once per client; other clients, and the same client after it left a room,
    join as before; a cluster-style ``sockets_join`` obeys the same bound."""
    caplog.set_level(logging.WARNING)
    with pytest.raises(ValueError, match="max_rooms_per_socket"):
        ferrosio.AsyncServer(max_rooms_per_socket=0)
    sio = ferrosio.AsyncServer(max_rooms_per_socket=3, logger=True)

    @sio.on("join")
    async def join(sid: str, names: list[str]) -> list[str]:
        for name in names:
            await sio.enter_room(sid, name)
        return sorted(r for r in sio.rooms(sid) if r != sid)

    @sio.on("leave")
    async def leave(sid: str, name: str) -> None:
        await sio.leave_room(sid, name)

    url = await make_server(sio)
    got: dict[str, list[Any]] = {"a": [], "b": []}
    a = await clients(url, handlers={"news": lambda d: got["a"].append(d)})
    b = await clients(url, handlers={"news": lambda d: got["b"].append(d)})

    names = [f"r{i}" for i in range(10)]
    assert await a.call("join", names, timeout=WAIT) == ["r0", "r1", "r2"]
    assert await a.call("join", ["r9", "r0"], timeout=WAIT) == ["r0", "r1", "r2"]
    assert await b.call("join", ["r5", "r6"], timeout=WAIT) == ["r5", "r6"], "per client"

    def refused() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "max_rooms_per_socket=3" in r.getMessage()
        ]

    await until(refused, "the refusal logged")
    assert len(refused()) == 1, refused()
    assert a.get_sid() in refused()[0] and "'r3'" in refused()[0]

    # Everyone into "all": a is full and stays out, b joins; emits to the room show it.
    await sio.sockets_join("all")
    await sio.emit("news", "to all", room="all")
    await until(lambda: got["b"] == ["to all"], "b got the room's emit")
    await sio.emit("news", "to r0", room="r0")
    await until(lambda: got["a"] == ["to r0"], "a got r0's emit, not the room it was refused")
    assert "all" not in sio.rooms(a.get_sid())

    # Leaving a room makes room.
    await a.emit("leave", "r1")
    assert await a.call("join", ["r7"], timeout=WAIT) == ["r0", "r2", "r7"]
    assert len(refused()) == 1, "once per client"
