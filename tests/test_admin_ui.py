"""The Socket.IO Admin UI's server side (``AsyncServer.instrument``), driven by the UI's own
client side: the official socket.io-client connected to the admin namespace with the options
of the UI's bundle (tests/cluster/admin_peer.mjs), against ferrosio with real app clients.

Needs ``npm install --prefix tests/cluster`` (@socket.io/admin-ui, socket.io-client) and node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

import ferrosio
from _harness import TESTS, WAIT
from ferrosio import _admin

PEER_DIR = TESTS / "cluster"
PEER = PEER_DIR / "admin_peer.mjs"
CREDENTIALS = {"username": "admin", "password": "s3cret"}
ALL_WRITE = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None
    or not (PEER_DIR / "node_modules" / "@socket.io" / "admin-ui").is_dir(),
    reason="needs node and `npm install --prefix tests/cluster`",
)


class AdminPeer:
    """admin_peer.mjs: what the Admin UI's client receives, in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.records: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.startswith(b"{"):
                self.records.append(json.loads(line))
                self.changed.set()

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def connect(self, auth: Any = None, nsp: str = "/admin") -> None:
        await self.send(op="connect", nsp=nsp, auth=auth)

    async def command(self, *args: Any) -> None:
        await self.send(op="emit", args=list(args))

    async def wait_for(
        self, event: str, pred: Callable[[list[Any]], bool] = lambda _: True, since: int = 0
    ) -> list[Any]:
        """The arguments of the first ``event`` from record ``since`` on that ``pred`` accepts
        (a bounded wait: it fails the test after WAIT seconds)."""

        async def scan() -> list[Any]:
            i = since
            while True:
                while i < len(self.records):
                    r = self.records[i]
                    i += 1
                    if r["event"] == event and pred(r.get("args", [])):
                        return list(r.get("args", []))
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(scan(), WAIT)
        except TimeoutError:
            seen = [r["event"] for r in self.records]
            pytest.fail(f"no {event} matching within {WAIT} s; seen: {seen}")

    def seen(self, event: str) -> list[list[Any]]:
        return [r.get("args", []) for r in self.records if r["event"] == event]

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionError):
                await self.send(op="close")
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.reader.cancel()


@pytest_asyncio.fixture
async def admin_peer() -> AsyncIterator[Callable[..., Any]]:
    made: list[AdminPeer] = []

    async def make(url: str, parser: str = "default") -> AdminPeer:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(PEER),
            url,
            "/socket.io",
            parser,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        peer = AdminPeer(proc)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        await peer.close()


def app(**instrument: Any) -> ferrosio.AsyncServer:
    """A small app: ``hello`` is answered with ``reply`` to the sender; ``join`` enters a room."""
    sio = ferrosio.AsyncServer()
    sio.instrument(**{"auth": CREDENTIALS, **instrument})

    @sio.on("hello")
    async def hello(sid: str, data: Any) -> None:
        await sio.emit("reply", data, to=sid)

    @sio.on("join")
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    return sio


async def app_client(clients: list[Any], url: str, **handlers: Any) -> ferrosio.AsyncClient:
    c = ferrosio.AsyncClient(reconnection=False)
    for event, fn in handlers.items():
        c.on(event, fn)
    clients.append(c)
    await c.connect(url, transports=["websocket"], wait_timeout=WAIT)
    return c


async def test_config_sockets_stats_and_live_reports(make_server, clients, admin_peer) -> None:
    sio = app()
    url = await make_server(sio)
    first = await app_client(clients, url)
    admin = await admin_peer(url)
    await admin.connect(CREDENTIALS)
    await admin.wait_for("connect")
    [config] = await admin.wait_for("config")
    assert config == {"supportedFeatures": [*ALL_WRITE, "AGGREGATED_EVENTS", "ALL_EVENTS"]}
    [sockets] = await admin.wait_for("all_sockets")
    mine = [s for s in sockets if s["id"] == first.sid]
    assert len(mine) == 1, sockets
    s = mine[0]
    assert (s["nsp"], s["transport"], s["rooms"]) == ("/", "websocket", [first.sid])
    assert s["handshake"]["query"]["EIO"] == "4"
    assert s["handshake"]["address"] == "127.0.0.1"
    [stats] = await admin.wait_for("server_stats")
    assert {"serverId", "hostname", "pid", "uptime", "clientsCount", "aggregatedEvents"} <= set(
        stats
    )
    assert {"name": "/", "socketsCount": 1} in stats["namespaces"]
    assert stats["clientsCount"] >= 1

    # A client connects, sends an event, gets one, joins a room, leaves.
    second = await app_client(clients, url, reply=lambda data: None)
    sid = second.sid
    connected = await admin.wait_for("socket_connected", lambda a: a[0]["id"] == sid)
    assert connected[0]["nsp"] == "/" and isinstance(connected[1], str)
    await second.emit("hello", {"x": [1, b"\x02"]})
    got = await admin.wait_for("event_received", lambda a: a[1] == sid)
    assert got[:3] == ["/", sid, ["hello", {"x": [1, {"bin": [2]}]}]]
    sent = await admin.wait_for("event_sent", lambda a: a[1] == sid)
    assert sent[:3] == ["/", sid, ["reply", {"x": [1, {"bin": [2]}]}]]
    assert await second.call("join", "r1", timeout=WAIT) is True
    assert (await admin.wait_for("room_joined", lambda a: a[2] == sid))[:3] == ["/", "r1", sid]
    await second.disconnect()
    gone = await admin.wait_for("socket_disconnected", lambda a: a[1] == sid)
    assert gone[:3] == ["/", sid, "client disconnect"]  # python-socketio's reason names


