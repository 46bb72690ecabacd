"""Protocol edges and input bounds, exact bytes over a raw TCP socket (docs/bounds.md).

RFC 6455 close handling (invalid close codes -> 1002, a close reason that is not UTF-8 ->
1007, a too-large frame -> 1009 that reaches the client before the TCP close), Socket.IO
protocol errors ending with a WebSocket close frame, events the host cannot decode, and the
bounds on namespaces per connection and acknowledgements awaited per client.

The WebSocket client is hand-written (asyncio streams) so that what is on the wire is exactly
what the test wrote, including frames no library would send. The close-frame tests run against
FERROSIO_TEST_SERVER (``node`` gives the official server's answers, which they match); the
decode and bound tests are ferrosio's own behaviour. Every wait is bounded (WAIT).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import struct
from typing import Any

import pytest

import ferrosio
from ferrosio import exceptions

pytestmark = pytest.mark.asyncio

WAIT = 20.0
MAX_PAYLOAD = 1_000_000
OP_TEXT, OP_CLOSE = 0x1, 0x8
CLOSE_1002 = b"\x03\xea"
CLOSE_1007 = b"\x03\xef"
CLOSE_1009 = b"\x03\xf1"


def frame(op: int, payload: bytes, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """One masked, final client frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | op, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | op, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | op, 0x80 | 127]) + struct.pack(">Q", n)
    key = int.from_bytes(mask * ((n + 3) // 4 or 1), "big") >> (8 * ((-n) % 4))
    body = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return head + mask + body


class RawWs:
    """A WebSocket spoken by hand; frames are (opcode, payload)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawWs:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101"), head
        ws = cls(reader, writer)
        op, first = await ws.recv()
        assert op == OP_TEXT and first.startswith(b"0"), first
        return ws

    async def send(self, op: int, payload: bytes) -> None:
        self.writer.write(frame(op, payload))
        await self.writer.drain()

    async def send_maybe_refused(self, op: int, payload: bytes) -> None:
        """For input the server may refuse while it is still being written."""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await asyncio.wait_for(self.send(op, payload), WAIT)

    async def recv(self) -> tuple[int, bytes]:
        """The next frame; raises EOFError at a clean end of the stream."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), WAIT)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise
            raise EOFError from None
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.reader.readexactly(8))[0]
        return head[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), WAIT)

    async def connect_ns(self, nsp: str = "/") -> bytes:
        await self.send(OP_TEXT, b"40" if nsp == "/" else f"40{nsp},".encode())
        op, reply = await self.recv()
        assert op == OP_TEXT and reply.startswith(b"40"), reply
        return reply

    async def close_frame(self) -> bytes:
        """Reads up to the server's close frame (other frames must be pings/noops), answers
        it and checks that the server then ends the TCP connection cleanly (no reset)."""
        while True:
            op, payload = await self.recv()
            if op == OP_CLOSE:
                break
            assert payload in (b"2", b"6"), f"unexpected frame before the close: {payload[:80]!r}"
        self.writer.write(frame(OP_CLOSE, payload))
        with pytest.raises(EOFError):
            await self.recv()
        self.writer.close()
        return payload

    def close(self) -> None:
        self.writer.close()


async def still_serves(port: int) -> None:
    ws = await RawWs.open(port)
    await ws.connect_ns()
    await ws.send(OP_TEXT, b'4217["echo",1]')
    assert await ws.recv() == (OP_TEXT, b"4317[1]")
    ws.close()


# ------------------------------------------------------------------------ close frames --
@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
async def test_invalid_close_code_is_answered_with_1002(reference_server, code):
    ws = await RawWs.open(reference_server.port)
    await ws.send(OP_CLOSE, struct.pack(">H", code))
    assert await ws.close_frame() == CLOSE_1002


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
async def test_valid_close_code_and_reason_are_echoed(reference_server, code):
    ws = await RawWs.open(reference_server.port)
    body = struct.pack(">H", code) + "bye é".encode()
    await ws.send(OP_CLOSE, body)
    op, payload = await ws.recv()
    assert (op, payload) == (OP_CLOSE, body)
    ws.close()


async def test_close_reason_that_is_not_utf8_is_answered_with_1007(reference_server):
    ws = await RawWs.open(reference_server.port)
    await ws.send(OP_CLOSE, struct.pack(">H", 1000) + b"\xff\xfe")
    assert await ws.close_frame() == CLOSE_1007


async def test_one_byte_close_body_is_answered_with_1002(reference_server):
    ws = await RawWs.open(reference_server.port)
    await ws.send(OP_CLOSE, b"\x03")
    assert await ws.close_frame() == CLOSE_1002


@pytest.mark.parametrize("attempt", range(8))
async def test_frame_over_the_limit_gets_1009_before_the_tcp_close(reference_server, attempt):
    """The close frame must reach the client, not be lost to a reset: the server reads on
    past the refused frame until the client has its 1009 and goes."""
    ws = await RawWs.open(reference_server.port)
    await ws.connect_ns()
    await ws.send_maybe_refused(OP_TEXT, b"4" * (MAX_PAYLOAD + 1))
    assert await ws.close_frame() == CLOSE_1009
    await still_serves(reference_server.port)


