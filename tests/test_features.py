"""Socket.IO 4.x features of ferrosio (acks from many clients, connection and packet
middlewares, outgoing listeners, dynamic namespaces, ``SimpleClient``), against real peers:
the official npm socket.io-client (tests/node/features.mjs), python-socketio's AsyncClient,
and for ``SimpleClient`` the Node reference server and ferrosio's reference app.

Every wait is bounded; nothing depends on speed (a timeout is only ever expected where a
client is made never to answer).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio

import ferrosio
from _harness import TESTS
from ferrosio.exceptions import ConnectionRefusedError, DisconnectedError, TimeoutError

NODE_DIR = TESTS / "node"
SCRIPT = NODE_DIR / "features.mjs"
WAIT = 20.0


def _require_node_client() -> None:
    client = NODE_DIR / "node_modules" / "socket.io-client"
    if shutil.which("node") is None or not client.is_dir():
        pytest.fail("needs node and `npm install --prefix tests/node`", pytrace=False)


class NodeScript:
    """features.mjs running as a subprocess of the test's loop (the server shares the loop)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, mode: str, url: str, *args: str) -> NodeScript:
        _require_node_client()
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            mode,
            url,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        if not raw:
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"features.mjs ended early: {err.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(raw)
        return result

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def psio() -> AsyncIterator[Callable[..., Any]]:
    made: list[socketio.AsyncClient] = []

    async def connect(url: str, **kw: Any) -> socketio.AsyncClient:
        handlers = kw.pop("handlers", {})
        c = socketio.AsyncClient(reconnection=False)
        for ev, fn in handlers.items():
            c.on(ev, fn, namespace=kw.get("namespaces", ["/"])[0])
        made.append(c)
        await c.connect(url, transports=["websocket"], wait_timeout=5, **kw)
        return c

    yield connect
    for c in made:
        if c.connected:
            await c.disconnect()


def room_server() -> ferrosio.AsyncServer:
    sio = ferrosio.AsyncServer()

    @sio.on("join")
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    return sio


# ------------------------------------------------------------------ acks from many clients ----
async def test_call_to_a_room_collects_every_answer_from_node_clients(make_server) -> None:
    sio = room_server()
    url = await make_server(sio)
    node = await NodeScript.start("multi-ack", url, "3")
    try:
        ready = await node.line()
        assert ready.get("ready"), ready
        answers = await sio.call("ask", "q", room="r", timeout=WAIT)
        assert sorted(answers) == ["q:0", "q:1", "q:2"]
        # everyone (broadcast=True) and a list of rooms as to=
        assert sorted(await sio.call("ask", "b", broadcast=True, timeout=WAIT)) == [
            "b:0",
            "b:1",
            "b:2",
        ]
        assert sorted(await sio.call("ask", "t", to=["r"], timeout=WAIT)) == ["t:0", "t:1", "t:2"]
        # skip_sid leaves a recipient out, and it is not waited for
        skipped = ready["sids"][1]
        assert sorted(await sio.call("ask", "s", room="r", skip_sid=skipped, timeout=WAIT)) == [
            "s:0",
            "s:2",
        ]
        # a room nobody is in: nobody to wait for
        assert await sio.call("ask", "n", room="empty", timeout=WAIT) == []
        # one client never answers: the error names how many of how many answered
        with pytest.raises(TimeoutError, match="2 of 3 clients"):
            await sio.call("ask", "silent", room="r", timeout=1)
        # Node's callback shape: (err, responses), once
        got: list[tuple[Any, list[Any]]] = []
        await sio.emit("ask", "c", room="r", callback=lambda e, r: got.append((e, r)), timeout=WAIT)
        async with asyncio.timeout(WAIT):
            while not got:
                await asyncio.sleep(0.01)
        assert got[0][0] is None and sorted(got[0][1]) == ["c:0", "c:1", "c:2"]
        assert len(sio._broadcast_acks) == 0
        await sio.emit("bye")
        assert (await node.line()).get("done")
    finally:
        await node.close()


