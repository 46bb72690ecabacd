"""Server processes for the tests: which command runs which app, free ports, readiness, logs.

Private to tests/: conftest.py builds the fixtures on it; test files import only constants,
parametrization helpers and type names from here (``from _harness import ...``), never
fixtures.

Every server is a separate process listening on 127.0.0.1, started with
``--port N --host 127.0.0.1`` on a free port, in its own process group (so stopping it
reaches its children too), with stdout and stderr in one log file. It is ready when it
answers an Engine.IO handshake (WebSocket, else long-polling for a polling-only app). Every
wait is bounded; none is a timing assertion.

Apps by kind (see tests/README.md):

  app          ferrosio                          node (official socket.io 4.x)
  reference    examples/reference_app.py         $FERROSIO_SHARED/reference/node_app.js
  suite        tests/apps/suite_server.py        $FERROSIO_SHARED/protocol/suite-servers/
                                                     node_suite_server.js
  short-ping   tests/apps/short_ping_app.py      tests/apps/short_ping_app.js
  http         tests/apps/http_app.py            -

  psio (python-socketio, to validate the tests themselves): the reference and suite apps
  from $FERROSIO_SHARED (reference/psio_app.py, protocol/suite-servers/psio_suite_server.py).

$FERROSIO_SHARED is the project's shared material (reference apps, protocol notes), checked
out beside the repository as ../shared; it is not part of this repository.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
APPS = TESTS / "apps"
SHARED = Path(os.environ.get("FERROSIO_SHARED", REPO.parent / "shared")).resolve()
HOST = "127.0.0.1"
# socket.io (and engine.io) for the Node servers: `make node-deps` installs them here
NODE_MODULES = Path(os.environ.get("NODE_PATH") or REPO / ".deps" / "node" / "node_modules")

# Seconds a server gets to answer its first Engine.IO handshake. Generous: CI machines are
# small and may be compiling at the same time.
STARTUP_TIMEOUT = float(os.environ.get("FERROSIO_TEST_STARTUP_TIMEOUT", "60"))
WAIT = 15.0  # seconds: the bound of every wait for something that should happen

# The server the server-side tests (contract, raw protocol, raw HTTP) run against.
SERVER_KIND = os.environ.get("FERROSIO_TEST_SERVER", "ferrosio").strip().lower() or "ferrosio"
KNOWN_KINDS = ("ferrosio", "node", "psio")

# The servers the ferrosio client tests (test_client_*.py) run against, whatever SERVER_KIND.
PEER_KINDS = ["ferrosio", "node"]

# ---------------------------------------------------------------------------------------------
# Transports of the server-side contract tests: the client's `transports` option as a comma
# list. A mode listed in PENDING_ON_FERROSIO is expected to fail on ferrosio for now (xfail,
# non-strict), and only on ferrosio; switching a mode on = deleting it from the dict.
# ---------------------------------------------------------------------------------------------
TRANSPORT_MODES = ["websocket", "polling", "polling,websocket"]
PENDING_ON_FERROSIO: dict[str, str] = {}

# Transports of the client tests: test id -> the ferrosio client's `transports` list.
CLIENT_TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "polling+websocket": ["polling", "websocket"],
}

Until = Callable[..., Awaitable[None]]  # the `until` fixture's type


def transport_params() -> list[Any]:
    """TRANSPORT_MODES as pytest params (ids with `+` for `,`), pending ones xfail."""
    params = []
    for mode in TRANSPORT_MODES:
        marks = []
        if SERVER_KIND == "ferrosio" and mode in PENDING_ON_FERROSIO:
            marks.append(pytest.mark.xfail(reason=PENDING_ON_FERROSIO[mode], strict=False))
        params.append(pytest.param(mode, id=mode.replace(",", "+"), marks=marks))
    return params


# ---------------------------------------------------------------------------------------------
# ports and readiness probes
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _read_head(sock: socket.socket) -> tuple[bytes, bytearray] | None:
    """HTTP status line + headers, and whatever followed them; None if closed first."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk or len(buf) > 65536:
            return None
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    return head, bytearray(rest)


