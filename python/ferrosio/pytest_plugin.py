"""ferrosio's pytest plugin: fixtures to test and measure your Socket.IO app.

Installed with ferrosio and registered through the ``pytest11`` entry point, so pytest loads
it by itself (``-p no:ferrosio`` turns it off); ``import ferrosio`` never imports it or pytest.
The async fixtures work with pytest-asyncio (``asyncio_mode`` ``auto`` or ``strict``) and with
anyio's pytest plugin (``@pytest.mark.anyio``, backend ``asyncio``: ferrosio runs on asyncio).

Tell it your app by overriding the ``sio`` fixture in a ``conftest.py`` (a fresh server per
test is best)::

    @pytest.fixture
    def sio():
        return create_app()

or by naming it in the ini file (``ferrosio_app = "chat.server:sio"``; a module-level server
is then shared by every test, started and stopped around each one).

Fixtures:

- ``sio``: the :class:`~ferrosio.AsyncServer` under test (see above);
- ``sio_server``: ``sio`` started on a free port of 127.0.0.1 in the test's event loop, a
  :class:`~ferrosio.testing.RunningServer` (``.url``, ``.port``, ``.sio``); shut down after;
- ``sio_client_factory``: ``await sio_client_factory(auth=..., namespaces=...)`` makes a
  connected :class:`~ferrosio.testing.RecordingClient` (its ``received`` records what the
  server sent); every client made is disconnected after the test;
- ``sio_client``: one such client, connected with the defaults;
- ``sio_inprocess_client_factory`` and ``sio_inprocess_client``: the same, connected
  in-process (no socket, no port: ``sio`` runs with no listener); a handler test in
  milliseconds, with the semantics of a network client;
- ``sio_server_thread``: for synchronous tests: ``sio`` served from its own loop in a
  background thread (a :class:`~ferrosio.testing.ServerThread`, ``.url``);
- ``sio_load``: for benchmarks (synchronous tests): ``sio_load.run(event, data, clients=N,
  ...)`` drives N clients from another process against ``sio_server_thread`` and returns a
  :class:`~ferrosio.testing.LoadReport` (server CPU per message, latencies).

A synchronous client (python-socketio's ``SimpleClient`` API) blocks its thread, so it must
not share the server's loop: its fixture belongs beside ``sio_server_thread``, connecting to
its ``url``, as the async clients connect to ``sio_server``'s.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ferrosio.server import AsyncServer
from ferrosio.testing import (
    ClientFactory,
    LoadReport,
    RecordingClient,
    RunningServer,
    ServerThread,
    drive_load,
    serve,
    serve_in_process,
)

INI_APP = "ferrosio_app"


def _async_fixture(fn: Callable[..., Any]) -> Any:
    """An async fixture that both plugins run: pytest-asyncio's marker when it is installed
    (strict mode needs it), which anyio's plugin still takes over for its own tests."""
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(fn)
    return pytest_asyncio.fixture(fn)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_APP, "module:attribute of the AsyncServer the `sio` fixture returns")


def _load_app(spec: str) -> AsyncServer:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise pytest.UsageError(f"{INI_APP} = {spec!r}: expected 'module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, AsyncServer):
        obj = obj()  # an app factory
    if not isinstance(obj, AsyncServer):
        raise pytest.UsageError(
            f"{INI_APP} = {spec!r} is a {type(obj).__name__}, not an AsyncServer"
        )
    return obj


@pytest.fixture
def sio(request: pytest.FixtureRequest) -> AsyncServer:
    """The app under test: override this fixture, or set the ``ferrosio_app`` ini option to
    ``module:attribute`` (an AsyncServer, or a function returning one)."""
    spec = str(request.config.getini(INI_APP) or "")
    if not spec:
        raise pytest.UsageError(
            "ferrosio's fixtures need your app: define a `sio` fixture returning your "
            f"AsyncServer, or set `{INI_APP} = module:attribute` in the pytest ini"
        )
    return _load_app(spec)


def _running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.fail(
            "ferrosio's async fixtures need an asyncio loop (pytest-asyncio, or anyio with "
            "the asyncio backend)",
            pytrace=False,
        )


@_async_fixture
async def sio_server(sio: AsyncServer) -> AsyncIterator[RunningServer]:
    """``sio`` listening on a free port of 127.0.0.1 in the test's loop; shut down after."""
    _running_loop()
    async with serve(sio) as running:
        yield running


@_async_fixture
async def sio_client_factory(sio_server: RunningServer) -> AsyncIterator[ClientFactory]:
    """``await sio_client_factory(**options)``: a connected RecordingClient per call;
    all disconnected after the test."""
    factory = ClientFactory(sio_server.url)
    try:
        yield factory
    finally:
        await factory.close()


@_async_fixture
async def sio_client(sio_client_factory: ClientFactory) -> RecordingClient:
    """A RecordingClient connected to ``sio_server`` (WebSocket, namespace ``/``)."""
    return await sio_client_factory()


@_async_fixture
async def sio_inprocess_client_factory(sio: AsyncServer) -> AsyncIterator[ClientFactory]:
    """``await sio_inprocess_client_factory(**options)``: a RecordingClient per call,
    connected to ``sio`` in-process (``sio`` runs with no listener); all disconnected and
    ``sio`` shut down after the test."""
    _running_loop()
    async with serve_in_process(sio):
        factory = ClientFactory(sio)
        try:
            yield factory
        finally:
            await factory.close()


@_async_fixture
async def sio_inprocess_client(sio_inprocess_client_factory: ClientFactory) -> RecordingClient:
    """A RecordingClient connected to ``sio`` in-process (namespace ``/``)."""
    return await sio_inprocess_client_factory()


class LoadRunner:
    """The ``sio_load`` fixture: the app in a background thread, and :meth:`run`."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, event: str, data: Any = None, **options: Any) -> LoadReport:
        """:func:`ferrosio.testing.drive_load` against the app."""
        return drive_load(self.server.url, event, data, **options)


@pytest.fixture
def sio_server_thread(sio: AsyncServer) -> Iterator[ServerThread]:
    """For synchronous tests: ``sio`` served on a free port of 127.0.0.1 from a loop of its
    own in a background thread (``.url``, ``.port``); shut down after. What a synchronous
    client (and ``sio_load``) talks to: a blocking call in the test cannot stall it."""
    with ServerThread(sio) as server:
        yield server


@pytest.fixture
def sio_load(sio_server_thread: ServerThread) -> LoadRunner:
    """For synchronous benchmark tests: ``sio_load.run(event, data, clients=N, inflight=K,
    duration=S)`` drives the app in ``sio_server_thread`` -> LoadReport."""
    return LoadRunner(sio_server_thread)
