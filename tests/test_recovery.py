"""Connection state recovery (``AsyncServer(connection_state_recovery=...)``), against real
peers: the official npm socket.io-client with its recovery (tests/node/recovery.mjs),
ferrosio's AsyncClient against ferrosio and against the official Node server with
``connectionStateRecovery`` (tests/cluster/recovery_server.mjs).

Connections are lost for real: a TCP proxy in front of the server aborts both legs of every
connection through it (:meth:`Proxy.cut`, a network loss) and may refuse new ones until
released (:meth:`Proxy.hold`, so what is emitted meanwhile is certainly missed); or the
official client closes its own Engine.IO connection. Every wait is bounded; sleeps only ever
let a session expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import ferrosio
from _harness import TESTS, free_port
from ferrosio.exceptions import UnsupportedFeatureError
from ferrosio.testing import wait_until

WAIT = 20.0
NODE_CLIENT = TESTS / "node" / "recovery.mjs"
NODE_SERVER = TESTS / "cluster" / "recovery_server.mjs"


# --------------------------------------------------------------------------- helpers ----
class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``port``."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.held = False
        self.pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, port: int) -> Proxy:
        proxy = cls(port)
        proxy.server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        return proxy

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self, hold: bool = False) -> None:
        """Aborts every connection through the proxy (both legs reset); ``hold``: and refuses
        new ones until :meth:`release`."""
        self.held = self.held or hold
        for down, up in list(self.pairs):
            down.transport.abort()
            up.transport.abort()
        self.pairs.clear()

    def release(self) -> None:
        self.held = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.held:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst, pair))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in pair:
                w.transport.abort()
            self.pairs.discard(pair)

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.tasks):
            task.cancel()


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[[str], Any]]:
    made: list[Proxy] = []

    async def make(url: str) -> Proxy:
        proxy = await Proxy.start(int(url.rsplit(":", 1)[1]))
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        await proxy.close()


class NodeProcess:
    """A Node script of this file's tests: JSON lines out, JSON commands in."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, script: Any, *args: str) -> NodeProcess:
        modules = script.parent / "node_modules"
        if shutil.which("node") is None or not modules.is_dir():
            pytest.fail(f"needs node and `npm install --prefix {script.parent}`", pytrace=False)
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def expect(self, key: str) -> dict[str, Any]:
        """The next line that has ``key`` (lines before it are kept in :attr:`seen`)."""
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
            if not raw:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"the Node script ended early: {err.decode(errors='replace')}")
            line: dict[str, Any] = json.loads(raw)
            self.seen.append(line)
            if "error" in line:
                raise AssertionError(f"the Node script failed: {line}")
            if key in line:
                return line

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send(cmd="quit")
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class App:
    """A server with recovery, what its handlers saw, and a ticker."""

    def __init__(self, recovery: Any = True, **kw: Any) -> None:
        self.sio = ferrosio.AsyncServer(connection_state_recovery=recovery, **kw)
        self.connects: list[tuple[str, bool, Any]] = []
        self.disconnects: list[tuple[str, str]] = []
        self.middleware_calls = 0
        self.emitted = 0
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            recovered = sio.is_recovered(sid)
            session = await sio.get_session(sid)
            self.connects.append((sid, recovered, dict(session)))
            if not recovered:
                await sio.save_session(sid, {"first": sid})

        @sio.event
        def disconnect(sid: str, reason: str) -> None:
            self.disconnects.append((sid, reason))

        @sio.on("join")
        async def join(sid: str, room: str) -> bool:
            await sio.enter_room(sid, room)
            return True

    def count_middleware(self) -> None:
        @self.sio.use()
        def counting(sid: str, environ: dict[str, Any], auth: Any) -> None:
            self.middleware_calls += 1

    async def emit(self, count: int) -> None:
        """``tick`` i to everyone and ``rtick`` i to room ``r`` for the next ``count`` i; and
        a volatile ``vtick`` and an acked ``atick``, which are never logged."""
        for _ in range(count):
            i = self.emitted
            await self.sio.emit("tick", i)
            await self.sio.emit("rtick", i, room="r")
            await self.sio.emit("vtick", i, volatile=True)
            self.emitted += 1

    async def ticker(self, count: int) -> None:
        for _ in range(count):
            await self.emit(1)
            await asyncio.sleep(0.002)


