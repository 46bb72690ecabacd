"""The reference contract from the client side: ferrosio's ``AsyncClient`` against the official
Node ``socket.io`` server and against ferrosio's own reference app, over each transport
(WebSocket, long-polling, polling upgraded to WebSocket), and **in-process** (``transport``
``inprocess``: the same reference app in this process, ``client.connect(sio)``, no socket):
the in-process client must pass the same contract as the real one. The contract is
CONTRACT.md in the project's shared material (../shared/reference/, checked out beside the
repository; not part of it).

Negative checks ("the sender does not get its own broadcast") use a fence: a later round trip
on the same connection, so everything the server sent before it has arrived.
"""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

import ferrosio
from _harness import CLIENT_TRANSPORTS, REPO
from ferrosio.client import BadNamespaceError

if TYPE_CHECKING:
    from _harness import ServerProcess, Until

WAIT = 15.0
IN_PROCESS = "inprocess"


@dataclass
class Peer:
    """What a test's clients connect to: a URL with ``transports``, or (``inprocess``) the
    reference app running in this process, connected to with ``connect(sio)``."""

    target: Any
    transports: list[str] | None
    kind: str
    in_process: bool = False


def fresh_reference_app() -> ferrosio.AsyncServer:
    """examples/reference_app.py loaded anew (its own server, rooms and state per test)."""
    path = REPO / "examples" / "reference_app.py"
    spec = importlib.util.spec_from_file_location(f"reference_app_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sio: ferrosio.AsyncServer = module.sio
    return sio


async def peer_of(
    request: pytest.FixtureRequest, peer_kind: str, transport: str
) -> AsyncIterator[Peer]:
    """``inprocess``: the reference app loaded in this process, with no listener, shut down
    after the test; otherwise the shared reference app of ``peer_kind``."""
    if transport != IN_PROCESS:
        ref: ServerProcess = request.getfixturevalue("ref")
        yield Peer(ref.url, CLIENT_TRANSPORTS[transport], peer_kind)
        return
    if peer_kind != "ferrosio":
        pytest.skip("in-process: the peer is ferrosio's reference app in this process")
    sio = fresh_reference_app()
    await sio.start_in_process()
    try:
        yield Peer(sio, None, peer_kind, in_process=True)
    finally:
        await sio.shutdown(timeout=2)


@pytest.fixture(params=[*CLIENT_TRANSPORTS, IN_PROCESS])
def transport(request: pytest.FixtureRequest) -> str:
    """websocket, polling, polling+websocket (to a server process), or inprocess."""
    return str(request.param)


@pytest_asyncio.fixture
async def peer(
    request: pytest.FixtureRequest, peer_kind: str, transport: str
) -> AsyncIterator[Peer]:
    """The reference app of ``peer_kind`` over ``transport``."""
    async for p in peer_of(request, peer_kind, transport):
        yield p


@pytest.fixture(params=["websocket", IN_PROCESS])
def ws_transport(request: pytest.FixtureRequest) -> str:
    """For tests of one transport: WebSocket to a server process, or in-process."""
    return str(request.param)


@pytest_asyncio.fixture
async def ws_peer(
    request: pytest.FixtureRequest, peer_kind: str, ws_transport: str
) -> AsyncIterator[Peer]:
    """The reference app of ``peer_kind`` over WebSocket, or in-process."""
    async for p in peer_of(request, peer_kind, ws_transport):
        yield p


async def connect(clients: list[Any], peer: Peer, **kwargs: Any) -> ferrosio.AsyncClient:
    c = ferrosio.AsyncClient()
    clients.append(c)
    kwargs.setdefault("wait_timeout", WAIT)
    await c.connect(peer.target, transports=peer.transports, **kwargs)
    return c


VALUES: list[Any] = [
    1,
    -2.5,
    "text ü 🦀",
    True,
    None,
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": [1, "x", None, False]}},
]


async def test_echo_with_ack_returns_the_same_args(peer: Peer, clients: list[Any]) -> None:
    c = await connect(clients, peer)
    for v in VALUES:
        assert await c.call("echo", v, timeout=WAIT) == v
    assert await c.call("echo", (1, "two", [3], {"four": 4}), timeout=WAIT) == (
        1,
        "two",
        [3],
        {"four": 4},
    )
    assert await c.call("echo", timeout=WAIT) is None  # no argument, empty ack


async def test_binary_round_trips_at_top_level_and_nested(
    peer: Peer, clients: list[Any], until: Until
) -> None:
    c = await connect(clients, peer)
    blob = bytes(range(256)) * 40
    assert await c.call("echo", b"\x00\x01\x02", timeout=WAIT) == b"\x00\x01\x02"
    assert await c.call("echo", (b"a", {"x": [b"b", {"y": b""}]}, "t", blob), timeout=WAIT) == (
        b"a",
        {"x": [b"b", {"y": b""}]},
        "t",
        blob,
    )
    got: list[Any] = []
    c.on("echo", lambda *a: got.append(a))
    await c.emit("echo", (b"\xff", [b"\xfe"]))
    await until(lambda: bool(got), what="binary echo event")
    assert got == [(b"\xff", [b"\xfe"])]


async def test_echo_without_ack_is_emitted_back_in_order(
    peer: Peer, clients: list[Any], until: Until
) -> None:
    c = await connect(clients, peer)
    got: list[Any] = []

    @c.on("echo")
    def on_echo(*args: Any) -> None:
        got.append(args)

    for i in range(200):
        await c.emit("echo", (i, f"s{i}"))
    await until(lambda: len(got) == 200, what="200 echo events")
    assert got == [(i, f"s{i}") for i in range(200)]


async def test_rooms_join_leave_and_to_room(peer: Peer, clients: list[Any], until: Until) -> None:
    c = await connect(clients, peer)
    room = f"r-{uuid.uuid4().hex[:8]}"
    got: list[Any] = []
    c.on("hello", lambda *a: got.append(a))
    assert await c.call("rooms", timeout=WAIT) == ["all"]
    assert await c.call("join", room, timeout=WAIT) is True
    assert await c.call("rooms", timeout=WAIT) == sorted(["all", room])
    assert await c.call("to_room", (room, "hello", 1, b"\x07"), timeout=WAIT) is True
    await until(lambda: bool(got), what="to_room event")
    assert got == [(1, b"\x07")]
    assert await c.call("leave", room, timeout=WAIT) is True
    assert await c.call("rooms", timeout=WAIT) == ["all"]
    assert await c.call("to_room", (room, "hello", 2), timeout=WAIT) is True
    await c.call("rooms", timeout=WAIT)  # fence
    assert got == [(1, b"\x07")]


async def test_bcast_reaches_others_not_the_sender_and_catch_all(
    peer: Peer, clients: list[Any], until: Until
) -> None:
    a = await connect(clients, peer)
    b = await connect(clients, peer)
    got_a: list[Any] = []
    got_b: list[Any] = []
    a.on("bcast", lambda *x: got_a.append(x))
    b.on("*", lambda event, *x: got_b.append((event, x)))  # catch-all
    tag = uuid.uuid4().hex
    await a.emit("bcast", (tag, b"\x01"))
    await until(lambda: any(x[1][0] == tag for x in got_b), what="bcast on the other client")
    assert ("bcast", (tag, b"\x01")) in got_b
    await a.call("rooms", timeout=WAIT)  # fence
    assert not any(x[0] == tag for x in got_a)


async def test_ask_is_answered_by_the_client_handler(peer: Peer, clients: list[Any]) -> None:
    c = await connect(clients, peer)

    @c.on("question")
    async def question(*args: Any) -> Any:
        await asyncio.sleep(0)
        return ("answer", *args)

    c.on("nothing", lambda *a: None)
    assert await c.call("ask", ("question", 1, b"\x02"), timeout=WAIT) == ("answer", 1, b"\x02")
    # a handler that returns None acks with no arguments; an unhandled event too
    assert await c.call("ask", ("nothing", 1), timeout=WAIT) is None
    assert await c.call("ask", ("unhandled", 1), timeout=WAIT) is None


async def test_disconnect_me_is_a_server_disconnect_without_reconnection(
    peer: Peer, clients: list[Any]
) -> None:
    c = ferrosio.AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.05)
    clients.append(c)
    reasons: list[str] = []
    connects: list[int] = []
    c.on("disconnect", lambda reason: reasons.append(reason))
    c.on("connect", lambda: connects.append(1))
    await c.connect(peer.target, transports=peer.transports, wait_timeout=WAIT)
    await c.emit("disconnect_me")
    await asyncio.wait_for(c.wait(), WAIT)
    assert reasons == [c.reason.SERVER_DISCONNECT]
    assert not c.connected
    with pytest.raises(BadNamespaceError):
        await c.emit("echo", 1)
    await asyncio.sleep(0.3)  # several reconnection delays: none happens
    assert connects == [1]


