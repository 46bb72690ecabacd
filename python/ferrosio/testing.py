"""Helpers for testing and measuring a ferrosio app in your own test suite.

The pytest plugin (:mod:`ferrosio.pytest_plugin`, active when pytest is installed) builds its
fixtures on these; they work without pytest too. Nothing here imports pytest.

- :func:`serve` starts an :class:`~ferrosio.AsyncServer` on a free port of 127.0.0.1 in the
  running loop and shuts it down afterwards (:class:`RunningServer` has its ``url``);
- :class:`RecordingClient` is an :class:`~ferrosio.AsyncClient` whose :attr:`received`
  (an :class:`EventRecorder`) records every event the server sent it that has no handler of
  the test's own, awaits the next one of a name with a timeout and asserts on them;
- :class:`ClientFactory` makes connected recording clients and disconnects them all at the end;
- :func:`serve_in_process` starts a server with no listener, for in-process clients
  (``await client.connect(sio)``: no socket, no port, the same semantics);
- :func:`wait_until` polls a condition, bounded;
- :class:`ServerThread` and :func:`drive_load` measure an app: N clients (in a separate process,
  so their CPU is not counted) call an event in a closed loop while the server's CPU time is
  measured; :class:`LoadReport` has the server's CPU per message and the latency percentiles.

Every wait is bounded; a wait that runs out raises :class:`EventTimeout` (an
``AssertionError``, so a test runner reports it as a failure), naming what was received.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ferrosio.client import AsyncClient
from ferrosio.exceptions import FerrosioError
from ferrosio.server import AsyncServer

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientFactory",
    "EventRecorder",
    "EventTimeout",
    "LoadReport",
    "ReceivedEvent",
    "RecordingClient",
    "RunningServer",
    "ServerThread",
    "drive_load",
    "serve",
    "serve_in_process",
    "wait_until",
]

#: Seconds every helper waits by default before giving up.
DEFAULT_TIMEOUT = 5.0
HOST = "127.0.0.1"


class EventTimeout(FerrosioError, AssertionError):
    """An awaited event or condition did not come in time. An ``AssertionError`` too: a test
    that waits in vain fails (it does not error), with what did arrive in the message."""


def _payload(args: Sequence[Any]) -> Any:
    """Event arguments as ``AsyncClient.call`` returns an ack's: None, the one, or a tuple."""
    if not args:
        return None
    return args[0] if len(args) == 1 else tuple(args)


@dataclass(frozen=True)
class ReceivedEvent:
    """One event a client received."""

    name: str
    namespace: str
    args: tuple[Any, ...]
    #: Its place in the arrival order (1 for the first event recorded).
    seq: int = 0

    @property
    def data(self) -> Any:
        """The arguments as one value: None for none, the argument for one, else a tuple."""
        return _payload(self.args)


