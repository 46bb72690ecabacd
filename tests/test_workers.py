"""``ferrosio.run(sio, workers=4)`` on one port, sharing state over a real redis-server, with
no sticky balancer: connections land wherever the kernel's ``SO_REUSEPORT`` puts them.

The app (tests/apps/workers_app.py) names, in every answer, the pid of the worker that
handled it, and serves ``GET /pid`` (the worker the kernel gave that connection to). A
session lives on one worker (the one its handshake reached); the workers close every
connection after one request, so each polling request of a session is a new connection that
the kernel places anew: most land on another worker and are handed to the owner. Clients:
polling-only python-socketio clients, raw HTTP polling on fresh connections, and official npm
clients (polling only, and polling upgraded to WebSocket: the upgrade is a new connection).

Kernel placement is random, so "some request landed elsewhere" is shown over many requests:
with 4 workers, 40 fresh connections all reaching one worker has probability 4^-39.

Needs ``redis-server`` and ``node`` with ``npm install --prefix tests/node``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

import ferrosio
from _harness import HOST, TESTS, WAIT, ServerProcess, _log_dir
from test_cluster_redis import RedisServer

WORKERS = 4
pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers need Linux"),
]
NODE_CLIENT = TESTS / "node" / "workers.mjs"
node_client = pytest.mark.skipif(
    shutil.which("node") is None
    or not (TESTS / "node" / "node_modules" / "socket.io-client").is_dir(),
    reason="needs node and `npm install --prefix tests/node`",
)


def http_get(
    port: int, target: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (so the kernel places it anew); the whole answer."""
    method = "POST" if body is not None else "GET"
    head = f"{method} {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if body is not None:
        head += f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
    with socket.create_connection((HOST, port), timeout=WAIT) as sock:
        sock.sendall(head.encode() + b"\r\n" + (body or b""))
        data = b""
        while True:  # the workers close after one response
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    raw_head, _, payload = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        payload = _unchunk(payload)
    return int(lines[0].split()[1]), headers, payload


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def worker_stats(port: int, at_least: int) -> dict[int, dict[str, int]]:
    """The workers' ``worker_stats()`` by pid, as ``GET /pid`` on fresh connections meets them
    (until ``at_least`` distinct workers are seen, or the wait's bound)."""
    seen: dict[int, dict[str, int]] = {}
    deadline = time.monotonic() + WAIT * 2
    while True:
        try:
            status, _, body = http_get(port, "/pid")
        except OSError:
            status = 0
        if status == 200:
            answer = json.loads(body)
            seen[answer["pid"]] = answer["stats"]
        if len(seen) >= at_least or time.monotonic() > deadline:
            return seen
        time.sleep(0.005)


def worker_pids(port: int, at_least: int) -> set[int]:
    return set(worker_stats(port, at_least))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer(_log_dir())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def workers(redis: RedisServer) -> Iterator[ServerProcess]:
    app = str(TESTS / "apps" / "workers_app.py")
    srv = ServerProcess(
        "workers", [sys.executable, app, "--redis", redis.url, "--workers", str(WORKERS)]
    )
    srv.start()
    pids = worker_pids(srv.port, WORKERS)
    assert len(pids) == WORKERS, f"all workers up: {pids}\n{srv.describe()}"
    yield srv
    srv.stop()


def packets(payload: bytes) -> list[str]:
    return payload.decode().split("\x1e") if payload else []


BASE = "/socket.io/?EIO=4&transport=polling"


def raw_session(port: int) -> tuple[str, int]:
    """A Socket.IO session over raw polling, every request on a fresh connection: its polling
    URL and the pid of its owner (from the ``hello`` its worker sends on connect)."""
    status, headers, body = http_get(port, BASE)
    assert status == 200
    assert headers.get("connection") == "close", "one request per connection among workers"
    url = f"{BASE}&sid={json.loads(body[1:])['sid']}"
    assert http_get(port, url, b"40")[0] == 200
    status, _, body = http_get(port, url)
    assert status == 200 and packets(body)[0].startswith("40")
    [hello] = [p for p in packets(body) if p.startswith("42")] or [
        p for p in packets(http_get(port, url)[2]) if p.startswith("42")
    ]
    return url, json.loads(hello[2:])[1]["pid"]


def raw_echo(port: int, url: str, n: int) -> str:
    """One echo with an ack over raw polling: the packet that answers it."""
    assert http_get(port, url, f'42{n}["echo",{n}]'.encode())[0] == 200
    status, _, body = http_get(port, url)
    assert status == 200
    [ack] = packets(body)
    return ack


def test_raw_polling_requests_of_one_session_land_on_any_worker_and_reach_its_owner(
    workers: ServerProcess,
) -> None:
    port = workers.port
    url, owner = raw_session(port)
    # 40 more round trips, each request on its own connection: wherever they land, the
    # owner answers every one, in order.
    for n in range(40):
        assert raw_echo(port, url, n) == f'43{n}[{{"data":{n},"pid":{owner}}}]'
    # Those requests landed on other workers too, and were handed to the owner.
    stats = worker_stats(port, WORKERS)
    assert len(stats) == WORKERS
    assert sorted(s["worker"] for s in stats.values()) == list(range(WORKERS))
    assert all(s["workers"] == WORKERS for s in stats.values())
    assert stats[owner]["taken_in"] >= 1, stats
    assert sum(s["handed_out"] for s in stats.values()) == sum(
        s["taken_in"] for s in stats.values()
    )


async def _python_clients(port: int, count: int) -> list[socketio.AsyncClient]:
    clients = []
    for _ in range(count):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(f"http://{HOST}:{port}", transports=["polling"], wait_timeout=WAIT)
        clients.append(client)
    return clients