async def test_broadcast_acks_from_python_socketio_clients(make_server, psio) -> None:
    sio = room_server()
    url = await make_server(sio)
    for i in range(3):
        await psio(url, handlers={"ask": lambda x, i=i: (x, i) if i != 1 else None})
    # a tuple answer stays a tuple; no arguments gives None (as call() to one client)
    assert sorted(await sio.call("ask", "p", broadcast=True, timeout=WAIT), key=repr) == sorted(
        [("p", 0), None, ("p", 2)], key=repr
    )
    # one client, Node's way (socket.timeout(ms).emit(ev, (err, response) => ...)): a list of one
    one = next(iter(sio._sockets))
    got: list[Any] = []
    await sio.emit("ask", "o", to=one, callback=lambda e, r: got.append((e, r)), timeout=WAIT)
    async with asyncio.timeout(WAIT):
        while not got:
            await asyncio.sleep(0.01)
    assert got[0][0] is None and len(got[0][1]) == 1


async def test_cluster_requests_without_a_cluster_answer_for_this_server(make_server, psio) -> None:
    """fetch_sockets/all_rooms/server_side_* without a client_manager: this server only."""
    sio = room_server()
    url = await make_server(sio)
    a = await psio(url, auth={"token": "t"})
    await psio(url)
    assert await a.call("join", "lobby", timeout=WAIT) is True
    await sio.save_session(a.get_sid(), {"user": "ann"})
    found = await sio.fetch_sockets(room="lobby")
    assert [s.sid for s in found] == [a.get_sid()]
    s = found[0]
    assert s.local and s.rooms == {a.get_sid(), "lobby"} and s.data == {"user": "ann"}
    assert s.handshake["query"]["EIO"] == "4" and s.handshake["address"] == "127.0.0.1"
    assert len(await sio.fetch_sockets()) == 2
    assert await sio.fetch_sockets(skip_sid="lobby") != found
    assert "lobby" in await sio.all_rooms()
    await sio.server_side_emit("nobody", 1)  # no other server: nothing sent
    assert await sio.server_side_call("nobody", 1) == []
    stats = sio.cluster_stats()
    assert stats is None


async def test_broadcast_ack_needs_a_timeout_and_duplicates_count_once(make_server, psio) -> None:
    sio = room_server()
    url = await make_server(sio)
    c = await psio(url, handlers={"ask": lambda x: x})
    with pytest.raises(ValueError, match="timeout"):
        await sio.emit("ask", 1, room="r", callback=lambda *a: None)
    # a second answer from the same client for the same id is ignored (one per sid)
    entry: list[Any] = []
    sio._broadcast_acks.register(
        asyncio.get_running_loop(), 10_000, "/", WAIT, lambda e, r: entry.append((e, r))
    )
    assert sio._broadcast_acks.on_ack(c.get_sid(), 10_000, [1])
    assert sio._broadcast_acks.on_ack(c.get_sid(), 10_000, [2])
    sio._broadcast_acks.on_reach(10_000, 1)
    assert entry == [(None, [1])]
    assert sio._broadcast_acks.on_ack(c.get_sid(), 10_000, [3]) is False  # gone when complete


async def test_pending_broadcast_acks_fail_at_shutdown() -> None:
    sio = room_server()
    await sio.start("127.0.0.1", 0)
    ended: list[tuple[Any, list[Any]]] = []
    sio._broadcast_acks.register(
        asyncio.get_running_loop(), 99_999, "/", WAIT, lambda e, r: ended.append((e, r))
    )
    await sio.shutdown(timeout=2)
    assert len(ended) == 1 and isinstance(ended[0][0], DisconnectedError)
    assert len(sio._broadcast_acks) == 0


# ------------------------------------------------------------------------- middlewares ----
async def test_connection_middleware_refusal_reaches_node_connect_error(make_server) -> None:
    sio = ferrosio.AsyncServer()
    order: list[str] = []

    @sio.use()
    def first(sid: str, environ: dict[str, Any], auth: Any) -> None:
        order.append("first")

    @sio.use()
    async def check(sid: str, environ: dict[str, Any], auth: Any) -> None:
        order.append("check")
        await asyncio.sleep(0)
        if auth.get("token") != "good":
            raise ConnectionRefusedError("unauthorized", {"code": 4001})

    @sio.event
    def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        order.append("connect")

    url = await make_server(sio)
    node = await NodeScript.start("refused", url)
    try:
        out = await node.line()
    finally:
        await node.close()
    assert out["result"] == {"ok": False, "message": "unauthorized", "data": {"code": 4001}}
    assert order == ["first", "check"]  # in order, and the connect handler did not run


