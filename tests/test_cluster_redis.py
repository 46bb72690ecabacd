"""A mixed cluster on a real Redis: two ferrosio servers (``AsyncRedisManager``) and one Node
socket.io server (``@socket.io/redis-adapter`` 8.x), official npm clients connected to each,
Node's ``@socket.io/redis-emitter`` and ferrosio's ``RedisEmitter``.

The Node server, the emitter and every client live in tests/cluster/peer.mjs (driven over
stdin/stdout); ``redis-server`` is started here on a free port, never mocked. Negative
checks ("X did NOT get it") use a fence: after the broadcast under test, the same origin
broadcasts a fence to everyone; delivery from one origin is ordered (one publishing
connection, one subscription), so once a client has the fence, the broadcast under test has
reached it if it ever will.

Needs ``redis-server``, ``node`` and ``npm install --prefix tests/cluster`` (``make node-deps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import ferrosio
from _harness import HOST, TESTS, WAIT, engineio_open_packet, free_port

PEER_DIR = TESTS / "cluster"
pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.skipif(shutil.which("node") is None, reason="needs node"),
    pytest.mark.skipif(
        not (PEER_DIR / "node_modules" / "@socket.io" / "redis-adapter").is_dir(),
        reason="needs `npm install --prefix tests/cluster` (make node-deps)",
    ),
]


class RedisServer:
    """A real redis-server on a fixed free port, without persistence; killable and
    restartable on the same port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.log = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self.proc = None


