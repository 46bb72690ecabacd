"""Reference-app contract, checked with python-socketio's `socketio.AsyncClient` against
the running reference app. The contract is CONTRACT.md in the project's shared material
(../shared/reference/, checked out beside the repository; not part of it).

Same checks, same names as tests/node/contract.mjs (official JS client), so a
failure on one client and not the other points at a client-specific path.

python-socketio client facts this file relies on (python-socketio 5.x source):
- a DISCONNECT from the server reaches the `disconnect` handler with reason
  `AsyncClient.reason.SERVER_DISCONNECT` ("server disconnect") -- the JS
  client calls the same thing "io server disconnect";
- the client always sends CONNECT with an auth object (`{}` when none given);
- it acks every event that carries an ack id, even without a handler (with
  `[]`), so the "ask" timeout path needs a handler that does not return;
- an Engine.IO close and a Socket.IO DISCONNECT both reach the `disconnect`
  handler as "server disconnect", so the reason cannot tell them apart here
  (the Node client can: "transport close" vs "io server disconnect"; the raw
  protocol tests pin the exact `41`);
- stock python-engineio refuses any polling payload with more than 16 packets
  (`Payload.max_decode_packets`), on the client too: a server that batches a
  burst of replies into one polling response (socket.io does, and CONTRACT
  allows it) would see them silently dropped.  That is a client limitation,
  so this module lifts it, exactly as psio_app.py does on its server side.

Determinism: as in contract.mjs -- bounded waits (WAIT) that only guard
against hangs, and fences for negative checks (see bcast/to_room below).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import engineio.payload
import pytest
import pytest_asyncio
import socketio

from _harness import transport_params

pytestmark = pytest.mark.asyncio

WAIT = 20.0  # seconds; bound for any single wait (hang guard only)
ASK_TIMEOUT = 5.0  # server-side timeout of "ask" (CONTRACT)
MAX_PAYLOAD = 1_000_000
SERVER_DISCONNECT = socketio.AsyncClient.reason.SERVER_DISCONNECT
CLIENT_DISCONNECT = socketio.AsyncClient.reason.CLIENT_DISCONNECT

MIXED = (
    1,
    "two",
    {"three": 3, "nested": {"a": [1, 2, {"b": None}]}},
    [4, "4", False],
    None,
    True,
    1.5,
    -7,
    'ünïcødé ✓ 😀 "quoted" \\ /',
    "",
    {},
    [],
)

engineio.payload.Payload.max_decode_packets = 1_000_000  # see module docstring

# connect failures per transport mode: after the first one, the remaining
# tests of that mode fail at once instead of each waiting for a timeout
_connect_failures: dict[str, str] = {}


def typed(v):
    """Value with its JSON type made explicit: True != 1, 1.0 != 1, bytes by content."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(v).hex())
    if isinstance(v, bool) or v is None:
        return ("const", v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", v)
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, (list, tuple)):
        return ("array", [typed(x) for x in v])
    if isinstance(v, dict):
        return ("object", {k: typed(x) for k, x in v.items()})
    return ("other", repr(v))


def assert_same(actual, expected, what=""):
    assert typed(actual) == typed(expected), (
        f"{what}\n  got:      {actual!r}\n  expected: {expected!r}"
    )


class Inbox:
    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.count = 0

    def put(self, args):
        self.count += 1
        self.queue.put_nowait(args)

    async def next(self, timeout: float = WAIT, what: str = "event"):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s") from None

    def drain(self) -> list:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


