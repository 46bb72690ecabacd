"""Bounded buffers under overload, over real sockets against ``tests/apps/bounds_app.py``.

Each test drives one kind of overload (a WebSocket reader that stops reading, a polling
session that never polls, a flood of pipelined acked events, a backlogged polling GET, a
victim that answers pings but reads nothing else) and asserts that the bound holds: the slow
client is disconnected with the reason ``"send buffer full"`` (or its flood is held back),
the server's RSS (``/proc/<pid>/status``) stays under a bound generous enough to be
deterministic, and a well-behaved client still gets its acks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

import ferrosio
from _harness import HOST, TESTS

if TYPE_CHECKING:
    from _harness import ServerProcess, Until

APP = TESTS / "apps" / "bounds_app.py"
MiB = 1024 * 1024
BLOB = 64 * 1024
REASON = "send buffer full"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def rss(srv: ServerProcess) -> int:
    """The server process's resident set size, in bytes."""
    assert srv.proc is not None
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------- raw WebSocket ----
class RawWs:
    """A WebSocket client by hand: it reads only when told to, so it can stop reading."""

    def __init__(self, port: int, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        # A small receive buffer: the server's writes stall soon after the client stops reading.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((HOST, port))
        self.sock.sendall(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the upgrade"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    @staticmethod
    def frame(text: str) -> bytes:
        """A masked text frame (mask key 0: the payload goes as is)."""
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 65536:
            head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
        return head + b"\0\0\0\0" + payload

    def send(self, text: str) -> None:
        self.sock.sendall(self.frame(text))

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv(self) -> str:
        """The next text message (server frames are unmasked and unfragmented here)."""
        self._need(2)
        n = self.buf[1] & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n, off = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            self._need(10)
            n, off = int.from_bytes(self.buf[2:10], "big"), 10
        self._need(off + n)
        payload, self.buf = self.buf[off : off + n], self.buf[off + n :]
        return payload.decode()

    def recv_until(self, pred: Callable[[str], bool]) -> str:
        while True:
            msg = self.recv()
            if msg == "2":
                self.send("3")
            elif pred(msg):
                return msg

    def join(self) -> None:
        """Connects to ``/`` and joins the room ``flood``, acked."""
        assert self.recv().startswith("0{")
        self.send("40")
        self.recv_until(lambda m: m.startswith("40{"))
        self.send('421["join"]')
        self.recv_until(lambda m: m.startswith("431"))

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------------- polling ----
class RawPolling:
    """A long-polling session by hand: it sends GETs only when told to."""

    def __init__(self, port: int) -> None:
        self.base = f"http://{HOST}:{port}/socket.io/?EIO=4&transport=polling"
        body = self._request("GET", self.base)
        assert body.startswith(b"0{"), body
        self.sid = json.loads(body[1:])["sid"]
        self.url = f"{self.base}&sid={self.sid}"

    @staticmethod
    def _request(method: str, url: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(url, data=body, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            data: bytes = resp.read()
            return data

    def post(self, text: str) -> None:
        assert self._request("POST", self.url, text.encode()) == b"ok"

    def get(self) -> bytes:
        return self._request("GET", self.url)


# ------------------------------------------------------------------------ fixtures ----
@pytest.fixture
def bounds_app(spawn_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    def start(*args: str) -> ServerProcess:
        return spawn_server("bounds", [sys.executable, str(APP), *args])

    return start


@pytest_asyncio.fixture
async def controller() -> AsyncIterator[Callable[[ServerProcess], Any]]:
    """A well-behaved ferrosio client of the server (WebSocket)."""
    made: list[ferrosio.AsyncClient] = []

    async def connect(srv: ServerProcess) -> ferrosio.AsyncClient:
        c = ferrosio.AsyncClient()
        await c.connect(srv.url, transports=["websocket"], wait_timeout=10)
        made.append(c)
        return c

    yield connect
    for c in made:
        await asyncio.wait_for(c.disconnect(), 10)


@pytest.fixture
def raw_ws() -> Iterator[list[RawWs]]:
    made: list[RawWs] = []
    yield made
    for w in made:
        w.close()


async def flood_until_dropped(
    c: ferrosio.AsyncClient, srv: ServerProcess, *, binary: bool = False, rounds: int = 200
) -> int:
    """Floods the room until the server reports a ``send buffer full`` disconnect; returns
    the peak RSS seen meanwhile."""
    peak = rss(srv)
    for _ in range(rounds):
        await c.call("flood", (BLOB, 16, binary), timeout=30)  # 1 MiB a round
        peak = max(peak, rss(srv))
        if REASON in await c.call("reasons", timeout=30):
            return peak
    raise AssertionError(f"no {REASON!r} disconnect after {rounds} MiB")


async def memory_comes_back(srv: ServerProcess, bound: int, until: Until) -> None:
    await until(lambda: rss(srv) < bound, timeout=15, what=f"RSS under {bound // MiB} MiB")


# --------------------------------------------------------------------------- tests ----
async def test_a_websocket_reader_that_stops_reading_is_disconnected(
    bounds_app: Callable[..., ServerProcess], controller: Any, raw_ws: list[RawWs], until: Until
) -> None:
    srv = bounds_app("--send-buffer", "1000000")
    victim = RawWs(srv.port)
    raw_ws.append(victim)
    victim.join()  # and from now on it reads nothing
    c = await controller(srv)
    base = rss(srv)
    peak = await flood_until_dropped(c, srv)
    assert peak < base + 64 * MiB, f"RSS grew by {(peak - base) // MiB} MiB"
    assert await c.call("echo", "still serving", timeout=10) == "still serving"
    await memory_comes_back(srv, base + 16 * MiB, until)


async def test_a_pong_does_not_keep_a_client_that_reads_nothing_alive(
    bounds_app: Callable[..., ServerProcess], controller: Any, raw_ws: list[RawWs], until: Until
) -> None:
    srv = bounds_app("--send-buffer", "1000000", "--ping-interval", "0.2", "--ping-timeout", "2")
    victim = RawWs(srv.port)
    raw_ws.append(victim)
    victim.join()
    c = await controller(srv)
    base = rss(srv)
    stop = asyncio.Event()

    async def pong_forever() -> None:
        # Blind pongs, as a client would that answers pings but reads nothing else.
        while not stop.is_set():
            try:
                victim.sock.sendall(RawWs.frame("3"))
            except OSError:
                return
            await asyncio.sleep(0.05)

    ponger = asyncio.create_task(pong_forever())
    try:
        peak = await flood_until_dropped(c, srv)
    finally:
        stop.set()
        await ponger
    assert (await c.call("reasons", timeout=10))[0] == REASON
    assert peak < base + 64 * MiB
    assert await c.call("echo", 1, timeout=10) == 1


async def test_a_polling_session_that_never_polls_is_disconnected(
    bounds_app: Callable[..., ServerProcess], controller: Any, until: Until
) -> None:
    srv = bounds_app("--send-buffer", "1000000")
    victim = RawPolling(srv.port)
    victim.post("40")
    victim.post('42["join"]')  # and no GET from now on
    c = await controller(srv)
    base = rss(srv)
    peak = await flood_until_dropped(c, srv)
    assert peak < base + 64 * MiB, f"RSS grew by {(peak - base) // MiB} MiB"
    assert await c.call("echo", "still serving", timeout=10) == "still serving"
    await memory_comes_back(srv, base + 16 * MiB, until)


async def test_volatile_packets_are_dropped_for_a_client_that_cannot_take_them(
    bounds_app: Callable[..., ServerProcess], controller: Any, raw_ws: list[RawWs]
) -> None:
    srv = bounds_app("--send-buffer", "1000000")
    victim = RawWs(srv.port)
    raw_ws.append(victim)
    victim.join()
    c = await controller(srv)
    base = rss(srv)
    for _ in range(32):  # 32 MiB of volatile packets, 32 times the bound
        await c.call("flood", (BLOB, 16, False, True), timeout=30)
    assert await c.call("reasons", timeout=10) == [], "a volatile packet disconnects nobody"
    assert rss(srv) < base + 64 * MiB
    # The victim is still connected: it reads what was kept, then gets an ack.
    victim.sock.settimeout(30)
    victim.send('427["echo","alive"]')
    assert victim.recv_until(lambda m: m.startswith("437")) == '437["alive"]'


def _records(body: bytes) -> list[bytes]:
    return body.split(b"\x1e")


async def test_a_backlogged_polling_get_is_answered_in_bounded_parts(
    bounds_app: Callable[..., ServerProcess], controller: Any
) -> None:
    limit = 200_000
    srv = bounds_app("--send-buffer", "16000000", "--poll-response", str(limit))
    victim = RawPolling(srv.port)
    victim.post("40")
    assert victim.get().startswith(b"40{")
    victim.post('42["join"]')
    c = await controller(srv)
    await c.call("flood", (BLOB, 48, False), timeout=30)  # 3 MiB of text
    await c.call("flood", (BLOB, 16, True), timeout=30)  # 1 MiB of binary packets
    base = rss(srv)
    blobs = binaries = responses = 0
    while blobs + binaries < 64:
        body = await asyncio.to_thread(victim.get)
        responses += 1
        # At most the bound, or one packet (with its attachment) if a single one is larger.
        assert len(body) <= limit + 2 * 90_000, len(body)
        records = _records(body)
        for i, rec in enumerate(records):
            if rec.startswith(b"451-"):
                assert i + 1 < len(records), "an attachment was split from its packet"
                assert records[i + 1].startswith(b"b")
                binaries += 1
            elif rec.startswith(b'42["blob"'):
                blobs += 1
    assert (blobs, binaries) == (48, 16)
    assert responses >= 4 * MiB // limit - 1, "the backlog left in bounded parts"
    assert rss(srv) < base + 64 * MiB
    assert await c.call("echo", 2, timeout=10) == 2


async def test_a_flood_of_pipelined_events_is_held_back_not_queued(
    bounds_app: Callable[..., ServerProcess], controller: Any, raw_ws: list[RawWs]
) -> None:
    srv = bounds_app("--inbound-buffer", "64000", "--handler-delay", "0.001")
    flooder = RawWs(srv.port, rcvbuf=1 << 20)
    raw_ws.append(flooder)
    assert flooder.recv().startswith("0{")
    flooder.send("40")
    flooder.recv_until(lambda m: m.startswith("40{"))
    c = await controller(srv)
    base = rss(srv)
    batch = b"".join(RawWs.frame(f'42{i}["count"]') for i in range(1000))
    cap = 64 * MiB
    sent = 0
    flooder.sock.setblocking(False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    ack: asyncio.Future[Any] = asyncio.ensure_future(c.call("echo", "meanwhile", timeout=60))
    peak = base
    while sent < cap and loop.time() < deadline:
        try:
            sent += flooder.sock.send(batch)
        except BlockingIOError:
            await asyncio.sleep(0.01)  # the server is not reading: TCP backpressure
        else:
            await asyncio.sleep(0)
        peak = max(peak, rss(srv))
    # Without backpressure the engine reads the whole flood into the host's queue.
    assert sent < cap // 2, f"{sent // MiB} MiB of events were taken in 5 s"
    assert peak < base + 64 * MiB, f"RSS grew by {(peak - base) // MiB} MiB"
    assert await ack == "meanwhile", "a well-behaved client still gets its ack"


async def test_a_polling_flood_is_held_at_the_post_and_nothing_is_lost(
    bounds_app: Callable[..., ServerProcess], controller: Any
) -> None:
    srv = bounds_app("--inbound-buffer", "16000", "--handler-delay", "0.0005")
    victim = RawPolling(srv.port)
    victim.post("40")
    assert victim.get().startswith(b"40{")
    c = await controller(srv)
    base = rss(srv)
    n, per_post = 0, 500
    for _ in range(4):  # each POST is ~10 times the bound: the next one waits for the handlers
        body = "\x1e".join(f'42{n + i}["count"]' for i in range(per_post))
        await asyncio.to_thread(victim.post, body)
        n += per_post
    acked: list[int] = []
    while len(acked) < n:
        for rec in _records(await asyncio.to_thread(victim.get)):
            if rec.startswith(b"43"):
                acked.append(int(rec[2 : rec.index(b"[")]))
    assert acked == list(range(n)), "every event handled once, in order"
    assert rss(srv) < base + 64 * MiB
    assert await c.call("echo", 3, timeout=10) == 3
