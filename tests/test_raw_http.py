"""Engine.IO v4 over HTTP, byte for byte: long-polling, the upgrade to WebSocket, HTTP
errors, maxPayload, CORS, static files, and slow or hostile HTTP clients.

Expected behaviour: the project's protocol notes, NOTES.md in ../shared/protocol/ (shared
material checked out beside the repository; not part of it), sections "Polling framing",
"Upgrade", "Close", "maxPayload", "HTTP errors", "CORS": what engine.io 6 / socket.io 4.8 do.

HTTP is spoken over plain non-blocking sockets (class Conn below), not through an HTTP
client library: status line, headers and body are exactly what the server wrote, and a
connection the server resets after answering still yields the answer (asyncio's
StreamReader would raise the reset instead of returning buffered bytes). WebSockets use
the `websockets` package (compression off) or, where the HTTP answer to the upgrade request
matters, the same raw sockets.

Servers (conftest.py, session-scoped): the reference app (ping 25 s, CORS reflected with
credentials, maxHttpBufferSize 1e6) for everything that must not be disturbed by the
heartbeat; the suite app (ping 300 ms / timeout 200 ms) for the ping timeout; and, on
ferrosio only, tests/apps/http_app.py with command-line options (same-origin / list /
disabled CORS, static files, a slow heartbeat).

Timing: nothing asserts how fast something happens, except generous upper bounds where the
behaviour under test *is* a deadline (slowloris: the server's 10 s header-read timeout, the
test allows 20 s). Where the test cannot observe that the server has registered a request
it just sent (a pending GET/POST), it waits SETTLE seconds and, if the outcome shows the
server saw the requests in the other order, repeats the scenario (bounded, 3 attempts); a
server that is wrong fails every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from _harness import HOST

pytestmark = pytest.mark.asyncio

WAIT = 20.0  # seconds; upper bound for any single wait (hang guard only)
SETTLE = 0.5  # seconds given to the server to register a request before the next one
ATTEMPTS = 3
MAX_PAYLOAD = 1_000_000
PATH = "/socket.io/"
TEXT_PLAIN = "text/plain; charset=UTF-8"
SEP = "\x1e"
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)

ERRORS = {
    0: "Transport unknown",
    1: "Session ID unknown",
    2: "Bad handshake method",
    3: "Bad request",
    4: "Forbidden",
    5: "Unsupported protocol version",
}


def error_body(code: int) -> bytes:
    return json.dumps({"code": code, "message": ERRORS[code]}, separators=(",", ":")).encode()


# --------------------------------------------------------------------- raw HTTP --
@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"header {name} sent {len(values)} times: {values!r}"
        return values[0] if values else None

    def __str__(self) -> str:
        head = self.raw_head.decode("latin-1").strip()
        return f"{head}\n\n{self.body[:300]!r}"


class Conn:
    """One TCP connection, read into our own buffer (see module docstring)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    @classmethod
    async def open(cls, port: int) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (HOST, port)), WAIT
            )
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes) -> bool:
        """False if the server already closed/reset the connection."""
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_sendall(self.sock, data), WAIT)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def _fill(self, timeout: float) -> bool:
        """Reads more bytes; False at EOF (or reset). Raises TimeoutError."""
        if self.eof:
            return False
        try:
            data = await asyncio.wait_for(
                asyncio.get_running_loop().sock_recv(self.sock, 65536), timeout
            )
        except ConnectionResetError:
            data, self.reset = b"", True
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def _until(self, sep: bytes, deadline: float) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            if not await self._fill(self._left(deadline)):
                raise ConnectionError(f"closed before {sep!r}; got {bytes(self.buf[:300])!r}")
        out = bytes(self.buf[: i + len(sep)])
        del self.buf[: i + len(sep)]
        return out

    async def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not await self._fill(self._left(deadline)):
                raise ConnectionError(f"closed after {len(self.buf)} of {n} body bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise TimeoutError
        return left

    async def read_response(self, method: str = "GET", timeout: float = WAIT) -> Response:
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            head = await self._until(b"\r\n\r\n", deadline)
            lines = head[:-4].decode("latin-1").split("\r\n")
            m = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
            assert m, f"bad status line {lines[0]!r}"
            headers = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
            res = Response(int(m.group(1)), m.group(2) or "", headers, raw_head=head)
            if method == "HEAD" or res.status in (101, 204, 304):
                return res
            te = (res.header("Transfer-Encoding") or "").lower()
            if "chunked" in te:
                body = bytearray()
                while True:
                    size = int((await self._until(b"\r\n", deadline)).split(b";")[0], 16)
                    if size == 0:
                        await self._until(b"\r\n", deadline)  # no trailers expected
                        break
                    body += await self._exact(size, deadline)
                    await self._exact(2, deadline)
                res.body = bytes(body)
            elif (cl := res.header("Content-Length")) is not None:
                res.body = await self._exact(int(cl), deadline)
            else:
                while await self._fill(self._left(deadline)):
                    pass
                res.body, self.buf = bytes(self.buf), bytearray()
            return res
        except _TIMEOUTS:
            raise AssertionError(
                f"no complete response within {timeout} s; got {bytes(self.buf[:300])!r}"
            ) from None

    async def wait_closed(self, timeout: float = WAIT) -> bytes:
        """Waits until the server closes (EOF or reset); returns the bytes that came first."""
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while await self._fill(self._left(deadline)):
                pass
        except _TIMEOUTS:
            raise AssertionError(
                f"server did not close the connection within {timeout} s "
                f"(received {bytes(self.buf[:200])!r})"
            ) from None
        return bytes(self.buf)

    def close(self) -> None:
        self.sock.close()


def request_bytes(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    h = {"Host": f"{HOST}:{port}", "Connection": "close"}
    h.update(headers or {})
    if body is not None and "Transfer-Encoding" not in h:
        h.setdefault("Content-Length", str(len(body)))
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in h.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def http(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = WAIT,
) -> Response:
    """One request on a fresh connection (Connection: close)."""
    conn = await Conn.open(port)
    try:
        await conn.send(request_bytes(port, method, target, headers, body))
        return await conn.read_response(method, timeout)
    finally:
        conn.close()


def assert_error(res: Response, code: int, status: int = 400) -> None:
    assert (res.status, res.body) == (status, error_body(code)), (
        f"expected {status} {error_body(code)!r}, got:\n{res}"
    )
    assert res.header("Content-Type") == "application/json", str(res)


def eio_query(transport: str = "polling", sid: str | None = None, **extra: str) -> str:
    q = f"{PATH}?EIO=4&transport={transport}"
    if sid is not None:
        q += f"&sid={sid}"
    for k, v in extra.items():
        q += f"&{k}={v}"
    return q


# ------------------------------------------------------------------ polling client --
class Polling:
    """An Engine.IO session over long-polling, one request per connection."""

    def __init__(self, server, headers: dict[str, str] | None = None):
        self.port = server.port
        self.headers = headers or {}
        self.sid: str | None = None
        self.open: dict = {}
        self._t = 0

    def url(self) -> str:
        self._t += 1
        return eio_query("polling", self.sid, t=f"T{self._t}")

    async def handshake(self) -> Response:
        res = await http(self.port, "GET", eio_query("polling", t="hs"), self.headers)
        assert res.status == 200, f"handshake failed:\n{res}"
        assert res.header("Content-Type") == TEXT_PLAIN, str(res)
        assert res.body.startswith(b"0") and b"\x1e" not in res.body, str(res)
        self.open = json.loads(res.body[1:])
        self.sid = self.open["sid"]
        return res

    async def get(self, timeout: float = WAIT) -> Response:
        return await http(self.port, "GET", self.url(), self.headers, timeout=timeout)

    async def post(self, body: str | bytes, headers: dict[str, str] | None = None) -> Response:
        data = body.encode() if isinstance(body, str) else body
        h = {**self.headers, "Content-Type": "text/plain;charset=UTF-8", **(headers or {})}
        return await http(self.port, "POST", self.url(), h, data)

    async def send(self, *packets: str) -> None:
        res = await self.post(SEP.join(packets))
        assert (res.status, res.body) == (200, b"ok"), f"POST {packets[:3]!r}...:\n{res}"

    async def recv(self, timeout: float = WAIT) -> list[str]:
        res = await self.get(timeout)
        assert res.status == 200, f"GET failed:\n{res}"
        assert res.header("Content-Type") == TEXT_PLAIN, str(res)
        return res.body.decode().split(SEP)

    async def recv_n(self, n: int) -> list[str]:
        """GETs until at least n packets arrived; returns them all."""
        out: list[str] = []
        while len(out) < n:
            try:
                out += await self.recv()
            except AssertionError as e:
                raise AssertionError(
                    f"after {len(out)} of {n} packets (last {out[-3:]!r}): {e}"
                ) from None
        return out

    async def connect(self) -> None:
        await self.send("40")
        first = (await self.recv())[0]
        assert re.fullmatch(r'40\{"sid":"[^"]+"\}', first), first


async def start_pending(coro) -> asyncio.Task:
    """Starts a request that the server should hold open; gives the server SETTLE s to see it."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(SETTLE)
    if task.done():
        res = task.result()
        raise AssertionError(f"request expected to stay pending was answered:\n{res}")
    return task


async def finish(task: asyncio.Task, timeout: float = WAIT):
    try:
        return await asyncio.wait_for(task, timeout)
    except _TIMEOUTS:
        raise AssertionError(f"pending request not answered within {timeout} s") from None


# ------------------------------------------------------------------- websockets --
async def ws_open(server, sid: str | None = None, origin: str | None = None):
    url = server.ws_url + (f"&sid={sid}" if sid else "")
    return await ws_connect(
        url,
        origin=origin,
        max_size=None,
        compression=None,
        ping_interval=None,
        open_timeout=WAIT,
        close_timeout=2,
    )


async def ws_recv(ws, timeout: float = WAIT):
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except _TIMEOUTS:
        raise AssertionError(f"no WebSocket frame within {timeout} s") from None


def ws_upgrade_headers(origin: str | None = None) -> dict[str, str]:
    h = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    if origin is not None:
        h["Origin"] = origin
    return h


async def ws_raw_request(port: int, target: str, origin: str | None = None) -> Response:
    """A WebSocket upgrade request; the HTTP answer (101: head only)."""
    h = ws_upgrade_headers(origin)
    conn = await Conn.open(port)
    try:
        await conn.send(request_bytes(port, "GET", target, h))
        return await conn.read_response("GET")
    finally:
        conn.close()


# ---------------------------------------------------------------------- apps --
# tests/apps/http_app.py: the `http_app(*options)` fixture (conftest.py)
@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("static")
    public = root / "public"
    (public / "sub").mkdir(parents=True)
    (public / "index.html").write_bytes(b"<!doctype html><title>ferrosio</title>\n")
    (public / "app.js").write_bytes(b"console.log('app');\n")
    (public / "sub" / "deep.css").write_bytes(b"body{}\n")
    (root / "secret").write_bytes(b"TOP SECRET\n")
    return root


# =================================================================== handshake ==
async def test_polling_handshake(reference_server):
    res = await http(reference_server.port, "GET", eio_query("polling", t="N1a2b3", foo="ignored"))
    assert res.status == 200, str(res)
    assert res.header("Content-Type") == TEXT_PLAIN, str(res)
    assert res.body.startswith(b"0") and b"\x1e" not in res.body, str(res)
    h = json.loads(res.body[1:])
    assert set(h) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}, h
    assert isinstance(h["sid"], str) and h["sid"], h
    assert h["upgrades"] == ["websocket"], h
    for key, value in (
        ("pingInterval", 25000),
        ("pingTimeout", 20000),
        ("maxPayload", MAX_PAYLOAD),
    ):
        assert (type(h[key]), h[key]) == (int, value), f"{key}: {h!r}"


async def test_polling_handshake_sub_second_intervals(suite_server):
    p = Polling(suite_server)
    await p.handshake()
    h = p.open
    assert (type(h["pingInterval"]), h["pingInterval"]) == (int, 300), h
    assert (type(h["pingTimeout"]), h["pingTimeout"]) == (int, 200), h
    assert h["upgrades"] == ["websocket"], h


async def test_polling_session_ids_are_unique(reference_server):
    sids = set()
    for _ in range(5):
        p = Polling(reference_server)
        await p.handshake()
        sids.add(p.sid)
    assert len(sids) == 5, sids


# ===================================================================== framing ==
async def test_post_answers_ok_and_get_returns_queued_packets(reference_server):
    p = Polling(reference_server)
    await p.handshake()
    res = await p.post("40")
    assert (res.status, res.body) == (200, b"ok"), str(res)
    [reply] = await p.recv()
    assert re.fullmatch(r'40\{"sid":"[^"]+"\}', reply), reply
    await p.send('42["echo","a",1]', '4212["echo",{"k":[2]}]', '4213["echo"]')
    assert await p.recv_n(3) == ['42["echo","a",1]', '4312[{"k":[2]}]', "4313[]"]


async def test_get_joins_several_packets_with_record_separator(reference_server):
    # all replies to one POST are queued before the GET arrives: one body, \x1e-joined
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    await p.send('421["echo",1]', '422["echo",2]', '423["echo",3]')
    await asyncio.sleep(SETTLE)  # let the three replies queue up
    res = await p.get()
    assert res.status == 200 and res.header("Content-Type") == TEXT_PLAIN, str(res)
    packets = res.body.decode().split(SEP)
    packets += await p.recv_n(3 - len(packets)) if len(packets) < 3 else []
    assert packets == ["431[1]", "432[2]", "433[3]"]


async def test_binary_over_polling_is_base64(reference_server):
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    # NOTES: `b` + base64 replaces the `4`; 01 02 03 -> AQID
    await p.send('451-["echo",{"_placeholder":true,"num":0}]', "bAQID")
    assert await p.recv_n(2) == ['451-["echo",{"_placeholder":true,"num":0}]', "bAQID"]
    await p.send('451-15["echo",{"_placeholder":true,"num":0}]', "bAP8=")
    assert await p.recv_n(2) == ['461-15[{"_placeholder":true,"num":0}]', "bAP8="]


async def test_post_with_200_packets_loses_nothing(reference_server):
    # python-engineio drops whole payloads of more than 16 packets (NOTES): not here
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    packets, expected = [], []
    for i in range(200):
        if i % 2:
            packets.append(f'42{i}["echo",{i},"p{i}"]')
            expected.append(f'43{i}[{i},"p{i}"]')
        else:
            packets.append(f'42["echo",{i},"p{i}"]')
            expected.append(f'42["echo",{i},"p{i}"]')
    await p.send(*packets)
    assert await p.recv_n(200) == expected


async def test_post_of_exactly_max_payload_is_accepted(reference_server):
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    pre, post = '42["echo","', '"]'
    msg = pre + "x" * (MAX_PAYLOAD - len(pre) - len(post)) + post
    assert len(msg.encode()) == MAX_PAYLOAD
    await p.send(msg)
    assert await p.recv_n(1) == [msg]


# ================================================================= concurrency ==
async def test_second_concurrent_get_is_refused_and_closes_session(reference_server):
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    first = await start_pending(p.get())
    second = await p.get()
    held = await finish(first)
    # whichever GET the server saw second is the refused one
    outcomes = sorted([(held.status, held.body), (second.status, second.body)], key=str)
    assert [s for s, _ in outcomes] == [200, 400], f"first:\n{held}\nsecond:\n{second}"
    assert outcomes[0][1] == b"1", f"the held GET must end with a close packet:\n{held}"
    assert_error(await p.get(), 1)
    assert_error(await p.post('42["echo",1]'), 1)


async def test_second_concurrent_post_is_refused_and_closes_session(reference_server):
    for attempt in range(ATTEMPTS):
        p = Polling(reference_server)
        await p.handshake()
        await p.connect()
        body = b'42["echo","slow"]'
        slow = await Conn.open(p.port)
        try:
            head = request_bytes(p.port, "POST", p.url(), {"Content-Length": str(len(body))})
            await slow.send(head + body[:5])  # body incomplete: this POST stays in flight
            await asyncio.sleep(SETTLE * (attempt + 1))
            second = await p.post('42["echo","fast"]')
            if second.status == 200 and attempt < ATTEMPTS - 1:
                continue  # the server had not registered the slow POST yet: again
            assert second.status == 400, f"second concurrent POST:\n{second}"
            await slow.send(body[5:])
            with contextlib.suppress(AssertionError, ConnectionError):
                await slow.read_response("POST", timeout=5)
        finally:
            slow.close()
        assert_error(await p.get(), 1)
        return


async def test_keep_alive_connection_with_pipelined_requests(reference_server):
    # browsers reuse connections: handshake, then POST and GET written back to back on
    # the same connection; answers come in request order
    port = reference_server.port
    keep = {"Connection": "keep-alive"}
    conn = await Conn.open(port)
    try:
        await conn.send(request_bytes(port, "GET", eio_query(), keep))
        hs = await conn.read_response()
        assert hs.status == 200 and hs.body.startswith(b"0{"), str(hs)
        sid = json.loads(hs.body[1:])["sid"]
        await conn.send(
            request_bytes(port, "POST", eio_query("polling", sid), keep, b"40")
            + request_bytes(port, "GET", eio_query("polling", sid), keep)
        )
        posted = await conn.read_response("POST")
        assert (posted.status, posted.body) == (200, b"ok"), str(posted)
        got = await conn.read_response()
        assert got.status == 200 and re.fullmatch(rb'40\{"sid":"[^"]+"\}', got.body), str(got)
    finally:
        conn.close()


# ======================================================================= errors ==
async def test_unknown_sid_polling(reference_server):
    port = reference_server.port
    assert_error(await http(port, "GET", eio_query("polling", "nope")), 1)
    assert_error(await http(port, "POST", eio_query("polling", "nope"), body=b"40"), 1)


async def test_unknown_sid_websocket_upgrade(reference_server):
    # engine.io answers upgrade requests it refuses with a bare text message
    # (abortUpgradeRequest: 400, text/html, `Session ID unknown`); ferrosio sends the
    # polling-style JSON. Either way: 400, no 101, and the message.
    res = await ws_raw_request(reference_server.port, eio_query("websocket", "nope"))
    assert res.status == 400, str(res)
    assert b"Session ID unknown" in res.body, str(res)


@pytest.mark.parametrize(
    ("method", "query", "code"),
    [
        ("GET", "transport=polling", 5),
        ("GET", "EIO=3&transport=polling", 5),
        ("GET", "EIO=5&transport=polling", 5),
        ("GET", "EIO=&transport=polling", 5),
        ("GET", "EIO=4&transport=foo", 0),
        ("GET", "EIO=4", 0),
        ("GET", "EIO=4&transport=", 0),
        ("POST", "EIO=4&transport=polling", 2),
        ("PUT", "EIO=4&transport=polling", 2),
        ("GET", "EIO=4&transport=websocket", 3),
    ],
    ids=[
        "no-EIO",
        "EIO-3",
        "EIO-5",
        "EIO-empty",
        "transport-foo",
        "no-transport",
        "transport-empty",
        "POST-handshake",
        "PUT-handshake",
        "websocket-without-upgrade-headers",
    ],
)
async def test_http_errors(reference_server, method, query, code):
    body = b"40" if method in ("POST", "PUT") else None
    res = await http(reference_server.port, method, f"{PATH}?{query}", body=body)
    assert_error(res, code)


# ======================================================================== close ==
async def test_client_close_releases_pending_get(reference_server):
    for attempt in range(ATTEMPTS):
        p = Polling(reference_server)
        await p.handshake()
        await p.connect()
        pending = await start_pending(p.get())
        await asyncio.sleep(SETTLE * attempt)
        await p.send("1")
        held = await finish(pending)
        if held.status == 400 and attempt < ATTEMPTS - 1:
            continue  # the GET reached the server after the close: again
        assert (held.status, held.body) == (200, b"6"), f"pending GET after client close:\n{held}"
        assert held.header("Content-Type") == TEXT_PLAIN, str(held)
        break
    assert_error(await p.get(), 1)
    assert_error(await p.post('42["echo",1]'), 1)


async def test_ping_timeout_closes_polling_session(suite_server):
    # pings are never answered; the CONNECT keeps the 1 s connect timeout out of the way
    p = Polling(suite_server)
    await p.handshake()
    await p.send("40")
    allowed = re.compile(r'40\{"sid":"[^"]+"\}|42\["auth",\{\}\]|2|1')
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        assert loop.time() < deadline, f"session still open after {WAIT} s; got {seen!r}"
        res = await p.get()
        if res.status != 200:
            break
        seen += res.body.decode().split(SEP)
        assert all(allowed.fullmatch(x) for x in seen), seen
    assert_error(res, 1)
    assert_error(await p.post("3"), 1)


async def test_ping_timeout_ends_pending_get_with_close_packet(http_app):
    # ping every 0.5 s, 3 s to answer: after the ping arrives there is ample time to
    # start the next GET, which must then be answered with `1` when the timeout fires
    srv = http_app("--cors", "any", "--ping-interval", "0.5", "--ping-timeout", "3")
    p = Polling(srv)
    await p.handshake()
    await p.send("40")
    got = await p.recv()
    while got[-1] != "2":  # the CONNECT reply, then the first ping (maybe in one body)
        got += await p.recv()
    assert len(got) == 2 and re.fullmatch(r'40\{"sid":"[^"]+"\}', got[0]), got
    pending = asyncio.ensure_future(p.get())
    res = await finish(pending)
    assert (res.status, res.body) == (200, b"1"), str(res)
    assert_error(await p.get(), 1)


# ================================================================== max payload ==
async def _oversized_post(port: int, target: str, chunked: bool) -> Response:
    """Streams 2 MB of `4xxx...` while reading the answer; returns the answer."""
    conn = await Conn.open(port)
    chunk = b"x" * 65536
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(MAX_PAYLOAD + 1)

    def parts():
        total = 0
        while total < 2 * MAX_PAYLOAD:
            part = (b"4" if total == 0 else b"") + chunk
            if not chunked:
                part = part[: MAX_PAYLOAD + 1 - total]
                if not part:
                    return
            total += len(part)
            yield b"%x\r\n%s\r\n" % (len(part), part) if chunked else part

    async def pump():
        if not await conn.send(request_bytes(port, "POST", target, headers)):
            return
        for data in parts():
            if not await conn.send(data):
                return
            await asyncio.sleep(0)

    writer = asyncio.ensure_future(pump())
    try:
        return await conn.read_response("POST")
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await writer
        conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_post_is_413_and_closes_session(reference_server, chunked):
    bystander = Polling(reference_server)
    await bystander.handshake()
    await bystander.connect()
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    res = await _oversized_post(p.port, p.url(), chunked)
    assert res.status == 413, str(res)
    assert_error(await p.get(), 1)
    # the server keeps serving: an existing session and a new one
    await bystander.send('4221["echo",1]')
    assert await bystander.recv_n(1) == ["4321[1]"]
    fresh = Polling(reference_server)
    await fresh.handshake()
    await fresh.connect()


# ====================================================================== upgrade ==
async def _upgrade(server):
    """Polling session, connected, then upgraded; returns (polling, ws).

    While the upgrade is in progress (after `3probe`, before `5`) the client POSTs five
    echo events: their replies must wait for the WebSocket and arrive there, in order,
    before the reply to an event sent on the WebSocket after `5`.
    """
    p = Polling(server)
    await p.handshake()
    await p.connect()
    pending = await start_pending(p.get())
    ws = await ws_open(server, sid=p.sid)
    try:
        await ws.send("2probe")
        assert await ws_recv(ws) == "3probe"
        held = await finish(pending)
        assert (held.status, held.body) == (200, b"6"), f"pending GET during upgrade:\n{held}"
        await p.send(*(f'42["echo",{n}]' for n in range(1, 6)))
        await ws.send("5")
        await ws.send('4299["echo",99]')
        got = [await ws_recv(ws) for _ in range(6)]
        assert got == [*(f'42["echo",{n}]' for n in range(1, 6)), "4399[99]"]
    except BaseException:
        await ws.close()
        raise
    return p, ws


async def test_upgrade_probe_noop_and_buffered_packets_in_order(reference_server):
    _, ws = await _upgrade(reference_server)
    try:
        await ws.send('42["echo","after"]')
        assert await ws_recv(ws) == '42["echo","after"]'
    finally:
        await ws.close()


async def test_polling_after_upgrade_is_refused(reference_server):
    p, ws = await _upgrade(reference_server)
    try:
        # engine.io: sid known, transport mismatch without upgrade -> 400 code 3
        assert_error(await p.get(), 3)
        assert_error(await p.post('42["echo",1]'), 3)
        await ws.send('4231["echo",1]')
        assert await ws_recv(ws) == "4331[1]"
    finally:
        await ws.close()


async def test_second_websocket_after_upgrade_is_closed(reference_server):
    p, ws = await _upgrade(reference_server)
    try:
        second = await ws_open(reference_server, sid=p.sid)  # handshake completes (101)
        try:
            frames = []
            with pytest.raises(ConnectionClosed):
                while True:
                    frames.append(await ws_recv(second))
            assert frames == [], f"second websocket got frames: {frames!r}"
        finally:
            await second.close()
        await ws.send('4232["echo",2]')
        assert await ws_recv(ws) == "4332[2]"
    finally:
        await ws.close()


async def test_aborted_probe_leaves_polling_working(reference_server):
    # the probe WebSocket goes away before `5`: the session stays on polling, and a later
    # upgrade works; a second WebSocket while the first is probing is closed
    p = Polling(reference_server)
    await p.handshake()
    await p.connect()
    probe = await ws_open(reference_server, sid=p.sid)
    try:
        await probe.send("2probe")
        assert await ws_recv(probe) == "3probe"
        intruder = await ws_open(reference_server, sid=p.sid)
        try:
            with pytest.raises(ConnectionClosed):
                frame = await ws_recv(intruder)
                raise AssertionError(f"second websocket during the upgrade got {frame!r}")
        finally:
            await intruder.close()
    finally:
        await probe.close()
    await p.send('4271["echo",1]')
    got = await p.recv_n(1)
    while got[-1] == "6":  # the noop meant for the probe may still be queued
        got += await p.recv_n(1)
    assert [x for x in got if x != "6"] == ["4371[1]"], got
    ws = await ws_open(reference_server, sid=p.sid)
    try:
        await ws.send("2probe")
        assert await ws_recv(ws) == "3probe"
        await ws.send("5")
        await ws.send('4272["echo",2]')
        assert await ws_recv(ws) == "4372[2]"
    finally:
        await ws.close()


# ========================================================================= CORS ==
ORIGIN = "http://client.example:8080"


async def test_cors_preflight(reference_server):
    res = await http(
        reference_server.port,
        "OPTIONS",
        eio_query("polling", t="pre"),
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-custom",
        },
    )
    assert res.status == 204, str(res)
    assert res.body == b""
    assert res.header("Access-Control-Allow-Origin") == ORIGIN, str(res)
    assert res.header("Access-Control-Allow-Credentials") == "true", str(res)
    methods = {
        m.strip().upper() for m in (res.header("Access-Control-Allow-Methods") or "").split(",")
    }
    assert {"GET", "POST"} <= methods, str(res)
    assert res.header("Access-Control-Allow-Headers") == "content-type,x-custom", str(res)


async def test_cors_headers_on_polling_responses(reference_server):
    p = Polling(reference_server, headers={"Origin": ORIGIN})
    responses = [await p.handshake(), await p.post("40"), await p.get()]
    responses.append(await http(p.port, "GET", eio_query("polling", "nope"), {"Origin": ORIGIN}))
    assert [r.status for r in responses] == [200, 200, 200, 400], [str(r) for r in responses]
    for res in responses:
        assert res.header("Access-Control-Allow-Origin") == ORIGIN, str(res)
        assert res.header("Access-Control-Allow-Credentials") == "true", str(res)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("same", True),
        (None, True),
        ("http://evil.example", False),
        ("http://127.0.0.1:1", False),
        ("http://localhost", False),
    ],
    ids=["same-host", "no-origin", "other-host", "other-port", "other-name"],
)
async def test_same_origin_policy_polling(http_app, origin, allowed):
    srv = http_app("--cors", "same-origin")
    if origin == "same":
        origin = f"http://{HOST}:{srv.port}"
    headers = {"Origin": origin} if origin else {}
    res = await http(srv.port, "GET", eio_query("polling"), headers)
    if not allowed:
        assert_error(res, 4, status=403)
        return
    assert res.status == 200 and res.body.startswith(b"0"), str(res)
    if origin:
        assert res.header("Access-Control-Allow-Origin") == origin, str(res)


@pytest.mark.parametrize("allowed", [True, False], ids=["same-host", "other-host"])
async def test_same_origin_policy_websocket(http_app, allowed):
    srv = http_app("--cors", "same-origin")
    origin = f"http://{HOST}:{srv.port}" if allowed else "http://evil.example"
    res = await ws_raw_request(srv.port, eio_query("websocket"), origin=origin)
    if allowed:
        assert res.status == 101, str(res)
    else:
        assert_error(res, 4, status=403)


LISTED = "https://good.example"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(LISTED, True), ("https://other.example", False), ("http://good.example", False)],
    ids=["listed", "unlisted", "listed-host-other-scheme"],
)
async def test_origin_list_policy(http_app, origin, allowed):
    srv = http_app("--cors", f"{LISTED},https://second.example")
    res = await http(srv.port, "GET", eio_query("polling"), {"Origin": origin})
    ws = await ws_raw_request(srv.port, eio_query("websocket"), origin=origin)
    if not allowed:
        assert_error(res, 4, status=403)
        assert_error(ws, 4, status=403)
        return
    assert res.status == 200 and res.body.startswith(b"0"), str(res)
    assert res.header("Access-Control-Allow-Origin") == origin, str(res)
    assert res.header("Access-Control-Allow-Credentials") == "true", str(res)
    assert ws.status == 101, str(ws)
    pre = await http(
        srv.port,
        "OPTIONS",
        eio_query("polling"),
        {"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204, str(pre)
    assert pre.header("Access-Control-Allow-Origin") == origin, str(pre)


async def test_cors_disabled_sends_no_headers_and_checks_nothing(http_app):
    srv = http_app("--cors", "none")
    res = await http(srv.port, "GET", eio_query("polling"), {"Origin": "http://evil.example"})
    assert res.status == 200 and res.body.startswith(b"0"), str(res)
    assert not [k for k, _ in res.headers if k.lower().startswith("access-control-")], str(res)
    ws = await ws_raw_request(srv.port, eio_query("websocket"), origin="http://evil.example")
    assert ws.status == 101, str(ws)


# ============================================================ transport options ==
async def test_websocket_only_server_refuses_polling(http_app):
    srv = http_app("--cors", "any", "--transports", "websocket")
    assert_error(await http(srv.port, "GET", eio_query("polling")), 0)
    ws = await ws_open(srv)
    try:
        first = await ws_recv(ws)
        assert first.startswith("0{") and json.loads(first[1:])["upgrades"] == [], first
    finally:
        await ws.close()


async def test_polling_only_server_refuses_websocket(http_app):
    srv = http_app("--cors", "any", "--transports", "polling")
    p = Polling(srv)
    await p.handshake()
    assert p.open["upgrades"] == [], p.open
    for sid in (None, p.sid):
        res = await ws_raw_request(srv.port, eio_query("websocket", sid))
        assert res.status == 400 and b"Transport unknown" in res.body, str(res)
    await p.connect()


async def test_no_upgrades_advertises_none_and_refuses_probe(http_app):
    srv = http_app("--cors", "any", "--no-upgrades")
    p = Polling(srv)
    await p.handshake()
    assert p.open["upgrades"] == [], p.open
    res = await ws_raw_request(srv.port, eio_query("websocket", p.sid))
    assert res.status == 400, f"upgrade of a session on a server without upgrades:\n{res}"
    await p.connect()  # the polling session is unaffected
    # a fresh WebSocket session is still fine
    ws = await ws_open(srv)
    try:
        assert (await ws_recv(ws)).startswith("0{")
    finally:
        await ws.close()


# ================================================================= static files ==
@pytest.fixture
def static_app(http_app, static_root):
    return http_app("--cors", "any", "--static-dir", str(static_root / "public"))


@pytest.mark.parametrize(
    ("target", "file", "ctype"),
    [
        ("/", "index.html", "text/html"),
        ("/static/app.js", "app.js", "text/javascript"),
        ("/static/sub/deep.css", "sub/deep.css", "text/css"),
    ],
    ids=["index", "js", "nested-css"],
)
async def test_static_files_served(static_app, static_root, target, file, ctype):
    res = await http(static_app.port, "GET", target)
    assert res.status == 200, str(res)
    assert res.body == (static_root / "public" / file).read_bytes()
    mime = (res.header("Content-Type") or "").split(";")[0].strip()
    assert mime == ctype, str(res)


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret",
        "/static/sub/../../secret",
        "/static/%2e%2e/secret",
        "/static/..%2fsecret",
        "/static/missing.js",
        "/nope",
        "/staticx/app.js",
    ],
)
async def test_static_files_not_found(static_app, target):
    res = await http(static_app.port, "GET", target)
    assert res.status == 404, str(res)
    assert b"TOP SECRET" not in res.body


async def test_static_app_still_serves_engineio(static_app):
    p = Polling(static_app)
    await p.handshake()
    await p.connect()
    await p.send('4241["echo","s"]')
    assert await p.recv_n(1) == ['4341["s"]']


# ============================================================ hostile clients ==
async def _slowloris(port: int, started: asyncio.Event) -> tuple[float, bytes]:
    """Request line, then one header line every 0.5 s, never the blank line.

    Returns (seconds until the server closed, bytes it sent first)."""
    loop = asyncio.get_running_loop()
    conn = await Conn.open(port)
    t0 = loop.time()
    try:
        alive = await conn.send(f"GET {eio_query()} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
        started.set()
        i = 0
        while alive and not conn.eof:
            if loop.time() - t0 > 20:
                raise AssertionError(
                    f"slow client still connected after {loop.time() - t0:.0f} s "
                    f"(the server's header-read timeout is 10 s)"
                )
            with contextlib.suppress(*_TIMEOUTS):
                await conn._fill(0.5)
            if not conn.eof:
                alive = await conn.send(f"X-Slow-{i}: y\r\n".encode())
                i += 1
        if not conn.eof:
            await conn.wait_closed(timeout=20 - (loop.time() - t0))
        return loop.time() - t0, bytes(conn.buf)
    finally:
        conn.close()


async def test_slowloris_neither_stalls_others_nor_lives_forever(reference_server):
    port = reference_server.port
    events = [asyncio.Event() for _ in range(5)]
    slow = [asyncio.ensure_future(_slowloris(port, e)) for e in events]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), WAIT)
        await asyncio.sleep(1.0)  # they are now dribbling
        # other clients are served meanwhile: polling and websocket
        p = Polling(reference_server)
        await p.handshake()
        await p.connect()
        await p.send('4251["echo",1]')
        assert await p.recv_n(1) == ["4351[1]"]
        ws = await ws_open(reference_server)
        try:
            assert (await ws_recv(ws)).startswith("0{")
        finally:
            await ws.close()
        results = await asyncio.wait_for(asyncio.gather(*slow), 30)
    finally:
        for t in slow:
            t.cancel()
    for elapsed, data in results:
        # the server may say 408 before closing; it must not answer the unfinished request
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
        assert elapsed < 20


async def _assert_serving(server) -> None:
    p = Polling(server)
    await p.handshake()
    await p.connect()
    await p.send('4261["echo","still"]')
    assert await p.recv_n(1) == ['4361["still"]']


@pytest.mark.parametrize("shape", ["many-lines", "one-line"])
async def test_huge_headers_are_refused(reference_server, shape):
    port = reference_server.port
    if shape == "many-lines":
        extra = b"".join(b"X-Big-%d: %s\r\n" % (i, b"a" * 1000) for i in range(200))
    else:
        extra = b"X-Big: " + b"a" * (200 * 1024) + b"\r\n"
    head = f"GET {eio_query()} HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode()
    conn = await Conn.open(port)
    try:
        await conn.send(head + extra + b"\r\n")
        res = await conn.read_response()
        assert res.status == 431, str(res)
        await conn.wait_closed()
    finally:
        conn.close()
    await _assert_serving(reference_server)


def _head_of(port: int, size: int, shape: str) -> bytes:
    """A polling handshake request whose head (up to and with its blank line) is ``size``
    bytes: padded with one long header, or with lines of ~1 KiB (fewer than 100 headers)."""
    head = f"GET {eio_query()} HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode()
    pad = size - len(head) - 2
    if shape == "one-line":
        extra = b"X-Big: " + b"a" * (pad - len(b"X-Big: \r\n")) + b"\r\n"
    else:
        lines = []
        while pad > 0:
            name = b"X-Big-%d: " % len(lines)
            n = min(1024, pad - len(name) - 2)
            if n < 1:  # too little left for another line: lengthen the previous one
                lines[-1] = lines[-1][:-2] + b"a" * pad + b"\r\n"
                break
            lines.append(name + b"a" * n + b"\r\n")
            pad -= len(lines[-1])
        extra = b"".join(lines)
    data = head + extra + b"\r\n"
    assert len(data) == size
    return data


@pytest.mark.parametrize("shape", ["many-lines", "one-line"])
@pytest.mark.parametrize("size", [64 * 1024 + 1, 100 * 1024])
async def test_a_head_over_64_kib_is_431(reference_server, shape, size):
    # Sent at once, so the server reads it in a few large reads (hyper's own buffer bound
    # is checked only between reads and let 100 KiB through).
    conn = await Conn.open(reference_server.port)
    try:
        await conn.send(_head_of(reference_server.port, size, shape))
        res = await conn.read_response()
        assert res.status == 431, str(res)
        await conn.wait_closed()
    finally:
        conn.close()
    await _assert_serving(reference_server)


async def test_a_head_of_64_kib_is_served(reference_server):
    if reference_server.kind != "ferrosio":
        pytest.skip("the bound under test is ferrosio's (Node's is 16 KiB)")
    conn = await Conn.open(reference_server.port)
    try:
        await conn.send(_head_of(reference_server.port, 64 * 1024, "many-lines"))
        res = await conn.read_response()
        assert res.status == 200 and res.body.startswith(b"0{"), str(res)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "data",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: abc\r\n\r\n",
    ],
    ids=["text", "tls-client-hello", "http-9.9", "empty-target", "bad-content-length"],
)
async def test_garbage_request_is_400(reference_server, data):
    conn = await Conn.open(reference_server.port)
    try:
        await conn.send(data)
        res = await conn.read_response()
        assert res.status == 400, str(res)
        await conn.wait_closed()
    finally:
        conn.close()
    await _assert_serving(reference_server)