class Client:
    """AsyncClient + per-(namespace, event) inboxes for every server emit."""

    NAMESPACES = ("/", "/admin")

    def __init__(self, url: str, transports: str, **client_kw):
        client_kw.setdefault("reconnection", False)
        self.sio = socketio.AsyncClient(**client_kw)
        self.url = url
        self.transports_mode = transports
        self.transports = transports.split(",")
        self.inboxes: dict[tuple[str, str], Inbox] = defaultdict(Inbox)
        self.disconnects = Inbox()
        self.connect_errors = Inbox()
        self.connects = 0
        for ns in self.NAMESPACES:
            self.sio.on("*", self._catch_all(ns), namespace=ns)
            self.sio.on("connect", self._on_connect, namespace=ns)
            self.sio.on("disconnect", self._on_disconnect(ns), namespace=ns)
            self.sio.on("connect_error", self._on_connect_error(ns), namespace=ns)

    def _catch_all(self, ns):
        def handler(event, *args):
            self.inboxes[(ns, event)].put(args)

        return handler

    def _on_connect(self):
        self.connects += 1

    def _on_disconnect(self, ns):
        def handler(reason=None):
            self.disconnects.put((ns, reason))

        return handler

    def _on_connect_error(self, ns):
        def handler(*data):
            self.connect_errors.put((ns, data))

        return handler

    def inbox(self, event: str, namespace: str = "/") -> Inbox:
        return self.inboxes[(namespace, event)]

    async def connect(self, namespaces=("/",), auth=None):
        await self.sio.connect(
            self.url,
            transports=self.transports,
            namespaces=list(namespaces),
            auth=auth,
            wait_timeout=WAIT,
        )
        return self

    async def call(self, event: str, *args, namespace: str = "/", timeout: float = WAIT) -> tuple:
        """Emit with an ack; returns the ack's arguments, all of them, as a tuple."""
        fut = asyncio.get_running_loop().create_future()

        def on_ack(*resp):
            if not fut.done():
                fut.set_result(resp)

        await self.sio.emit(event, args, namespace=namespace, callback=on_ack)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f'no ack for "{event}" within {timeout} s') from None

    async def emit(self, event: str, *args, namespace: str = "/"):
        await self.sio.emit(event, args, namespace=namespace)

    async def close(self):
        """Best effort (teardown): a client that cannot close cleanly is not a test failure."""
        try:
            if hasattr(self.sio, "shutdown"):
                await asyncio.wait_for(self.sio.shutdown(), 10)
            else:
                await asyncio.wait_for(self.sio.disconnect(), 10)
        except (Exception, asyncio.CancelledError):
            pass


@pytest.fixture(params=transport_params())
def transports(request) -> str:
    return request.param


@pytest_asyncio.fixture
async def clients(reference_server, transports):
    """clients.new(**kw) -> unconnected Client; clients.connected(...) -> connected one."""

    class Factory:
        def __init__(self):
            self.all: list[Client] = []

        def new(self, **kw) -> Client:
            c = Client(reference_server.url, transports, **kw)
            self.all.append(c)
            return c

        async def connected(self, namespaces=("/",), auth=None, **kw) -> Client:
            if transports in _connect_failures:
                earlier = _connect_failures[transports]
                pytest.fail(f"an earlier connect over {transports!r} failed: {earlier}")
            c = self.new(**kw)
            try:
                return await c.connect(namespaces, auth)
            except Exception as e:  # socketio.exceptions.ConnectionError and friends
                _connect_failures[transports] = f"{type(e).__name__}: {e}"
                raise

    f = Factory()
    yield f
    await asyncio.gather(*(c.close() for c in f.all))


def tag() -> str:
    return uuid.uuid4().hex[:8]


# ----------------------------------------------------------------- connect --
async def test_connect(clients, transports):
    c = await clients.connected()
    sid = c.sio.get_sid("/")
    assert isinstance(sid, str) and sid
    assert sid != c.sio.sid, "socket id must differ from the Engine.IO session id"


async def test_transport(clients, transports):
    c = await clients.connected()
    # python-engineio upgrades polling -> websocket inside connect()
    assert c.sio.transport() == transports.split(",")[-1]
    assert_same(await c.call("echo", "after-upgrade"), ("after-upgrade",))


# -------------------------------------------------------------- echo/acks --
async def test_echo_ack_mixed(clients, transports):
    c = await clients.connected()
    assert_same(await c.call("echo", *MIXED), MIXED)


async def test_echo_ack_no_args(clients, transports):
    c = await clients.connected()
    assert_same(await c.call("echo"), ())


async def test_echo_no_ack(clients, transports):
    c = await clients.connected()
    await c.emit("echo", "a", 2, {"b": [1, None]}, [True])
    assert_same(await c.inbox("echo").next(), ("a", 2, {"b": [1, None]}, [True]))


async def test_acks_in_flight(clients, transports):
    # 200 acks outstanding at once: each reply must go to its own ack id
    c = await clients.connected()
    resps = await asyncio.gather(*(c.call("echo", i, f"v{i}") for i in range(200)))
    for i, r in enumerate(resps):
        assert_same(r, (i, f"v{i}"), f"ack #{i}")


