"""The environ of a connection, built when used (ferrosio/_environ.py): what python-socketio
promises still holds. The connect handler gets the WSGI-style dict; ``get_environ`` gives
an equal one, the very same object while anyone holds it (an application that stored it),
and every change an application makes to it is kept; the namespaces of one connection share
it.

Peers are real: python-socketio's ``AsyncClient`` against an in-process ferrosio server.
Fixtures (``tests/conftest.py``): ``clients``, ``make_server``.
"""

from __future__ import annotations

import gc
from typing import Any

import socketio

import ferrosio

WAIT = 10.0


async def connect(clients: list[Any], url: str, namespaces: list[str] | None = None) -> None:
    c = socketio.AsyncClient(reconnection=False)
    clients.append(c)
    await c.connect(
        url + "?hello=world",
        transports=["websocket"],
        namespaces=namespaces or ["/"],
        headers={"X-Greeting": "hi"},
        wait_timeout=WAIT,
    )


async def test_get_environ_equals_what_the_connect_handler_got(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    seen: dict[str, dict[str, Any]] = {}

    @sio.on("connect")
    def on_connect(sid: str, environ: dict[str, Any]) -> None:
        seen[sid] = dict(environ)  # a copy: the handler's dict is not kept

    await connect(clients, await make_server(sio))
    ((sid, copy),) = seen.items()
    gc.collect()
    environ = sio.get_environ(sid)
    assert environ == copy
    assert isinstance(environ, dict)
    assert environ["QUERY_STRING"].startswith("hello=world&")
    assert environ["HTTP_X_GREETING"] == "hi"


async def test_a_stored_environ_stays_the_one_get_environ_returns(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()
    stored: dict[str, dict[str, Any]] = {}

    @sio.on("connect")
    async def on_connect(sid: str, environ: dict[str, Any]) -> None:
        stored[sid] = environ

    await connect(clients, await make_server(sio))
    ((sid, environ),) = stored.items()
    gc.collect()
    assert sio.get_environ(sid) is environ
    assert sio.get_environ(sid) is sio.get_environ(sid)


async def test_changes_to_the_environ_are_kept(make_server, clients) -> None:
    sio = ferrosio.AsyncServer()

    sids: list[str] = []

    @sio.on("connect")
    def on_connect(sid: str, environ: dict[str, Any]) -> None:
        environ["app.user"] = "ada"
        sids.append(sid)

    await connect(clients, await make_server(sio))
    gc.collect()
    (sid,) = sids
    assert sio.get_environ(sid)["app.user"] == "ada"
    # a change after the connect, through get_environ, with nothing holding the dict after it
    sio.get_environ(sid)["app.later"] = 1
    gc.collect()
    assert sio.get_environ(sid)["app.later"] == 1
    sio.get_environ(sid).pop("app.later")
    gc.collect()
    assert "app.later" not in sio.get_environ(sid)


async def test_the_namespaces_of_one_connection_share_its_environ(make_server, clients) -> None:
    sio = ferrosio.AsyncServer(namespaces=["/", "/chat"])
    sids: dict[str, str] = {}

    @sio.on("connect", namespace="*")
    def on_connect(nsp: str, sid: str, environ: dict[str, Any]) -> None:
        sids[nsp] = sid
        if nsp == "/":
            environ["app.seen"] = "/"

    await connect(clients, await make_server(sio), ["/", "/chat"])
    gc.collect()
    root = sio.get_environ(sids["/"])
    chat = sio.get_environ(sids["/chat"], namespace="/chat")
    assert root is chat
    assert chat["app.seen"] == "/"


async def test_an_environ_nobody_holds_is_not_kept(make_server, clients) -> None:
    # What an idle connection costs: no dict between uses (white box: the slot is empty).
    sio = ferrosio.AsyncServer()
    sids: list[str] = []

    @sio.on("connect")
    async def on_connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.enter_room(sid, "all")
        sids.append(sid)

    await connect(clients, await make_server(sio))
    assert sids
    (slot,) = sio._environs.values()
    assert (slot._strong, slot._weak) == (None, None)
    assert sio.get_environ(sids[0])["REQUEST_METHOD"] == "GET"
    assert (slot._strong, slot._weak) == (None, None)