class EventRecorder:
    """What a client received, in order; await the next event of a name; assert on them.

    :meth:`next` hands out the events of a name one by one, in arrival order, whether they
    arrived before the call or after: nothing is missed between an emit and the wait.

    Bounded: the last ``max_events`` events are kept (10,000 by default; a test's traffic is
    far less). Past that, the oldest is forgotten for each new one and counted in
    :attr:`dropped`; :meth:`next` skips what was forgotten, and a timeout's message says how
    many were.
    """

    def __init__(self, max_events: int = 10_000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.events: collections.deque[ReceivedEvent] = collections.deque(maxlen=max_events)
        #: How many events were forgotten to keep the bound.
        self.dropped = 0
        self._seq = 0
        self._taken: dict[tuple[str, str], int] = {}  # (namespace, name) -> last seq handed out
        self._waiters: list[tuple[str, str, asyncio.Future[None]]] = []

    def record(self, name: str, namespace: str, *args: Any) -> None:
        """Adds an event (the client's catch-all calls this) and wakes its waiters."""
        if len(self.events) == self.events.maxlen:
            self.dropped += 1
        self._seq += 1
        self.events.append(ReceivedEvent(name, namespace, tuple(args), self._seq))
        for ns, ev, fut in self._waiters:
            if (ns, ev) == (namespace, name) and not fut.done():
                fut.set_result(None)

    def received(self, name: str, namespace: str = "/") -> list[Any]:
        """The data (see :attr:`ReceivedEvent.data`) of every ``name`` event kept."""
        return [e.data for e in self.events if e.name == name and e.namespace == namespace]

    def names(self) -> list[str]:
        """The names of every event kept, in order."""
        return [e.name for e in self.events]

    async def next(self, name: str, timeout: float = DEFAULT_TIMEOUT, namespace: str = "/") -> Any:
        """The data of the next ``name`` event not yet handed out, waiting up to ``timeout``
        seconds for it; raises :class:`EventTimeout` if none comes."""
        key = (namespace, name)
        deadline = time.monotonic() + timeout
        while True:
            taken = self._taken.get(key, 0)
            for e in self.events:
                if e.seq > taken and (e.namespace, e.name) == key:
                    self._taken[key] = e.seq
                    return e.data
            left = deadline - time.monotonic()
            if left <= 0:
                raise EventTimeout(
                    f"no {name!r} event in namespace {namespace!r} within {timeout} s; "
                    f"received: {self._describe()}"
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (namespace, name, fut)
            self._waiters.append(waiter)
            try:
                await asyncio.wait([fut], timeout=left)
            finally:
                self._waiters.remove(waiter)

    def assert_received(self, name: str, *args: Any, namespace: str = "/") -> None:
        """Asserts that a ``name`` event came (with exactly ``args``, if given)."""
        for e in self.events:
            if e.name == name and e.namespace == namespace and (not args or e.args == args):
                return
        want = f"{name!r}{' with ' + repr(args) if args else ''} in {namespace!r}"
        raise AssertionError(f"no event {want}; received: {self._describe()}")

    def assert_not_received(self, name: str, namespace: str = "/") -> None:
        """Asserts that no ``name`` event came (so far)."""
        got = self.received(name, namespace)
        if got:
            raise AssertionError(f"unexpected {name!r} event(s) in {namespace!r}: {got!r}")

    def clear(self) -> None:
        """Forgets every event so far."""
        self.events.clear()
        self._taken.clear()

    def _describe(self, limit: int = 20) -> str:
        dropped = f" ({self.dropped} older ones forgotten)" if self.dropped else ""
        if not self.events:
            return "nothing" + dropped
        last = list(self.events)[-limit:]
        shown = [f"{e.namespace} {e.name} {e.args!r}"[:200] for e in last]
        more = f" (last {limit} of {len(self.events)})" if len(self.events) > limit else ""
        return "; ".join(shown) + more + dropped


class RecordingClient(AsyncClient):
    """An :class:`~ferrosio.AsyncClient` that records what the server sends it.

    Events in every namespace that have no handler of their own go to :attr:`received` (a
    catch-all for ``"*"`` in ``"*"``; a handler the test registers itself takes precedence,
    as handler lookup says), and so do the client's own ``connect_error`` (its data) and
    ``disconnect`` (its reason) unless the test handles them. Takes
    :class:`~ferrosio.AsyncClient`'s arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The events received so far.
        self.received = EventRecorder()
        self.on("*", self._record, namespace="*")
        self.on("connect_error", self._record_connect_error, namespace="*")
        self.on("disconnect", self._record_disconnect, namespace="*")

    def _record(self, event: str, namespace: str, *args: Any) -> None:
        self.received.record(event, namespace, *args)

    def _record_connect_error(self, namespace: str, *args: Any) -> None:
        self.received.record("connect_error", namespace, *args)

    def _record_disconnect(self, namespace: str, *args: Any) -> None:
        self.received.record("disconnect", namespace, *args)


@dataclass
class RunningServer:
    """A server :func:`serve` started: the app, its port and its URL."""

    sio: AsyncServer
    port: int
    host: str = HOST

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: what a client connects to."""
        return f"http://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def serve(
    sio: AsyncServer, host: str = HOST, port: int = 0, shutdown_timeout: float = 2.0
) -> AsyncIterator[RunningServer]:
    """Runs ``sio`` in the running loop on ``host`` (port 0: a free one) for the ``with``
    block, then shuts it down (its disconnect handlers run)::

        async with serve(sio) as server:
            await client.connect(server.url)
    """
    bound = await sio.start(host, port)
    try:
        yield RunningServer(sio, bound, host)
    finally:
        await sio.shutdown(timeout=shutdown_timeout)


@contextlib.asynccontextmanager
async def serve_in_process(
    sio: AsyncServer, shutdown_timeout: float = 2.0
) -> AsyncIterator[AsyncServer]:
    """Runs ``sio`` in the running loop with no listener for the ``with`` block (for
    in-process clients only), then shuts it down (its disconnect handlers run)::

        async with serve_in_process(sio):
            await client.connect(sio)

    A server already running (:func:`serve`, :meth:`~ferrosio.AsyncServer.start`) takes
    in-process clients as it is: this is for a test that needs no network at all.
    """
    await sio.start_in_process()
    try:
        yield sio
    finally:
        await sio.shutdown(timeout=shutdown_timeout)


class ClientFactory:
    """``client = await factory(**options)``: a :class:`RecordingClient` connected to ``url``
    (a URL, or a running :class:`~ferrosio.AsyncServer` of this process to connect to
    in-process); :meth:`close` disconnects every client made.

    Defaults differ from a bare client's where a test wants it: WebSocket only (no upgrade
    dance), no reconnection, and ``wait_timeout`` :data:`DEFAULT_TIMEOUT`. ``connect`` options
    (``auth``, ``headers``, ``namespaces``, ``transports``, ``wait_timeout``) are split from
    the client's own (``retries``, ``ack_timeout``, ...).
    """

    CONNECT_OPTIONS = ("auth", "headers", "namespaces", "transports", "wait_timeout")

    def __init__(
        self, url: str | AsyncServer, client_class: type[RecordingClient] = RecordingClient
    ) -> None:
        self.url = url
        self.client_class = client_class
        self.clients: list[RecordingClient] = []

    async def __call__(self, *, connect: bool = True, **options: Any) -> RecordingClient:
        connect_kw: dict[str, Any] = {"transports": ["websocket"], "wait_timeout": DEFAULT_TIMEOUT}
        for name in self.CONNECT_OPTIONS:
            if name in options:
                connect_kw[name] = options.pop(name)
        options.setdefault("reconnection", False)
        client = self.client_class(**options)
        self.clients.append(client)
        if connect:
            await client.connect(self.url, **connect_kw)
        return client

    async def close(self, timeout: float = 10.0) -> None:
        """Disconnects every client made (bounded; errors of clients already gone ignored)."""
        for client in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout)
        self.clients.clear()


