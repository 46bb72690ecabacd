"""Engine.IO v3 / Socket.IO v4 clients (``AsyncServer(allow_eio3=True)``, Node's
``allowEIO3``), against the real npm ``socket.io-client`` 2.x (installed as
``socket.io-client-v2`` in tests/node, driven by tests/node/eio3.mjs), and byte for byte over
raw HTTP and WebSocket: the v3 polling payloads (``<length>:<packet>`` text, the binary
payload, ``b4<base64>``), the client-side heartbeat, malformed payloads.

What is expected is what socket.io 4.x with ``allowEIO3: true`` does (engine.io's
``parser-v3``, socket.io-parser 3.x on the client side).

Every wait is bounded (WAIT); nothing asserts how fast something happens. The heartbeat test
lets a few ping intervals pass to show that client pings keep the session alive (a wait, not
a timing assertion), then makes the client stop pinging and waits for the server to close.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import ferrosio
from _harness import TESTS
from ferrosio.exceptions import ConnectionRefusedError

NODE_DIR = TESTS / "node"
SCRIPT = NODE_DIR / "eio3.mjs"
WAIT = 20.0
BIN = b"\x00\x01\x02\xfe\xff"


def b64(data: bytes) -> dict[str, str]:
    return {"$bin": base64.b64encode(data).decode()}


# ------------------------------------------------------------------ the v2 client driver ----
class V2Clients:
    """eio3.mjs as a subprocess: commands in, events out (see the script)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []
        self.last_connect: dict[str, dict[str, Any]] = {}

    @classmethod
    async def start(cls) -> V2Clients:
        if (
            shutil.which("node") is None
            or not (NODE_DIR / "node_modules" / "socket.io-client-v2").is_dir()
        ):
            pytest.fail("needs node and `npm install --prefix tests/node`", pytrace=False)
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def expect(
        self, cid: str, ev: str, pred: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        """The first event `ev` of client `cid` matching `pred` (already seen or next)."""
        assert self.proc.stdout is not None

        def match(r: dict[str, Any]) -> bool:
            return r.get("id") == cid and r.get("ev") == ev and pred(r)

        for r in self.seen:
            if match(r):
                self.seen.remove(r)
                return r
        async with asyncio.timeout(WAIT):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"eio3.mjs ended: {err.decode(errors='replace')}")
                r = json.loads(raw)
                assert r.get("ev") not in ("driver_error", "bad_command"), r
                if match(r):
                    return r
                self.seen.append(r)

    async def event(self, cid: str, name: str) -> list[Any]:
        r = await self.expect(cid, "event", lambda r: r["name"] == name)
        args: list[Any] = r["args"]
        return args

    async def connect(self, cid: str, url: str, **opts: Any) -> str:
        self.send(op="connect", id=cid, url=url, opts=opts)
        r = await self.expect(cid, "connect")
        self.last_connect[cid] = r
        transport: str = r["transport"]
        return transport

    async def call(self, cid: str, event: str, *args: Any) -> list[Any]:
        self.send(op="emit", id=cid, event=event, args=list(args), ack=True)
        r = await self.expect(cid, "ack", lambda r: r["event"] == event)
        answer: list[Any] = r["args"]
        return answer

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.send(op="exit")
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def v2() -> AsyncIterator[V2Clients]:
    clients = await V2Clients.start()
    yield clients
    await clients.close()


TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


class App:
    """A server for v2 and v4 clients, recording what its handlers saw."""

    def __init__(self, **kw: Any) -> None:
        self.sio = ferrosio.AsyncServer(allow_eio3=True, **kw)
        self.connects: list[tuple[str, str, Any, dict[str, Any]]] = []
        self.disconnects: list[tuple[str, str, Any]] = []
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if "deny" in query:
                args = query["deny"][0].split(":")
                raise ConnectionRefusedError(args[0], *({"code": int(a)} for a in args[1:]))
            self.connects.append((sid, "/", auth, environ))
            await sio.emit("welcome", {"sid": sid}, to=sid)

        @sio.event
        async def disconnect(sid: str, reason: Any = None) -> None:
            self.disconnects.append((sid, "/", reason))

        @sio.on("echo")
        async def echo(sid: str, *args: Any) -> Any:
            return args

        @sio.on("join")
        async def join(sid: str, room: str) -> str:
            await sio.enter_room(sid, room)
            return sid

        @sio.on("kick")
        async def kick(sid: str) -> None:
            await sio.disconnect(sid)

        @sio.on("connect", namespace="/chat")
        async def chat_connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if query.get("token") != ["abc"]:
                raise ConnectionRefusedError("bad token")
            self.connects.append((sid, "/chat", auth, environ))

        @sio.on("disconnect", namespace="/chat")
        async def chat_disconnect(sid: str, reason: Any = None) -> None:
            self.disconnects.append((sid, "/chat", reason))

        @sio.on("echo", namespace="/chat")
        async def chat_echo(sid: str, *args: Any) -> Any:
            return ("chat", *args)


