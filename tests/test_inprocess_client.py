"""The in-process client (``client.connect(sio)``: no socket, no port) against the real one.

Each contract test here runs twice on the same app, started in this process: once with the
client over a real WebSocket to the app's listener on 127.0.0.1 (``websocket``), once
in-process (``inprocess``), and asserts the same outcomes both ways: what the reference app
does not cover (test_client_contract.py runs that one both ways too): the disconnect reasons
on both sides, namespace disconnects, ``connect_error`` with data, connection and packet
middlewares, the environ, ``AsyncSimpleClient``, the payload bound and a server shutdown.
The tests after the contract ones are about in-process connections only: a server with a
listener takes both kinds at once, and wrong uses are refused clearly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

import ferrosio
from ferrosio.testing import ServerThread, serve, serve_in_process, wait_until

WAIT = 10.0
TRANSPORTS = ["websocket", "inprocess"]


def make_app(**options: Any) -> tuple[ferrosio.AsyncServer, dict[str, list[Any]]]:
    """An app that records what its handlers saw (``seen``)."""
    sio = ferrosio.AsyncServer(**options)
    seen: dict[str, list[Any]] = {
        "connect": [],
        "disconnect": [],
        "admin_disconnect": [],
        "mw": [],
        "packets": [],
    }

    @sio.use()
    async def check_ban(sid: str, environ: dict[str, Any], auth: Any) -> None:
        seen["mw"].append(sid)
        if isinstance(auth, dict) and auth.get("banned"):
            raise ferrosio.exceptions.ConnectionRefusedError("banned", {"until": 42})

    @sio.use_packet()
    def double(sid: str, event: str, args: list[Any]) -> None:
        seen["packets"].append(event)
        if event == "double":
            args[:] = [a * 2 for a in args]
        if event == "dropped":
            raise ValueError("not this one")

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        seen["connect"].append((environ, auth))
        if isinstance(auth, dict) and auth.get("refuse"):
            raise ferrosio.exceptions.ConnectionRefusedError("no", {"code": 7})
        await sio.enter_room(sid, "everyone")

    @sio.event
    async def disconnect(sid: str, reason: str) -> None:
        seen["disconnect"].append(reason)

    @sio.on("disconnect", namespace="/admin")
    async def admin_disconnect(sid: str, reason: str) -> None:
        seen["admin_disconnect"].append(reason)

    @sio.on("kick", namespace="/admin")
    async def admin_kick(sid: str) -> None:
        await sio.disconnect(sid, namespace="/admin")

    @sio.on("*", namespace="/admin")
    def admin_any(event: str, sid: str, *args: Any) -> Any:
        return args

    @sio.event
    def echo(sid: str, *args: Any) -> Any:
        return args

    @sio.event
    async def double(sid: str, *args: Any) -> Any:  # noqa: F811 - the event, after the middleware
        return args

    @sio.event
    async def dropped(sid: str, *args: Any) -> Any:
        return "should not run"

    @sio.event
    async def kick(sid: str) -> None:
        await sio.disconnect(sid)

    @sio.event
    async def shout(sid: str, text: str) -> None:
        await sio.emit("shout", text, room="everyone", skip_sid=sid)

    @sio.event
    async def ask(sid: str, event: str, *args: Any) -> Any:
        return await sio.call(event, args, to=sid, timeout=WAIT)

    return sio, seen


class Link:
    """How the test's clients reach the app: its URL, or the app itself (in-process)."""

    def __init__(self, sio: ferrosio.AsyncServer, url: str | None) -> None:
        self.sio = sio
        self.url = url
        self.clients: list[Any] = []

    @property
    def target(self) -> Any:
        return self.url if self.url is not None else self.sio

    async def client(self, **connect: Any) -> ferrosio.AsyncClient:
        c = ferrosio.AsyncClient(reconnection=False)
        self.clients.append(c)
        connect.setdefault("wait_timeout", WAIT)
        await c.connect(self.target, transports=["websocket"], **connect)
        return c


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def app(transport: str) -> AsyncIterator[tuple[Link, dict[str, list[Any]]]]:
    sio, seen = make_app()
    if transport == "websocket":
        async with serve(sio) as running:
            link = Link(sio, running.url)
            yield link, seen
            for c in link.clients:
                await asyncio.wait_for(c.disconnect(), WAIT)
    else:
        async with serve_in_process(sio):
            link = Link(sio, None)
            yield link, seen
            for c in link.clients:
                await asyncio.wait_for(c.disconnect(), WAIT)