async def test_commands_act_on_real_sockets(make_server, clients, admin_peer, until) -> None:
    sio = app()
    url = await make_server(sio)
    pings: list[Any] = []
    c = await app_client(clients, url, ping=lambda *a: pings.append(a))
    other = await app_client(clients, url)
    sid = c.sid
    assert sid is not None
    admin = await admin_peer(url)
    await admin.connect(CREDENTIALS)
    await admin.wait_for("config")

    await admin.command("join", "/", "r2", sid)
    assert (await admin.wait_for("room_joined", lambda a: a[1] == "r2"))[2] == sid
    assert "r2" in sio.rooms(sid)
    assert "r2" not in sio.rooms(other.sid)

    await admin.command("emit", "/", "r2", "ping", 1, "two")
    await until(lambda: pings, what="the admin's emit at the client in r2")
    assert pings == [(1, "two")]

    await admin.command("leave", "/", "r2", sid)
    assert (await admin.wait_for("room_left", lambda a: a[1] == "r2"))[2] == sid
    assert "r2" not in sio.rooms(sid)

    # No filter: every socket of the namespace.
    await admin.command("join", "/", "all")
    await until(lambda: "all" in sio.rooms(sid) and "all" in sio.rooms(other.sid))

    await admin.command("_disconnect", "/", False, sid)
    gone = await admin.wait_for("socket_disconnected", lambda a: a[1] == sid)
    assert gone[2] == "server namespace disconnect" or gone[2] == "server disconnect"
    await until(lambda: not c.connected, what="the client disconnected by the admin")
    assert other.connected

    # close=True: the client's whole connection.
    other_sid = other.sid
    await admin.command("_disconnect", "/", True, other_sid)
    await admin.wait_for("socket_disconnected", lambda a: a[1] == other_sid)
    await until(lambda: not other.connected, what="the connection closed by the admin")


async def test_a_wrong_password_is_refused(make_server, admin_peer) -> None:
    url = await make_server(app())
    admin = await admin_peer(url)
    await admin.connect({"username": "admin", "password": "wrong"})
    assert await admin.wait_for("connect_error") == ["invalid credentials"]
    await admin.connect(None)
    assert await admin.wait_for("connect_error", since=1) == ["invalid credentials"]
    assert not admin.seen("config")


async def test_read_only_refuses_commands(make_server, clients, admin_peer, until) -> None:
    sio = app(read_only=True)
    url = await make_server(sio)
    c = await app_client(clients, url)
    admin = await admin_peer(url)
    await admin.connect(CREDENTIALS)
    [config] = await admin.wait_for("config")
    assert config == {"supportedFeatures": ["AGGREGATED_EVENTS", "ALL_EVENTS"]}
    await admin.command("join", "/", "r3", c.sid)
    await admin.command("_disconnect", "/", True, c.sid)
    # A fence: the admin's packets are handled in order, so once its disconnection is seen
    # the commands before it have been refused.
    await admin.send(op="disconnect")
    await until(lambda: not any(s.nsp == "/admin" for s in sio._sockets.values()))
    assert c.connected
    assert "r3" not in sio.rooms(c.sid)


async def test_production_mode_reports_only_stats(make_server, clients, admin_peer) -> None:
    sio = app(mode="production", server_stats_interval=0.2, server_id="node-7")
    url = await make_server(sio)
    admin = await admin_peer(url)
    await admin.connect(CREDENTIALS)
    [config] = await admin.wait_for("config")
    assert config == {"supportedFeatures": [*ALL_WRITE, "AGGREGATED_EVENTS"]}
    c = await app_client(clients, url)
    await c.emit("hello", 1)
    # Stats keep coming while the admin is connected; the event is counted in them.
    await admin.wait_for(
        "server_stats",
        lambda a: any(e["type"] == "packetsIn" for e in a[0]["aggregatedEvents"]),
    )
    assert all(s[0]["serverId"] == "node-7" for s in admin.seen("server_stats"))
    assert not admin.seen("all_sockets") and not admin.seen("socket_connected")
    assert not admin.seen("event_received")