# ------------------------------------------------------------------ the npm client 2.x ----
@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_a_v2_client_connects_emits_acks_and_gets_binary(make_server, v2, until, mode):
    app = App()
    url = await make_server(app.sio)
    transport = await v2.connect("a", url, transports=TRANSPORTS[mode])
    assert transport == TRANSPORTS[mode][-1]
    # `/` is joined implicitly: the connect handler ran without a CONNECT, with no auth,
    # and what it emitted arrives after the CONNECT reply (the client saw "connect" first).
    welcome = await v2.event("a", "welcome")
    sid = welcome[0]["sid"]
    assert app.connects[0][:3] == (sid, "/", None)
    # the socket id is the one the client computed itself (its Engine.IO sid), as in Node
    assert v2.last_connect["a"]["sid"] == sid
    assert "EIO=3" in app.connects[0][3]["QUERY_STRING"]
    # events with acks, binary anywhere in the arguments, unicode
    assert await v2.call("a", "echo", "hé 😀", 3, {"k": [1, None]}) == [
        "hé 😀",
        3,
        {"k": [1, None]},
    ]
    nested = {"blob": b64(BIN), "list": [b64(b"\x01"), "x"]}
    assert await v2.call("a", "echo", b64(BIN), nested) == [b64(BIN), nested]
    assert await v2.call("a", "echo") == []
    # the server emits binary and asks the client for an ack
    answer = await app.sio.call("data", {"bytes": BIN, "n": 1}, to=sid, timeout=WAIT)
    assert answer == ("got", "data", {"bytes": BIN, "n": 1}), "binary acks too"
    assert await v2.event("a", "data") == [{"bytes": b64(BIN), "n": 1}]
    # and the client leaves
    v2.send(op="close", id="a")
    await until(lambda: app.disconnects, what="the server's disconnect handler")
    assert app.disconnects[0][:2] == (sid, "/")
    assert app.disconnects[0][2] in ("client disconnect", "transport close")


@pytest.mark.parametrize("mode", ["websocket", "polling"])
async def test_namespaces_with_a_query_and_a_refusal(make_server, v2, until, mode):
    app = App()
    url = await make_server(app.sio)
    opts = {"transports": TRANSPORTS[mode]}
    await v2.connect("chat", f"{url}/chat", query={"token": "abc"}, **opts)
    assert await v2.call("chat", "echo", 1) == ["chat", 1]
    assert v2.last_connect["chat"]["sid"] == app.connects[1][0], "the client's own id"
    assert app.connects[1][0] == f"/chat#{app.connects[0][0]}"
    assert [c[1] for c in app.connects] == ["/", "/chat"], "the main namespace too"
    assert app.connects[1][2] is None, "no auth in Socket.IO v4"
    # refused: the v4 ERROR packet carries the message as a plain string
    v2.send(op="connect", id="bad", url=f"{url}/chat", opts={"query": {"token": "no"}, **opts})
    err = await v2.expect("bad", "error")
    assert err["data"] == "bad token"
    # leaving /chat keeps the connection (and `/`)
    v2.send(op="close", id="chat")
    await until(lambda: any(d[1] == "/chat" for d in app.disconnects), what="disconnect from /chat")


@pytest.mark.parametrize(
    ("deny", "error"), [("no", "no"), ("no:7", {"code": 7})], ids=["message", "data"]
)
async def test_a_refused_main_namespace(make_server, v2, deny, error):
    app = App()
    url = await make_server(app.sio)
    v2.send(op="connect", id="a", url=url, opts={"query": {"deny": deny}})
    # socket.io 2.x's ERROR packet: the error's data if it has some, else its message
    assert (await v2.expect("a", "error"))["data"] == error
    assert app.connects == []


async def test_server_side_disconnect(make_server, v2, until):
    app = App()
    url = await make_server(app.sio)
    await v2.connect("a", url, transports=["websocket"])
    v2.send(op="emit", id="a", event="kick", args=[], ack=False)
    r = await v2.expect("a", "disconnect")
    assert r["reason"] == "io server disconnect"
    await until(lambda: app.disconnects, what="the server's disconnect handler")