# ------------------------------------------------------------------ the contract, both ways ----
async def test_events_acks_both_ways_and_binary(app: tuple[Link, dict[str, list[Any]]]) -> None:
    link, _ = app
    c = await link.client()
    assert await c.call("echo", (1, "two", {"3": [b"\x00\xff"]}), timeout=WAIT) == (
        1,
        "two",
        {"3": [b"\x00\xff"]},
    )
    c.on("question", lambda *a: ("answer", *a))
    assert await c.call("ask", ("question", b"\x01"), timeout=WAIT) == ("answer", b"\x01")


async def test_connect_error_with_data_and_connection_middleware(
    app: tuple[Link, dict[str, list[Any]]],
) -> None:
    link, seen = app
    for auth, expected in (
        ({"refuse": True}, {"message": "no", "data": {"code": 7}}),
        ({"banned": True}, {"message": "banned", "data": {"until": 42}}),
    ):
        c = ferrosio.AsyncClient(reconnection=False)
        link.clients.append(c)
        errors: list[Any] = []
        c.on("connect_error", errors.append)
        with pytest.raises(ferrosio.exceptions.ConnectionRefusedError) as info:
            await c.connect(link.target, transports=["websocket"], auth=auth, wait_timeout=WAIT)
        assert info.value.error_args == expected
        assert errors == [expected]
    assert len(seen["mw"]) == 2
    assert len(seen["connect"]) == 1  # the banned one never reached the connect handler


async def test_packet_middleware_edits_and_drops(app: tuple[Link, dict[str, list[Any]]]) -> None:
    link, seen = app
    c = await link.client()
    assert await c.call("double", (2, "ab"), timeout=WAIT) == (4, "abab")
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await c.call("dropped", 1, timeout=0.3)
    assert seen["packets"] == ["double", "dropped"]


async def test_environ_and_auth_seen_by_the_connect_handler(
    app: tuple[Link, dict[str, list[Any]]], transport: str
) -> None:
    link, seen = app
    await link.client(auth={"user": "ann"}, headers={"X-Test": "yes"})
    environ, auth = seen["connect"][0]
    assert auth == {"user": "ann"}
    assert environ["HTTP_X_TEST"] == "yes"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/socket.io/"
    assert "EIO=4" in environ["QUERY_STRING"]
    assert "transport=websocket" in environ["QUERY_STRING"]
    if transport == "inprocess":
        # the markers of an in-process connection (docs/testing.md)
        assert environ["HTTP_HOST"] == "inprocess"
        assert environ["REMOTE_PORT"] == "0"
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "0")
    else:
        assert environ["REMOTE_PORT"] != "0"


async def test_rooms_and_broadcast(app: tuple[Link, dict[str, list[Any]]]) -> None:
    link, _ = app
    a, b = await link.client(), await link.client()
    got_a: list[Any] = []
    got_b: list[Any] = []
    a.on("shout", got_a.append)
    b.on("shout", got_b.append)
    await a.emit("shout", "hi")
    await wait_until(lambda: got_b == ["hi"], WAIT, "the broadcast")
    assert await a.call("echo", "fence", timeout=WAIT) == "fence"
    assert got_a == []


async def test_client_disconnect_reasons_on_both_sides(
    app: tuple[Link, dict[str, list[Any]]],
) -> None:
    link, seen = app
    c = await link.client(namespaces=["/", "/admin"])
    reasons: list[str] = []
    c.on("disconnect", reasons.append)
    await c.disconnect()
    assert reasons == [c.reason.CLIENT_DISCONNECT]
    await wait_until(lambda: seen["disconnect"] and seen["admin_disconnect"], WAIT, "disconnects")
    assert seen["disconnect"] == [link.sio.reason.CLIENT_DISCONNECT]
    assert seen["admin_disconnect"] == [link.sio.reason.CLIENT_DISCONNECT]


