"""Compression: WebSocket permessage-deflate (``per_message_deflate=True``), gzip/deflate of
polling responses (``http_compression``), ``compression_threshold`` and ``emit(compress=False)``.

The peers are real: the official npm socket.io-client over WebSocket (``ws`` offers
permessage-deflate by default) and over polling (engine.io-client's Fetch transport, whose
Node fetch asks for gzip), Chromium, and hand-written HTTP/WebSocket clients for the exact
bytes. What happened on the wire is checked through a TCP proxy in the test that records both
directions: the RSV1 bit of every WebSocket frame (inflated here with zlib to see what it
was), the ``Content-Encoding`` of every polling response.

Needs ``npm install --prefix tests/node`` (socket.io-client), and for the browser test
``npm install --prefix tests/browser`` and Debian's ``chromium``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

import ferrosio
from _harness import HOST, TESTS

WAIT = 20.0
NODE_SCRIPT = TESTS / "node" / "compression.mjs"
BROWSER_SPEC = TESTS / "browser" / "compression.spec.mjs"
CLIENT_BUNDLE = TESTS / "node" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

BIG = "abc" * 1000  # 3000 bytes, compressible, over the 1024 threshold
SMALL = "s" * 100  # under it
BIG_BINARY = bytes(3000)
UPLOAD_LEN = 10_000  # what the clients upload (compressed by them: over their threshold)


def compression_server(**kwargs: Any) -> ferrosio.AsyncServer:
    """A server that sends each event of the scripts when asked, and acks uploads with
    their length."""
    sio = ferrosio.AsyncServer(cors_allowed_origins="*", **kwargs)
    sio.sids = []  # type: ignore[attr-defined]

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        sio.sids.append(sid)  # type: ignore[attr-defined]

    @sio.event
    async def want(sid: str, name: str) -> None:
        if name == "big":
            await sio.emit("big", BIG, to=sid)
        elif name == "small":
            await sio.emit("small", SMALL, to=sid)
        elif name == "plain_big":
            await sio.emit("plain_big", BIG, to=sid, compress=False)
        elif name == "big_binary":
            await sio.emit("big_binary", BIG_BINARY, to=sid)

    @sio.event
    def upload(sid: str, text: str) -> int:
        return len(text)

    return sio


# ------------------------------------------------------------------------------ the proxy ---
@dataclass
class Connection:
    up: bytearray = field(default_factory=bytearray)  # client -> server
    down: bytearray = field(default_factory=bytearray)  # server -> client


class Proxy:
    """Forwards 127.0.0.1:<port> to the server, keeping every byte of each connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[Connection] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, HOST, 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        conn = Connection()
        self.connections.append(conn)
        try:
            sr, sw = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            cw.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, log: bytearray) -> None:
            try:
                while data := await r.read(65536):
                    log.extend(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(cr, sw, conn.up), pipe(sr, cw, conn.down))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxy_to() -> AsyncIterator[Any]:
    made: list[Proxy] = []

    async def make(url: str) -> tuple[Proxy, str]:
        p = Proxy(int(url.rsplit(":", 1)[1]))
        made.append(p)
        port = await p.start()
        return p, f"http://{HOST}:{port}"

    yield make
    for p in made:
        await p.close()


# ------------------------------------------------------------------------ wire parsing ---
@dataclass
class WsFrame:
    rsv1: bool
    opcode: int
    payload: bytes  # inflated when rsv1

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


