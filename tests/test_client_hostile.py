"""The AsyncClient against hostile servers: endless or oversized input is refused at a bound
(nothing grows without end), garbage and stalls end in a clear error.

Each server is hand-written on asyncio streams in this process (HTTP and WebSocket by hand, so
it can send what no library would). "Bounded memory" is checked where it is decided: how many
bytes the server could push before the client gave up, against the client's bound
(``MAX_RESPONSE_BODY`` = 64 MiB for a polling body, tungstenite's 16 MiB frame limit on a
WebSocket, docs/bounds.md). Every wait is bounded (WAIT); nothing is timed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

import ferrosio

pytestmark = pytest.mark.asyncio

WAIT = 15.0
MiB = 1 << 20
OPEN = {"sid": "hostile", "upgrades": [], "pingInterval": 300, "pingTimeout": 300}
OPEN["maxPayload"] = 1_000_000
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Hostile:
    """A TCP server running ``handler`` per connection; counts what it managed to write."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent = 0
        self.client_gone = asyncio.Event()
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_gone.set()
        finally:
            writer.close()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent += len(data)


@pytest_asyncio.fixture
async def hostile() -> AsyncIterator[Callable[[Handler], Awaitable[Hostile]]]:
    servers: list[asyncio.Server] = []

    async def make(handler: Handler) -> Hostile:
        h = Hostile(handler)
        srv = await asyncio.start_server(h.serve, "127.0.0.1", 0)
        servers.append(srv)
        h.port = srv.sockets[0].getsockname()[1]
        return h

    yield make
    for srv in servers:
        srv.close()


def ws_frame(op: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x80 | op, n]) + payload
    if n < 65536:
        return bytes([0x80 | op, 126]) + struct.pack(">H", n) + payload
    return bytes([0x80 | op, 127]) + struct.pack(">Q", n) + payload


async def ws_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the WebSocket upgrade, sends the open packet and accepts the CONNECT."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    writer.write(ws_frame(0x1, b"0" + json.dumps(OPEN).encode()))
    body = await client_frame(reader)
    assert body.startswith(b"40"), body
    writer.write(ws_frame(0x1, b'40{"sid":"s1"}'))
    await writer.drain()
    # the test's `go` event: the client is connected, the hostile part may start
    assert (await client_frame(reader)).startswith(b'42["go"'), body


async def client_frame(reader: asyncio.StreamReader) -> bytes:
    """One masked client frame of under 126 bytes (all these tests' clients send)."""
    _, b1 = await reader.readexactly(2)
    mask = await reader.readexactly(4)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(b1 & 0x7F)))


async def connected_client(port: int, transports: list[str]) -> tuple[Any, asyncio.Future[Any]]:
    client = ferrosio.AsyncClient(reconnection=False)
    reason: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @client.on("disconnect")
    def on_disconnect(why: Any = None) -> None:
        if not reason.done():
            reason.set_result(why)

    await client.connect(f"http://127.0.0.1:{port}", transports=transports, wait_timeout=WAIT)
    await client.emit("go")
    return client, reason


async def test_websocket_frame_over_the_limit_is_refused_from_its_header(hostile):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ws_accept(reader, writer)
        h.sent = 0
        # a text frame announcing 1 GiB, then its bytes for as long as the client reads
        await h.write(writer, bytes([0x81, 127]) + struct.pack(">Q", 1 << 30))
        chunk = b"a" * (256 * 1024)
        while h.sent < 1 << 30:
            await h.write(writer, chunk)

    h = await hostile(handler)
    client, reason = await connected_client(h.port, ["websocket"])
    assert await asyncio.wait_for(reason, WAIT) == client.reason.TRANSPORT_ERROR
    await asyncio.wait_for(h.client_gone.wait(), WAIT)
    # what reached the client before it gave up: socket buffers, not the frame
    assert h.sent < 16 * MiB, h.sent
    await client.disconnect()


async def test_websocket_garbage_is_a_transport_error(hostile):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ws_accept(reader, writer)
        await h.write(writer, b"\xff\xfe garbage, not a frame")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(), WAIT)

    h = await hostile(handler)
    client, reason = await connected_client(h.port, ["websocket"])
    assert await asyncio.wait_for(reason, WAIT) == client.reason.TRANSPORT_ERROR
    await client.disconnect()


async def test_server_stalling_mid_frame_is_a_ping_timeout(hostile):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ws_accept(reader, writer)
        # the first half of a 100-byte frame, then silence (no ping either)
        await h.write(writer, bytes([0x81, 100]) + b"42" * 25)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(), WAIT)

    h = await hostile(handler)
    client, reason = await connected_client(h.port, ["websocket"])
    assert await asyncio.wait_for(reason, WAIT) == client.reason.PING_TIMEOUT
    await client.disconnect()


async def test_endless_polling_body_is_cut_at_the_bound(hostile):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await h.write(
            writer,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
        )
        chunk = b"a" * (256 * 1024)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        while h.sent < 1 << 30:
            await h.write(writer, framed)

    h = await hostile(handler)
    client = ferrosio.AsyncClient(reconnection=False)
    with pytest.raises(ferrosio.exceptions.ConnectionError):
        await client.connect(
            f"http://127.0.0.1:{h.port}", transports=["polling"], wait_timeout=WAIT
        )
    await asyncio.wait_for(h.client_gone.wait(), WAIT)
    assert h.sent < 64 * MiB + 16 * MiB, h.sent  # the bound, plus socket buffers
    await client.disconnect()


async def test_garbage_polling_handshake_is_a_connection_error(hostile):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"\x00\x01 this is no engine.io payload"
        await h.write(
            writer,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )

    h = await hostile(handler)
    client = ferrosio.AsyncClient(reconnection=False)
    with pytest.raises(ferrosio.exceptions.ConnectionError):
        await client.connect(
            f"http://127.0.0.1:{h.port}", transports=["polling"], wait_timeout=WAIT
        )
    await client.disconnect()


async def test_acks_awaited_from_a_server_that_never_answers_are_bounded(hostile, monkeypatch):
    monkeypatch.setattr(ferrosio.client, "MAX_ACKS_IN_FLIGHT", 3)
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ws_accept(reader, writer)
        while True:  # reads every event, answers none
            received.append(await client_frame(reader))

    h = await hostile(handler)
    client, _ = await connected_client(h.port, ["websocket"])
    await client.emit("q", 1, callback=lambda *a: None)
    await client.emit("q", 2, callback=lambda *a: None)
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await client.call("q", 3, timeout=0.2)
    # the timed-out call gave its slot back: one more fits, then the bound holds
    await client.emit("q", 4, callback=lambda *a: None)
    with pytest.raises(ferrosio.exceptions.BufferFullError):
        await client.emit("q", 5, callback=lambda *a: None)
    await client.emit("q", 6)  # no ack asked: not bounded by it
    await client.disconnect()
