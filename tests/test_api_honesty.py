"""An honest Python API: unknown arguments fail, python-socketio arguments ferrosio does not
support say so, the ones meaning what ferrosio does anyway are accepted, no sync-looking
aliases, ``call()`` to a gone client raises ``DisconnectedError``, ``namespace=`` is honoured.

Peers are real: python-socketio's ``AsyncClient`` for the server, an in-process ferrosio server
for ferrosio's client. Fixtures (``tests/conftest.py``): ``clients``, ``until``, ``make_server``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
import socketio

import ferrosio
from ferrosio.exceptions import DisconnectedError, FerrosioError, UnsupportedFeatureError

if TYPE_CHECKING:
    from _harness import Until

WAIT = 10.0


async def psio_client(clients: list[Any], url: str, namespaces: list[str] | None = None) -> Any:
    c = socketio.AsyncClient(reconnection=False)
    clients.append(c)
    await c.connect(
        url, transports=["websocket"], namespaces=namespaces or ["/"], wait_timeout=WAIT
    )
    return c


# --------------------------------------------------------------- constructors ----
@pytest.mark.parametrize(
    "kwargs",
    [{"ping_intervall": 5}, {"cors_allowed_origin": "*"}, {"max_buffered": 1}],
    ids=lambda kw: next(iter(kw)),
)
def test_server_rejects_unknown_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        ferrosio.AsyncServer(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"reconection": False}, {"ping_interval": 5}, {"client_manager": None}],
    ids=lambda kw: next(iter(kw)),
)
def test_client_rejects_unknown_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        ferrosio.AsyncClient(**kwargs)


class _FakeManager:
    """Stands for python-socketio's AsyncRedisManager: any client manager."""