async def test_admin_namespace_with_auth_beside_main_on_one_connection(
    peer: Peer, clients: list[Any], until: Until
) -> None:
    c = await connect(clients, peer, namespaces=["/", "/admin"], auth={"token": "secret"})
    assert set(c.namespaces) == {"/", "/admin"}
    assert c.get_sid("/") != c.get_sid("/admin")
    got: dict[str, list[Any]] = {"/": [], "/admin": []}
    c.on("echo", lambda *a: got["/"].append(a))
    c.on("echo", lambda *a: got["/admin"].append(a), namespace="/admin")
    # interleaved on both namespaces
    results = await asyncio.gather(
        *(
            c.call("echo", (ns, i), namespace=ns, timeout=WAIT)
            for i in range(20)
            for ns in ("/", "/admin")
        )
    )
    assert results == [(ns, i) for i in range(20) for ns in ("/", "/admin")]
    await c.emit("echo", "main")
    await c.emit("echo", "adm", namespace="/admin")
    await until(lambda: bool(got["/"] and got["/admin"]), what="echo on both namespaces")
    assert got == {"/": [("main",)], "/admin": [("adm",)]}
    # rooms are per namespace: the /admin socket is not in "/"'s room "all"
    hello: dict[str, list[Any]] = {"/": [], "/admin": []}
    c.on("hello", lambda *a: hello["/"].append(a))
    c.on("hello", lambda *a: hello["/admin"].append(a), namespace="/admin")
    assert await c.call("to_room", ("all", "hello", 1), timeout=WAIT) is True
    await until(lambda: bool(hello["/"]), what="hello on /")
    assert await c.call("echo", "fence", namespace="/admin", timeout=WAIT) == "fence"
    assert hello == {"/": [(1,)], "/admin": []}