async def test_polling_only_python_clients_connect_emit_ack_and_broadcast_across_workers(
    workers: ServerProcess,
) -> None:
    clients = await _python_clients(workers.port, 12)
    try:
        got: list[asyncio.Queue[Any]] = []
        for client in clients:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            client.on("bcast", queue.put_nowait)
            got.append(queue)
        owners = []
        for n, client in enumerate(clients):
            who = await client.call("whoami", timeout=WAIT)
            echo = await client.call("echo", {"n": n}, timeout=WAIT)
            assert echo == {"data": {"n": n}, "pid": who["pid"]}
            owners.append(who["pid"])
        assert len(set(owners)) > 1, "sessions on several workers"
        # From one worker, through Redis, to the clients of all of them.
        assert await clients[0].call("bcast", "hi", timeout=WAIT) is True
        for queue in got:
            message = await asyncio.wait_for(queue.get(), WAIT)
            assert message == {"data": "hi", "pid": owners[0]}
    finally:
        for client in clients:
            await client.disconnect()


def _node(port: int, transports: str, count: int) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(NODE_CLIENT), f"http://{HOST}:{port}", transports, str(count)],
        capture_output=True,
        timeout=60,
        cwd=TESTS / "node",
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


@node_client
@pytest.mark.parametrize("transports", ["polling", "polling,websocket"])
def test_official_npm_clients_across_workers(workers: ServerProcess, transports: str) -> None:
    result = _node(workers.port, transports, 12)
    clients = result["clients"]
    for n, client in enumerate(clients):
        assert client["hello"] == client["whoami"], "one worker owns the session throughout"
        assert client["echo"] == {"data": {"n": n}, "pid": client["whoami"]}
        expected = "websocket" if "websocket" in transports else "polling"
        assert client["transport"] == expected
    assert len({c["whoami"] for c in clients}) > 1, "sessions on several workers"
    assert result["published"] is True
    assert all(b == {"data": "from-node", "pid": clients[0]["whoami"]} for b in result["bcasts"])


async def test_a_killed_worker_is_replaced_and_its_clients_reconnect(
    workers: ServerProcess,
) -> None:
    port = workers.port
    clients = []
    for _ in range(12):
        client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1)
        await client.connect(f"http://{HOST}:{port}", transports=["polling"], wait_timeout=WAIT)
        clients.append(client)
    # Raw sessions make no request unless the test does: none is in flight at the kill.
    raw = [await asyncio.to_thread(raw_session, port) for _ in range(12)]
    try:
        owners = [(await c.call("whoami", timeout=WAIT))["pid"] for c in clients]
        victim = owners[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while alive(victim) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not alive(victim)
        # The other workers' sessions are untouched; the victim's are gone (400: unknown
        # session, wherever the request lands and whether or not its replacement is up).
        for n, (url, owner) in enumerate(raw):
            if owner == victim:
                status, _, body = await asyncio.to_thread(http_get, port, url)
                assert status == 400, body
            else:
                ack = await asyncio.to_thread(raw_echo, port, url, n)
                assert ack == f'43{n}[{{"data":{n},"pid":{owner}}}]'
        # Every client works again; the victim's reconnected to a live worker. (A client of
        # another worker may have reconnected too: a request of its own that was in the
        # victim's accept queue at the kill was reset.)
        for client in clients:
            deadline = time.monotonic() + WAIT * 2
            while True:
                try:
                    who = await client.call("whoami", timeout=2)
                    break
                except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                    assert time.monotonic() < deadline, "the client came back"
                    await asyncio.sleep(0.1)
            assert who["pid"] != victim
        # The supervisor started a replacement: four workers again, the victim not among them.
        pids = await asyncio.to_thread(worker_pids, port, WORKERS)
        assert len(pids) == WORKERS and victim not in pids
    finally:
        for client in clients:
            await client.disconnect()


def test_sigterm_to_the_supervisor_stops_every_worker(workers: ServerProcess) -> None:
    pids = worker_pids(workers.port, WORKERS)
    assert workers.proc is not None
    os.kill(workers.proc.pid, signal.SIGTERM)  # the supervisor only, not its group
    assert workers.proc.wait(timeout=WAIT * 2) == 0
    for pid in pids:
        deadline = time.monotonic() + WAIT
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    log = Path(workers.log_path).read_text()
    assert "all workers stopped" in log


def test_a_worker_that_cannot_start_stops_the_supervisor(redis: RedisServer) -> None:
    app = str(TESTS / "apps" / "workers_app.py")
    argv = [sys.executable, app, "--redis", redis.url, "--workers", "2", "--fail-startup"]
    proc = subprocess.run(
        [*argv, "--port", "0", "--host", HOST], capture_output=True, timeout=WAIT * 4
    )
    log = proc.stderr.decode()
    assert proc.returncode != 0, log
    assert "exited 5 times right after starting" in log, log
    assert "all workers stopped" in log


def test_workers_need_redis_plain_http_and_a_sane_count() -> None:
    plain = ferrosio.AsyncServer()
    assert plain.worker_stats() is None
    with pytest.raises(ValueError, match="AsyncRedisManager"):
        ferrosio.run(plain, HOST, 0, workers=2)
    clustered = ferrosio.AsyncServer(client_manager=ferrosio.AsyncRedisManager("redis://x:1/0"))
    with pytest.raises(ValueError, match="TLS"):
        ferrosio.run(clustered, HOST, 0, workers=2, ssl_certfile="cert.pem", ssl_keyfile="k.pem")
    for bad in (0, 65):
        with pytest.raises(ValueError, match="between 1 and 64"):
            ferrosio.run(clustered, HOST, 0, workers=bad)