@pytest.mark.parametrize(
    ("kwargs", "feature"),
    [
        ({"client_manager": _FakeManager()}, "client_manager"),
        ({"async_mode": "aiohttp"}, "async_mode"),
        ({"async_handlers": False}, "async_handlers"),
        ({"json": json}, "json"),
        ({"serializer": "pickle"}, "serializer"),
        ({"monitor_clients": False}, "monitor_clients"),
        ({"cookie": "io"}, "cookie"),
        ({"engineio_logger": True}, "engineio_logger"),
        ({"ping_interval": (25, 5)}, "ping grace period"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_server_names_python_socketio_features_it_does_not_support(
    kwargs: dict[str, Any], feature: str
) -> None:
    with pytest.raises(UnsupportedFeatureError, match=feature) as info:
        ferrosio.AsyncServer(**kwargs)
    assert isinstance(info.value, NotImplementedError)
    assert isinstance(info.value, FerrosioError)
    assert "not supported" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "feature"),
    [
        ({"serializer": "pickle"}, "serializer"),
        ({"json": json}, "json"),
        ({"handle_sigint": True}, "handle_sigint"),
        ({"http_session": object()}, "http_session"),
        ({"websocket_extra_options": {"timeout": 3}}, "websocket_extra_options"),
        ({"timestamp_requests": False}, "timestamp_requests"),
        ({"engineio_logger": True}, "engineio_logger"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_client_names_python_socketio_features_it_does_not_support(
    kwargs: dict[str, Any], feature: str
) -> None:
    with pytest.raises(UnsupportedFeatureError, match=feature):
        ferrosio.AsyncClient(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "feature"),
    [
        ({"connection_state_recovery": True, "serializer": "msgpack"}, "recovery"),
        ({"connection_state_recovery": True, "client_manager": "redis"}, "recovery"),
        ({"serializer": "msgpack", "client_manager": "redis"}, "msgpack"),
    ],
    ids=["recovery+msgpack", "recovery+cluster", "msgpack+cluster"],
)
def test_server_refuses_feature_combinations_it_does_not_support(
    kwargs: dict[str, Any], feature: str
) -> None:
    if kwargs.get("client_manager") == "redis":  # built here: no connection until the start
        kwargs = {**kwargs, "client_manager": ferrosio.AsyncRedisManager("redis://127.0.0.1:1")}
    with pytest.raises(UnsupportedFeatureError, match=feature) as info:
        ferrosio.AsyncServer(**kwargs)
    assert "not supported" in str(info.value)


def test_server_methods_of_unsupported_features_say_so() -> None:
    sio = ferrosio.AsyncServer()
    with pytest.raises(UnsupportedFeatureError, match="attach"):
        sio.attach(object())


async def test_values_meaning_what_ferrosio_does_are_accepted(make_server, clients) -> None:
    sio = ferrosio.AsyncServer(
        client_manager=None,
        async_mode=None,
        async_handlers=True,
        monitor_clients=True,
        json=None,
        serializer="default",
        http_compression=False,
        compression_threshold=2048,
        cookie=None,
        engineio_logger=False,
    )
    ferrosio.AsyncClient(
        serializer="default",
        json=None,
        handle_sigint=False,
        http_session=None,
        ssl_verify=True,
        websocket_extra_options={},
        timestamp_requests=True,
        engineio_logger=None,
    )
    sids: list[str] = []

    @sio.event
    def connect(sid: str, environ: dict[str, Any]) -> None:
        sids.append(sid)

    url = await make_server(sio)
    got: list[Any] = []
    c = await psio_client(clients, url)
    c.on("news", got.append)
    c.on("ask", lambda x: x * 2)
    sid = sids[0]
    # ignore_queue: python-socketio's, accepted; without a message queue it changes nothing
    await sio.emit("news", 1, to=sid, ignore_queue=True)
    await sio.send("hi", to=sid, ignore_queue=True)
    assert await sio.call("ask", 21, to=sid, timeout=WAIT, ignore_queue=True) == 42
    assert got == [1]
    await sio.disconnect(sid, ignore_queue=True)


def _handshake_origin(port: int, origin: str) -> str | None:
    """A polling handshake from ``origin``: the Access-Control-Allow-Origin it gets."""
    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
    req = urllib.request.Request(url, headers={"Origin": origin})
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        return r.headers.get("Access-Control-Allow-Origin")


async def test_cors_allowed_origins_star_in_a_list_means_any_origin(make_server) -> None:
    # python-engineio documents '*' or ['*'] for "any origin"
    url = await make_server(ferrosio.AsyncServer(cors_allowed_origins=["*"]))
    port = int(url.rsplit(":", 1)[1])
    allowed = await asyncio.to_thread(_handshake_origin, port, "http://elsewhere.test")
    assert allowed == "http://elsewhere.test"


async def test_methods_reject_unknown_arguments(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    url = await make_server(sio)
    await psio_client(clients, url)
    with pytest.raises(TypeError):
        await sio.emit("x", broadcast=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        await sio.send("x", include_self=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        await sio.call("x", to="sid", timout=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        await sio.disconnect("sid", namspace="/")  # type: ignore[call-arg]
    c = ferrosio.AsyncClient()
    with pytest.raises(TypeError):
        await c.emit("x", room="r")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        await c.call("x", to="sid")  # type: ignore[call-arg]


def test_no_sync_named_aliases_of_the_async_classes() -> None:
    for name in ("Server", "Namespace", "Client", "ClientNamespace"):
        assert not hasattr(ferrosio, name), name
        assert name not in ferrosio.__all__
    assert ferrosio.exceptions.UnsupportedFeatureError is UnsupportedFeatureError
    assert ferrosio.AsyncServer.reason.SERVER_DISCONNECT == "server disconnect"
    assert ferrosio.AsyncClient.reason.TRANSPORT_CLOSE == "transport close"


# ------------------------------------------------------------------------ call() ----
async def test_call_to_an_unknown_or_gone_sid_raises_disconnected(
    make_server, clients, until: Until
) -> None:
    sio = ferrosio.AsyncServer(namespaces=["/", "/chat"])
    gone: list[str] = []

    @sio.event
    def disconnect(sid: str, reason: str) -> None:
        gone.append(sid)

    url = await make_server(sio)
    c = await psio_client(clients, url, ["/", "/chat"])
    c.on("ask", lambda: "answer")
    sid = c.get_sid("/")
    chat_sid = c.get_sid("/chat")
    assert await sio.call("ask", to=sid, timeout=WAIT) == "answer"
    with pytest.raises(DisconnectedError, match="nobody"):
        await sio.call("ask", to="nobody", timeout=WAIT)
    # a sid of another namespace is unknown in this one
    with pytest.raises(DisconnectedError, match=chat_sid):
        await sio.call("ask", to=chat_sid, timeout=WAIT)
    with pytest.raises(ValueError, match="recipient"):
        await sio.call("ask", timeout=WAIT)
    await c.disconnect()
    await until(lambda: gone == [sid], what="the disconnect handler")
    with pytest.raises(DisconnectedError, match=sid):
        await sio.call("ask", sid=sid, timeout=WAIT)


# ------------------------------------------------------------------ namespace= ----
async def test_server_honours_namespace(make_server, clients) -> None:
    seen: dict[str, str] = {}

    class Chat(ferrosio.AsyncNamespace):
        async def on_connect(self, sid: str, environ: dict[str, Any]) -> None:
            seen["/chat"] = sid
            await self.save_session(sid, {"in": "chat"})
            await self.enter_room(sid, "chat-room")

    sio = ferrosio.AsyncServer()

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        seen["/"] = sid
        await sio.save_session(sid, {"in": "root"})

    sio.register_namespace(Chat("/chat"))
    url = await make_server(sio)
    await psio_client(clients, url, ["/", "/chat"])
    root, chat = seen["/"], seen["/chat"]
    assert root != chat
    # known where they are
    assert (await sio.get_session(root))["in"] == "root"
    assert (await sio.get_session(chat, namespace="/chat")) == {"in": "chat"}
    async with sio.session(chat, namespace="/chat") as session:
        session["touched"] = True
    assert (await sio.get_session(chat, namespace="/chat")) == {"in": "chat", "touched": True}
    assert sorted(sio.rooms(chat, namespace="/chat")) == sorted([chat, "chat-room"])
    assert sio.get_environ(root) is not None
    # unknown anywhere else, "/" by default
    with pytest.raises(KeyError):
        await sio.get_session(chat)
    with pytest.raises(KeyError):
        await sio.get_session(root, namespace="/chat")
    with pytest.raises(KeyError):
        await sio.save_session(chat, {})
    with pytest.raises(KeyError):
        async with sio.session(root, namespace="/chat"):
            pass
    assert sio.rooms(chat) == []
    assert sio.rooms(root, namespace="/chat") == []
    assert sio.get_environ(chat) is None
    assert sio.get_environ(root, namespace="/chat") is None


async def test_client_honours_namespace(make_server, clients) -> None:
    sio = ferrosio.AsyncServer(namespaces=["/", "/chat"])
    sids: dict[str, str] = {}

    @sio.on("connect", namespace="*")
    def connect(nsp: str, sid: str, environ: dict[str, Any]) -> None:
        sids[nsp] = sid

    @sio.on("whoami", namespace="*")
    def whoami(nsp: str, sid: str) -> str:
        return sid

    url = await make_server(sio)
    c = ferrosio.AsyncClient(reconnection=False)
    clients.append(c)
    await c.connect(url, transports=["websocket"], namespaces=["/", "/chat"], wait_timeout=WAIT)
    assert c.get_sid() == c.sid == sids["/"]
    assert c.get_sid("/chat") == sids["/chat"] != sids["/"]
    assert c.get_sid("/elsewhere") is None
    assert await c.call("whoami", namespace="/chat", timeout=WAIT) == sids["/chat"]
    assert await c.call("whoami", timeout=WAIT) == sids["/"]
    with pytest.raises(ferrosio.exceptions.BadNamespaceError):
        await c.emit("whoami", namespace="/elsewhere")