class Recorder:
    """A ferrosio AsyncClient recording ticks (and the offsets after them)."""

    def __init__(self, **kw: Any) -> None:
        opts: dict[str, Any] = {
            "reconnection_delay": 0.05,
            "reconnection_delay_max": 0.1,
            "randomization_factor": 0,
        }
        opts.update(kw)
        self.client = ferrosio.AsyncClient(**opts)
        self.ticks: list[int] = []
        self.rticks: list[int] = []
        self.tick_args: list[tuple[Any, ...]] = []
        self.vtick_args: list[tuple[Any, ...]] = []
        self.connects: list[tuple[str | None, bool]] = []
        c = self.client

        @c.event
        def connect() -> None:
            self.connects.append((c.sid, c.recovered))

        @c.on("tick")
        def tick(n: int, *rest: Any) -> None:
            self.ticks.append(n)
            self.tick_args.append(rest)

        @c.on("rtick")
        def rtick(n: int, *rest: Any) -> None:
            self.rticks.append(n)

        @c.on("vtick")
        def vtick(*args: Any) -> None:
            self.vtick_args.append(args)

    async def connect(self, url: str, transports: list[str] | None = None) -> None:
        await self.client.connect(url, transports=transports or ["websocket"], wait_timeout=5)
        await self.client.call("join", "r", timeout=5)

    async def reconnected(self, count: int) -> tuple[str | None, bool]:
        await until(lambda: len(self.connects) >= count, "a reconnection")
        return self.connects[count - 1]

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


async def until(pred: Callable[[], object], what: str) -> None:
    await wait_until(pred, WAIT, what)