class NodePeer:
    """tests/cluster/peer.mjs: the Node server of the cluster, its emitter and the clients."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self._ids = itertools.count(1)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request_id = next(self._ids)
        self.proc.stdin.write(json.dumps({"id": request_id, "op": op, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        if not line:
            raise AssertionError(f"node peer exited ({op})")
        answer = json.loads(line)
        assert answer["id"] == request_id
        assert answer["ok"], f"node peer {op}: {answer.get('error')}"
        return answer

    async def received(self, name: str) -> list[list[Any]]:
        return (await self.call("received", name=name))["events"]


class Cluster:
    def __init__(
        self,
        redis: RedisServer,
        a: ferrosio.AsyncServer,
        b: ferrosio.AsyncServer,
        urls: dict[str, str],
        node: NodePeer,
    ) -> None:
        self.redis = redis
        self.a, self.b = a, b
        self.urls = urls
        self.node = node
        self.sids: dict[str, str] = {}
        self.fences = itertools.count(1)

    async def client(self, name: str, server: str, rooms: list[str]) -> None:
        answer = await self.node.call("client", name=name, url=self.urls[server], rooms=rooms)
        self.sids[name] = answer["sid"]

    async def got(self, name: str, event: str) -> list[list[Any]]:
        return [e[1:] for e in await self.node.received(name) if e[0] == event]

    async def emit_from(
        self,
        origin: str,
        event: str,
        args: list[Any],
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        local: bool = False,
    ) -> None:
        if origin == "node":
            await self.node.call(
                "emit",
                event=event,
                args=args,
                rooms=rooms or [],
                **{"except": skip or []},
                local=local,
            )
        elif origin == "node-emitter":
            await self.node.call(
                "emitter", event=event, args=args, rooms=rooms or [], **{"except": skip or []}
            )
        elif origin == "emitter":
            await ferrosio.AsyncRedisEmitter(self.redis.url).emit(
                event, tuple(args), room=rooms or None, skip_sid=skip
            )
        else:
            sio = self.a if origin == "a" else self.b
            await sio.emit(
                event, tuple(args), room=rooms or None, skip_sid=skip, ignore_queue=local
            )

    async def bulk(
        self,
        origin: str,
        action: str,
        names: list[str],
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
    ) -> None:
        """socketsJoin/socketsLeave/disconnectSockets from `origin`."""
        if origin in ("node", "node-emitter"):
            await self.node.call(
                "bulk",
                **{
                    "from": "emitter" if origin == "node-emitter" else "node",
                    "action": action,
                    "rooms": rooms or [],
                    "except": skip or [],
                    "names": names,
                },
            )
            return
        sio = self.a if origin == "a" else self.b
        if action == "join":
            await sio.sockets_join(names, room=rooms, skip_sid=skip)
        elif action == "leave":
            await sio.sockets_leave(names, room=rooms, skip_sid=skip)
        else:
            await sio.disconnect_sockets(room=rooms, skip_sid=skip)

    async def fence(self, origin: str, timeout: float = WAIT) -> None:
        """Broadcasts a fence from `origin` and waits until every client has it."""
        tag = next(self.fences)
        await self.emit_from(origin, "fence", [tag])
        deadline = time.monotonic() + timeout
        for name in self.sids:
            while [tag] not in await self.got(name, "fence"):
                assert time.monotonic() < deadline, f"fence {tag} from {origin} missed {name}"
                await asyncio.sleep(0.02)

    async def receivers(self, event: str) -> set[str]:
        return {name for name in self.sids if await self.got(name, event)}


CLIENTS = {  # name: (server, rooms)
    "a1": ("a", ["r1"]),
    "a2": ("a", ["r2"]),
    "b1": ("b", ["r1", "r2"]),
    "b2": ("b", []),
    "n1": ("node", ["r1"]),
    "n2": ("node", ["r2"]),
}
ORIGINS = ["a", "b", "node"]


def _joiner(sio: ferrosio.AsyncServer) -> None:
    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        for room in (auth or {}).get("rooms", []):
            await sio.enter_room(sid, room)


#: What each ferrosio server's server-side handlers got: server name -> [[event, *args]].
SERVER_SIDE: dict[str, list[list[Any]]] = {}


def _server_side(sio: ferrosio.AsyncServer, name: str) -> None:
    """The ferrosio side of peer.mjs's server-side events."""
    got = SERVER_SIDE[name] = []

    @sio.on_server_side("ss-hello")
    def hello(*args: Any) -> None:
        got.append(["ss-hello", *args])

    @sio.on_server_side("ss-ask")
    async def ask(*args: Any) -> dict[str, Any]:
        got.append(["ss-ask", *args])
        return {name: list(args)}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path)
    redis.start()
    servers = []
    urls: dict[str, str] = {}
    for name in ("a", "b"):
        sio = ferrosio.AsyncServer(client_manager=ferrosio.AsyncRedisManager(redis.url))
        _joiner(sio)
        _server_side(sio, name)
        urls[name] = f"http://{HOST}:{await sio.start(HOST, 0)}"
        servers.append(sio)
    node_port = free_port()
    log_fd = os.open(tmp_path / "node-peer.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(PEER_DIR / "peer.mjs"),
        "--port",
        str(node_port),
        "--host",
        HOST,
        env={**os.environ, "REDIS_URL": redis.url},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_fd,
        start_new_session=True,
    )
    os.close(log_fd)  # the child has its own
    deadline = time.monotonic() + WAIT
    while await asyncio.to_thread(engineio_open_packet, node_port) is None:
        assert proc.returncode is None, (tmp_path / "node-peer.log").read_text()
        assert time.monotonic() < deadline, "node peer did not start"
        await asyncio.sleep(0.05)
    urls["node"] = f"http://{HOST}:{node_port}"
    c = Cluster(redis, servers[0], servers[1], urls, NodePeer(proc, node_port))
    try:
        for name, (server, rooms) in CLIENTS.items():
            await c.client(name, server, rooms)
        # Every node subscribed: a fence from each origin reaches everyone.
        for origin in ORIGINS:
            await c.fence(origin)
        yield c
    finally:
        with contextlib.suppress(Exception):
            await c.node.call("close")
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for sio in servers:
            await sio.shutdown(timeout=2)
        redis.kill()


@pytest.mark.parametrize("origin", ORIGINS)
async def test_broadcast_to_everyone_reaches_every_node(cluster: Cluster, origin: str) -> None:
    await cluster.emit_from(origin, "news", ["hello", {"n": 1, "list": [1.5, None, True]}])
    await cluster.fence(origin)
    assert await cluster.receivers("news") == set(CLIENTS)
    for name in CLIENTS:
        assert await cluster.got(name, "news") == [["hello", {"n": 1, "list": [1.5, None, True]}]]