async def test_a_room_broadcast_reaches_v2_and_v4_clients(make_server, v2, clients, until):
    app = App()
    url = await make_server(app.sio)
    await v2.connect("ws", url, transports=["websocket"])
    await v2.connect("poll", url, transports=["polling"])
    assert await v2.call("ws", "join", "r")
    assert await v2.call("poll", "join", "r")
    v4 = ferrosio.AsyncClient(reconnection=False)
    clients.append(v4)
    got: list[Any] = []
    v4.on("news", lambda *a: got.append(a))
    await v4.connect(url, transports=["websocket"])
    await v4.call("join", "r")
    data = {"text": "héllo", "blob": BIN, "more": [BIN]}
    await app.sio.emit("news", data, room="r")
    await app.sio.emit("news", "plain", room="r")
    expected = [{"text": "héllo", "blob": b64(BIN), "more": [b64(BIN)]}]
    for cid in ("ws", "poll"):
        assert await v2.event(cid, "news") == expected
        assert await v2.event(cid, "news") == ["plain"]
    await until(lambda: len(got) == 2, what="the v4 client's two broadcasts")
    assert got == [(data,), ("plain",)]


@pytest.mark.parametrize("mode", ["websocket", "polling"])
async def test_client_pings_keep_the_session_and_a_silent_client_is_closed(
    make_server, v2, until, mode
):
    app = App(ping_interval=0.5, ping_timeout=1)
    url = await make_server(app.sio)
    await v2.connect("a", url, transports=TRANSPORTS[mode])
    # several ping intervals pass: the client's pings (answered by pongs) keep it connected
    await asyncio.sleep(2)
    assert await v2.call("a", "echo", "still here") == ["still here"]
    assert app.disconnects == []
    v2.send(op="stop_pinging", id="a")
    await v2.expect("a", "stopped_pinging")
    await until(lambda: app.disconnects, what="the ping timeout")
    assert app.disconnects[0][2] == "ping timeout"


async def test_v2_clients_are_refused_unless_allowed(make_server, v2):
    url = await make_server(ferrosio.AsyncServer())
    v2.send(op="connect", id="a", url=url, opts={"transports": ["polling"]})
    await v2.expect("a", "connect_error")
    status, body, _ = await get(f"{url}/socket.io/?EIO=3&transport=polling")
    assert status == 400
    assert json.loads(body) == {"code": 5, "message": "Unsupported protocol version"}


# ------------------------------------------------------------------ raw HTTP, byte for byte ----
async def request(
    url: str, method: str = "GET", body: bytes | None = None, content_type: str | None = None
) -> tuple[int, bytes, str]:
    def go() -> tuple[int, bytes, str]:
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as res:
                return res.status, res.read(), res.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    return await asyncio.to_thread(go)


async def get(url: str) -> tuple[int, bytes, str]:
    return await request(url)


def units(s: str) -> int:
    """JavaScript's String.length: UTF-16 code units."""
    return len(s.encode("utf-16-le")) // 2


def text_payload(*packets: str) -> bytes:
    return "".join(f"{units(p)}:{p}" for p in packets).encode()


def parse_text_payload(body: bytes) -> list[str]:
    s, out = body.decode(), []
    while s:
        n, _, rest = s.partition(":")
        # n counts UTF-16 units: walk characters
        i = count = 0
        while count < int(n):
            count += units(rest[i])
            i += 1
        out.append(rest[:i])
        s = rest[i:]
    return out


def parse_binary_payload(body: bytes) -> list[str | bytes]:
    out: list[str | bytes] = []
    i = 0
    while i < len(body):
        kind = body[i]
        j = body.index(0xFF, i)
        n = int("".join(str(d) for d in body[i + 1 : j]))
        packet = body[j + 1 : j + 1 + n]
        out.append(packet.decode() if kind == 0 else packet)
        i = j + 1 + n
    return out


def binary_payload(*packets: str | bytes) -> bytes:
    out = bytearray()
    for p in packets:
        data = p.encode() if isinstance(p, str) else b"\x04" + p
        out.append(0 if isinstance(p, str) else 1)
        out += bytes(int(d) for d in str(len(data)))
        out.append(0xFF)
        out += data
    return bytes(out)


