"""The msgpack parser (``serializer="msgpack"``), wire-compatible with npm's
socket.io-msgpack-parser: the official socket.io-client with that parser against ferrosio,
ferrosio's AsyncClient against a Node socket.io server using it and against ferrosio, and
mismatched parsers failing clearly instead of hanging.

The Node peers are tests/cluster/msgpack_peer.mjs (``npm install --prefix tests/cluster``);
the ferrosio app below is the same app as the script's server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

import ferrosio
from _harness import TESTS, WAIT
from ferrosio.exceptions import ConnectionRefusedError as RefusedError

PEER_DIR = TESTS / "cluster"
PEER = PEER_DIR / "msgpack_peer.mjs"
NODE_CHECKS = [
    "echo_ack",
    "big_binary",
    "date_as_iso_text",
    "auth_reaches_the_server",
    "server_asks_the_client",
    "rooms_and_broadcast",
    "namespace",
    "connect_error",
]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None
    or not (PEER_DIR / "node_modules" / "socket.io-msgpack-parser").is_dir(),
    reason="needs node and `npm install --prefix tests/cluster`",
)


def msgpack_app(serializer: str = "msgpack") -> ferrosio.AsyncServer:
    """The app of msgpack_peer.mjs's server, on ferrosio."""
    sio = ferrosio.AsyncServer(serializer=serializer)
    auths: dict[str, Any] = {}

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        if isinstance(auth, dict) and auth.get("refuse"):
            raise RefusedError("refused", {"why": 1})
        auths[sid] = auth

    sio.on("connect", connect)
    sio.on("connect", connect, namespace="/chat")

    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    sio.on("echo", echo)
    sio.on("echo", echo, namespace="/chat")

    @sio.on("join")
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    @sio.on("shout")
    async def shout(sid: str, room: str, payload: Any) -> None:
        await sio.emit("shout", payload, room=room, skip_sid=sid)
        await sio.emit("fence")

    @sio.on("ask")
    async def ask(sid: str) -> Any:
        return await sio.call("question", {"b": b"\x01\x02"}, to=sid, timeout=WAIT)

    @sio.on("auth")
    async def get_auth(sid: str) -> Any:
        return auths.get(sid)

    return sio