async def test_ask_ack(clients, transports):
    c = await clients.connected()
    ev, received = f"q_ask_{tag()}", []

    def handler(*args):
        received.append(args)
        return ("r1", {"n": 2}, [3, None])  # tuple -> three ack args

    c.sio.on(ev, handler, namespace="/")
    resp = await c.call("ask", ev, "x", 5, {"y": True})
    assert_same(received, [("x", 5, {"y": True})], "args of the server's emit")
    assert_same(resp, ("r1", {"n": 2}, [3, None]), "ask ack = client's ack args")


async def test_ask_binary(clients, transports):
    c = await clients.connected()
    ev, received = f"q_bin_{tag()}", []

    def handler(*args):
        received.append(args)
        return (b"\x09\x08\x07", {"k": b"\x00", "l": [b"\xff\x01"]})

    c.sio.on(ev, handler, namespace="/")
    resp = await c.call("ask", ev, b"\x01\x02", {"z": b"\x03"})
    assert_same(received, [(b"\x01\x02", {"z": b"\x03"})])
    assert_same(resp, (b"\x09\x08\x07", {"k": b"\x00", "l": [b"\xff\x01"]}))


async def test_ask_timeout(clients, transports):
    # The handler does not return until released, so no ack reaches the server
    # before its 5 s timeout; the server then acks "ask" with "timeout".  The
    # late ack sent on release must be ignored by the server.
    c = await clients.connected()
    ev, release, asked = f"q_slow_{tag()}", asyncio.Event(), asyncio.Event()

    async def handler(*args):
        asked.set()
        await release.wait()
        return "too-late"

    c.sio.on(ev, handler, namespace="/")
    try:
        resp = await c.call("ask", ev, 1, timeout=ASK_TIMEOUT + WAIT)
    finally:
        release.set()
    assert asked.is_set()
    assert_same(resp, ("timeout",))
    await asyncio.sleep(0)  # let the late ack go out
    assert_same(
        await c.call("echo", "alive"), ("alive",), "connection still usable after a late ack"
    )


# ------------------------------------------------------------------ binary --
async def test_binary_ack_top_level(clients, transports):
    c = await clients.connected()
    args = (b"\x01\x02\x03", "s", b"\x00\xff", 7, b"")
    assert_same(await c.call("echo", *args), args)


async def test_binary_ack_nested(clients, transports):
    c = await clients.connected()
    args = (
        {"a": b"\x01", "b": [1, b"\x02\x02", {"c": b"\x03\x03\x03"}], "d": "x"},
        [b"hello", [b"\x00"]],
    )
    assert_same(await c.call("echo", *args), args)


async def test_binary_event_nested(clients, transports):
    c = await clients.connected()
    args = (b"\x0a\x14", {"deep": [{"bin": b"\x1e"}]}, "t")
    await c.emit("echo", *args)
    assert_same(await c.inbox("echo").next(), args)


# ------------------------------------------------------------------- rooms --
async def test_rooms_join_leave(clients, transports):
    c = await clients.connected()
    ra, rb = f"r-a-{tag()}", f"r-b-{tag()}"
    assert_same(await c.call("rooms"), (["all"],), "fresh socket")
    assert_same(await c.call("join", rb), (True,))
    assert_same(await c.call("join", ra), (True,))
    assert_same(await c.call("rooms"), (sorted(["all", ra, rb]),), "after joins (sorted)")
    assert_same(await c.call("leave", rb), (True,))
    assert_same(await c.call("rooms"), (sorted(["all", ra]),), "after leave")


async def test_to_room_includes_sender(clients, transports):
    t = tag()
    room, ev, fence = f"room-{t}", f"hello_{t}", f"fence_tr_{t}"
    a = await clients.connected()  # sender, member
    c = await clients.connected()  # member
    b = await clients.connected()  # not a member
    assert_same(await a.call("join", room), (True,))
    assert_same(await c.call("join", room), (True,))
    assert_same(await a.call("to_room", room, ev, 1, {"x": 2}), (True,))
    assert_same(await a.inbox(ev).next(), (1, {"x": 2}), "sender (member) receives")
    assert_same(await c.inbox(ev).next(), (1, {"x": 2}), "other member receives")
    # fence: the server delivers to b in order; once the fence (sent to room
    # "all", where every socket is) has arrived, `ev` can no longer arrive first
    await a.emit("to_room", "all", fence)
    await b.inbox(fence).next(what="fence")
    assert b.inbox(ev).count == 0, "non-member received the room emit"