async def test_connection_middlewares_with_python_socketio(make_server, psio) -> None:
    sio = ferrosio.AsyncServer()
    calls: list[tuple[str, Any]] = []
    sio.use(lambda sid, environ, auth: calls.append(("/", auth)))
    sio.use(lambda sid, environ, auth: auth.get("ok"), namespace="/chat")  # False refuses
    sio.on("connect", lambda sid, environ, auth: calls.append(("connect", auth)))
    url = await make_server(sio)
    await psio(url, auth={"a": 1})
    assert calls == [("/", {"a": 1}), ("connect", {"a": 1})]
    refused = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", lambda data: errors.append(data), namespace="/chat")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(
            url, namespaces=["/chat"], auth={"ok": False}, transports=["websocket"]
        )
    assert errors == [{"message": "Connection rejected by server"}]
    await psio(url, namespaces=["/chat"], auth={"ok": True})


async def test_packet_middleware_drops_and_edits_for_node(make_server) -> None:
    sio = ferrosio.AsyncServer()

    @sio.use_packet()
    def only_allowed(sid: str, event: str, args: list[Any]) -> None:
        if event == "blocked":
            raise PermissionError("not allowed")
        args.append("seen")

    handled: list[str] = []

    @sio.on("*")
    def anything(event: str, sid: str, *args: Any) -> list[Any]:
        handled.append(event)
        return list(args)

    url = await make_server(sio)
    node = await NodeScript.start("packets", url)
    try:
        out = await node.line()
    finally:
        await node.close()
    assert out["allowed"] == [1, "seen"]
    assert "timed out" in out["blocked"]["error"]  # dropped: never handled, never acked
    assert out["after"] == [3, "seen"]
    assert handled == ["allowed", "allowed"]


async def test_async_packet_middleware_with_python_socketio(make_server, psio) -> None:
    sio = ferrosio.AsyncServer()

    async def slow_check(sid: str, event: str, args: list[Any]) -> None:
        await asyncio.sleep(0)
        args[0] = args[0] * 2

    sio.use_packet(slow_check)
    sio.on("double", lambda sid, x: x)
    url = await make_server(sio)
    c = await psio(url)
    assert await c.call("double", 21, timeout=WAIT) == 42


async def test_on_any_outgoing_sees_every_emit(make_server, psio) -> None:
    sio = room_server()
    seen: list[tuple[str, list[Any], str, Any]] = []
    sio.on_any_outgoing(lambda event, args, nsp, to: seen.append((event, args, nsp, to)))
    url = await make_server(sio)
    got: list[Any] = []
    c = await psio(url, handlers={"news": lambda *a: got.append(a)})
    await c.call("join", "r", timeout=WAIT)
    sid = c.get_sid()
    await sio.emit("news", 1, to=sid)
    await sio.emit("news", (2, 3), room="r")
    await sio.emit("news")
    async with asyncio.timeout(WAIT):
        while len(got) < 3:
            await asyncio.sleep(0.01)
    assert seen == [
        ("news", [1], "/", sid),
        ("news", [2, 3], "/", ["r"]),
        ("news", [], "/", None),
    ]


# -------------------------------------------------------------------- dynamic namespaces ----
async def test_dynamic_namespace_for_node(make_server) -> None:
    sio = ferrosio.AsyncServer()
    dyn = re.compile(r"^/dynamic-\d+$")
    joined: list[str] = []

    @sio.use(namespace=dyn)
    def mw(sid: str, environ: dict[str, Any], auth: Any) -> None:
        joined.append(sio.namespace_of(sid) or "?")

    @sio.on("whoami", namespace=dyn)
    def whoami(sid: str, x: Any) -> Any:
        return sio.namespace_of(sid)

    url = await make_server(sio)
    node = await NodeScript.start("dynamic", url)
    try:
        out = await node.line()
    finally:
        await node.close()
    assert out["dynamic"] == {"ok": True}
    assert out["whoami"] == "/dynamic-42"
    assert out["other"] == {"ok": False, "message": "Invalid namespace", "data": None}
    assert joined == ["/dynamic-42"]