async def test_admin_refused_without_the_token(peer: Peer, clients: list[Any]) -> None:
    c = ferrosio.AsyncClient()
    clients.append(c)
    errors: list[Any] = []
    c.on("connect_error", lambda data: errors.append(data), namespace="/admin")
    with pytest.raises(ferrosio.exceptions.ConnectionRefusedError) as info:
        await c.connect(
            peer.target,
            transports=peer.transports,
            namespaces=["/admin"],
            auth={"token": "wrong"},
            wait_timeout=WAIT,
        )
    assert info.value.error_args == {"message": "unauthorized"}
    assert str(info.value) == "unauthorized"
    assert errors == [{"message": "unauthorized"}]
    assert not c.connected
    await asyncio.wait_for(c.wait(), WAIT)


async def test_emit_on_a_namespace_not_connected_raises(peer: Peer, clients: list[Any]) -> None:
    c = await connect(clients, peer)
    with pytest.raises(BadNamespaceError):
        await c.emit("echo", 1, namespace="/admin")
    with pytest.raises(BadNamespaceError):
        await c.call("echo", 1, namespace="/nowhere")
    await c.disconnect()
    with pytest.raises(BadNamespaceError):
        await c.emit("echo", 1)


async def test_transport_in_use(peer: Peer, clients: list[Any], until: Until) -> None:
    c = await connect(clients, peer)
    assert await c.call("echo", 1, timeout=WAIT) == 1
    if peer.transports == ["polling"]:
        assert c.transport() == "polling"
    else:
        await until(lambda: c.transport() == "websocket", what="the upgrade")