async def wait_until(
    predicate: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
    interval: float = 0.01,
) -> None:
    """Polls ``predicate`` until it is true; raises :class:`EventTimeout` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise EventTimeout(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------------
# measuring an app
# ---------------------------------------------------------------------------------------------
class ServerThread:
    """Runs an :class:`~ferrosio.AsyncServer` on its own event loop in a background thread,
    so synchronous code (a benchmark) can drive it; a context manager::

        with ServerThread(sio) as server:
            report = drive_load(server.url, "echo", "x" * 32, clients=50)

    ``sio`` must not be running in another loop. The loop is uvloop when it is installed
    (what :func:`ferrosio.run` serves on), unless ``use_uvloop`` is false.
    """

    def __init__(
        self,
        sio: AsyncServer,
        host: str = HOST,
        start_timeout: float = 30.0,
        use_uvloop: bool = True,
    ) -> None:
        self.sio = sio
        self.host = host
        self.use_uvloop = use_uvloop
        self.port = 0
        self.start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Starts the thread and returns once the server listens."""
        self._thread = threading.Thread(target=self._main, name="ferrosio-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise EventTimeout(f"server did not start within {self.start_timeout} s")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        if self.use_uvloop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                uvloop.run(self._serve())
                return
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with serve(self.sio, self.host) as running:
                self.port = running.port
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:
            self._error = e
            self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Shuts the server down and joins the thread (bounded)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LoadReport:
    """What :func:`drive_load` measured, over the measured window only (after the warm-up)."""

    event: str
    clients: int
    inflight: int
    window_s: float
    messages: int
    #: CPU seconds (user + system, every thread) the measured process spent in the window.
    server_cpu_s: float
    latencies_us: dict[str, float] = field(default_factory=dict)
    errors: int = 0

    @property
    def messages_per_s(self) -> float:
        """Acknowledged calls per second."""
        return self.messages / self.window_s if self.window_s > 0 else 0.0

    @property
    def server_cpu_us_per_message(self) -> float:
        """Server CPU microseconds per acknowledged call: the figure to compare."""
        return self.server_cpu_s * 1e6 / self.messages if self.messages else float("nan")

    def extra_info(self) -> dict[str, Any]:
        """A flat dict for pytest-benchmark's ``benchmark.extra_info``."""
        info: dict[str, Any] = {
            "scenario": f"{self.event} {self.clients}x{self.inflight}",
            "messages": self.messages,
            "messages_per_s": round(self.messages_per_s, 1),
            "server_cpu_us_per_msg": round(self.server_cpu_us_per_message, 3),
            "errors": self.errors,
        }
        for name, value in self.latencies_us.items():
            info[f"latency_{name}_us"] = round(value, 1)
        return info

    def as_dict(self) -> dict[str, Any]:
        """Every field, plus the derived figures."""
        return {**asdict(self), **self.extra_info()}


def _cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) of this process or of ``pid`` (/proc)."""
    if pid is None or pid == os.getpid():
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive_load(
    url: str,
    event: str,
    data: Any = None,
    *,
    clients: int = 10,
    inflight: int = 1,
    duration: float = 3.0,
    warmup: float = 1.0,
    namespace: str = "/",
    server_pid: int | None = None,
    timeout: float | None = None,
) -> LoadReport:
    """Drives ``clients`` connections against the server at ``url``: each keeps ``inflight``
    calls of ``event`` with ``data`` in flight (the next one leaves when an ack comes back),
    for ``warmup`` seconds, then ``duration`` seconds measured.

    The clients are ferrosio :class:`~ferrosio.AsyncClient`\\ s in a child process, so their
    CPU is not the server's; the server's CPU is that of this process (a server in a
    :class:`ServerThread`), or of ``server_pid``. Call it from a thread whose event loop is
    not the server's (a synchronous test, or ``loop.run_in_executor``). Bounded: the child is
    killed after ``timeout`` (default: warm-up + duration + 60 s).
    """
    spec = {
        "url": url,
        "event": event,
        "data": data,
        "clients": clients,
        "inflight": inflight,
        "duration": duration,
        "warmup": warmup,
        "namespace": namespace,
    }
    limit = timeout if timeout is not None else warmup + duration + 60
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrosio._load", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(limit, proc.kill)
    killer.start()
    cpu: dict[str, float] = {}
    result: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the child says when the window opens and closes
            line = line.strip()
            if line in ("start", "stop"):
                cpu[line] = _cpu_of(server_pid)
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait()
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None or "start" not in cpu or "stop" not in cpu:
        raise FerrosioError(f"the load process failed (exit {proc.returncode}); see its stderr")
    if result.get("error"):
        raise FerrosioError(f"the load process failed: {result['error']}")
    return LoadReport(
        event=event,
        clients=clients,
        inflight=inflight,
        window_s=float(result["window_s"]),
        messages=int(result["messages"]),
        server_cpu_s=cpu["stop"] - cpu["start"],
        latencies_us={k: float(v) for k, v in result["latencies_us"].items()},
        errors=int(result["errors"]),
    )