async def test_dynamic_namespace_predicate_and_cleanup(make_server, psio) -> None:
    sio = ferrosio.AsyncServer()
    room_of = sio.of(lambda name: name.startswith("/room-"))
    sio.on("hello", lambda sid: f"hi from {sio.namespace_of(sid)}", namespace=room_of.matcher)
    url = await make_server(sio)
    c = await psio(url, namespaces=["/room-a"])
    assert await c.call("hello", namespace="/room-a", timeout=WAIT) == "hi from /room-a"
    # a handler added to the parent later applies to the live child too
    sio.on("late", lambda sid: "late", namespace=room_of.matcher)
    assert await c.call("late", namespace="/room-a", timeout=WAIT) == "late"
    assert "/room-a" in sio.handlers
    # registering on a live child's own name detaches it: its siblings do not get it
    c2 = await psio(url, namespaces=["/room-b"])
    sio.on("mine", lambda sid: "b only", namespace="/room-b")
    assert await c2.call("mine", namespace="/room-b", timeout=WAIT) == "b only"
    assert await c2.call("late", namespace="/room-b", timeout=WAIT) == "late"  # kept its copy
    assert "mine" not in sio.handlers["/room-a"]
    await c2.disconnect()
    await c.disconnect()
    async with asyncio.timeout(WAIT):
        while "/room-a" in sio.handlers:  # the child goes with its last client: bounded
            await asyncio.sleep(0.01)
    assert sio._children == {}
    assert "/room-b" in sio.handlers  # a namespace of its own now: it stays


async def test_dynamic_namespace_is_a_server_feature() -> None:
    with pytest.raises(TypeError, match="server feature"):
        ferrosio.AsyncClient().on("x", lambda: None, namespace=re.compile("x"))


async def test_star_namespace_catch_all_still_works(make_server, psio) -> None:
    sio = ferrosio.AsyncServer(namespaces="*")
    sio.on("*", lambda event, nsp, sid, *a: [event, nsp], namespace="*")
    url = await make_server(sio)
    c = await psio(url, namespaces=["/any"])
    assert await c.call("ev", 1, namespace="/any", timeout=WAIT) == ["ev", "/any"]


# --------------------------------------------------------------------------- SimpleClient ----
@pytest.mark.parametrize("kind", ["node", "ferrosio"])
def test_simple_client_against_reference_servers(make_peer, kind: str) -> None:
    srv = make_peer(kind)
    with ferrosio.SimpleClient(reconnection=False) as client:
        client.connect(srv.url, transports=["websocket"], wait_timeout=10)
        assert client.sid and client.transport == "websocket"
        assert client.call("echo", (1, "two"), timeout=WAIT) == (1, "two")
        client.emit("echo", {"x": 1})  # no ack: the reference app emits it back
        assert client.receive(timeout=WAIT) == ["echo", {"x": 1}]
        with pytest.raises(TimeoutError):
            client.receive(timeout=0.2)
    assert not client.connected
    with pytest.raises(DisconnectedError):
        client.emit("echo", 1)


def test_simple_client_polling_and_refusal(make_peer) -> None:
    srv = make_peer("ferrosio")
    client = ferrosio.SimpleClient(reconnection=False)
    client.connect(srv.url, transports=["polling"], wait_timeout=10)
    assert client.transport == "polling"
    client.disconnect()
    with pytest.raises(ferrosio.exceptions.ConnectionError):
        # /admin needs a token (the reference contract)
        client.connect(srv.url, namespace="/admin", transports=["websocket"], wait_timeout=10)


async def test_async_simple_client_buffer_bound(make_server) -> None:
    sio = ferrosio.AsyncServer()

    @sio.on("flood")
    async def flood(sid: str, n: int) -> str:
        for i in range(n):
            await sio.emit("item", i, to=sid)
        await sio.emit("end", to=sid)
        return "sent"

    url = await make_server(sio)
    async with ferrosio.AsyncSimpleClient(reconnection=False, max_received=3) as client:
        await client.connect(url, transports=["websocket"])
        assert await client.call("flood", 5, timeout=WAIT) == "sent"
        async with asyncio.timeout(WAIT):
            while client.dropped < 3:  # 6 events, room for 3: the oldest 3 dropped
                await asyncio.sleep(0.01)
        assert [await client.receive(timeout=WAIT) for _ in range(3)] == [
            ["item", 3],
            ["item", 4],
            ["end"],
        ]
    with pytest.raises(ValueError):
        ferrosio.AsyncSimpleClient(max_received=0)