def split_head(data: bytes) -> tuple[str, bytes]:
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def ws_frames(data: bytes, masked: bool) -> list[WsFrame]:
    """Every complete message frame in ``data`` (unfragmented, as all these peers send)."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        i = pos + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        mask = data[i : i + 4] if masked else b""
        i += 4 if masked else 0
        if i + n > len(data):
            break
        payload = data[i : i + n]
        if masked:
            payload = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        rsv1 = bool(b0 & 0x40)
        if rsv1:  # no context takeover: each message inflates on its own
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        frames.append(WsFrame(rsv1, b0 & 0x0F, payload))
        pos = i + n
    return frames


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes  # decoded

    @property
    def encoding(self) -> str | None:
        return self.headers.get("content-encoding")


def http_responses(data: bytes) -> list[HttpResponse]:
    """The responses of a keep-alive connection (bodies with Content-Length)."""
    out = []
    rest = bytes(data)
    while b"\r\n\r\n" in rest:
        head, rest = split_head(rest)
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        n = int(headers.get("content-length", "0"))
        body, rest = rest[:n], rest[n:]
        coding = headers.get("content-encoding")
        if coding == "gzip":
            body = gzip.decompress(body)
        elif coding == "deflate":
            body = zlib.decompress(body)
        out.append(HttpResponse(int(lines[0].split()[1]), headers, body))
    return out


def websocket_connection(p: Proxy) -> Connection:
    found = [c for c in p.connections if b"transport=websocket" in c.up[:2000]]
    assert len(found) == 1, f"{len(found)} websocket connections"
    return found[0]


def check_websocket_wire(conn: Connection) -> None:
    """Compressed above the threshold, not below it, not with compress=False."""
    request, up = split_head(conn.up)
    response, down = split_head(conn.down)
    assert "permessage-deflate" in request.lower(), request
    assert (
        "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; "
        "client_no_context_takeover" in response.lower()
    ), response
    frames = ws_frames(down, masked=False)

    def sent(prefix: str) -> WsFrame:
        hits = [f for f in frames if f.opcode == 1 and f.text.startswith(prefix)]
        assert len(hits) == 1, (prefix, frames)
        return hits[0]

    big = sent('42["big"')
    assert big.rsv1 and big.payload == b'42["big","' + BIG.encode() + b'"]'
    assert not sent('42["small"').rsv1
    plain = sent('42["plain_big"')
    assert not plain.rsv1, "compress=False"
    assert len(plain.payload) > 1024
    assert not sent('451-["big_binary"').rsv1, "the small placeholder packet"
    attachment = [f for f in frames if f.opcode == 2]
    assert len(attachment) == 1 and attachment[0].rsv1
    assert attachment[0].payload == BIG_BINARY
    # The client compressed its upload (over its own threshold): the server inflated it.
    uploads = [f for f in ws_frames(up, masked=True) if b'"upload"' in f.payload]
    assert len(uploads) == 1 and uploads[0].rsv1, uploads


async def run_node(url: str, mode: str) -> dict[str, Any]:
    if shutil.which("node") is None or not CLIENT_BUNDLE.is_file():
        pytest.fail("needs node and `npm install --prefix tests/node`", pytrace=False)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_SCRIPT),
        url,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"compression.mjs {mode} did not finish")
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert lines, f"no result; stderr: {err.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["ok"], (result, err.decode()[-2000:])
    return result


def check_received(result: dict[str, Any]) -> None:
    assert result["got"] == {
        "big": len(BIG),
        "small": len(SMALL),
        "plain_big": len(BIG),
        "big_binary": len(BIG_BINARY),
    }
    assert result["upload_ack"] == UPLOAD_LEN


# ------------------------------------------------------------------------------- tests ---
async def test_npm_client_over_websocket_gets_and_sends_compressed_messages(
    make_server: Any, proxy_to: Any
) -> None:
    url = await make_server(compression_server(per_message_deflate=True))
    p, via = await proxy_to(url)
    result = await run_node(via, "websocket")
    assert result["transport"] == "websocket"
    check_received(result)
    check_websocket_wire(websocket_connection(p))


async def test_npm_client_over_polling_gets_gzip_above_the_threshold(
    make_server: Any, proxy_to: Any
) -> None:
    url = await make_server(compression_server())  # http_compression is on by default
    p, via = await proxy_to(url)
    result = await run_node(via, "polling")
    assert result["transport"] == "polling"
    check_received(result)
    responses = [r for c in p.connections for r in http_responses(c.down)]
    events: dict[str, HttpResponse] = {}
    for r in responses:
        for name in ("big", "small", "plain_big", "big_binary"):
            if f'["{name}"'.encode() in r.body:
                events[name] = r
    assert set(events) == {"big", "small", "plain_big", "big_binary"}, responses
    assert events["big"].encoding == "gzip"
    assert "Accept-Encoding" in events["big"].headers.get("vary", "")
    assert events["big_binary"].encoding == "gzip"  # 'b' + base64 of the attachment
    assert events["small"].encoding is None, "under the threshold"
    assert events["plain_big"].encoding is None, "compress=False"
    assert len(events["plain_big"].body) > 1024


async def raw_http(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> HttpResponse:
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), WAIT)
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    w.write(head.encode() + body)
    data = await asyncio.wait_for(r.read(), WAIT)
    w.close()
    (response,) = http_responses(data)
    return response


@pytest.mark.parametrize(
    ("server_args", "accept", "expected"),
    [
        ({}, "gzip, deflate", "gzip"),
        ({}, "deflate", "deflate"),
        ({}, "gzip;q=0.2, deflate;q=0.9", "deflate"),
        ({}, None, None),
        ({}, "br, identity", None),
        ({"http_compression": False}, "gzip", None),
        ({"compression_threshold": 100_000}, "gzip", None),
    ],
)
async def test_polling_responses_follow_accept_encoding_and_the_arguments(
    make_server: Any,
    until: Any,
    server_args: dict[str, Any],
    accept: str | None,
    expected: str | None,
) -> None:
    sio = compression_server(**server_args)
    port = int((await make_server(sio)).rsplit(":", 1)[1])
    # A browser's Origin: CORS adds `Vary: Origin`, which must not replace Accept-Encoding.
    headers = {"Origin": "http://example.test"}
    if accept:
        headers["Accept-Encoding"] = accept
    path = "/socket.io/?EIO=4&transport=polling"
    opened = await raw_http(port, "GET", path, headers)
    assert opened.encoding is None, "the open packet is small"
    sid = json.loads(opened.body[1:])["sid"]
    assert (await raw_http(port, "POST", f"{path}&sid={sid}", {}, b"40")).status == 200
    connected = await raw_http(port, "GET", f"{path}&sid={sid}", headers)
    assert connected.body.startswith(b"40{")
    await until(lambda: sio.sids, what="connect handler")
    await sio.emit("big", BIG, to=sio.sids[0])
    got = await raw_http(port, "GET", f"{path}&sid={sid}", headers)
    assert got.encoding == expected
    if expected:
        assert "Accept-Encoding" in got.headers["vary"], got.headers
    assert got.body == b'42["big","' + BIG.encode() + b'"]'


async def test_websocket_compression_is_off_by_default(make_server: Any) -> None:
    url = await make_server(compression_server())
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url, compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("0{")


async def test_a_deflate_bomb_is_refused_with_1009(make_server: Any, clients: list[Any]) -> None:
    """3 MB of zeros deflate to a few KB: the frame is far under max_http_buffer_size (1 MB)
    but the message inflates past it; the server stops inflating there and closes with 1009."""
    url = await make_server(compression_server(per_message_deflate=True))
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url, compression="deflate", max_size=None) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("0{")
        await ws.send("40")
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("40{")
        await ws.send('42["upload","' + "0" * 3_000_000 + '"]')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # Everyone else is still served, and a compressed message under the bound goes through.
    client = ferrosio.AsyncClient()
    clients.append(client)
    await client.connect(url, transports=["websocket"])
    assert await client.call("upload", "x" * 500_000, timeout=WAIT) == 500_000
    async with websockets.connect(ws_url, compression="deflate") as ws:
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("0{")
        await ws.send("40")
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("40{")
        await ws.send('421["upload","' + "0" * 900_000 + '"]')
        assert await asyncio.wait_for(ws.recv(), WAIT) == "431[900000]"


def _browser_ready() -> bool:
    browser_deps = TESTS / "browser" / "node_modules" / "playwright-core"
    return Path(CHROMIUM).is_file() and browser_deps.is_dir() and CLIENT_BUNDLE.is_file()


@pytest.mark.timeout(120)
async def test_chromium_gets_and_sends_compressed_messages(make_server: Any, proxy_to: Any) -> None:
    if not _browser_ready():
        pytest.fail(
            "needs chromium, `npm install --prefix tests/browser` and --prefix tests/node",
            pytrace=False,
        )
    url = await make_server(compression_server(per_message_deflate=True))
    p, via = await proxy_to(url)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(BROWSER_SPEC),
        "--url",
        via,
        "--client",
        str(CLIENT_BUNDLE),
        "--chromium",
        CHROMIUM,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("compression.spec.mjs did not finish")
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert lines, f"no result; stderr: {err.decode()[-2000:]}"
    result = json.loads(lines[-1])
    assert result["ok"], (result, err.decode()[-2000:])
    check_received(result)
    check_websocket_wire(websocket_connection(p))


async def test_per_message_deflate_under_an_asgi_server_is_refused() -> None:
    """Under an ASGI server the WebSocket is the ASGI server's: the argument cannot be
    honoured there, so the lifespan startup fails naming it."""
    app = ferrosio.ASGIApp(compression_server(per_message_deflate=True))
    incoming = [{"type": "lifespan.startup"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, receive, send), WAIT)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "per_message_deflate" in sent[0]["message"]


async def test_ferrosio_client_over_polling_takes_gzip(
    make_server: Any, proxy_to: Any, clients: list[Any]
) -> None:
    """ferrosio's own AsyncClient asks for gzip on polling and decodes it."""
    url = await make_server(compression_server())
    p, via = await proxy_to(url)
    client = ferrosio.AsyncClient()
    clients.append(client)
    got: asyncio.Queue[Any] = asyncio.Queue()
    client.on("big", got.put_nowait)
    await client.connect(via, transports=["polling"])
    await client.emit("want", "big")
    assert await asyncio.wait_for(got.get(), WAIT) == BIG
    assert await client.call("upload", "z" * UPLOAD_LEN, timeout=WAIT) == UPLOAD_LEN
    responses = [r for c in p.connections for r in http_responses(c.down)]
    big = [r for r in responses if b'["big"' in r.body]
    assert len(big) == 1 and big[0].encoding == "gzip", responses
    requests = b"".join(bytes(c.up) for c in p.connections).lower()
    assert b"accept-encoding: gzip, deflate" in requests


