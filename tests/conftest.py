"""The one test harness: fixtures that start real server processes, and pytest hooks.

How servers are started, probed and stopped lives in ``_harness.py``; this file turns it
into fixtures (discovered by pytest, never imported by a test file). tests/README.md lists
the apps and what each test file runs against.

Server-side tests (contract, raw protocol, raw HTTP) run against the server chosen with
FERROSIO_TEST_SERVER (``ferrosio``, the default; ``node``; ``psio``):

- ``reference_server`` / ``suite_server``: the session's reference app and protocol-suite
  app, started on first use and shared; a test never restarts them, and one that breaks
  a connection does it on its own connection;
- ``http_app(*options)``: tests/apps/http_app.py with those options, one shared process per
  option set (ferrosio only; skipped otherwise).

Client tests (the ferrosio AsyncClient, test_client_*.py) run against both ``ferrosio`` and
the official Node server (``peer_kind``), whatever FERROSIO_TEST_SERVER says:

- ``ref``: the shared reference app of ``peer_kind`` (the same process as
  ``reference_server`` when the kinds agree);
- ``own_server``: a reference app of the test's own, which the test may kill and start again
  on the same port;
- ``make_peer(kind, app, port, start)``: any app of either kind, closed after the test.

``spawn_server(name, argv)`` starts any other server command (e.g. the chat demo).

In-process servers and clients come from ferrosio's public pytest plugin (the one users get:
``sio``, ``sio_server``, ``sio_client``, ``sio_client_factory``, ``sio_load``; machinery in
``ferrosio.testing``). ``make_server(sio)`` (several servers per test), ``clients`` (a list
of clients to disconnect afterwards) and ``until(pred)`` are thin wrappers on that machinery.

When a test fails, what every server wrote during that test (and the state of each one that
is not running) is attached to the report.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from _harness import (
    CLIENT_TRANSPORTS,
    HOST,
    KNOWN_KINDS,
    LIVE,
    PEER_KINDS,
    REPO,
    SERVER_KIND,
    SHARED,
    STARTUP_TIMEOUT,
    TESTS,
    WAIT,
    ServerProcess,
    Until,
    close_all,
    free_port,
    new_server,
    node_available,
    shared_server,
    transport_params,
    ws_open_packet,
)
from ferrosio.testing import ClientFactory, serve, wait_until

# Test files import these from _harness; kept importable from conftest for test files written
# against the earlier layout (`from conftest import TESTS, transport_params`).
__all__ = [
    "HOST",
    "STARTUP_TIMEOUT",
    "TESTS",
    "ServerProcess",
    "free_port",
    "transport_params",
    "ws_open_packet",
]

# The public pytest plugin (ferrosio.pytest_plugin: sio_server, sio_client, ...) is what the
# in-process tests use. An installed ferrosio registers it through its pytest11 entry point;
# a development install made before that entry point existed does not, so load it here then.
# pytester runs the plugin's own tests (test_pytest_plugin.py) in pytest sessions of their own.
pytest_plugins = ["pytester"]
if not any(ep.value == "ferrosio.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins.append("ferrosio.pytest_plugin")

DEFAULT_TEST_TIMEOUT = 180  # seconds per test (pytest-timeout) when no ini sets one; a hang guard


# ---------------------------------------------------------------------------------------------
# pytest hooks
# ---------------------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")
    if SERVER_KIND not in KNOWN_KINDS:
        raise pytest.UsageError(
            f"FERROSIO_TEST_SERVER={SERVER_KIND!r}: expected one of {', '.join(KNOWN_KINDS)}"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"ferrosio tests: server under test = {SERVER_KIND} (FERROSIO_TEST_SERVER), "
        f"client tests against {' and '.join(PEER_KINDS)}, shared material = {SHARED}"
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # a hang guard for every test, unless the test or the ini sets its own
    if config.pluginmanager.hasplugin("timeout") and not config.getini("timeout"):
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # where each server's log stands when the test begins: a failure report shows what came after
    for srv in LIVE:
        srv.log_mark = srv.log_size()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in LIVE:
            if srv.log_text(srv.log_mark) or not srv.running:
                report.sections.append((f"server {srv.name}", srv.describe(srv.log_mark)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    close_all()


# ---------------------------------------------------------------------------------------------
# the server under test (FERROSIO_TEST_SERVER)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def server_kind() -> str:
    """FERROSIO_TEST_SERVER: ``ferrosio``, ``node`` or ``psio``."""
    return SERVER_KIND


@pytest.fixture(scope="session")
def _reference_server_session() -> ServerProcess:
    return shared_server((SERVER_KIND, "reference"), lambda: new_server(SERVER_KIND, "reference"))


@pytest.fixture(scope="session")
def _suite_server_session() -> ServerProcess:
    return shared_server((SERVER_KIND, "suite"), lambda: new_server(SERVER_KIND, "suite"))


@pytest.fixture
def reference_server(_reference_server_session: ServerProcess) -> ServerProcess:
    """The reference app (CONTRACT.md of ../shared/reference/), shared by the whole session."""
    _reference_server_session.check_alive()
    return _reference_server_session


@pytest.fixture
def suite_server(_suite_server_session: ServerProcess) -> ServerProcess:
    """The protocol-suite app (ping 300 ms / timeout 200 ms, connect timeout 1 s), shared."""
    _suite_server_session.check_alive()
    return _suite_server_session


@pytest.fixture(scope="session")
def http_app() -> Callable[..., ServerProcess]:
    """``http_app(*options)``: tests/apps/http_app.py started with those command-line options,
    one shared process per option set; skips the test unless the server under test is
    ferrosio (the options are ferrosio's)."""

    def get(*options: str) -> ServerProcess:
        if SERVER_KIND != "ferrosio":
            pytest.skip("uses tests/apps/http_app.py (ferrosio options)")
        return shared_server(
            ("http", *options),
            lambda: new_server("ferrosio", "http", args=options, name="ferrosio-http-app"),
        )

    return get


# ---------------------------------------------------------------------------------------------
# the peers of the client tests (ferrosio and the official Node server)
# ---------------------------------------------------------------------------------------------
def _peer(kind: str, app: str = "reference", port: int | None = None) -> ServerProcess:
    if kind == "node" and not node_available():
        pytest.skip("socket.io is not installed for the Node peer (run `make node-deps`)")
    return new_server(kind, app, port=port)


@pytest.fixture(params=PEER_KINDS)
def peer_kind(request: pytest.FixtureRequest) -> str:
    """Which server the client talks to: ``ferrosio`` or ``node``."""
    return str(request.param)


@pytest.fixture
def ref(peer_kind: str) -> ServerProcess:
    """The shared reference app of ``peer_kind`` (started once, never killed)."""
    return shared_server((peer_kind, "reference"), lambda: _peer(peer_kind))


@pytest.fixture
def own_server(peer_kind: str) -> Iterator[ServerProcess]:
    """A reference app of ``peer_kind`` of the test's own, for tests that kill and restart it
    (``kill()``, then ``start()`` again on the same port)."""
    srv = _peer(peer_kind)
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def make_peer() -> Iterator[Callable[..., ServerProcess]]:
    """``make_peer(kind, app="reference"|"short-ping", port=None, start=True)``; closed after."""
    made: list[ServerProcess] = []

    def make(
        kind: str, app: str = "reference", port: int | None = None, start: bool = True
    ) -> ServerProcess:
        srv = _peer(kind, app, port)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in made:
        srv.close()


@pytest.fixture(params=list(CLIENT_TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    """The ferrosio client's ``transports`` option: websocket, polling, polling+websocket."""
    return CLIENT_TRANSPORTS[str(request.param)]


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[list[Any]]:
    """Clients a test creates are appended here and disconnected afterwards (the plugin's
    ClientFactory does the disconnecting)."""
    factory = ClientFactory("")
    made: list[Any] = factory.clients  # type: ignore[assignment]
    yield made
    await factory.close()


@pytest_asyncio.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``url = await make_server(sio)``: starts an ``AsyncServer`` in this test's loop on a free
    port of 127.0.0.1 and returns its URL (ferrosio.testing.serve); every server made is shut
    down after the test. (One server of the test's own: the plugin's ``sio_server``.)"""
    async with contextlib.AsyncExitStack() as stack:

        async def make(sio: Any) -> str:
            running = await stack.enter_async_context(serve(sio))
            return running.url

        yield make


@pytest.fixture
def until() -> Until:
    """``await until(pred, timeout=WAIT, what=...)``: polls until ``pred()`` holds
    (ferrosio.testing.wait_until with the harness's bound)."""

    async def poll(
        pred: Callable[[], object], timeout: float = WAIT, what: str = "condition"
    ) -> None:
        await wait_until(pred, timeout, what)

    return poll


# ---------------------------------------------------------------------------------------------
# any other server command
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def spawn_server() -> Iterator[Callable[..., ServerProcess]]:
    """``spawn_server(name, argv, *, port=None, cwd=REPO, start=True)``: any server command
    that takes ``--port N --host 127.0.0.1`` and speaks Engine.IO; closed after the test."""
    made: list[ServerProcess] = []

    def spawn(
        name: str,
        argv: list[str],
        *,
        port: int | None = None,
        cwd: Path = REPO,
        start: bool = True,
    ) -> ServerProcess:
        srv = ServerProcess(name, argv, port=port, cwd=cwd)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield spawn
    for srv in made:
        srv.close()