async def run_node(*args: str) -> list[dict[str, Any]]:
    """Runs msgpack_peer.mjs with ``args``; its JSON lines (bounded: a hang guard only)."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(PEER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=6 * WAIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("transports", ["websocket", "polling", "polling,websocket"])
async def test_the_official_client_with_the_msgpack_parser(make_server, transports: str) -> None:
    url = await make_server(msgpack_app())
    results = await run_node("client", url, transports)
    assert [r["name"] for r in results] == NODE_CHECKS
    failed = [r for r in results if not r["ok"]]
    assert not failed, json.dumps(failed, indent=1)


@pytest.fixture
def node_msgpack_server(spawn_server):
    return spawn_server("node-msgpack", ["node", str(PEER), "server"])


@pytest.fixture(params=["ferrosio", "node"])
async def msgpack_server_url(request, make_server) -> str:
    """A server using the msgpack parser: ferrosio's, or Node's."""
    if request.param == "node":
        return str(request.getfixturevalue("node_msgpack_server").url)
    return str(await make_server(msgpack_app()))


def client(clients: list[Any], serializer: str = "msgpack") -> ferrosio.AsyncClient:
    c = ferrosio.AsyncClient(serializer=serializer, reconnection=False)
    clients.append(c)
    return c


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["ws", "polling"])
async def test_ferrosio_client_with_the_msgpack_parser(
    msgpack_server_url: str, clients, until, transports: list[str]
) -> None:
    url = msgpack_server_url
    c = client(clients)

    @c.on("question")
    async def question(q: Any) -> Any:
        return {"answer": q}

    await c.connect(
        url,
        auth={"token": "t"},
        transports=transports,
        namespaces=["/", "/chat"],
        wait_timeout=WAIT,
    )
    sent = [1, -2, 2.5, "s", None, True, {"a": [1, {"b": "c"}]}, b"\x01\x02\x03", {"n": [b"\x04"]}]
    # Several ack arguments come back as a tuple, as in python-socketio.
    assert await c.call("echo", tuple(sent), timeout=WAIT) == tuple(sent)
    big = b"\x07" * 200_000
    assert await c.call("echo", big, timeout=WAIT) == big
    assert await c.call("auth", timeout=WAIT) == {"token": "t"}
    assert await c.call("ask", timeout=WAIT) == {"answer": {"b": b"\x01\x02"}}
    assert await c.call("echo", ("in chat", b"\x05"), namespace="/chat", timeout=WAIT) == (
        "in chat",
        b"\x05",
    )

    # Rooms and broadcast: b in the room gets the shout, c (outside) and a (the sender) not.
    others = [client(clients), client(clients)]
    seen: dict[int, list[Any]] = {0: [], 1: [], 2: []}
    fences: dict[int, int] = {0: 0, 1: 0, 2: 0}
    for i, x in enumerate([c, *others]):
        x.on("shout", lambda p, i=i: seen[i].append(p))
        x.on("fence", lambda i=i: fences.__setitem__(i, fences[i] + 1))
    for x in others:
        await x.connect(url, transports=transports, wait_timeout=WAIT)
    assert await c.call("join", "room", timeout=WAIT) is True
    assert await others[0].call("join", "room", timeout=WAIT) is True
    await c.emit("shout", ("room", {"x": b"\x09"}))
    await until(lambda: all(fences.values()), what="the fence at every client")
    assert seen == {0: [], 1: [{"x": b"\x09"}], 2: []}

    refused = client(clients)
    with pytest.raises(ferrosio.exceptions.ConnectionRefusedError) as info:
        await refused.connect(url, auth={"refuse": True}, transports=transports, wait_timeout=WAIT)
    assert info.value.error_args == {"message": "refused", "data": {"why": 1}}


@pytest.mark.parametrize(
    ("client_parser", "server_parser"), [("msgpack", "default"), ("default", "msgpack")]
)
async def test_the_official_client_with_the_other_parser_fails_clearly(
    make_server, client_parser: str, server_parser: str
) -> None:
    url = await make_server(msgpack_app(server_parser))
    [result] = await run_node("mismatch", url, "websocket", client_parser)
    # The server closes the connection on the first packet it cannot read.
    assert result["outcome"] == "disconnect", result


@pytest.mark.parametrize("server", ["ferrosio-default", "node-msgpack"])
async def test_ferrosio_client_with_the_other_parser_fails_clearly(
    request, make_server, clients, server: str
) -> None:
    if server == "node-msgpack":
        url = request.getfixturevalue("node_msgpack_server").url
        c = client(clients, "default")
    else:
        url = await make_server(msgpack_app("default"))
        c = client(clients, "msgpack")
    with pytest.raises(ferrosio.exceptions.ConnectionError, match="serializer"):
        await asyncio.wait_for(
            c.connect(url, transports=["websocket"], wait_timeout=WAIT), 2 * WAIT
        )


async def test_msgpack_with_a_client_manager_is_refused() -> None:
    with pytest.raises(ferrosio.exceptions.UnsupportedFeatureError, match="msgpack"):
        ferrosio.AsyncServer(
            serializer="msgpack", client_manager=ferrosio.AsyncRedisManager("redis://127.0.0.1")
        )


async def test_python_socketio_client_with_msgpack(make_server) -> None:
    """python-socketio's own msgpack serializer (``socketio.msgpack_packet``) against ferrosio."""
    pytest.importorskip("msgpack")
    import socketio

    url = await make_server(msgpack_app())
    questions: list[Any] = []
    c = socketio.AsyncClient(serializer="msgpack", reconnection=False)

    @c.on("question")
    async def question(q: Any) -> Any:
        questions.append(q)
        return {"answer": q}

    await c.connect(url, auth={"token": "p"}, transports=["websocket"], wait_timeout=WAIT)
    try:
        sent = (1, "s", {"nested": [b"\x00\x01", None]}, b"\xff" * 1000)
        assert await c.call("echo", sent, timeout=WAIT) == sent
        assert await c.call("auth", timeout=WAIT) == {"token": "p"}
        assert await c.call("ask", timeout=WAIT) == {"answer": {"b": b"\x01\x02"}}
        assert questions == [{"b": b"\x01\x02"}]
    finally:
        await c.disconnect()