async def test_a_message_over_the_limit_is_a_disconnect_then_a_reconnection(
    peer: Peer, clients: list[Any], until: Until
) -> None:
    c = ferrosio.AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.2)
    clients.append(c)
    reasons: list[str] = []
    connects: list[int] = []
    c.on("disconnect", lambda reason: reasons.append(reason))
    c.on("connect", lambda: connects.append(1))
    await c.connect(peer.target, transports=peer.transports, wait_timeout=WAIT)
    await c.emit("echo", "x" * 1_100_000)
    await until(lambda: bool(reasons), what="the disconnect")
    assert reasons[0] in (c.reason.TRANSPORT_CLOSE, c.reason.TRANSPORT_ERROR)
    await until(lambda: len(connects) == 2 and c.connected, what="the reconnection")
    assert await c.call("echo", "after", timeout=WAIT) == "after"


async def test_unanswered_call_times_out_on_node(
    peer_kind: str, ref: ServerProcess, clients: list[Any]
) -> None:
    if peer_kind != "node":
        pytest.skip("ferrosio's server acks unhandled events (as python-socketio does)")
    c = await connect(clients, Peer(ref.url, ["websocket"], peer_kind))
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await c.call("no-such-event", 1, timeout=0.3)
    assert await c.call("echo", 2, timeout=WAIT) == 2  # the connection is fine


async def test_ask_times_out_on_the_server_when_the_handler_never_returns(
    ws_peer: Peer, clients: list[Any]
) -> None:
    c = await connect(clients, ws_peer)
    never = asyncio.Event()

    @c.on("stall")
    async def stall(*args: Any) -> None:
        await never.wait()

    assert await c.call("ask", ("stall",), timeout=WAIT) == "timeout"


async def test_namespace_catch_all_and_class_based_namespaces(
    ws_peer: Peer, clients: list[Any], until: Until
) -> None:
    from ferrosio.client import AsyncClientNamespace

    # a class-based namespace
    seen: list[Any] = []

    class Admin(AsyncClientNamespace):
        def on_connect(self) -> None:
            seen.append(("admin connect",))

        async def on_echo(self, *args: Any) -> None:
            seen.append(("admin echo", *args))

    a = ferrosio.AsyncClient()
    clients.append(a)
    a.register_namespace(Admin("/admin"))
    await a.connect(ws_peer.target, transports=ws_peer.transports, auth={"token": "secret"})
    assert a.connection_namespaces == ["/admin"]
    await a.emit("echo", 2, namespace="/admin")
    await until(lambda: len(seen) == 2, what="the class namespace's events")
    assert seen == [("admin connect",), ("admin echo", 2)]

    # handlers of namespace "*": the namespace name comes first (the event name before it)
    any_ns: list[Any] = []
    b = ferrosio.AsyncClient()
    clients.append(b)
    b.on("connect", lambda nsp: any_ns.append(("connect", nsp)), namespace="*")
    b.on("*", lambda event, nsp, *x: any_ns.append((event, nsp, *x)), namespace="*")
    await b.connect(
        ws_peer.target,
        transports=ws_peer.transports,
        namespaces=["/", "/admin"],
        auth={"token": "secret"},
    )
    await b.emit("echo", 1)
    await b.emit("echo", 2, namespace="/admin")
    await until(lambda: len(any_ns) == 4, what="the catch-all events")
    assert sorted(map(str, any_ns)) == sorted(
        map(str, [("connect", "/"), ("connect", "/admin"), ("echo", "/", 1), ("echo", "/admin", 2)])
    )


async def test_a_burst_across_the_upgrade_keeps_its_order(
    ref: ServerProcess, clients: list[Any], until: Until
) -> None:
    c = ferrosio.AsyncClient()
    clients.append(c)
    got: list[int] = []
    c.on("echo", got.append)

    @c.event
    def connect() -> None:
        # right after the namespace connects: on polling, or during the upgrade
        for i in range(300):
            c.emit_nowait("echo", i)

    await c.connect(ref.url, transports=["polling", "websocket"], wait=False)
    for i in range(300, 600):  # buffered until the namespace is connected
        await c.emit("echo", i)
    await until(lambda: len(got) == 600, what="600 echoes")
    # socket.io-client's order: the offline buffer is flushed before "connect" runs
    assert got == list(range(300, 600)) + list(range(300))
    await until(lambda: c.transport() == "websocket", what="the upgrade")