async def test_server_disconnect_reasons_on_both_sides(
    app: tuple[Link, dict[str, list[Any]]],
) -> None:
    link, seen = app
    c = await link.client()
    reasons: list[str] = []
    c.on("disconnect", reasons.append)
    await c.emit("kick")
    await asyncio.wait_for(c.wait(), WAIT)
    assert reasons == [c.reason.SERVER_DISCONNECT]
    await wait_until(lambda: seen["disconnect"], WAIT, "the server's disconnect handler")
    assert seen["disconnect"] == [link.sio.reason.SERVER_DISCONNECT]


async def test_namespace_disconnect_leaves_the_other_namespace(
    app: tuple[Link, dict[str, list[Any]]],
) -> None:
    link, seen = app
    c = await link.client(namespaces=["/", "/admin"])
    admin_reasons: list[str] = []
    c.on("disconnect", admin_reasons.append, namespace="/admin")
    assert await c.call("anything", 5, namespace="/admin", timeout=WAIT) == 5
    await c.emit("kick", namespace="/admin")
    await wait_until(lambda: admin_reasons, WAIT, "the /admin disconnect")
    assert admin_reasons == [c.reason.SERVER_DISCONNECT]
    assert seen["admin_disconnect"] == [link.sio.reason.SERVER_DISCONNECT]
    assert await c.call("echo", "still here", timeout=WAIT) == "still here"
    assert c.connected
    assert seen["disconnect"] == []


async def test_allow_request_refuses_before_any_session(transport: str) -> None:
    sio, seen = make_app(allow_request=lambda environ: "HTTP_X_LET_IN" in environ)
    async with serve(sio) as running:
        target = running.url if transport == "websocket" else sio
        c = ferrosio.AsyncClient(reconnection=False)
        with pytest.raises(ferrosio.exceptions.ConnectionError) as info:
            await c.connect(target, transports=["websocket"], wait_timeout=WAIT)
        if transport == "inprocess":
            assert "403" in str(info.value) or "401" in str(info.value)
        assert seen["mw"] == []
        await c.connect(
            target, transports=["websocket"], headers={"X-Let-In": "1"}, wait_timeout=WAIT
        )
        assert await c.call("echo", "in", timeout=WAIT) == "in"
        await c.disconnect()


async def test_a_message_over_the_limit_closes_the_connection(transport: str) -> None:
    sio, seen = make_app(max_http_buffer_size=1000)
    async with serve(sio) as running:
        c = ferrosio.AsyncClient(reconnection=False)
        reasons: list[str] = []
        c.on("disconnect", reasons.append)
        target = running.url if transport == "websocket" else sio
        await c.connect(target, transports=["websocket"], wait_timeout=WAIT)
        await c.emit("echo", "x" * 2000)
        await asyncio.wait_for(c.wait(), WAIT)
        assert reasons in ([c.reason.TRANSPORT_CLOSE], [c.reason.TRANSPORT_ERROR])
        await wait_until(lambda: seen["disconnect"], WAIT, "the server's disconnect handler")
        assert seen["disconnect"] == [sio.reason.TRANSPORT_ERROR]


async def test_a_client_past_its_send_buffer_is_dropped(transport: str) -> None:
    # the bound on what waits for a client: on the in-process path, the session's outbox is
    # all there is between the server and the client engine (docs/bounds.md)
    sio, seen = make_app(max_send_buffer_size=10_000)

    @sio.event
    def flood(sid: str) -> None:
        for _ in range(50):  # 50 KB queued before the engine can take any of it
            sio.emit_nowait("big", "x" * 1000, to=sid)

    async with serve(sio) as running:
        c = ferrosio.AsyncClient(reconnection=False)
        reasons: list[str] = []
        c.on("disconnect", reasons.append)
        target = running.url if transport == "websocket" else sio
        await c.connect(target, transports=["websocket"], wait_timeout=WAIT)
        await c.emit("flood")
        await asyncio.wait_for(c.wait(), WAIT)
        await wait_until(lambda: seen["disconnect"], WAIT, "the server's disconnect handler")
        assert seen["disconnect"] == ["send buffer full"]
        assert reasons == [c.reason.TRANSPORT_ERROR]