class Session:
    def __init__(self, base: str, sid: str, query: str) -> None:
        self.base, self.sid, self.query = base, sid, query

    @property
    def url(self) -> str:
        return f"{self.base}/socket.io/?EIO=3&transport=polling&sid={self.sid}{self.query}"

    @classmethod
    async def open(cls, base: str, query: str = "") -> tuple[Session, dict[str, Any]]:
        status, body, ctype = await get(f"{base}/socket.io/?EIO=3&transport=polling{query}")
        assert status == 200, body
        assert ctype.startswith("text/plain"), ctype
        [open_packet] = parse_text_payload(body)
        assert open_packet[0] == "0"
        info = json.loads(open_packet[1:])
        return cls(base, info["sid"], query), info

    async def get(self) -> tuple[int, bytes, str]:
        return await get(self.url)

    async def post(self, body: bytes, content_type: str = "text/plain;charset=UTF-8") -> int:
        status, answer, _ = await request(self.url, "POST", body, content_type)
        assert status != 200 or answer == b"ok", answer
        return status


async def test_raw_v3_polling_framing(make_server):
    app = App(ping_interval=25, ping_timeout=20)
    base = await make_server(app.sio)
    s, info = await Session.open(base)
    assert info["upgrades"] == ["websocket"]
    assert info["pingInterval"] == 25000 and info["pingTimeout"] == 20000
    # the implicit CONNECT reply (no sid payload), then what the connect handler emitted
    got: list[str] = []
    while len(got) < 2:
        status, body, _ = await s.get()
        assert status == 200
        got += parse_text_payload(body)
    assert got == ["40", f'42["welcome",{{"sid":"{app.connects[0][0]}"}}]']
    # a text payload of several packets: a ping, an event with an ack, astral characters
    assert await s.post(text_payload("2", '421["echo","é😀"]')) == 200
    got = []
    while len(got) < 2:
        got += parse_text_payload((await s.get())[1])
    assert got == ["3", '431["é😀"]']
    # binary from a client that takes binary: a binary payload both ways
    event = '451-2["echo",{"_placeholder":true,"num":0}]'
    assert await s.post(binary_payload(event, BIN), "application/octet-stream") == 200
    status, body, ctype = await s.get()
    assert ctype == "application/octet-stream"
    assert parse_binary_payload(body) == ['461-2[{"_placeholder":true,"num":0}]', b"\x04" + BIN]
    # the same as text (b4<base64>), as a client without XHR2 posts it
    assert await s.post(text_payload(event, "b4" + base64.b64encode(BIN).decode())) == 200
    assert parse_binary_payload((await s.get())[1])[1] == b"\x04" + BIN
    # a client that asked for base64 gets text payloads with b4<base64>
    s64, _ = await Session.open(base, "&b64=1")
    while "40" not in parse_text_payload((await s64.get())[1]):
        pass
    assert await s64.post(binary_payload(event, BIN), "application/octet-stream") == 200
    status, body, ctype = await s64.get()
    assert ctype.startswith("text/plain")
    assert parse_text_payload(body) == [
        '461-2[{"_placeholder":true,"num":0}]',
        "b4" + base64.b64encode(BIN).decode(),
    ]
    # a v4 request on a v3 session is refused
    status, _, _ = await get(s.url.replace("EIO=3", "EIO=4"))
    assert status == 400
    # the client closes
    assert await s.post(text_payload("1")) == 200
    assert (await s.get())[0] in (200, 400)


MALFORMED: list[tuple[str, bytes, str]] = [
    ("no-length", b'42["echo"]', "text/plain"),
    ("empty-length", b':42["echo"]', "text/plain"),
    ("bad-length", b'x:42["echo"]', "text/plain"),
    ("short", b'99:42["echo"]', "text/plain"),
    ("long", b'3:42["echo"]', "text/plain"),
    ("huge-length", b"99999999999999999999:4", "text/plain"),
    ("split-pair", "1:😀".encode(), "text/plain"),
    ("bad-utf8", b"2:4\xff", "text/plain"),
    ("unknown-type", b"1:9", "text/plain"),
    ("bad-base64", b"4:b4!!", "text/plain"),
    ("b64-not-message", b"4:b2AA", "text/plain"),
    ("bin-kind", b"\x02\x01\xff4", "application/octet-stream"),
    ("bin-no-ff", b"\x00\x01\x02", "application/octet-stream"),
    ("bin-digit", b"\x00\x0a\xff4", "application/octet-stream"),
    ("bin-short", b"\x00\x05\xff4", "application/octet-stream"),
    ("bin-not-message", b"\x01\x02\xff\x02\x00", "application/octet-stream"),
    ("bin-bad-utf8", b"\x00\x02\xff4\xff", "application/octet-stream"),
    ("bin-digits", bytes(40), "application/octet-stream"),
    ("empty", b"", "text/plain"),
]