async def test_bcast_others_only(clients, transports):
    t = tag()
    payload, fence = f"from-a-{t}", f"fence_bc_{t}"
    a = await clients.connected()
    b = await clients.connected()
    await a.emit("bcast", payload, 1)
    while True:  # other clients may be broadcasting on the shared server; wait for ours
        got = await b.inbox("bcast").next(what="bcast")
        if got and got[0] == payload:
            break
    assert_same(got, (payload, 1))
    await a.emit("to_room", "all", fence)
    await a.inbox(fence).next(what="fence")
    mine = [x for x in a.inbox("bcast").drain() if x and x[0] == payload]
    assert mine == [], "sender received its own bcast"


# ------------------------------------------------------------------- admin --
async def test_admin_echo(clients, transports):
    c = await clients.connected(namespaces=("/admin",), auth={"token": "secret"})
    args = (1, "a", {"b": [b"\x05"]})
    assert_same(await c.call("echo", *args, namespace="/admin"), args)
    await c.emit("echo", "no-ack", 2, namespace="/admin")
    assert_same(await c.inbox("echo", "/admin").next(), ("no-ack", 2), "echo without ack on /admin")


@pytest.mark.parametrize("auth", [{"token": "wrong"}, None], ids=["wrong_token", "no_auth"])
async def test_admin_refused(clients, transports, auth):
    # python-socketio sends `{}` as auth when none is given
    c = clients.new()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await c.connect(namespaces=("/admin",), auth=auth)
    ns, data = await c.connect_errors.next(what="connect_error")
    assert ns == "/admin"
    assert data == ({"message": "unauthorized"},)
    assert not c.sio.connected


# -------------------------------------------------------------- disconnect --
async def test_disconnect_me(clients, transports):
    # Fast reconnection settings: a wrong reconnect would happen within ~100 ms,
    # well inside the observation window below.
    c = await clients.connected(
        reconnection=True,
        reconnection_delay=0.1,
        reconnection_delay_max=0.1,
        randomization_factor=0,
    )
    assert c.connects == 1
    await c.emit("disconnect_me")
    ns, reason = await c.disconnects.next(what="disconnect")
    assert (ns, reason) == ("/", SERVER_DISCONNECT)
    await asyncio.sleep(
        1.5
    )  # observation window: can only let a bug through, never fail a good server
    assert c.connects == 1, "client reconnected after a server-side namespace disconnect"
    assert not c.sio.connected


# ----------------------------------------------------------------- ordering --
async def test_burst_1000_in_order(clients, transports):
    c = await clients.connected()
    n = 1000
    for i in range(n):
        await c.emit("echo", i)
    inbox = c.inbox("echo")
    got = [(await inbox.next(60, what=f"echo #{i}"))[0] for i in range(n)]
    assert got == list(range(n))


# ------------------------------------------------------------------ limits --
async def test_payload_under_limit(clients, transports):
    # packet on the wire: 42<id>["echo","xxx..."], ~100 bytes under the limit
    c = await clients.connected()
    data = "x" * (MAX_PAYLOAD - 100)
    resp = await c.call("echo", data)
    assert len(resp) == 1 and resp[0] == data
    assert_same(await c.call("echo", "after"), ("after",))


async def test_payload_over_limit(clients, transports):
    b = await clients.connected()  # bystander, connected before
    b_sid = b.sio.get_sid("/")
    a = await clients.connected()
    await a.emit("echo", "x" * (MAX_PAYLOAD + 100))
    _ns, reason = await a.disconnects.next(what="disconnect of the oversized sender")
    # (SERVER_DISCONNECT is also what python-socketio reports for an Engine.IO
    # close packet, so only a client-side reason would be wrong here)
    assert reason != CLIENT_DISCONNECT, f"unexpected reason {reason!r}"
    assert not a.sio.connected
    # the bystander keeps being served, on the same connection
    assert_same(await b.call("echo", "still-here"), ("still-here",))
    assert b.sio.connected and b.sio.get_sid("/") == b_sid
    assert b.disconnects.count == 0
    # and new clients are accepted
    c = await clients.connected()
    assert_same(await c.call("echo", "new-client"), ("new-client",))