@pytest.mark.parametrize("origin", ORIGINS)
async def test_rooms_and_except_across_nodes(cluster: Cluster, origin: str) -> None:
    await cluster.emit_from(origin, "r1", [1], rooms=["r1"])
    await cluster.emit_from(origin, "r1-not-r2", [2], rooms=["r1"], skip=["r2"])
    await cluster.emit_from(origin, "all-not-r1", [3], skip=["r1"])
    await cluster.emit_from(origin, "r1-or-r2", [4], rooms=["r1", "r2"])
    await cluster.fence(origin)
    assert await cluster.receivers("r1") == {"a1", "b1", "n1"}
    assert await cluster.receivers("r1-not-r2") == {"a1", "n1"}
    assert await cluster.receivers("all-not-r1") == {"a2", "b2", "n2"}
    assert await cluster.receivers("r1-or-r2") == {"a1", "a2", "b1", "n1", "n2"}
    assert await cluster.got("b1", "r1-or-r2") == [[4]], "once, though in both rooms"


@pytest.mark.parametrize("origin", ORIGINS)
async def test_to_a_sid_on_another_node_and_except_a_sid(cluster: Cluster, origin: str) -> None:
    for target in ("a2", "b2", "n2"):
        await cluster.emit_from(origin, f"to-{target}", [target], rooms=[cluster.sids[target]])
    await cluster.emit_from(
        origin, "not-n1-b1", [0], rooms=["r1"], skip=[cluster.sids["n1"], cluster.sids["b1"]]
    )
    await cluster.fence(origin)
    for target in ("a2", "b2", "n2"):
        assert await cluster.receivers(f"to-{target}") == {target}
    assert await cluster.receivers("not-n1-b1") == {"a1"}


@pytest.mark.parametrize("origin", ORIGINS)
async def test_local_only_stays_on_its_node(cluster: Cluster, origin: str) -> None:
    await cluster.emit_from(origin, "local", ["here"], local=True)
    for other in ORIGINS:
        await cluster.fence(other)
    on_origin = {name for name, (server, _) in CLIENTS.items() if server == origin}
    assert await cluster.receivers("local") == on_origin


@pytest.mark.parametrize("origin", ORIGINS)
async def test_binary_data_crosses(cluster: Cluster, origin: str) -> None:
    payload = [{"$bin": "00ff10"}, {"nested": [{"$bin": "0102"}], "text": "t"}]
    args = (
        payload if origin == "node" else [b"\x00\xff\x10", {"nested": [b"\x01\x02"], "text": "t"}]
    )
    await cluster.emit_from(origin, "bin", args)
    await cluster.fence(origin)
    for name in CLIENTS:
        assert await cluster.got(name, "bin") == [payload], name


@pytest.mark.parametrize("origin", ["node-emitter", "emitter"])
async def test_emitters_reach_every_node(cluster: Cluster, origin: str) -> None:
    await cluster.emit_from(origin, "job", ["done", 42])
    await cluster.emit_from(origin, "job-r2", ["r2"], rooms=["r2"])
    await cluster.emit_from(
        origin, "job-not-r1", [b"\x07" if origin == "emitter" else {"$bin": "07"}], skip=["r1"]
    )
    await cluster.fence(origin)
    assert await cluster.receivers("job") == set(CLIENTS)
    assert await cluster.got("n1", "job") == [["done", 42]]
    assert await cluster.receivers("job-r2") == {"a2", "b1", "n2"}
    assert await cluster.receivers("job-not-r1") == {"a2", "b2", "n2"}
    assert await cluster.got("a2", "job-not-r1") == [[{"$bin": "07"}]]


def test_sync_emitter_without_a_server_or_redis_raises_clearly() -> None:
    emitter = ferrosio.RedisEmitter(f"redis://{HOST}:{free_port()}/0")
    with pytest.raises(ferrosio.exceptions.FerrosioError):
        emitter.emit("x", 1)
    with pytest.raises(ValueError):
        ferrosio.AsyncRedisManager("http://not-redis")


