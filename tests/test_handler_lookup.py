"""The one handler lookup order of the server and the client (python-socketio's), rung by rung,
and events a peer sends under a reserved name, against real peers: python-socketio's
``AsyncClient`` for the server, an in-process ferrosio server for ferrosio's client.

The order, for an event in namespace ``nsp``: ``handlers[nsp][event]``, ``handlers[nsp]["*"]``
(event name first), ``handlers["*"][event]`` (namespace first), ``handlers["*"]["*"]`` (event
name, namespace), the class-based namespace of ``nsp`` (the last rung if there is one), else the
class-based namespace of ``"*"`` (namespace first).

Fixtures (``tests/conftest.py``): ``clients``, ``until``, ``make_server`` (an in-process
server on a free port, shut down after the test).
Negative checks use a fence: a later round trip on the same connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
import socketio

import ferrosio

if TYPE_CHECKING:
    from _harness import Until

WAIT = 10.0


async def psio_client(clients: list[Any], url: str, namespaces: list[str]) -> Any:
    c = socketio.AsyncClient(reconnection=False)
    clients.append(c)
    await c.connect(url, transports=["websocket"], namespaces=namespaces, wait_timeout=WAIT)
    return c


async def ferrosio_client(
    clients: list[Any], url: str, namespaces: list[str], c: ferrosio.AsyncClient
) -> ferrosio.AsyncClient:
    clients.append(c)
    await c.connect(url, transports=["websocket"], namespaces=namespaces, wait_timeout=WAIT)
    return c


# ------------------------------------------------------------------------ server ----
async def test_server_event_handlers_then_catch_alls_in_order(make_server, clients) -> None:
    sio = ferrosio.AsyncServer(namespaces="*")
    got: list[tuple[Any, ...]] = []

    @sio.on("a", namespace="/one")
    def own(sid: str, x: Any) -> str:
        got.append(("own", x))
        return "own"

    @sio.on("*", namespace="/one")
    def nsp_catch_all(event: str, sid: str, x: Any) -> str:
        got.append(("nsp *", event, x))
        return "nsp *"

    @sio.on("c", namespace="*")
    def any_nsp(nsp: str, sid: str, x: Any) -> str:
        got.append(("* c", nsp, x))
        return "* c"

    @sio.on("*", namespace="*")
    def any_any(event: str, nsp: str, sid: str, x: Any) -> str:
        got.append(("* *", event, nsp, x))
        return "* *"

    url = await make_server(sio)
    c = await psio_client(clients, url, ["/one", "/two"])
    assert await c.call("a", 1, namespace="/one", timeout=WAIT) == "own"  # rung 1
    assert await c.call("c", 2, namespace="/one", timeout=WAIT) == "nsp *"  # rung 2 before 3
    assert await c.call("c", 3, namespace="/two", timeout=WAIT) == "* c"  # rung 3
    assert await c.call("z", 4, namespace="/two", timeout=WAIT) == "* *"  # rung 4
    assert got == [("own", 1), ("nsp *", "c", 2), ("* c", "/two", 3), ("* *", "z", "/two", 4)]


async def test_server_class_namespaces_come_after_function_handlers(
    make_server, clients, until: Until
) -> None:
    got: list[tuple[Any, ...]] = []

    class Three(ferrosio.AsyncNamespace):
        def on_c(self, sid: str, x: Any) -> str:
            return "class /three c"

        def on_connect(self, sid: str, environ: dict[str, Any]) -> None:
            got.append(("three connect",))

        def on_e(self, sid: str, x: Any) -> str:
            got.append(("three e", x))
            return "class /three e"

    class Everywhere(ferrosio.AsyncNamespace):
        def on_connect(self, nsp: str, sid: str, environ: dict[str, Any], auth: Any) -> None:
            got.append(("* connect", nsp))

        def on_e(self, nsp: str, sid: str, x: Any) -> str:
            return "class * e"

        def on_g(self, nsp: str, sid: str, x: Any) -> str:
            got.append(("* g", nsp, x))
            return "class * g"

        def on_disconnect(self, nsp: str, sid: str, reason: str) -> None:
            got.append(("* disconnect", nsp))

    sio = ferrosio.AsyncServer(namespaces="*")

    @sio.on("c", namespace="*")
    def any_nsp(nsp: str, sid: str, x: Any) -> str:
        return "* c"

    sio.register_namespace(Three("/three"))
    sio.register_namespace(Everywhere("*"))
    url = await make_server(sio)
    c = await psio_client(clients, url, ["/three", "/four"])
    assert sorted(got) == [("* connect", "/four"), ("three connect",)]
    got.clear()
    assert await c.call("c", 1, namespace="/three", timeout=WAIT) == "* c"  # rung 3 before 5
    assert await c.call("e", 2, namespace="/three", timeout=WAIT) == "class /three e"  # rung 5
    # /three's class owns /three: no on_g there is no handler (an empty ack), not rung 6
    assert await c.call("g", 3, namespace="/three", timeout=WAIT) is None
    assert await c.call("g", 4, namespace="/four", timeout=WAIT) == "class * g"  # rung 6
    assert await c.call("e", 5, namespace="/four", timeout=WAIT) == "class * e"
    assert got == [("three e", 2), ("* g", "/four", 4)]
    await c.disconnect()
    await until(lambda: ("* disconnect", "/four") in got, what="the * namespace's disconnect")


async def test_server_connect_and_disconnect_never_reach_a_catch_all(
    make_server, clients, until: Until
) -> None:
    got: list[tuple[Any, ...]] = []

    class Everywhere(ferrosio.AsyncNamespace):
        def on_disconnect(self, nsp: str, sid: str, reason: str) -> None:
            got.append(("class * disconnect", nsp))

    sio = ferrosio.AsyncServer(namespaces="*")

    @sio.on("*")
    def root_catch_all(event: str, sid: str, *args: Any) -> None:
        got.append(("/ *", event))

    @sio.on("*", namespace="*")
    def any_any(event: str, nsp: str, sid: str, *args: Any) -> None:
        got.append(("* *", event, nsp))

    @sio.on("connect", namespace="*")
    def any_connect(nsp: str, sid: str, environ: dict[str, Any]) -> None:
        got.append(("* connect", nsp))

    sio.register_namespace(Everywhere("*"))
    url = await make_server(sio)
    c = await psio_client(clients, url, ["/", "/x"])
    await c.emit("hello")
    await c.emit("hello", namespace="/x")
    await until(lambda: len(got) == 4, what="connects and events")
    await c.disconnect()
    await until(lambda: len(got) == 6, what="the disconnects")
    assert sorted(got[:2]) == [("* connect", "/"), ("* connect", "/x")]
    assert got[2:4] == [("/ *", "hello"), ("* *", "hello", "/x")]
    # past the catch-alls, to the class registered for "*" (namespace first)
    assert sorted(got[4:]) == [("class * disconnect", "/"), ("class * disconnect", "/x")]


async def test_server_refuses_events_named_like_its_own(
    make_server, clients, caplog: pytest.LogCaptureFixture
) -> None:
    sio = ferrosio.AsyncServer(logger=True)
    got: list[Any] = []

    @sio.event
    def connect(sid: str, environ: dict[str, Any]) -> None:
        got.append("connect")

    @sio.event
    def disconnect(sid: str, reason: str) -> None:
        got.append("disconnect")

    @sio.on("*")
    def catch_all(event: str, sid: str, *args: Any) -> None:
        got.append(("*", event))

    @sio.event
    def fence(sid: str) -> str:
        return "fenced"

    url = await make_server(sio)
    c = await psio_client(clients, url, ["/"])
    acks: list[Any] = []
    with caplog.at_level(logging.DEBUG, logger="ferrosio.server"):
        await c.emit("connect", {"forged": True}, callback=lambda *a: acks.append(("connect", a)))
        await c.emit("disconnect", "bye", callback=lambda *a: acks.append(("disconnect", a)))
        assert await c.call("fence", timeout=WAIT) == "fenced"
    assert got == ["connect"]  # the real connection's only
    assert acks == []  # refused events are not acknowledged, even when asked
    assert c.connected
    refused = [r.getMessage() for r in caplog.records if "refused an event" in r.getMessage()]
    assert len(refused) == 2


# ------------------------------------------------------------------------ client ----
def relay_server() -> ferrosio.AsyncServer:
    """``go(event, data)`` in any namespace: the server emits ``event`` back to the caller in
    that namespace, then acknowledges (so the ack is the fence)."""
    sio = ferrosio.AsyncServer(namespaces="*")

    @sio.on("go", namespace="*")
    async def go(nsp: str, sid: str, event: str, data: Any) -> bool:
        await sio.emit(event, data, to=sid, namespace=nsp)
        return True

    return sio


async def test_client_event_handlers_then_catch_alls_in_order(make_server, clients) -> None:
    url = await make_server(relay_server())
    c = ferrosio.AsyncClient(reconnection=False)
    got: list[tuple[Any, ...]] = []
    c.on("a", lambda x: got.append(("own", x)), namespace="/one")
    c.on("*", lambda event, x: got.append(("nsp *", event, x)), namespace="/one")
    c.on("c", lambda nsp, x: got.append(("* c", nsp, x)), namespace="*")
    c.on("*", lambda event, nsp, x: got.append(("* *", event, nsp, x)), namespace="*")
    await ferrosio_client(clients, url, ["/one", "/two"], c)
    for nsp, event, x in [("/one", "a", 1), ("/one", "c", 2), ("/two", "c", 3), ("/two", "z", 4)]:
        assert await c.call("go", (event, x), namespace=nsp, timeout=WAIT) is True
    assert got == [("own", 1), ("nsp *", "c", 2), ("* c", "/two", 3), ("* *", "z", "/two", 4)]


async def test_client_class_namespaces_come_after_function_handlers(make_server, clients) -> None:
    url = await make_server(relay_server())
    got: list[tuple[Any, ...]] = []

    class Three(ferrosio.AsyncClientNamespace):
        def on_connect(self) -> None:
            got.append(("class /three connect",))

        def on_c(self, x: Any) -> None:
            got.append(("class /three c", x))

        def on_e(self, x: Any) -> None:
            got.append(("class /three e", x))

    class Everywhere(ferrosio.AsyncClientNamespace):
        def on_connect(self, nsp: str) -> None:
            got.append(("class * connect", nsp))

        def on_e(self, nsp: str, x: Any) -> None:
            got.append(("class * e", nsp, x))

        def on_g(self, nsp: str, x: Any) -> None:
            got.append(("class * g", nsp, x))

    c = ferrosio.AsyncClient(reconnection=False)
    c.on("c", lambda nsp, x: got.append(("* c", nsp, x)), namespace="*")
    c.register_namespace(Three("/three"))
    c.register_namespace(Everywhere("*"))
    await ferrosio_client(clients, url, ["/three", "/four"], c)
    assert sorted(got) == [("class * connect", "/four"), ("class /three connect",)]
    got.clear()
    sent = [("/three", "c", 1), ("/three", "e", 2), ("/three", "g", 3), ("/four", "g", 4)]
    for nsp, event, x in sent:
        assert await c.call("go", (event, x), namespace=nsp, timeout=WAIT) is True
    assert got == [
        ("* c", "/three", 1),  # rung 3 before 5
        ("class /three e", 2),  # rung 5; /three's class owns /three: its missing on_g is not
        ("class * g", "/four", 4),  # rung 6
    ]


async def test_client_connect_and_disconnect_never_reach_a_catch_all(
    make_server, clients, until: Until
) -> None:
    sio = ferrosio.AsyncServer(namespaces="*")

    @sio.event
    async def kick(sid: str) -> None:
        await sio.disconnect(sid)

    url = await make_server(sio)
    c = ferrosio.AsyncClient(reconnection=False)
    got: list[tuple[Any, ...]] = []
    c.on("*", lambda event, *a: got.append(("/ *", event)))
    c.on("*", lambda event, nsp, *a: got.append(("* *", event, nsp)), namespace="*")
    c.on("connect", lambda nsp: got.append(("* connect", nsp)), namespace="*")
    c.on("disconnect", lambda nsp, reason: got.append(("* disconnect", nsp, reason)), "*")
    await ferrosio_client(clients, url, ["/", "/x"], c)
    await c.emit("kick")
    await until(lambda: len(got) == 3, what="connects and the disconnect")
    assert sorted(got[:2]) == [("* connect", "/"), ("* connect", "/x")]
    assert got[2] == ("* disconnect", "/", "server disconnect")


async def test_client_refuses_events_named_like_its_own(
    make_server, clients, caplog: pytest.LogCaptureFixture
) -> None:
    sio = ferrosio.AsyncServer()
    acks: list[Any] = []

    @sio.event
    async def forge(sid: str) -> str:
        for name in ("connect", "connect_error", "disconnect"):
            await sio.emit(name, {"forged": True}, to=sid, callback=lambda *a: acks.append(a))
        return "sent"

    url = await make_server(sio)
    c = ferrosio.AsyncClient(reconnection=False, logger=logging.getLogger("test.client"))
    got: list[Any] = []
    c.on("connect", lambda: got.append("connect"))
    c.on("connect_error", lambda data: got.append(("connect_error", data)))
    c.on("disconnect", lambda reason: got.append(("disconnect", reason)))
    c.on("*", lambda event, *a: got.append(("*", event)))
    await ferrosio_client(clients, url, ["/"], c)
    with caplog.at_level(logging.DEBUG, logger="test.client"):
        assert await c.call("forge", timeout=WAIT) == "sent"
        # a second round trip: any ack of the forged events would have come before its answer
        assert await c.call("forge", timeout=WAIT) == "sent"
    assert got == ["connect"]
    assert acks == []
    assert c.connected
    refused = [r.getMessage() for r in caplog.records if "refused an event" in r.getMessage()]
    assert len(refused) == 6