@pytest.fixture
async def recorders() -> AsyncIterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(**kw: Any) -> Recorder:
        r = Recorder(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.close()


# ----------------------------------------------------------------- the official client ----
NODE_MODES = {
    # transports -> how the connection is lost in turn: a network loss (both TCP legs
    # aborted) or the client closing its Engine.IO connection. Over polling, a network loss
    # is only seen by the server at its ping timeout (so the client would come back before
    # its session was kept, as with Node): the client's own close only.
    "websocket": ["cut", "close", "cut", "close"],
    "polling": ["close", "close"],
    "polling,websocket": ["cut", "close", "cut"],
}


@pytest.mark.parametrize("transports", list(NODE_MODES))
async def test_official_client_gets_every_missed_packet(
    make_server: Any, proxies: Any, transports: str
) -> None:
    app = App()
    url = await make_server(app.sio)
    proxy = await proxies(url)
    node = await NodeProcess.start(NODE_CLIENT, proxy.url, transports)
    total = 800
    try:
        first = await node.expect("connect")
        assert first["recovered"] is False
        await node.expect("joined")
        ticker = asyncio.ensure_future(app.ticker(total))
        losses = NODE_MODES[transports]
        for k, how in enumerate(losses):
            await until(lambda k=k: app.emitted >= (k + 1) * total // (len(losses) + 2), "ticks")
            if how == "cut":
                proxy.cut()
            else:
                node.send(cmd="close")
            back = await node.expect("connect")
            assert back == {"connect": first["connect"], "recovered": True}, (how, node.seen)
        await asyncio.wait_for(ticker, WAIT)

        async def report() -> dict[str, Any]:
            node.send(cmd="report")
            return (await node.expect("report"))["report"]

        for _ in range(int(WAIT / 0.05)):
            got = await report()
            if len(got["ticks"]) >= total and len(got["rticks"]) >= total:
                break
            await asyncio.sleep(0.05)
        assert got["ticks"] == list(range(total)), "every broadcast, in order, once"
        assert got["rticks"] == list(range(total)), "every packet to its room, in order, once"
        assert got["id"] == first["connect"]
        assert all(isinstance(rest[0], str) and len(rest) == 1 for rest in got["args"])
    finally:
        await node.close()
    sid = first["connect"]
    # the connect handler told the new connection from the recovered ones, whose session
    # data came back
    assert app.connects[0] == (sid, False, {})
    assert app.connects[1:] == [(sid, True, {"first": sid})] * len(NODE_MODES[transports])


# --------------------------------------------------------------- ferrosio's AsyncClient ----
async def test_async_client_recovers_against_ferrosio(
    make_server: Any, proxies: Any, recorders: Any
) -> None:
    app = App()
    url = await make_server(app.sio)
    proxy = await proxies(url)
    r = recorders()
    await r.connect(proxy.url)
    sid = r.client.sid
    assert r.connects == [(sid, False)]
    total = 600
    ticker = asyncio.ensure_future(app.ticker(total))
    for k in range(3):
        await until(lambda k=k: app.emitted >= (k + 1) * total // 5, "ticks")
        proxy.cut()
        assert await r.reconnected(k + 2) == (sid, True)
    await asyncio.wait_for(ticker, WAIT)
    await until(lambda: len(r.ticks) >= total and len(r.rticks) >= total, "every tick")
    assert r.ticks == list(range(total))
    assert r.rticks == list(range(total))
    assert "r" in app.sio.rooms(sid)
    # the offset is the last argument of logged events (as socket.io-client shows it), and
    # volatile ones have none
    assert all(len(rest) == 1 and isinstance(rest[0], str) for rest in r.tick_args)
    assert all(len(args) == 1 for args in r.vtick_args)


async def test_held_back_client_gets_what_was_emitted_meanwhile(
    make_server: Any, proxies: Any, recorders: Any
) -> None:
    app = App()
    app.count_middleware()
    url = await make_server(app.sio)
    proxy = await proxies(url)
    r = recorders()
    await r.connect(proxy.url)
    sid = r.client.sid
    await app.emit(10)
    await until(lambda: len(r.ticks) == 10, "ticks")
    proxy.cut(hold=True)
    await until(lambda: len(app.disconnects) == 1, "the server to see the loss")
    assert app.disconnects[0][0] == sid
    assert app.disconnects[0][1] in ("transport error", "transport close")
    await app.emit(50)
    direct: list[tuple[Any, ...]] = []
    r.client.on("direct", lambda *args: direct.append(args))
    await app.sio.emit("direct", "for the lost sid", to=sid)  # to a socket that is away

    def stats() -> dict[str, int]:
        got = app.sio.recovery_stats()
        assert got is not None
        return got

    # the engine applies the emits on its own thread: wait for it to have logged them all
    await until(lambda: stats()["packets"] == 121, "the emits logged")
    assert stats()["sessions"] == 1 and stats()["session_data"] == 1
    proxy.release()
    assert await r.reconnected(2) == (sid, True)
    await until(lambda: len(r.ticks) == 60 and len(r.rticks) == 60, "the missed ticks")
    assert r.ticks == list(range(60)) and r.rticks == list(range(60))
    await until(lambda: direct, "the emit to its sid")
    assert direct[0][0] == "for the lost sid"
    assert r.vtick_args[10:] == [], "volatile packets are not replayed"
    assert app.middleware_calls == 1, "skip_middlewares: not run for a recovered socket"
    assert app.connects[1] == (sid, True, {"first": sid})


async def test_middlewares_run_on_recovery_unless_skipped(
    make_server: Any, proxies: Any, recorders: Any
) -> None:
    app = App({"skip_middlewares": False})
    app.count_middleware()
    url = await make_server(app.sio)
    proxy = await proxies(url)
    r = recorders()
    await r.connect(proxy.url)
    await app.emit(1)
    await until(lambda: r.ticks == [0], "a tick")
    proxy.cut()
    assert (await r.reconnected(2))[1] is True
    assert app.middleware_calls == 2


async def test_expired_session_gives_a_new_one(
    make_server: Any, proxies: Any, recorders: Any
) -> None:
    app = App({"max_disconnection_duration": 0.2})
    url = await make_server(app.sio)
    proxy = await proxies(url)
    r = recorders()
    await r.connect(proxy.url)
    sid = r.client.sid
    await app.emit(3)
    await until(lambda: len(r.ticks) == 3, "ticks")
    proxy.cut(hold=True)
    await until(lambda: len(app.disconnects) == 1, "the server to see the loss")
    await asyncio.sleep(0.5)  # past max_disconnection_duration
    proxy.release()
    new_sid, recovered = await r.reconnected(2)
    assert recovered is False and new_sid != sid
    assert app.connects[1] == (new_sid, False, {})
    assert not app.sio.is_recovered(new_sid)


async def test_missed_packets_bound(make_server: Any, proxies: Any, recorders: Any) -> None:
    """``max_missed_packets``: a client that missed exactly that many recovers; one that
    missed more gets a new session (none of them replayed)."""
    app = App({"max_missed_packets": 6})
    url = await make_server(app.sio)
    proxy = await proxies(url)
    r = recorders()
    await r.connect(proxy.url)
    sid = r.client.sid
    await app.emit(1)
    await until(lambda: len(r.ticks) == 1, "a tick")
    proxy.cut(hold=True)
    await until(lambda: len(app.disconnects) == 1, "the loss")
    await app.emit(3)  # 3 ticks and 3 rticks: 6 packets for this client
    proxy.release()
    assert await r.reconnected(2) == (sid, True)
    await until(lambda: len(r.ticks) == 4, "the missed ticks")
    proxy.cut(hold=True)
    await until(lambda: len(app.disconnects) == 2, "the second loss")
    await app.emit(4)  # 8 packets: more than the bound
    proxy.release()
    new_sid, recovered = await r.reconnected(3)
    assert recovered is False and new_sid != sid
    assert r.ticks == [0, 1, 2, 3], "nothing of a session that could not be recovered whole"


async def test_sessions_bound_forgets_the_oldest(
    make_server: Any, proxies: Any, recorders: Any
) -> None:
    app = App({"max_sessions": 1})
    url = await make_server(app.sio)
    proxy_a, proxy_b = await proxies(url), await proxies(url)
    a, b = recorders(), recorders()
    await a.connect(proxy_a.url)
    await b.connect(proxy_b.url)
    await app.emit(1)
    await until(lambda: len(a.ticks) == 1 and len(b.ticks) == 1, "a tick each")
    proxy_a.cut(hold=True)
    await until(lambda: len(app.disconnects) == 1, "a's loss")
    proxy_b.cut(hold=True)
    await until(lambda: len(app.disconnects) == 2, "b's loss")
    stats = app.sio.recovery_stats()
    assert stats is not None and stats["sessions"] == 1 and stats["session_data"] == 1
    proxy_a.release()
    proxy_b.release()
    assert (await a.reconnected(2))[1] is False, "the oldest session was forgotten"
    assert (await b.reconnected(2))[1] is True


async def test_log_size_bound(make_server: Any, proxies: Any, recorders: Any) -> None:
    app = App({"max_log_size": 400})
    url = await make_server(app.sio)
    proxy = await proxies(url)
    r = recorders()
    await r.connect(proxy.url)
    sid = r.client.sid
    await app.emit(1)
    await until(lambda: len(r.ticks) == 1, "a tick")
    proxy.cut(hold=True)
    await until(lambda: len(app.disconnects) == 1, "the loss")
    await app.emit(20)
    stats = app.sio.recovery_stats()
    assert stats is not None and 0 < stats["bytes"] <= 400 and stats["packets"] < 40
    proxy.release()
    new_sid, recovered = await r.reconnected(2)
    assert recovered is False and new_sid != sid, "its missed packets were dropped"


async def test_leaving_on_purpose_keeps_nothing(make_server: Any, recorders: Any) -> None:
    app = App()
    url = await make_server(app.sio)
    r = recorders()
    await r.connect(url)
    await app.emit(1)
    await until(lambda: len(r.ticks) == 1, "a tick")
    await r.client.disconnect()
    await until(lambda: len(app.disconnects) == 1, "the disconnect")
    assert app.disconnects[0][1] == "client disconnect"
    stats = app.sio.recovery_stats()
    assert stats is not None and stats["sessions"] == 0 and stats["session_data"] == 0


async def test_only_non_volatile_events_without_acks_carry_offsets(
    make_server: Any, recorders: Any
) -> None:
    app = App()
    url = await make_server(app.sio)
    r = recorders()
    got: dict[str, tuple[Any, ...]] = {}

    @r.client.on("to_one")
    def to_one(*args: Any) -> None:
        got["to_one"] = args

    @r.client.on("asked")
    def asked(*args: Any) -> str:
        got["asked"] = args
        return "ok"

    await r.connect(url)
    sid = r.client.sid
    assert sid is not None
    await app.sio.emit("to_one", 1, to=sid)  # Node's io.to(sid).emit: logged
    assert await app.sio.call("asked", 2, to=sid, timeout=5) == "ok"
    await until(lambda: len(got) == 2, "both events")
    assert len(got["to_one"]) == 2 and isinstance(got["to_one"][1], str)
    assert got["asked"] == (2,)
    stats = app.sio.recovery_stats()
    assert stats is not None and stats["packets"] == 1


async def test_off_by_default(make_server: Any, recorders: Any) -> None:
    sio = ferrosio.AsyncServer()
    url = await make_server(sio)
    r = recorders()
    got: list[tuple[Any, ...]] = []
    r.client.on("plain", lambda *args: got.append(args))
    await r.client.connect(url, transports=["websocket"], wait_timeout=5)
    await sio.emit("plain", 1)
    await until(lambda: got, "the event")
    assert got == [(1,)]
    assert sio.recovery_stats() is None
    assert not r.client.recovered


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="max_disconection"):
        ferrosio.AsyncServer(connection_state_recovery={"max_disconection_duration": 1})
    with pytest.raises(ValueError):
        ferrosio.AsyncServer(connection_state_recovery={"max_disconnection_duration": 0})
    with pytest.raises(ValueError):
        ferrosio.AsyncServer(connection_state_recovery={"max_sessions": -1})
    with pytest.raises(UnsupportedFeatureError):
        ferrosio.AsyncServer(
            connection_state_recovery=True,
            client_manager=ferrosio.AsyncRedisManager("redis://127.0.0.1:1"),
        )
    opts = ferrosio.AsyncServer(connection_state_recovery=True).connection_state_recovery
    assert opts is not None and opts.max_disconnection_duration == 120
    assert opts.skip_middlewares is True


# ------------------------------------------------- AsyncClient against the Node server ----
async def test_async_client_recovers_against_the_node_server(proxies: Any, recorders: Any) -> None:
    port = free_port()
    node = await NodeProcess.start(NODE_SERVER, str(port))
    try:
        await node.expect("listening")
        proxy = await proxies(f"http://127.0.0.1:{port}")
        r = recorders()
        await r.client.connect(proxy.url, transports=["websocket"], wait_timeout=5)
        conn = await node.expect("connection")
        assert conn["recovered"] is False and conn["connection"] == r.client.sid
        node.send(cmd="emit", count=10)
        await until(lambda: len(r.ticks) == 10 and len(r.rticks) == 10, "ticks")
        proxy.cut(hold=True)
        await node.expect("disconnect")
        node.send(cmd="emit", count=40)
        await node.expect("emitted")
        proxy.release()
        assert await r.reconnected(2) == (conn["connection"], True)
        again = await node.expect("connection")
        assert again == {"connection": conn["connection"], "recovered": True}
        await until(lambda: len(r.ticks) == 50 and len(r.rticks) == 50, "the missed ticks")
        assert r.ticks == list(range(50)) and r.rticks == list(range(50))
        assert all(len(rest) == 1 and isinstance(rest[0], str) for rest in r.tick_args)
    finally:
        await node.close()