async def test_engineio_v3_sessions_are_compressed_too(make_server: Any, until: Any) -> None:
    """allow_eio3: a v3 polling response (text or binary payload) is gzip-encoded as a v4 one;
    permessage-deflate is negotiated on a v3 WebSocket, its text messages are compressed and
    its binary messages (type byte first) go as they are, and arrive intact either way."""
    sio = compression_server(allow_eio3=True, per_message_deflate=True)
    url = await make_server(sio)
    port = int(url.rsplit(":", 1)[1])
    path = "/socket.io/?EIO=3&transport=polling"
    gz = {"Accept-Encoding": "gzip"}
    opened = await raw_http(port, "GET", path, gz)
    assert opened.encoding is None, "the open packet is small"
    sid = json.loads(opened.body[opened.body.index(b"{") : opened.body.index(b"}") + 1])["sid"]
    await until(lambda: sio.sids, what="connect handler")
    if b"40" not in opened.body:
        assert (await raw_http(port, "GET", f"{path}&sid={sid}", gz)).body.endswith(b"40")
    await sio.emit("big", BIG, to=sio.sids[0])
    got = await raw_http(port, "GET", f"{path}&sid={sid}", gz)
    text = '42["big","' + BIG + '"]'
    assert (got.encoding, got.body) == ("gzip", f"{len(text)}:{text}".encode())
    await sio.emit("plain_big", BIG, to=sio.sids[0], compress=False)
    got = await raw_http(port, "GET", f"{path}&sid={sid}", gz)
    assert got.encoding is None and got.body.endswith(b'"]')
    await sio.emit("big_binary", BIG_BINARY, to=sio.sids[0])
    got = await raw_http(port, "GET", f"{path}&sid={sid}", gz)
    assert got.encoding == "gzip"
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.body.endswith(b"\x04" + BIG_BINARY)

    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=3&transport=websocket"
    async with websockets.connect(ws_url, compression="deflate", max_size=None) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("0{")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "40"
        await until(lambda: len(sio.sids) == 2, what="connect handler")
        await sio.emit("big", BIG, to=sio.sids[1])
        assert await asyncio.wait_for(ws.recv(), WAIT) == text
        await sio.emit("big_binary", BIG_BINARY, to=sio.sids[1])
        assert (await asyncio.wait_for(ws.recv(), WAIT)).startswith("451-")
        assert await asyncio.wait_for(ws.recv(), WAIT) == b"\x04" + BIG_BINARY
