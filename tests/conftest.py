"""Shared fixtures: start a real server process, wait until it speaks Engine.IO, stop it.

Server under test, chosen with the environment variable FERROSIO_TEST_SERVER:

  ferrosio (default)  reference app: python examples/reference_app.py
                      suite app:     python tests/apps/suite_app.py
  node                reference app: node ../shared/reference/node_app.js
                      suite app:     node ../shared/protocol/suite-servers/node_suite_server.js
                      (NODE_PATH must point at node_modules with socket.io and
                      engine.io, e.g. an `npm install` of the two package.json
                      files there, done outside the repo)
  psio                python-socketio implementations from ../shared (validation
                      of the tests themselves; see KNOWN deviations in the tests)

Both apps are started with `--port N --host 127.0.0.1` on a free port.  The
shared material lives at <repo>/../shared unless FERROSIO_SHARED says otherwise.

Servers are session-scoped: tests never restart them; tests that break a
connection do it on their own connection.  On a test failure the log (stdout
+ stderr) of every server started by the session is attached to the report.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
SHARED = Path(os.environ.get("FERROSIO_SHARED", REPO.parent / "shared")).resolve()
HOST = "127.0.0.1"

SERVER_KIND = os.environ.get("FERROSIO_TEST_SERVER", "ferrosio").strip().lower() or "ferrosio"
KNOWN_KINDS = ("ferrosio", "node", "psio")

# Seconds a server gets to answer its first Engine.IO handshake.  Generous:
# CI machines are small and may be compiling at the same time.
STARTUP_TIMEOUT = float(os.environ.get("FERROSIO_TEST_STARTUP_TIMEOUT", "60"))

# ---------------------------------------------------------------------------
# Transports of the contract tests.  The client's `transports` option, as a
# comma list.  A mode listed in PENDING_ON_FERROSIO is expected to fail on
# ferrosio for now (xfail, non-strict) -- and only on ferrosio.  Switching a
# mode on for real = deleting it from PENDING_ON_FERROSIO.
# ---------------------------------------------------------------------------
TRANSPORT_MODES = ["websocket", "polling", "polling,websocket"]
PENDING_ON_FERROSIO: dict[str, str] = {}


def transport_params():
    params = []
    for mode in TRANSPORT_MODES:
        marks = []
        if SERVER_KIND == "ferrosio" and mode in PENDING_ON_FERROSIO:
            marks.append(pytest.mark.xfail(reason=PENDING_ON_FERROSIO[mode], strict=False))
        params.append(pytest.param(mode, id=mode.replace(",", "+"), marks=marks))
    return params


# ---------------------------------------------------------------------------
# pytest configuration that would otherwise need an ini file
# ---------------------------------------------------------------------------
DEFAULT_TEST_TIMEOUT = 180  # seconds, per test (pytest-timeout); only a hang guard


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")
    if SERVER_KIND not in KNOWN_KINDS:
        raise pytest.UsageError(
            f"FERROSIO_TEST_SERVER={SERVER_KIND!r}: expected one of {', '.join(KNOWN_KINDS)}"
        )


def pytest_report_header(config):
    return [
        f"ferrosio tests: server under test = {SERVER_KIND} (FERROSIO_TEST_SERVER), "
        f"shared = {SHARED}"
    ]


def pytest_collection_modifyitems(config, items):
    # a hang guard for every test, unless the test or the ini sets its own
    if config.pluginmanager.hasplugin("timeout") and not config.getini("timeout"):
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


# ---------------------------------------------------------------------------
# server processes
# ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def ws_open_packet(port: int, timeout: float = 3.0, path: str = "/socket.io/") -> dict | None:
    """Engine.IO handshake over a raw WebSocket; returns the open packet's JSON, or None.

    Written with plain sockets on purpose (no client library between the test
    harness and the server's first bytes): HTTP 101, then one text frame
    `0{...}`.
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
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
                if len(buf) > 65536:
                    return None
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].split()
            if len(status) < 2 or status[1] != b"101":
                return None
            buf = bytearray(rest)
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
            return json.loads(payload[1:])
    except (OSError, ValueError, ConnectionError):
        return None