async def test_server_shutdown_disconnects_the_client(transport: str) -> None:
    sio, seen = make_app()
    running = await sio.start("127.0.0.1", 0)
    c = ferrosio.AsyncClient(reconnection=False)
    reasons: list[str] = []
    c.on("disconnect", reasons.append)
    target = f"http://127.0.0.1:{running}" if transport == "websocket" else sio
    await c.connect(target, transports=["websocket"], wait_timeout=WAIT)
    await sio.shutdown(timeout=2)
    await asyncio.wait_for(c.wait(), WAIT)
    assert len(reasons) == 1
    assert reasons[0] in (c.reason.SERVER_DISCONNECT, c.reason.TRANSPORT_CLOSE)
    assert seen["disconnect"] and not c.connected


async def test_async_simple_client(app: tuple[Link, dict[str, list[Any]]]) -> None:
    link, _ = app
    async with ferrosio.AsyncSimpleClient() as client:
        await client.connect(link.target, transports=["websocket"], wait_timeout=WAIT)
        assert client.transport == "websocket"
        assert await client.call("echo", 3, timeout=WAIT) == 3
        await client.emit("ask", ("question", 1))
        # the simple client does not answer calls; it receives them as events
        assert await client.receive(timeout=WAIT) == ["question", 1]


# ---------------------------------------------------------------------- in-process only ----
async def test_one_server_takes_network_and_in_process_clients_at_once() -> None:
    sio, _ = make_app()
    async with serve(sio) as running:
        net = ferrosio.AsyncClient(reconnection=False)
        local = ferrosio.AsyncClient(reconnection=False)
        got: list[Any] = []
        net.on("shout", got.append)
        await net.connect(running.url, transports=["websocket"], wait_timeout=WAIT)
        await local.connect(sio, wait_timeout=WAIT)
        assert local.connection_url == "inprocess://"
        assert local.transport() == "websocket"
        await local.emit("shout", "from in-process")
        await wait_until(lambda: got == ["from in-process"], WAIT, "the broadcast")
        await local.disconnect()
        await net.disconnect()


async def test_wrong_uses_are_refused_clearly() -> None:
    sio, _ = make_app()
    c = ferrosio.AsyncClient(reconnection=False)
    with pytest.raises(ferrosio.exceptions.ConnectionError, match="not running"):
        await c.connect(sio)  # never started
    with pytest.raises(ValueError, match="WebSocket"):
        await c.connect(sio, transports=["polling"])
    with pytest.raises(TypeError, match=r"URL or a ferrosio\.AsyncServer"):
        await c.connect(object())  # type: ignore[arg-type]
    async with serve_in_process(sio):
        with pytest.raises(ferrosio.exceptions.FerrosioError, match="already running"):
            await sio.start_in_process()
        await c.connect(sio, wait_timeout=WAIT)
        assert await c.call("echo", 1, timeout=WAIT) == 1
        await c.disconnect()
    # stopped again: refused
    with pytest.raises(ferrosio.exceptions.ConnectionError, match="not running"):
        await c.connect(sio)


def test_sync_simple_client_to_a_server_thread() -> None:
    # a blocking client must not share the server's loop: the server runs in its own thread
    sio, _ = make_app()
    with ServerThread(sio), ferrosio.SimpleClient() as client:
        client.connect(sio, wait_timeout=WAIT)
        assert client.transport == "websocket"
        assert client.call("echo", "sync", timeout=WAIT) == "sync"


async def test_the_plugin_fixture(sio_inprocess_client_factory: Any) -> None:
    c = await sio_inprocess_client_factory(auth={"user": "x"})
    assert await c.call("echo", "plugin", timeout=WAIT) == "plugin"


@pytest.fixture
def sio() -> ferrosio.AsyncServer:
    """The app the plugin's fixtures (``sio_inprocess_client_factory``) test."""
    return make_app()[0]


def test_docs_show_the_user_example_file_as_it_is() -> None:
    from _harness import REPO

    doc = (REPO / "docs" / "testing.md").read_text()
    block = doc.split("<!-- the in-process test file", 1)[1].split("```python\n", 1)[1]
    block = block.split("```", 1)[0]
    assert block == (REPO / "tests" / "test_user_example.py").read_text()