@pytest.mark.parametrize(
    ("body", "ctype"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_malformed_v3_payloads_close_only_that_session(make_server, body, ctype):
    app = App()
    base = await make_server(app.sio)
    bad, _ = await Session.open(base)
    good, _ = await Session.open(base)
    assert await bad.post(body, ctype) == 400
    status, answer, _ = await bad.get()
    assert status == 400 and json.loads(answer)["code"] == 1, answer
    # everyone else is served
    assert await good.post(text_payload('421["echo","ok"]')) == 200
    got: list[str] = []
    while '431["ok"]' not in got:
        got += parse_text_payload((await good.get())[1])


async def test_raw_v3_websocket(make_server):
    app = App()
    base = await make_server(app.sio)
    ws_url = base.replace("http://", "ws://") + "/socket.io/?EIO=3&transport=websocket"
    async with ws_connect(ws_url, compression=None, open_timeout=WAIT) as ws:
        async with asyncio.timeout(WAIT):
            opened = await ws.recv()
            assert isinstance(opened, str) and opened.startswith("0")
            assert json.loads(opened[1:])["upgrades"] == []
            assert await ws.recv() == "40"
            assert (await ws.recv()).startswith('42["welcome"')
            await ws.send("2")
            assert await ws.recv() == "3", "the server answers the client's ping"
            await ws.send('451-7["echo",{"_placeholder":true,"num":0}]')
            await ws.send(b"\x04" + BIN)
            assert await ws.recv() == '461-7[{"_placeholder":true,"num":0}]'
            assert await ws.recv() == b"\x04" + BIN, "binary frames carry the type byte"
            # an attachment nobody announced: a protocol error, that connection closes
            await ws.send("b4" + base64.b64encode(b"\x09").decode())
            with pytest.raises(ConnectionClosed):
                await ws.recv()


async def test_raw_v3_websocket_refuses_a_binary_frame_of_another_type(make_server):
    app = App()
    base = await make_server(app.sio)
    ws_url = base.replace("http://", "ws://") + "/socket.io/?EIO=3&transport=websocket"
    async with ws_connect(ws_url, compression=None, open_timeout=WAIT) as ws:
        async with asyncio.timeout(WAIT):
            await ws.recv()
            await ws.send(b"\x02probe")
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
    # the server still serves
    s, _ = await Session.open(base)
    assert s.sid


async def test_raw_v3_upgrade(make_server):
    app = App()
    base = await make_server(app.sio)
    s, _ = await Session.open(base, "&b64=1")
    while "40" not in parse_text_payload((await s.get())[1]):
        pass
    ws_url = base.replace("http://", "ws://") + f"/socket.io/?EIO=3&transport=websocket&sid={s.sid}"
    # an upgrade must speak its session's revision
    with pytest.raises(InvalidStatus):
        async with ws_connect(ws_url.replace("EIO=3", "EIO=4"), open_timeout=WAIT):
            pass
    async with ws_connect(ws_url, compression=None, open_timeout=WAIT) as ws:
        async with asyncio.timeout(WAIT):
            pending = asyncio.create_task(s.get())
            await ws.send("2probe")
            assert await ws.recv() == "3probe"
            assert parse_text_payload((await pending)[1]) == ["6"]
            await ws.send("5")
            await ws.send('451-1["echo",{"_placeholder":true,"num":0}]')
            await ws.send("b4" + base64.b64encode(BIN).decode())
            assert await ws.recv() == '461-1[{"_placeholder":true,"num":0}]'
            # b64=1 at the handshake: binary goes as b4<base64> text frames
            assert await ws.recv() == "b4" + base64.b64encode(BIN).decode()
    # after the upgrade, polling on that session is refused
    assert (await s.get())[0] == 400


# ------------------------------------------------------------------ under an ASGI server ----
@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_a_v2_client_through_asgiapp_under_uvicorn(v2, until, mode):
    import uvicorn

    from _harness import free_port

    app = App()
    port = free_port()
    config = uvicorn.Config(
        ferrosio.ASGIApp(app.sio),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT):
            while not server.started:
                await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        assert await v2.connect("a", url, transports=TRANSPORTS[mode]) == TRANSPORTS[mode][-1]
        await v2.event("a", "welcome")
        nested = {"blob": b64(BIN), "list": [b64(b"\x01"), "x"]}
        assert await v2.call("a", "echo", "é", nested) == ["é", nested]
        sid = app.connects[0][0]
        answer = await app.sio.call("data", BIN, to=sid, timeout=WAIT)
        assert answer == ("got", "data", BIN)
        # the client leaves first: a long-polling GET would hold uvicorn's graceful shutdown
        v2.send(op="close", id="a")
        await until(lambda: app.disconnects, what="the server's disconnect handler")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