class ServerProcess:
    """A server command run on a free port; see module docstring."""

    def __init__(
        self, name: str, argv_prefix: list[str], env: dict | None = None, cwd: Path = REPO
    ):
        self.name = name
        self.port = free_port()
        self.argv = [*argv_prefix, "--port", str(self.port), "--host", HOST]
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        # kept open for the server's lifetime (closed in stop())
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"ferrosio-{name}-", suffix=".log", delete=False
        )
        self.open_packet: dict | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/socket.io/?EIO=4&transport=websocket"

    def log_text(self, limit: int = 20000) -> str:
        try:
            data = Path(self.log.name).read_bytes()
        except OSError:
            return "(no log)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...(truncated)...\n" + text[-limit:]
        return text or "(empty)"

    def describe(self) -> str:
        rc = None if self.proc is None else self.proc.poll()
        state = "running" if rc is None else f"EXITED with code {rc}"
        return (
            f"server {self.name!r} ({state}): {' '.join(self.argv)}\n"
            f"--- log {self.log.name} ---\n{self.log_text()}"
        )

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches its children too
            )
        except OSError as e:
            pytest.fail(f"cannot start {' '.join(self.argv)}: {e}", pytrace=False)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(
                    f"server exited before answering a handshake\n{self.describe()}", pytrace=False
                )
            packet = ws_open_packet(self.port)
            if packet is not None:
                self.open_packet = packet
                return
            time.sleep(0.1)
        desc = self.describe()
        self.stop()
        pytest.fail(
            f"server did not answer an Engine.IO websocket handshake within "
            f"{STARTUP_TIMEOUT:.0f} s\n{desc}",
            pytrace=False,
        )

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL; by PID/PGID only."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self.log.close()
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children that ignored SIGTERM die with the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.log.close()

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            pytest.fail(
                f"shared server is not running (a previous test may have crashed it)\n"
                f"{self.describe()}",
                pytrace=False,
            )


_SERVERS: list[ServerProcess] = []


def server_command(app: str) -> tuple[list[str], dict]:
    """argv prefix (without --port/--host) and env for `app` in {reference, suite}."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if SERVER_KIND == "ferrosio":
        script = (
            REPO / "examples" / "reference_app.py"
            if app == "reference"
            else TESTS / "apps" / "suite_app.py"
        )
        if not script.exists():
            pytest.fail(f"{script} does not exist", pytrace=False)
        return [sys.executable, str(script)], env
    if SERVER_KIND == "node":
        script = (
            SHARED / "reference" / "node_app.js"
            if app == "reference"
            else SHARED / "protocol" / "suite-servers" / "node_suite_server.js"
        )
        if not script.exists():
            pytest.fail(f"{script} does not exist (set FERROSIO_SHARED?)", pytrace=False)
        if not env.get("NODE_PATH"):
            pytest.fail(
                "FERROSIO_TEST_SERVER=node needs NODE_PATH pointing at a node_modules with "
                "socket.io (and engine.io for the suite app), e.g. "
                "`cp ../shared/protocol/suite-servers/package.json /tmp/nodesrv && "
                "npm install --prefix /tmp/nodesrv` then NODE_PATH=/tmp/nodesrv/node_modules",
                pytrace=False,
            )
        return ["node", str(script)], env
    # psio
    script = (
        SHARED / "reference" / "psio_app.py"
        if app == "reference"
        else SHARED / "protocol" / "suite-servers" / "psio_suite_server.py"
    )
    return [sys.executable, str(script)], env


def _start(app: str) -> ServerProcess:
    argv, env = server_command(app)
    srv = ServerProcess(f"{SERVER_KIND}-{app}", argv, env=env)
    _SERVERS.append(srv)
    srv.start()
    return srv


@pytest.fixture(scope="session")
def server_kind() -> str:
    return SERVER_KIND


@pytest.fixture(scope="session")
def _reference_server_session():
    srv = _start("reference")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def _suite_server_session():
    srv = _start("suite")
    yield srv
    srv.stop()


@pytest.fixture
def reference_server(_reference_server_session) -> ServerProcess:
    """The reference app (CONTRACT.md), shared by the whole session."""
    _reference_server_session.check_alive()
    return _reference_server_session


@pytest.fixture
def suite_server(_suite_server_session) -> ServerProcess:
    """The protocol-suite app (ping 300 ms / timeout 200 ms, connect timeout 1 s), shared."""
    _suite_server_session.check_alive()
    return _suite_server_session


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVERS:
        for srv in _SERVERS:
            report.sections.append((f"server {srv.name}", srv.describe()))


def pytest_sessionfinish(session, exitstatus):
    for srv in _SERVERS:
        srv.stop()
        with contextlib.suppress(OSError):
            os.unlink(srv.log.name)