def ws_open_packet(port: int, timeout: float = 3.0, path: str = "/socket.io/") -> dict | None:
    """Engine.IO handshake over a raw WebSocket; returns the open packet's JSON, or None.

    Plain sockets on purpose (no client library between the harness and the server's first
    bytes): HTTP 101, then one text frame `0{...}`.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(
                (
                    f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\n"
                    f"Host: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            answer = _read_head(s)
            if answer is None:
                return None
            head, buf = answer
            status = head.split(b"\r\n", 1)[0].split()
            if len(status) < 2 or status[1] != b"101":
                return None
            b0, b1 = _recv_exact(s, 2, buf)
            if b0 != 0x81:  # FIN + text frame
                return None
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(_recv_exact(s, 2, buf), "big")
            elif n == 127:
                n = int.from_bytes(_recv_exact(s, 8, buf), "big")
            payload = _recv_exact(s, n, buf)
            if not payload.startswith(b"0"):
                return None
            return dict(json.loads(payload[1:]))
    except (OSError, ValueError, ConnectionError):
        return None


def polling_open_packet(port: int, timeout: float = 3.0, path: str = "/socket.io/") -> dict | None:
    """Engine.IO handshake over long-polling; returns the open packet's JSON, or None.

    The session it opens is left to expire on the server (it cannot be closed without a
    second request); the harness uses it only for apps that refuse WebSocket.
    """
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(
                f"GET {path}?EIO=4&transport=polling HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or not body.startswith(b"0{"):
            return None
        return dict(json.loads(body[1:].split(b"\x1e", 1)[0]))
    except (OSError, ValueError):
        return None


def engineio_open_packet(port: int) -> dict | None:
    """The open packet of a WebSocket handshake, else of a polling one, else None."""
    return ws_open_packet(port) or polling_open_packet(port)


# ---------------------------------------------------------------------------------------------
# server processes
# ---------------------------------------------------------------------------------------------
_LOG_DIR: Path | None = None
_LOG_NUMBERS = itertools.count(1)
LIVE: list[ServerProcess] = []  # every server not yet closed, in creation order


def _log_dir() -> Path:
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = Path(tempfile.mkdtemp(prefix="ferrosio-tests-"))
    return _LOG_DIR


def remove_logs() -> None:
    global _LOG_DIR
    if _LOG_DIR is not None:
        shutil.rmtree(_LOG_DIR, ignore_errors=True)
        _LOG_DIR = None


class ServerProcess:
    """A server command on a fixed port: start (and wait until ready), signal, kill, start
    again on the same port, stop. ``argv`` gets ``--port N --host 127.0.0.1`` appended."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
        kind: str = "ferrosio",
    ) -> None:
        self.name = name
        self.kind = kind
        self.port = port or free_port()
        self.argv = [*argv, "--port", str(self.port), "--host", HOST]
        self.env = dict(os.environ) if env is None else env
        self.env.setdefault("PYTHONUNBUFFERED", "1")  # logs in order, up to the failure
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = _log_dir() / f"{next(_LOG_NUMBERS):03d}-{name}-{self.port}.log"
        self.log_path.touch()
        self.log_mark = 0  # log size when the current test began (see conftest.py)
        self.open_packet: dict | None = None  # of the readiness handshake
        self.ready_path = "/socket.io/"  # where the readiness handshake is made
        LIVE.append(self)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/socket.io/?EIO=4&transport=websocket"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Starts the process and returns once it answers an Engine.IO handshake; fails the
        test (with the log) if it exits first or is not ready within STARTUP_TIMEOUT."""
        if self.running:
            raise RuntimeError(f"server {self.name!r} is already running")
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: signals reach its children
                )
            except OSError as e:
                pytest.fail(f"cannot start {' '.join(self.argv)}: {e}", pytrace=False)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                pytest.fail(
                    f"server exited before answering a handshake\n{self.describe()}",
                    pytrace=False,
                )
            packet = ws_open_packet(self.port, path=self.ready_path) or polling_open_packet(
                self.port, path=self.ready_path
            )
            if packet is not None:
                self.open_packet = packet
                return
            time.sleep(0.05)
        description = self.describe()
        self.stop()
        pytest.fail(
            f"server did not answer an Engine.IO handshake within {STARTUP_TIMEOUT:.0f} s\n"
            f"{description}",
            pytrace=False,
        )

    def signal(self, sig: int) -> None:
        """``sig`` to the server's process group (SIGSTOP freezes it, SIGCONT thaws it)."""
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies at once and the kernel resets its connections."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after 10 s; a frozen server is thawed first."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if proc is not None:
            # children that outlived the leader die with the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stops the server for good and forgets it (its log goes too)."""
        self.stop()
        with contextlib.suppress(ValueError):
            LIVE.remove(self)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def check_alive(self) -> None:
        """Fails the test if this (shared) server is not running any more."""
        if not self.running:
            pytest.fail(
                f"shared server is not running (a previous test may have crashed it)\n"
                f"{self.describe()}",
                pytrace=False,
            )

    def log_text(self, since: int = 0, limit: int = 20000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                data = f.read()
        except OSError:
            return "(no log)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...(truncated)...\n" + text[-limit:]
        return text

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def state(self) -> str:
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        return "running" if rc is None else f"EXITED with code {rc}"

    def describe(self, since: int = 0) -> str:
        what = "log" if since == 0 else "log during this test"
        return (
            f"server {self.name!r} ({self.state()}): {' '.join(self.argv)}\n"
            f"--- {what} ({self.log_path}) ---\n{self.log_text(since) or '(empty)'}"
        )


# ---------------------------------------------------------------------------------------------
# which command runs which app
# ---------------------------------------------------------------------------------------------
def node_available() -> bool:
    return (NODE_MODULES / "socket.io").is_dir()


_NODE_MISSING = (
    f"socket.io is not installed in {NODE_MODULES}: run `make node-deps` (installs it into "
    ".deps/node) or point NODE_PATH at a node_modules with socket.io and engine.io"
)


def app_command(kind: str, app: str) -> tuple[list[str], dict[str, str]]:
    """argv (without --port/--host) and environment for ``app`` in {reference, suite,
    short-ping, http (ferrosio only)} on ``kind`` in KNOWN_KINDS; fails the test if something
    it needs is missing."""
    env = dict(os.environ)
    scripts: dict[tuple[str, str], Path] = {
        # the user-facing example IS the contract app under test (no copy under tests/apps)
        ("ferrosio", "reference"): REPO / "examples" / "reference_app.py",
        ("ferrosio", "suite"): APPS / "suite_server.py",
        ("ferrosio", "short-ping"): APPS / "short_ping_app.py",
        ("ferrosio", "http"): APPS / "http_app.py",
        ("node", "reference"): SHARED / "reference" / "node_app.js",
        ("node", "suite"): SHARED / "protocol" / "suite-servers" / "node_suite_server.js",
        ("node", "short-ping"): APPS / "short_ping_app.js",
        ("psio", "reference"): SHARED / "reference" / "psio_app.py",
        ("psio", "suite"): SHARED / "protocol" / "suite-servers" / "psio_suite_server.py",
    }
    script = scripts.get((kind, app))
    if script is None:
        raise ValueError(f"no {app!r} app for server kind {kind!r}")
    if not script.exists():
        hint = " (set FERROSIO_SHARED?)" if script.is_relative_to(SHARED) else ""
        pytest.fail(f"{script} does not exist{hint}", pytrace=False)
    if kind == "node":
        if not node_available():
            pytest.fail(_NODE_MISSING, pytrace=False)
        env["NODE_PATH"] = str(NODE_MODULES)
        return ["node", str(script)], env
    # the interpreter running the tests, so the ferrosio under test
    return [sys.executable, str(script)], env


def new_server(
    kind: str,
    app: str,
    *,
    port: int | None = None,
    name: str | None = None,
    args: tuple[str, ...] = (),
) -> ServerProcess:
    """A (not yet started) server running ``app`` on ``kind``, with extra ``args``."""
    argv, env = app_command(kind, app)
    return ServerProcess(name or f"{kind}-{app}", [*argv, *args], port=port, env=env, kind=kind)


_SHARED_SERVERS: dict[tuple[Any, ...], ServerProcess] = {}


def shared_server(key: tuple[Any, ...], make: Callable[[], ServerProcess]) -> ServerProcess:
    """The session's server for ``key``: made and started on first use, then reused; fails
    the test if it has died since (a crash must not be hidden by a restart)."""
    srv = _SHARED_SERVERS.get(key)
    if srv is None:
        srv = make()
        _SHARED_SERVERS[key] = srv
        srv.start()
    srv.check_alive()
    return srv


def close_all() -> None:
    """Every server still open, then the log directory (end of the session)."""
    for srv in list(LIVE):
        srv.close()
    _SHARED_SERVERS.clear()
    remove_logs()