@pytest.mark.parametrize(
    "bad",
    [b"42abc[", b"4abc", b"42{}", b"49", b"x"],
    ids=["unparsable-event", "unknown-type", "event-not-array", "type-9", "engineio-garbage"],
)
async def test_protocol_error_above_the_frames_ends_with_a_close_frame(reference_server, bad):
    """As the official server: an empty close frame (no status code), then the TCP close."""
    ws = await RawWs.open(reference_server.port)
    await ws.connect_ns()
    await ws.send(OP_TEXT, bad)
    assert await ws.close_frame() == b""
    await still_serves(reference_server.port)


# --------------------------------------------------------------------- undecodable events --
@pytest.mark.parametrize(
    "event",
    [
        b'421["echo",' + b"[" * 1100 + b"]" * 1100 + b"]",
        b'42["echo",{"a":' + b"[" * 1100 + b"]" * 1100 + b"}]",
        b'421["echo",1e999999]',
    ],
    ids=["nested-1100-with-ack", "nested-in-object", "number-out-of-range"],
)
async def test_undecodable_event_closes_that_connection_with_one_warning(
    make_server, caplog, event
):
    """Node's JSON.parse takes these (1e999999 becomes null); orjson does not. ferrosio logs
    one warning (no traceback) and closes that connection as for a malformed packet."""
    log = logging.getLogger("ferrosio.test-edges")
    sio = ferrosio.AsyncServer(logger=log)
    seen: list[Any] = []

    @sio.on("echo")
    def on_echo(sid: str, *args: Any) -> tuple[Any, ...]:
        seen.append(args)
        return args

    port = int((await make_server(sio)).rsplit(":", 1)[1])
    bystander = await RawWs.open(port)
    await bystander.connect_ns()
    ws = await RawWs.open(port)
    await ws.connect_ns()
    with caplog.at_level(logging.WARNING, logger=log.name):
        await ws.send(OP_TEXT, event)
        assert await ws.close_frame() == b""
    await bystander.send(OP_TEXT, b'4218["echo",2]')
    assert await bystander.recv() == (OP_TEXT, b"4318[2]")
    bystander.close()
    records = [r for r in caplog.records if r.name == log.name]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None
    assert "undecodable event" in records[0].getMessage()
    assert seen == [(2,)]


async def test_undecodable_ack_closes_the_connection_and_settles_the_call(make_server):
    sio = ferrosio.AsyncServer()
    sids: list[str] = []

    @sio.on("connect")
    def on_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        sids.append(sid)

    port = int((await make_server(sio)).rsplit(":", 1)[1])
    ws = await RawWs.open(port)
    await ws.connect_ns()
    while not sids:
        await asyncio.sleep(0.01)
    call = asyncio.ensure_future(sio.call("q", to=sids[0], timeout=WAIT))
    _, asked = await ws.recv()
    ack_id = asked[2 : asked.index(b"[")]
    await ws.send(OP_TEXT, b"43" + ack_id + b"[1e999999]")
    assert await ws.close_frame() == b""
    with pytest.raises(exceptions.DisconnectedError):
        await asyncio.wait_for(call, WAIT)


# ------------------------------------------------------------------------------- bounds --
async def test_namespaces_per_connection_are_bounded(make_server):
    limit = 256  # MAX_NAMESPACES_PER_CONNECTION in socketio/layer.rs
    sio = ferrosio.AsyncServer(namespaces="*")
    port = int((await make_server(sio)).rsplit(":", 1)[1])
    ws = await RawWs.open(port)
    for i in range(limit):
        await ws.connect_ns(f"/n{i}")
    await ws.send(OP_TEXT, f"40/n{limit},".encode())
    assert await ws.recv() == (
        OP_TEXT,
        f'44/n{limit},{{"message":"Too many namespaces on this connection"}}'.encode(),
    )
    # the connection and its namespaces stay; leaving one makes room again
    await ws.send(OP_TEXT, b"41/n0,")
    await ws.connect_ns(f"/n{limit}")
    ws.close()


async def test_acks_awaited_from_one_client_are_bounded(make_server, monkeypatch, until):
    monkeypatch.setattr(ferrosio.server, "MAX_ACKS_IN_FLIGHT", 3)
    sio = ferrosio.AsyncServer()
    sids: list[str] = []

    @sio.on("connect")
    def on_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        sids.append(sid)

    port = int((await make_server(sio)).rsplit(":", 1)[1])
    ws = await RawWs.open(port)
    await ws.connect_ns()
    await until(lambda: bool(sids), what="connect handler")
    sid = sids[0]
    got: list[Any] = []
    sio.emit_nowait("q", 1, to=sid, callback=got.append)
    sio.emit_nowait("q", 2, to=sid, callback=got.append)
    with pytest.raises(exceptions.TimeoutError):
        await sio.call("q", 3, to=sid, timeout=0.2)
    # the timed-out call gave its slot back: one more fits, then the bound holds
    sio.emit_nowait("q", 4, to=sid, callback=got.append)
    with pytest.raises(exceptions.BufferFullError):
        sio.emit_nowait("q", 5, to=sid, callback=got.append)
    sent = [(await ws.recv())[1] for _ in range(4)]
    assert [json.loads(p[p.index(b"[") :])[1] for p in sent] == [1, 2, 3, 4]
    # an answer frees a slot
    first_id = int(sent[0][2 : sent[0].index(b"[")])
    await ws.send(OP_TEXT, f"43{first_id}[1]".encode())
    await until(lambda: got == [1], what="ack callback")
    sio.emit_nowait("q", 6, to=sid, callback=got.append)
    ws.close()
