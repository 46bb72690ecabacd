"""Peers for the ferrosio client tests (``tests/test_client_*.py``), imported explicitly.

Real servers in their own processes, each on its own port, stoppable and restartable on that
same port (the reconnection tests kill them):

- ``ferrosio``: ``examples/reference_app.py`` (../shared/reference/CONTRACT.md);
- ``node``: the official ``socket.io`` 4.x server running ``../shared/reference/node_app.js``
  (``make node-deps`` installs it into ``.deps/node``; ``NODE_PATH`` may point elsewhere);
- short-heartbeat servers (ping every 0.3 s, timeout 0.5 s) of both kinds, inline below, for
  the dead-server tests.

Everything listens on 127.0.0.1. Waits are bounded and only guard against hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FERROSIO_SHARED", REPO.parent / "shared")).resolve()
HOST = "127.0.0.1"
NODE_MODULES = Path(os.environ.get("NODE_PATH") or REPO / ".deps" / "node" / "node_modules")
STARTUP_TIMEOUT = float(os.environ.get("FERROSIO_TEST_STARTUP_TIMEOUT", "60"))
WAIT = 15.0  # seconds: the bound of every wait for something that should happen

SERVER_KINDS = ["ferrosio", "node"]
TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "polling+websocket": ["polling", "websocket"],
}

SHORT_PING_PY = """
import sys
import ferrosio

sio = ferrosio.AsyncServer(ping_interval=0.3, ping_timeout=0.5)


@sio.on("echo")
def echo(sid, *args):
    return args


ferrosio.run(sio, host="127.0.0.1", port=int(sys.argv[1]))
"""

SHORT_PING_JS = """
const { Server } = require("socket.io");
const port = parseInt(process.argv[process.argv.length - 1], 10);
const io = new Server(port, { pingInterval: 300, pingTimeout: 500 });
io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });
});
process.on("SIGTERM", () => process.exit(0));
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def node_available() -> bool:
    return (NODE_MODULES / "socket.io").is_dir()


def _handshake_ok(port: int, timeout: float = 2.0) -> bool:
    """A polling handshake answered with an open packet."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(
                f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data or b"0{" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200") and b"0{" in data
    except OSError:
        return False


class Server:
    """A server process on a fixed port: start, kill (any signal), start again."""

    def __init__(self, kind: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.kind = kind
        self.argv = argv
        self.port = port
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (open for the server's life)
            prefix=f"ferrosio-client-test-{kind}-", suffix=".log", delete=False
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited early:\n{self.log_text()}")
            if _handshake_ok(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not start:\n{self.log_text()}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, the kernel resets its connections."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)

    def log_text(self) -> str:
        try:
            return Path(self.log.name).read_text("utf-8", "replace")[-5000:] or "(empty)"
        except OSError:
            return "(no log)"


def make_server(kind: str, app: str = "reference", port: int | None = None) -> Server:
    """``kind`` in SERVER_KINDS, ``app`` in (reference, short-ping); not started."""
    port = port or free_port()
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if kind == "node":
        if not node_available():
            pytest.skip(f"socket.io is not installed in {NODE_MODULES} (run `make node-deps`)")
        env["NODE_PATH"] = str(NODE_MODULES)
        if app == "reference":
            argv = ["node", str(SHARED / "reference" / "node_app.js")]
            argv += ["--port", str(port), "--host", HOST]
        else:
            argv = ["node", "-e", SHORT_PING_JS, str(port)]
    else:
        if app == "reference":
            argv = [sys.executable, str(REPO / "examples" / "reference_app.py")]
            argv += ["--port", str(port), "--host", HOST]
        else:
            argv = [sys.executable, "-c", SHORT_PING_PY, str(port)]
    return Server(kind, argv, port, env)


_SESSION: dict[str, Server] = {}


def reference_server(kind: str) -> Server:
    """The session's reference app of ``kind`` (started once, shared; never killed)."""
    srv = _SESSION.get(kind)
    if srv is None or srv.proc is None or srv.proc.poll() is not None:
        srv = make_server(kind)
        srv.start()
        _SESSION[kind] = srv
    return srv


@pytest.fixture(scope="session", autouse=True)
def _client_servers_cleanup() -> Iterator[None]:
    yield
    for srv in _SESSION.values():
        srv.close()
    _SESSION.clear()


@pytest.fixture(params=SERVER_KINDS)
def peer_kind(request: pytest.FixtureRequest) -> str:
    """Which server: ``ferrosio`` or ``node``."""
    return str(request.param)


@pytest.fixture
def ref(peer_kind: str) -> Server:
    """The shared reference app of each kind."""
    return reference_server(peer_kind)


@pytest.fixture
def own_server(peer_kind: str) -> Iterator[Server]:
    """A reference app of its own, for tests that kill it."""
    srv = make_server(peer_kind)
    srv.start()
    yield srv
    srv.close()


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[str(request.param)]


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[list[Any]]:
    """Clients a test creates are appended here and disconnected afterwards."""
    made: list[Any] = []
    yield made
    for c in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.disconnect(), 10)


async def _until(pred: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """Polls ``pred`` until it holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


Until = Callable[..., Awaitable[None]]


@pytest.fixture
def until() -> Until:
    """``await until(pred, timeout=WAIT, what=...)``: polls until ``pred()`` holds."""
    return _until


@pytest.fixture
def make_peer() -> Iterator[Callable[..., Server]]:
    """``make_peer(kind, app="reference"|"short-ping", port=None, start=True)``; closed after."""
    made: list[Server] = []

    def make(
        kind: str, app: str = "reference", port: int | None = None, start: bool = True
    ) -> Server:
        srv = make_server(kind, app, port)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in made:
        srv.close()