async def test_redis_restart_under_load(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """Redis killed while broadcasts flow and started again on the same port: every node
    reconnects and resubscribes by itself, the outage is logged once and counted, and
    broadcasts flow again from every node to every node."""
    caplog.set_level(logging.WARNING, logger="ferrosio.cluster")
    stop = asyncio.Event()

    async def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await cluster.a.emit("load", n)
            await asyncio.sleep(0.005)

    loader = asyncio.create_task(load())
    try:
        await asyncio.sleep(0.2)
        cluster.redis.kill()
        deadline = time.monotonic() + WAIT
        while any((s.cluster_stats() or {}).get("connected") for s in (cluster.a, cluster.b)):
            assert time.monotonic() < deadline, "the nodes did not notice the outage"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # broadcasts during the outage: counted as dropped
        cluster.redis.start()
        deadline = time.monotonic() + WAIT
        while not all((s.cluster_stats() or {}).get("connected") for s in (cluster.a, cluster.b)):
            assert time.monotonic() < deadline, "the nodes did not reconnect"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await loader
    # Node's redis client reconnects on its own schedule: fences are retried until one
    # from every origin has reached everyone (bounded by WAIT each).
    for origin in ORIGINS:
        deadline = time.monotonic() + 2 * WAIT
        while True:
            try:
                await cluster.fence(origin, timeout=1.0)
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"broadcasts from {origin} did not resume"
    for sio in (cluster.a, cluster.b):
        stats = sio.cluster_stats()
        assert stats is not None
        assert stats["outages"] == 1, stats
        assert stats["connected"] is True
    assert (cluster.a.cluster_stats() or {})["dropped"] > 0, "the outage's broadcasts counted"
    lost = [r for r in caplog.records if "lost redis" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 2, "once per node"
    assert len(back) == 2


async def test_a_server_without_clients_still_broadcasts(cluster: Cluster) -> None:
    """A server no client ever joined (a namespace it has no socket in) forwards its
    broadcasts all the same."""
    sio = ferrosio.AsyncServer(client_manager=ferrosio.AsyncRedisManager(cluster.redis.url))
    await sio.start(HOST, 0)
    try:
        await sio.emit("from-c", {"c": True})

        async def everyone() -> bool:
            return await cluster.receivers("from-c") == set(CLIENTS)

        deadline = time.monotonic() + WAIT
        while not await everyone():
            assert time.monotonic() < deadline, await cluster.receivers("from-c")
            await asyncio.sleep(0.02)
        assert (sio.cluster_stats() or {})["published"] == 1
    finally:
        await sio.shutdown(timeout=2)


def test_other_client_managers_are_refused() -> None:
    with pytest.raises(ferrosio.exceptions.UnsupportedFeatureError, match="AsyncRedisManager"):
        ferrosio.AsyncServer(client_manager=object())


BULK_ORIGINS = ["a", "b", "node", "node-emitter"]


@pytest.mark.parametrize("origin", BULK_ORIGINS)
async def test_sockets_join_and_leave_on_every_node(cluster: Cluster, origin: str) -> None:
    await cluster.bulk(origin, "join", ["j"], rooms=["r2"], skip=[cluster.sids["b1"]])
    sender = "node" if origin == "node-emitter" else origin
    # Node applies its own socketsJoin when its request comes back from Redis, so the
    # sender's fence first: after it, every node has applied the request.
    await cluster.fence(sender)
    await cluster.emit_from(sender, "to-j", [1], rooms=["j"])
    await cluster.fence(sender)
    assert await cluster.receivers("to-j") == {"a2", "n2"}
    await cluster.bulk(origin, "leave", ["j", "r2"], rooms=["j"])
    await cluster.fence(sender)
    await cluster.emit_from(sender, "to-j-or-r2", [2], rooms=["j", "r2"])
    await cluster.emit_from(sender, "to-r1", [3], rooms=["r1"])
    await cluster.fence(sender)
    assert await cluster.receivers("to-j-or-r2") == {"b1"}, "b1 never joined j, kept r2"
    assert await cluster.receivers("to-r1") == {"a1", "b1", "n1"}


@pytest.mark.parametrize("origin", BULK_ORIGINS)
async def test_disconnect_sockets_on_every_node(cluster: Cluster, origin: str) -> None:
    gone: list[tuple[str, str]] = []
    for sio in (cluster.a, cluster.b):

        @sio.event
        async def disconnect(sid: str, reason: str) -> None:
            gone.append((sid, reason))

    await cluster.bulk(origin, "disconnect", [], rooms=["r1"], skip=[cluster.sids["b1"]])
    deadline = time.monotonic() + WAIT
    for name in ("a1", "n1"):
        while not await cluster.got(name, "__disconnect"):
            assert time.monotonic() < deadline, f"{name} was not disconnected"
            await asyncio.sleep(0.02)
        assert await cluster.got(name, "__disconnect") == [["io server disconnect"]]
    while (cluster.sids["a1"], "server disconnect") not in gone:
        assert time.monotonic() < deadline, gone
        await asyncio.sleep(0.02)
    sender = "node" if origin == "node-emitter" else origin
    del cluster.sids["a1"], cluster.sids["n1"]
    await cluster.fence(sender)  # everyone left still connected
    for name in ("a2", "b1", "b2", "n2"):
        assert await cluster.got(name, "__disconnect") == []


@pytest.mark.parametrize("server", ["a", "b"])
async def test_enter_leave_room_and_disconnect_a_client_of_another_node(
    cluster: Cluster, server: str
) -> None:
    sio = cluster.a if server == "a" else cluster.b
    other = "b2" if server == "a" else "a2"
    for target in ("n1", other):
        await sio.enter_room(cluster.sids[target], "solo")
    await sio.emit("to-solo", 1, room="solo")
    await cluster.fence(server)
    assert await cluster.receivers("to-solo") == {"n1", other}
    await sio.leave_room(cluster.sids["n1"], "solo")
    await sio.emit("to-solo-2", 2, room="solo")
    await cluster.fence(server)
    assert await cluster.receivers("to-solo-2") == {other}
    await sio.disconnect(cluster.sids["n2"])
    deadline = time.monotonic() + WAIT
    while await cluster.got("n2", "__disconnect") != [["io server disconnect"]]:
        assert time.monotonic() < deadline, "n2 was not disconnected"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------
# Requests between nodes: fetch sockets, all rooms, server-side emit, broadcast with acks.


async def fetch_from(cluster: Cluster, origin: str, **selection: Any) -> dict[str, dict[str, Any]]:
    """fetchSockets from `origin`: sid -> {rooms, handshake, data}."""
    if origin == "node":
        answer = await cluster.node.call(
            "fetch",
            rooms=selection.get("room") or [],
            **{"except": selection.get("skip_sid") or []},
        )
        return {
            s["id"]: {"rooms": set(s["rooms"]), "handshake": s["handshake"], "data": s["data"]}
            for s in answer["sockets"]
        }
    sio = cluster.a if origin == "a" else cluster.b
    found = await sio.fetch_sockets(**selection)
    return {s.sid: {"rooms": s.rooms, "handshake": s.handshake, "data": s.data} for s in found}


@pytest.mark.parametrize("origin", ORIGINS)
async def test_fetch_sockets_sees_every_node(cluster: Cluster, origin: str) -> None:
    everyone = await fetch_from(cluster, origin)
    by_name = {name: everyone[sid] for name, sid in cluster.sids.items()}
    assert set(everyone) == set(cluster.sids.values())
    for name, (server, rooms) in CLIENTS.items():
        got = by_name[name]
        assert got["rooms"] == {cluster.sids[name], *rooms}, name
        handshake = got["handshake"]
        assert handshake["auth"] == {"rooms": rooms}, name
        assert handshake["query"]["EIO"] == "4" and handshake["query"]["transport"] == "websocket"
        assert handshake["address"].endswith("127.0.0.1"), handshake["address"]
        assert isinstance(handshake["issued"], int) and isinstance(handshake["headers"], dict)
        assert got["data"] == ({"server": "node"} if server == "node" else {}), name
    in_r1 = await fetch_from(cluster, origin, room="r1", skip_sid="r2")
    assert {n for n, sid in cluster.sids.items() if sid in in_r1} == {"a1", "n1"}


async def test_remote_sockets_act_where_they_are(cluster: Cluster) -> None:
    found = {s.sid: s for s in await cluster.a.fetch_sockets(room="r2")}
    names = {sid: n for n, sid in cluster.sids.items()}
    assert {names[sid] for sid in found} == {"a2", "b1", "n2"}
    assert {names[sid] for sid, s in found.items() if s.local} == {"a2"}
    for s in found.values():
        await s.enter_room("picked")
        await s.emit("direct", names[s.sid])
    await cluster.fence("a")
    for name in ("a2", "b1", "n2"):
        assert await cluster.got(name, "direct") == [[name]]
    await cluster.emit_from("node", "to-picked", [1], rooms=["picked"])
    await cluster.fence("node")
    assert await cluster.receivers("to-picked") == {"a2", "b1", "n2"}
    await found[cluster.sids["n2"]].disconnect()
    deadline = time.monotonic() + WAIT
    while await cluster.got("n2", "__disconnect") != [["io server disconnect"]]:
        assert time.monotonic() < deadline, "n2 was not disconnected"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("origin", ORIGINS)
async def test_all_rooms_of_every_node(cluster: Cluster, origin: str) -> None:
    if origin == "node":
        rooms = set((await cluster.node.call("allRooms"))["rooms"])
    else:
        rooms = await (cluster.a if origin == "a" else cluster.b).all_rooms()
    assert rooms == {"r1", "r2", *cluster.sids.values()}


async def node_server_side(cluster: Cluster) -> list[list[Any]]:
    return (await cluster.node.call("serverSideReceived"))["events"]


@pytest.mark.parametrize("origin", ORIGINS)
async def test_server_side_emit_reaches_the_other_servers(cluster: Cluster, origin: str) -> None:
    args = ["hi", {"n": 1, "bin": b"\x00\x01"}]
    if origin == "node":
        await cluster.node.call(
            "serverSideEmit", event="ss-hello", args=["hi", {"n": 1, "bin": {"$bin": "0001"}}]
        )
    else:
        await (cluster.a if origin == "a" else cluster.b).server_side_emit("ss-hello", *args)
    others = [s for s in ORIGINS if s != origin]
    deadline = time.monotonic() + WAIT
    for other in others:
        while True:
            if other == "node":
                got = [e for e in await node_server_side(cluster) if e[0] == "ss-hello"]
                expected: list[Any] = [["ss-hello", "hi", {"n": 1, "bin": {"$bin": "0001"}}]]
            else:
                got = [e for e in SERVER_SIDE[other] if e[0] == "ss-hello"]
                expected = [["ss-hello", *args]]
                if origin == "node":
                    # Node's adapter sends this request as JSON: a Buffer in its JSON form.
                    node_bin = {"type": "Buffer", "data": [0, 1]}
                    expected = [["ss-hello", "hi", {"n": 1, "bin": node_bin}]]
            if got:
                assert got == expected, other
                break
            assert time.monotonic() < deadline, f"{other} did not get the server-side emit"
            await asyncio.sleep(0.02)
    if origin != "node":
        assert SERVER_SIDE[origin] == [], "not to itself"


@pytest.mark.parametrize("origin", ORIGINS)
async def test_server_side_call_collects_every_server(cluster: Cluster, origin: str) -> None:
    if origin == "node":
        answer = await cluster.node.call("serverSideCall", event="ss-ask", args=[7])
        assert "error" not in answer, answer
        responses = answer["responses"]
    else:
        sio = cluster.a if origin == "a" else cluster.b
        responses = await sio.server_side_call("ss-ask", 7)
    expected = [{"node": [7]} if s == "node" else {s: [7]} for s in ORIGINS if s != origin]
    assert sorted(responses, key=json.dumps) == sorted(expected, key=json.dumps)


@pytest.mark.parametrize("origin", ORIGINS)
async def test_broadcast_with_acks_collects_from_every_node(cluster: Cluster, origin: str) -> None:
    async def call(rooms: list[str]) -> list[Any]:
        if origin == "node":
            answer = await cluster.node.call(
                "callAll", event="question", args=["q"], rooms=rooms, timeout=5000
            )
            assert "error" not in answer, answer
            return list(answer["responses"])
        sio = cluster.a if origin == "a" else cluster.b
        if rooms:
            return await sio.call("question", "q", room=rooms, timeout=5)
        return await sio.call("question", "q", broadcast=True, timeout=5)

    assert sorted(await call(["r1"])) == ["a1:q", "b1:q", "n1:q"]
    assert sorted(await call([])) == sorted(f"{n}:q" for n in CLIENTS)


async def test_a_request_waits_for_no_one_missing_and_times_out_naming_them(
    cluster: Cluster,
) -> None:
    # ss-never: Node records it and never answers; ferrosio b has no handler (no answer).
    with pytest.raises(ferrosio.exceptions.TimeoutError, match="0 of 2 other servers"):
        await cluster.a.server_side_call("ss-never", 1, timeout=0.5)
    stats = cluster.a.cluster_stats()
    assert stats is not None and stats["requests_timed_out"] == 1


async def test_pending_requests_are_bounded(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ferrosio._cluster_requests, "MAX_PENDING_REQUESTS", 1)
    first = asyncio.ensure_future(cluster.a.server_side_call("ss-never", timeout=2))
    await asyncio.sleep(0)  # the first one is pending
    with pytest.raises(ferrosio.exceptions.BufferFullError, match="already wait"):
        await cluster.a.server_side_call("ss-never", timeout=2)
    with pytest.raises(ferrosio.exceptions.TimeoutError):
        await first


def numsub(redis: RedisServer, channel: str) -> int:
    with socket.create_connection((HOST, redis.port), WAIT) as s:
        s.sendall(f"PUBSUB NUMSUB {channel}\r\n".encode())
        reply = s.recv(256).split(b"\r\n")
    # *2 / $len / channel / :count
    return int(reply[3][1:])


async def test_a_frozen_node_times_out_and_a_killed_one_is_not_waited_for(
    cluster: Cluster,
) -> None:
    channel = "socket.io-request#/#"
    assert numsub(cluster.redis, channel) == 3
    cluster.node.proc.send_signal(signal.SIGSTOP)  # subscribed, but never answers
    try:
        with pytest.raises(ferrosio.exceptions.TimeoutError, match="1 of 2"):
            await cluster.b.all_rooms(timeout=0.5)
        # Killed while a request waits for it: that request still ends, at its deadline.
        waiting = asyncio.ensure_future(cluster.a.fetch_sockets(timeout=2))
        deadline = time.monotonic() + WAIT
        while not any(e.expected == 2 for e in cluster.a._cluster._pending.values()):
            assert time.monotonic() < deadline, "the request was not counted"
            await asyncio.sleep(0.01)
    finally:
        cluster.node.proc.kill()  # SIGKILL: Redis drops its subscriptions
        cluster.node.proc.send_signal(signal.SIGCONT)
    await cluster.node.proc.wait()
    with pytest.raises(
        ferrosio.exceptions.TimeoutError, match=r"1 of 2 other servers answered.*1 missing"
    ):
        await waiting
    deadline = time.monotonic() + WAIT
    while numsub(cluster.redis, channel) != 2:
        assert time.monotonic() < deadline, "redis kept the dead node's subscription"
        await asyncio.sleep(0.02)
    # Every client lived in the killed process (their sockets close as it dies): what
    # matters is that the answer comes from the two servers left, without waiting.
    ferrosio_sids = {cluster.sids[n] for n in ("a1", "a2", "b1", "b2")}
    found = {s.sid for s in await cluster.a.fetch_sockets(timeout=WAIT)}
    assert found <= ferrosio_sids
    assert await cluster.b.server_side_call("ss-ask", 1, timeout=WAIT) == [{"a": [1]}]
    for sio in (cluster.a, cluster.b):
        stats = sio.cluster_stats()
        assert stats is not None and stats["requests_timed_out"] == 1


async def test_requests_during_a_redis_outage_fail_at_once_and_are_counted(
    cluster: Cluster,
) -> None:
    cluster.redis.kill()
    deadline = time.monotonic() + WAIT
    while (cluster.a.cluster_stats() or {}).get("connected"):
        assert time.monotonic() < deadline, "a did not notice the outage"
        await asyncio.sleep(0.02)
    with pytest.raises(ferrosio.exceptions.ClusterError, match="redis is unreachable"):
        await cluster.a.fetch_sockets(timeout=WAIT)
    # A broadcast with acks reaches this server's clients only; their answers complete it.
    assert await cluster.a.call("question", "q", room="r1", timeout=WAIT) == ["a1:q"]
    stats = cluster.a.cluster_stats()
    assert stats is not None and stats["requests_failed"] == 2, stats
    cluster.redis.start()
    deadline = time.monotonic() + WAIT
    while not all((s.cluster_stats() or {}).get("connected") for s in (cluster.a, cluster.b)):
        assert time.monotonic() < deadline, "the nodes did not reconnect"
        await asyncio.sleep(0.02)
    # Node's client resubscribes on its own schedule: counted or not, it answers or is not
    # waited for.
    found = {s.sid for s in await cluster.a.fetch_sockets(timeout=WAIT)}
    assert {cluster.sids[n] for n in ("a1", "a2", "b1", "b2")} <= found