async def test_bcrypt_basic_auth_and_sessions(make_server, admin_peer, monkeypatch) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    monkeypatch.setattr(_admin, "MAX_SESSIONS", 2)
    sio = ferrosio.AsyncServer()
    sio.instrument(auth={"type": "basic", "username": "admin", "password": hashed})
    url = await make_server(sio)
    admin = await admin_peer(url)
    sessions = []
    for _ in range(3):
        since = len(admin.records)
        await admin.connect(CREDENTIALS)
        [session] = await admin.wait_for("session", since=since)
        await admin.wait_for("config", since=since)
        sessions.append(session)
    # The UI reconnects with its session id instead of the password...
    since = len(admin.records)
    await admin.connect({"sessionId": sessions[2]})
    await admin.wait_for("config", since=since)
    # ... while the oldest session, past MAX_SESSIONS, is forgotten.
    since = len(admin.records)
    await admin.connect({"sessionId": sessions[0]})
    assert await admin.wait_for("connect_error", since=since) == ["invalid credentials"]
    since = len(admin.records)
    await admin.connect({"username": "admin", "password": "nope"})
    assert await admin.wait_for("connect_error", since=since) == ["invalid credentials"]


async def test_the_ui_with_the_msgpack_parser(make_server, clients, admin_peer) -> None:
    sio = ferrosio.AsyncServer(serializer="msgpack")
    sio.instrument(auth=False)
    url = await make_server(sio)
    admin = await admin_peer(url, "msgpack")
    await admin.connect()
    [config] = await admin.wait_for("config")
    assert "ALL_EVENTS" in config["supportedFeatures"]
    await admin.wait_for("server_stats")


def test_instrument_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="auth must be specified"):
        ferrosio.AsyncServer().instrument()
    with pytest.raises(ValueError, match="mode"):
        ferrosio.AsyncServer().instrument(auth=False, mode="verbose")
    with pytest.raises(ValueError, match="bcrypt hash"):
        ferrosio.AsyncServer().instrument(
            auth={"type": "basic", "username": "a", "password": "plain"}
        )
    sio = ferrosio.AsyncServer()
    sio.instrument(auth=False)
    with pytest.raises(ferrosio.exceptions.FerrosioError, match="already"):
        sio.instrument(auth=False)


def test_aggregated_event_buckets_are_bounded(monkeypatch) -> None:
    monkeypatch.setattr(_admin, "MAX_EVENT_BUCKETS", 2)
    sio = ferrosio.AsyncServer()
    admin = sio.instrument(auth=False)
    for kind in ("a", "b", "c", "d"):
        admin._count(kind)
    admin._count("a")
    kinds = {k[1]: n for k, n in admin.buckets.items()}
    assert set(kinds) <= {"a", "b"} and len(kinds) <= 2


UI_DIST = PEER_DIR / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
UI_SPEC = TESTS / "browser" / "admin_ui.spec.mjs"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.mark.skipif(
    not (TESTS / "browser" / "node_modules" / "playwright-core").is_dir()
    or not os.path.exists(CHROMIUM),
    reason="needs chromium and `npm install --prefix tests/browser`",
)
async def test_the_real_ui_in_chromium(make_server, clients) -> None:
    """The UI's own build (served by ferrosio from the npm package) lists the app's socket
    and this server."""
    sio = ferrosio.AsyncServer(static_files={"/admin-ui": str(UI_DIST)})
    sio.instrument(auth=False, server_id="ferrosio-under-test")
    url = await make_server(sio)
    c = await app_client(clients, url)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(UI_SPEC),
        "--url",
        url,
        "--ui",
        "/admin-ui/",
        "--sid",
        str(c.sid),
        "--server-id",
        "ferrosio-under-test",
        "--chromium",
        CHROMIUM,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, err.decode()
    assert lines[-1]["ok"], json.dumps(lines[-1], indent=1)


async def test_a_failing_report_never_breaks_the_server(make_server, clients, until) -> None:
    sio = ferrosio.AsyncServer()
    admin = sio.instrument(auth=False)

    def broken(*args: Any) -> None:
        raise RuntimeError("report failed")

    admin._report = broken  # type: ignore[method-assign]
    gone: list[str] = []
    sio.on("disconnect", lambda sid, reason="": gone.append(sid))
    sio.on("echo", lambda sid, data: data)
    url = await make_server(sio)
    c = await app_client(clients, url)
    sid = c.sid
    assert await c.call("echo", 5, timeout=WAIT) == 5
    await c.disconnect()
    await until(lambda: gone == [sid], what="the app's disconnect handler")
