"""The Socket.IO client: python-socketio's ``AsyncClient`` API on ferrosio's Rust engine.

The connection itself (handshake, WebSocket, long-polling, the upgrade, heartbeats, the packet
codec and binary reassembly) runs in Rust on the client's own thread. This module keeps the
policy, where the user's objects live: namespaces, handlers, acknowledgements, reconnection
with backoff, the offline buffer and the retry queue. Those follow the official JavaScript
client (``socket.io-client`` 4.x):

- **Reconnection** (``reconnection*``, ``randomization_factor``): after the connection is lost,
  attempts are made with exponential backoff and jitter; never after the server disconnected
  the client, nor after :meth:`AsyncClient.disconnect`.
- **Offline buffer**: an emit made while a namespace is (re)connecting is held and sent, in
  order, once the namespace is connected again; a ``volatile`` emit is dropped instead. The
  buffer is bounded (``max_buffered``); beyond it :class:`BufferFullError` is raised.
- **Retries** (``retries``, ``ack_timeout``): each emit goes through a queue, one packet in
  flight at a time, re-sent (with a new ack id) until the server acknowledges it or
  ``retries`` re-sends have failed. The server's handler sees it once per attempt, in order.

Which of python-socketio's arguments are supported, accepted or refused: :mod:`ferrosio._compat`.
How a handler is found for an event: :meth:`AsyncClient.on`.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import inspect
import itertools
import logging
import math
import os
import random
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from ferrosio import _codec, _compat, _handlers, exceptions
from ferrosio._ferrosio import ClientHandle
from ferrosio._handlers import HandlerRegistry, ack_result

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer

__all__ = [
    "AsyncClient",
    "AsyncClientNamespace",
    "BadNamespaceError",
    "BufferFullError",
]


default_logger = logging.getLogger("ferrosio.client")

#: Most acknowledgements awaited in one namespace at once (``emit(callback=)``, ``call``); one
#: more raises BufferFullError (docs/bounds.md). socket.io-client has no bound.
MAX_ACKS_IN_FLIGHT = 10_000

# namespace states
_PENDING = 0  # waiting for the server's CONNECT reply (first connection or reconnection)
_CONNECTED = 1
_CLOSED = 2  # refused, disconnected by the server, or given up: emits raise


#: What ``connection_url`` says for an in-process connection (``connect(server)``).
IN_PROCESS_URL = "inprocess://"
#: The host of an in-process target (the engine sends it as the ``Host`` header too).
IN_PROCESS_HOST = "inprocess"

# Kept importable from here too, where the client raises them.
BadNamespaceError = exceptions.BadNamespaceError
BufferFullError = exceptions.BufferFullError


class _Backoff:
    """socket.io-client's backoff: ``min * 2**attempt``, jittered by ``±jitter``, capped."""

    def __init__(self, minimum: float, maximum: float, jitter: float) -> None:
        self.min = minimum
        self.max = maximum
        self.jitter = jitter
        self.attempts = 0

    def duration(self) -> float:
        delay = self.min * 2.0 ** min(self.attempts, 64)
        self.attempts += 1
        if self.jitter:
            rand = random.random()
            deviation = rand * self.jitter * delay
            delay = delay - deviation if math.floor(rand * 10) % 2 == 0 else delay + deviation
        return max(0.0, min(delay, self.max))

    def reset(self) -> None:
        self.attempts = 0


class _Ack:
    """A pending acknowledgement: a future (``call``), an error-first callback, or a plain
    callback (told nothing on failure). ``timed``: it has an entry in the deadline heap."""

    __slots__ = ("fn", "fut", "timed", "with_error")

    def __init__(
        self,
        fn: Callable[..., Any] | None,
        with_error: bool,
        fut: asyncio.Future[tuple[Any, ...]] | None,
        timed: bool,
    ) -> None:
        self.fn = fn
        self.with_error = with_error
        self.fut = fut
        self.timed = timed


class _Queued:
    """An emit in the retry queue."""

    __slots__ = ("callback", "items", "pending", "timeout", "tries")

    def __init__(
        self, items: list[Any], callback: Callable[..., Any] | None, timeout: float | None
    ) -> None:
        self.items = items
        self.callback = callback
        self.timeout = timeout
        self.tries = 0
        self.pending = False


class _Namespace:
    __slots__ = (
        "acks",
        "buffer",
        "error",
        "ids",
        "name",
        "offset",
        "pid",
        "queue",
        "received",
        "recovered",
        "sid",
        "state",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.sid: str | None = None
        # connection state recovery: the private id the server gave (None: recovery is off
        # there), the offset of the last event handled, and whether the last CONNECT recovered
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False
        # events that came before the CONNECT reply while recovering (Node's server sends
        # the missed packets first): delivered once connected, as socket.io-client does
        self.received: deque[tuple[int | None, bytes, list[bytes] | None]] | None = None
        self.state = _PENDING
        self.error: Any = None  # the CONNECT_ERROR data, once refused
        # emits made while not connected: (ack_id, json, attachments)
        self.buffer: deque[tuple[int | None, bytes, list[bytes] | None]] = deque()
        self.queue: deque[_Queued] = deque()
        self.acks: dict[int, _Ack] = {}
        self.ids = 0


async def _real(value: Any) -> Any:
    """A value, or the result of calling it (awaited if need be): ``auth`` and ``headers``
    may be callables, evaluated on every (re)connection."""
    if callable(value):
        value = value()
        if inspect.isawaitable(value):
            value = await value
    return value


class AsyncClientNamespace:
    """Client handlers of one namespace as methods: ``on_connect()``,
    ``on_disconnect(reason)``, ``on_connect_error(data)``, ``on_<event>(*args)``.

    Register with ``client.register_namespace(MyNamespace("/chat"))``. Registered for ``"*"``,
    it serves every namespace without handlers of its own for the event, and its methods get
    the namespace first: ``on_<event>(namespace, *args)`` (lookup order: :meth:`AsyncClient.on`).
    """

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or "/"
        self._client: AsyncClient | None = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("namespace is not registered with a client")
        return self._client

    async def emit(
        self,
        event: str,
        data: Any = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        await self.client.emit(event, data, namespace or self.namespace, callback)

    async def send(
        self, data: Any, namespace: str | None = None, callback: Callable[..., Any] | None = None
    ) -> None:
        await self.client.send(data, namespace or self.namespace, callback)

    async def call(
        self, event: str, data: Any = None, namespace: str | None = None, timeout: float = 60
    ) -> Any:
        return await self.client.call(event, data, namespace or self.namespace, timeout)

    async def disconnect(self) -> None:
        await self.client.disconnect()


class AsyncClient(HandlerRegistry):
    """A Socket.IO client. Handlers run on the running asyncio loop; the network runs in Rust.

    The arguments follow python-socketio's ``AsyncClient`` and socket.io-client's options.
    Times are in seconds.

    :param reconnection: reconnect after the connection is lost.
    :param reconnection_attempts: give up after this many attempts (0: never).
    :param reconnection_delay: the first delay; it doubles on each attempt ...
    :param reconnection_delay_max: ... up to this.
    :param randomization_factor: each delay is moved by up to this fraction, either way.
    :param logger: ``True`` to log at INFO, a ``logging.Logger`` to use it.
    :param retries: re-send an emit this many times until it is acknowledged (at-least-once;
        the server sees it once per attempt, in order). 0: no retry queue.
    :param ack_timeout: seconds to wait for each acknowledgement (None: no limit). With
        ``retries`` it bounds each attempt.
    :param max_buffered: most emits held per namespace while it is not connected (and, with
        ``retries``, waiting in the queue); beyond it :class:`BufferFullError` is raised.
    :param request_timeout: seconds for the handshake, each polling POST and the upgrade.
    :param ssl_verify: for ``https://`` and ``wss://`` URLs, verify the server's certificate
        (its chain and its host name); ``False`` accepts any certificate.
    :param ssl_ca_file: a PEM file of CA certificates to trust instead of the system's (a
        ferrosio option; python-socketio has none). By default the system's trusted CAs are
        used (``/etc/ssl/certs`` on Debian; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` override).
    :param serializer: the server's Socket.IO parser: ``"default"`` (JSON) or ``"msgpack"``
        (npm's ``socket.io-msgpack-parser``). Against a server using the other one, the
        connection fails (the server closes it) instead of hanging.

    When an ack timeout applies (``ack_timeout``, or ``timeout=`` on :meth:`emit`) or with
    ``retries``, ``callback`` is called error-first, as in socket.io-client:
    ``callback(None, *args)`` on success, ``callback(exc)`` on a timeout or disconnection.
    Otherwise it is called with the acknowledgement's arguments only, and not at all if the
    connection is lost first.

    python-socketio's other arguments are accepted where their value means what ferrosio does
    anyway (``json=None``, ``handle_sigint=False`` ...); a value asking
    for something ferrosio does not do raises
    :class:`~ferrosio.exceptions.UnsupportedFeatureError` naming the feature (the table is in
    :mod:`ferrosio._compat`). An argument neither knows raises ``TypeError``. Handlers are
    looked up as :meth:`on` describes.
    """

    reserved_events = _handlers.CLIENT_RESERVED_EVENTS

    def __init__(
        self,
        reconnection: bool = True,
        reconnection_attempts: int = 0,
        reconnection_delay: float = 1,
        reconnection_delay_max: float = 5,
        randomization_factor: float = 0.5,
        logger: bool | logging.Logger = False,
        serializer: str = "default",
        json: Any = None,
        handle_sigint: bool = False,
        *,
        retries: int = 0,
        ack_timeout: float | None = None,
        max_buffered: int = 10_000,
        request_timeout: float = 5,
        ssl_verify: bool = True,
        ssl_ca_file: str | os.PathLike[str] | None = None,
        http_session: Any = None,
        websocket_extra_options: dict[str, Any] | None = None,
        timestamp_requests: bool = True,
        engineio_logger: bool | logging.Logger | None = None,
    ) -> None:
        _compat.check(_compat.CLIENT, locals())
        self.serializer = serializer
        # Why the connection closed before its namespaces connected (for connect()'s error).
        self._closed_early: str | None = None
        if reconnection_delay < 0 or reconnection_delay_max < 0:
            raise ValueError("reconnection delays must not be negative")
        if not 0 <= randomization_factor <= 1:
            raise ValueError("randomization_factor must be between 0 and 1")
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.reconnection_delay = reconnection_delay
        self.reconnection_delay_max = reconnection_delay_max
        self.randomization_factor = randomization_factor
        self.retries = retries
        self.ack_timeout = ack_timeout
        self.max_buffered = max_buffered
        self.request_timeout = request_timeout
        self.ssl_verify = ssl_verify
        self.ssl_ca_file = ssl_ca_file
        self._init_handlers(logger, default_logger)
        #: namespace -> sid of the namespaces currently connected
        self.namespaces: dict[str, str] = {}
        self.connected = False
        self.eio_sid: str | None = None
        self.connection_url: str | None = None
        self.connection_headers: Any = None
        self.connection_auth: Any = None
        self.connection_transports: list[str] = []
        self.connection_namespaces: list[str] = []
        self.socketio_path = "socket.io"

        self._nsps: dict[str, _Namespace] = {}
        self._engine: ClientHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._target: tuple[str, int, str, str, bool] = ("", 0, "", "", False)
        self._in_process: AsyncServer | None = None  # connect(server): no socket
        self._gen = 0
        self._link = "idle"  # idle | opening | open
        self._transport: str | None = None
        self._active = False  # between connect() and the end (no more reconnection)
        self._open_waiter: asyncio.Future[str | None] | None = None
        self._close_waiter: asyncio.Future[None] | None = None
        self._reconnect_task: asyncio.Task[bool] | None = None
        self._ns_changed: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._backoff = _Backoff(reconnection_delay, reconnection_delay_max, randomization_factor)
        # ack deadlines: one heap and one timer for all of them (a timer per emit costs more
        # than the rest of the emit); entries of acks already settled are skipped lazily
        self._deadlines: list[tuple[float, int, _Namespace, int, _Ack]] = []
        self._deadline_seq = itertools.count()
        self._timed = 0  # settled entries are dropped from the heap when it outgrows this
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # ------------------------------------------------------------------ handlers ----
    def register_namespace(self, namespace_handler: AsyncClientNamespace) -> None:
        """Registers a class-based namespace (an :class:`AsyncClientNamespace`)."""
        namespace_handler._client = self
        self.namespace_handlers[namespace_handler.namespace] = namespace_handler

    # ---------------------------------------------------------------- connecting ----
    async def connect(
        self,
        url: str | AsyncServer,
        headers: dict[str, str] | Callable[[], Any] | None = None,
        auth: Any = None,
        transports: str | Iterable[str] | None = None,
        namespaces: str | Iterable[str] | None = None,
        socketio_path: str = "socket.io",
        wait: bool = True,
        wait_timeout: float = 1,
        retry: bool = False,
    ) -> None:
        """Connects to ``url`` (``http://host:port`` or ``ws://host:port``, or over TLS
        ``https://`` or ``wss://``, with an optional query string) and joins ``namespaces``
        (by default ``/`` and every namespace with handlers).

        ``url`` may also be a running :class:`ferrosio.AsyncServer` of this process: the
        client then connects **in-process**, with no socket and no port (a WebSocket fed
        straight to the server's engine; see ``docs/testing.md``), with the same semantics
        as over the network. ``transports`` must then be ``None`` or ``["websocket"]``.

        ``auth`` (a dict, or a callable returning one, evaluated on every connection) goes in
        each namespace's CONNECT packet. ``transports``: ``["polling", "websocket"]`` by
        default (polling first, then the upgrade); ``["websocket"]`` connects with a
        WebSocket directly; ``["polling"]`` never upgrades.

        With ``wait``, returns once every namespace is connected, and raises
        :class:`ferrosio.exceptions.ConnectionRefusedError` (its ``error_args`` are the
        server's ``connect_error`` data) if one is refused, or
        :class:`ferrosio.exceptions.ConnectionError` if one does not answer within
        ``wait_timeout`` seconds. Raises :class:`~ferrosio.exceptions.ConnectionError` if the
        server cannot be reached (with ``retry``, keeps trying as the reconnection settings
        allow first).
        """
        if self._active:
            raise exceptions.ConnectionError("Already connected")
        if auth is not None and not isinstance(auth, dict) and not callable(auth):
            raise TypeError("auth must be a dict or a callable returning one")
        if isinstance(url, str):
            self._target = self._parse_url(url, socketio_path)
            self._in_process = None
        else:
            self._target, transports = self._in_process_target(url, socketio_path, transports)
            self._in_process = url
        self.connection_url = url if isinstance(url, str) else IN_PROCESS_URL
        self.connection_headers = headers
        self.connection_auth = auth
        self.socketio_path = socketio_path
        if transports is None:
            transports = ["polling", "websocket"]
        elif isinstance(transports, str):
            transports = [transports]
        self.connection_transports = list(transports)
        for t in self.connection_transports:
            if t not in ("polling", "websocket"):
                raise ValueError(f"unknown transport {t!r}")
        if not self.connection_transports:
            raise ValueError("no transport")
        if namespaces is None:
            found = set(self.handlers) | set(self.namespace_handlers)
            found.discard("*")
            names = sorted(found) or ["/"]
        elif isinstance(namespaces, str):
            names = [namespaces]
        else:
            names = list(dict.fromkeys(namespaces))
        self.connection_namespaces = names

        self._loop = asyncio.get_running_loop()
        self._nsps = {n: _Namespace(n) for n in names}
        self.namespaces = {}
        self._ns_changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._backoff = _Backoff(
            self.reconnection_delay, self.reconnection_delay_max, self.randomization_factor
        )
        self._active = True
        self._start_engine()
        self._closed_early = None

        error = await self._open_link()
        if error is not None:
            for n in names:
                self._trigger("connect_error", n, (error,))
            if retry and self.reconnection and self._active:
                self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())
                if await self._reconnect_task:
                    error = None
            if error is not None:
                self._finalize()
                raise exceptions.ConnectionError(f"Connection error: {error}")
        if not wait:
            return
        loop = self._loop
        deadline = loop.time() + wait_timeout
        while True:
            states = [ns.state for ns in self._nsps.values()]
            if _CLOSED in states or all(s == _CONNECTED for s in states):
                break
            remaining = deadline - loop.time()
            if remaining <= 0 or not self._active:
                break
            self._ns_changed.clear()
            try:
                await asyncio.wait_for(self._ns_changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        refused = next((ns for ns in self._nsps.values() if ns.error is not None), None)
        if refused is not None:
            await self.disconnect()
            exc = _refusal(refused.error)
            exc.namespace = refused.name  # type: ignore[attr-defined]
            raise exc
        if not all(ns.state == _CONNECTED for ns in self._nsps.values()):
            closed_early, self._closed_early = self._closed_early, None
            await self.disconnect()
            message = "One or more namespaces failed to connect"
            if closed_early is not None:
                # A server on the other parser closes the connection at the first packet.
                message += (
                    f" (the server closed the connection first: {closed_early}; does it use "
                    f"serializer={self.serializer!r} too?)"
                )
            raise exceptions.ConnectionError(message)

    @staticmethod
    def _parse_url(url: str, socketio_path: str) -> tuple[str, int, str, str, bool]:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "ws", "https", "wss"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
        tls = scheme in ("https", "wss")
        host = parts.hostname
        if not host:
            raise ValueError(f"no host in {url!r}")
        port = parts.port or (443 if tls else 80)
        path = "/" + socketio_path.strip("/") + "/"
        return host, port, path, parts.query, tls

    @staticmethod
    def _in_process_target(
        server: Any, socketio_path: str, transports: str | Iterable[str] | None
    ) -> tuple[tuple[str, int, str, str, bool], list[str]]:
        if not callable(getattr(server, "_in_process_engine", None)):
            raise TypeError(
                f"url must be a URL or a ferrosio.AsyncServer, not {type(server).__name__}"
            )
        if transports is not None and list(
            [transports] if isinstance(transports, str) else transports
        ) != ["websocket"]:
            raise ValueError("an in-process connection is a WebSocket: transports=['websocket']")
        path = "/" + socketio_path.strip("/") + "/"
        return (IN_PROCESS_HOST, 0, path, "", False), ["websocket"]

    def _start_engine(self) -> None:
        self._stop_engine()  # a previous connection's, still closing
        assert self._loop is not None
        self._engine = ClientHandle(self.serializer)
        self._loop.add_reader(self._engine.wake_fd(), self._drain)

    def _stop_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(engine.wake_fd())
        engine.shutdown()

    async def _open_link(self) -> str | None:
        """Starts a connection attempt; None once it is open, else why it failed."""
        assert self._loop is not None
        headers = await _real(self.connection_headers)
        engine = self._engine
        if engine is None or not self._active:
            return "client disconnect"
        server_engine = None
        if self._in_process is not None:
            server_engine = self._in_process._in_process_engine()
            if server_engine is None:
                return "the server is not running"
        self._gen += 1
        gen = self._gen
        fut: asyncio.Future[str | None] = self._loop.create_future()
        self._open_waiter = fut
        self._link = "opening"
        host, port, path, query, tls = self._target
        engine.connect(
            gen,
            host,
            port,
            path,
            query,
            [(str(k), str(v)) for k, v in (headers or {}).items()],
            websocket="websocket" in self.connection_transports,
            polling="polling" in self.connection_transports,
            upgrade=True,
            request_timeout_ms=max(1, round(self.request_timeout * 1000)),
            tls=tls,
            tls_verify=self.ssl_verify,
            tls_ca_file=self.ssl_ca_file,
            in_process=server_engine,
        )
        return await fut

    async def _reconnect_loop(self) -> bool:
        """Attempts with backoff until the link is open (True), or gives up (False)."""
        attempts = 0
        while self._active:
            if self.reconnection_attempts and attempts >= self.reconnection_attempts:
                self.logger.warning("ferrosio: giving up after %d reconnection attempts", attempts)
                self._finalize()
                return False
            delay = self._backoff.duration()
            self.logger.info("ferrosio: reconnecting in %.3f s", delay)
            await asyncio.sleep(delay)
            if not self._active:
                return False
            attempts += 1
            error = await self._open_link()
            if error is None:
                self._backoff.reset()
                self.logger.info("ferrosio: reconnected after %d attempt(s)", attempts)
                return True
            self.logger.info("ferrosio: reconnection attempt %d failed: %s", attempts, error)
        return False

    async def disconnect(self) -> None:
        """Leaves every namespace and closes the connection; no reconnection follows.

        ``disconnect`` handlers run with reason ``client disconnect`` for the namespaces that
        were connected. Emits still buffered are dropped.
        """
        if not self._active and self._link == "idle":
            return
        self._active = False
        task = self._reconnect_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        engine = self._engine
        if engine is not None and self._link != "idle":
            assert self._loop is not None
            gen = self._gen
            if self._link == "open":
                for ns in self._nsps.values():
                    if ns.state == _CONNECTED:
                        engine.disconnect_namespace(gen, ns.name)
            waiter = self._close_waiter = self._loop.create_future()
            engine.close(gen)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self.request_timeout + 2)
            except asyncio.TimeoutError:
                self._on_closed(gen, self.reason.CLIENT_DISCONNECT, "close timed out")
        self._finalize()

    async def shutdown(self) -> None:
        """Stops reconnecting and disconnects (python-socketio's name for the same thing)."""
        await self.disconnect()

    async def wait(self) -> None:
        """Waits until the client is disconnected for good (a server-side disconnect, a
        :meth:`disconnect`, or reconnection given up)."""
        if self._finished is not None:
            await self._finished.wait()

    def _finalize(self) -> None:
        """The end: every namespace is closed, what was waiting fails, the thread stops."""
        self._active = False
        task = self._reconnect_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._reconnect_task = None
        for ns in self._nsps.values():
            self._close_namespace(ns, exceptions.DisconnectedError("the client is disconnected"))
        self.namespaces = {}
        self.connected = False
        self._link = "idle"
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = math.inf
        self._deadlines.clear()
        self._timed = 0
        if self._open_waiter is not None and not self._open_waiter.done():
            self._open_waiter.set_result("client disconnect")
        self._stop_engine()
        if self._ns_changed is not None:
            self._ns_changed.set()
        if self._finished is not None:
            self._finished.set()

    # --------------------------------------------------------------- emitting ----
    def _namespace(self, namespace: str | None) -> _Namespace:
        nsp = namespace or "/"
        ns = self._nsps.get(nsp)
        if ns is None or ns.state == _CLOSED or not self._active:
            raise BadNamespaceError(f"{nsp} is not a connected namespace.")
        return ns

    async def emit(
        self,
        event: str,
        data: Any = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        *,
        volatile: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Emits ``event`` (``data``: one argument, a tuple for several, None for none).

        While the namespace is reconnecting the packet is buffered and sent on reconnection;
        a ``volatile`` one is dropped instead. ``callback`` receives the server's
        acknowledgement (error-first with a ``timeout``, ``ack_timeout`` or ``retries``: see
        the class). Raises :class:`BadNamespaceError` if the namespace is not connected and
        will not be.
        """
        self.emit_nowait(event, data, namespace, callback, volatile=volatile, timeout=timeout)

    def emit_nowait(
        self,
        event: str,
        data: Any = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        *,
        volatile: bool = False,
        timeout: float | None = None,
    ) -> None:
        """:meth:`emit` without the coroutine (callable from synchronous code on the loop)."""
        ns = self._namespace(namespace)
        if data is None:
            items: list[Any] = [event]
        elif type(data) is tuple:
            items = [event, *data]
        else:
            items = [event, data]
        if timeout is None:
            timeout = self.ack_timeout
        if self.retries > 0 and not volatile:
            self._enqueue(ns, items, callback, timeout)
            return
        self._send_event(ns, items, callback, timeout is not None, timeout, volatile)

    async def send(
        self, data: Any, namespace: str | None = None, callback: Callable[..., Any] | None = None
    ) -> None:
        """Emits a ``message`` event."""
        self.emit_nowait("message", data, namespace, callback)

    async def call(
        self, event: str, data: Any = None, namespace: str | None = None, timeout: float = 60
    ) -> Any:
        """Emits ``event`` and waits for the acknowledgement; returns its argument (None for
        none, a tuple for several).

        Raises :class:`ferrosio.exceptions.TimeoutError` after ``timeout`` seconds (with
        ``retries``: once every attempt, each bounded by ``ack_timeout`` or ``timeout``, has
        failed), :class:`ferrosio.exceptions.DisconnectedError` if the connection is lost after
        the packet was sent (without ``retries``), :class:`BadNamespaceError` if the namespace
        is not connected and will not be.
        """
        ns = self._namespace(namespace)
        assert self._loop is not None
        fut: asyncio.Future[tuple[Any, ...]] = self._loop.create_future()
        if data is None:
            items: list[Any] = [event]
        elif type(data) is tuple:
            items = [event, *data]
        else:
            items = [event, data]
        if self.retries > 0:

            def done(err: BaseException | None, *args: Any) -> None:
                if not fut.done():
                    if err is not None:
                        fut.set_exception(err)
                    else:
                        fut.set_result(args)

            per_attempt = self.ack_timeout if self.ack_timeout is not None else timeout
            entry = self._enqueue(ns, items, done, per_attempt)
            try:
                return ack_result(await fut)
            finally:
                if not fut.done() and entry in ns.queue:  # cancelled: forget it
                    ns.queue.remove(entry)
        ack_id = self._send_event(ns, items, None, True, timeout, False, fut)
        try:
            args = await fut
        finally:
            if not fut.done():  # cancelled
                self._pop_ack(ns, ack_id)
        return ack_result(args)

    def _send_event(
        self,
        ns: _Namespace,
        items: list[Any],
        fn: Callable[..., Any] | None,
        with_error: bool,
        timeout: float | None,
        volatile: bool,
        fut: asyncio.Future[tuple[Any, ...]] | None = None,
    ) -> int | None:
        text, attachments = _codec.encode(items)
        ack_id = None
        if fn is not None or fut is not None:
            if len(ns.acks) >= MAX_ACKS_IN_FLIGHT:  # a server that never answers
                raise BufferFullError(
                    f"{ns.name}: {len(ns.acks)} acknowledgements are already awaited"
                )
            ack_id = ns.ids
            ns.ids += 1
            ack = ns.acks[ack_id] = _Ack(fn, with_error, fut, timeout is not None)
            if timeout is not None:
                self._add_deadline(ns, ack_id, ack, timeout)
        if ns.state == _CONNECTED:
            assert self._engine is not None
            self._engine.emit(self._gen, ns.name, text, ack_id, attachments)
        elif volatile:
            pass  # dropped, as socket.io-client does while the transport is not writable
        else:
            if len(ns.buffer) >= self.max_buffered:
                if ack_id is not None:
                    self._pop_ack(ns, ack_id)
                raise BufferFullError(
                    f"{ns.name}: {len(ns.buffer)} emits are already waiting for the connection"
                )
            ns.buffer.append((ack_id, text, attachments))
        return ack_id

    def _pop_ack(self, ns: _Namespace, ack_id: int | None) -> _Ack | None:
        """Takes an ack out of its table (its deadline entry, if any, goes stale)."""
        ack = ns.acks.pop(ack_id, None) if ack_id is not None else None
        if ack is not None and ack.timed:
            self._timed -= 1
        return ack

    def _settle(self, ack: _Ack, err: BaseException | None, args: Iterable[Any] = ()) -> None:
        """Delivers an acknowledgement (``err`` None) or a failure to whoever waits."""
        fut = ack.fut
        if fut is not None:
            if not fut.done():
                if err is None:
                    fut.set_result(tuple(args))
                else:
                    fut.set_exception(err)
        elif ack.fn is None:
            pass
        elif ack.with_error:
            self._run(ack.fn, (None, *args) if err is None else (err,))
        elif err is None:
            self._run(ack.fn, args)

    def _add_deadline(self, ns: _Namespace, ack_id: int, ack: _Ack, timeout: float) -> None:
        loop = self._loop
        assert loop is not None
        at = loop.time() + timeout
        heap = self._deadlines
        self._timed += 1
        if len(heap) > 2 * self._timed + 256:  # mostly settled entries: compact
            heap[:] = [e for e in heap if e[2].acks.get(e[3]) is e[4]]
            heapq.heapify(heap)
        heapq.heappush(heap, (at, next(self._deadline_seq), ns, ack_id, ack))
        if at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = loop.call_at(at, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        loop = self._loop
        assert loop is not None
        heap = self._deadlines
        now = loop.time() + 0.002  # timers may fire a little early
        while heap and heap[0][0] <= now:
            _, _, ns, ack_id, ack = heapq.heappop(heap)
            if ns.acks.get(ack_id) is ack:
                self._pop_ack(ns, ack_id)
                self._ack_timed_out(ns, ack_id, ack)
        while heap and heap[0][2].acks.get(heap[0][3]) is not heap[0][4]:
            heapq.heappop(heap)
        if heap and heap[0][0] < self._timer_at:  # (a callback above may have armed one)
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = heap[0][0]
            self._timer = loop.call_at(self._timer_at, self._on_deadline)

    def _ack_timed_out(self, ns: _Namespace, ack_id: int, ack: _Ack) -> None:
        # a buffered packet whose ack timed out is not sent any more
        for i, packet in enumerate(ns.buffer):
            if packet[0] == ack_id:
                del ns.buffer[i]
                break
        self._settle(ack, exceptions.TimeoutError("operation has timed out"))

    # -------------------------------------------------------------- retry queue ----
    def _enqueue(
        self,
        ns: _Namespace,
        items: list[Any],
        callback: Callable[..., Any] | None,
        timeout: float | None,
    ) -> _Queued:
        if len(ns.queue) >= self.max_buffered:
            raise BufferFullError(f"{ns.name}: {len(ns.queue)} emits are already queued")
        entry = _Queued(items, callback, timeout)
        ns.queue.append(entry)
        self._drain_queue(ns)
        return entry

    def _drain_queue(self, ns: _Namespace, force: bool = False) -> None:
        if ns.state != _CONNECTED or not ns.queue:
            return
        head = ns.queue[0]
        if head.pending and not force:
            return
        head.pending = True
        head.tries += 1
        fn = functools.partial(self._queue_ack, ns, head)
        self._send_event(ns, head.items, fn, True, head.timeout, False)

    def _queue_ack(
        self, ns: _Namespace, entry: _Queued, err: BaseException | None, *args: Any
    ) -> None:
        if not ns.queue or ns.queue[0] is not entry:
            return  # already acknowledged (a late ack of an earlier attempt)
        if err is not None:
            if entry.tries > self.retries:
                ns.queue.popleft()
                if entry.callback is not None:
                    self._run(entry.callback, (err,))
        else:
            ns.queue.popleft()
            if entry.callback is not None:
                self._run(entry.callback, (None, *args))
        entry.pending = False
        self._drain_queue(ns)

    # --------------------------------------------------------------- dispatch ----
    def _drain(self) -> None:
        engine = self._engine
        if engine is None:
            return
        for item in engine.drain():
            if item[1] != self._gen:
                continue  # a previous connection's leftovers
            kind = item[0]
            try:
                if kind == ClientHandle.EVENT:
                    self._on_event(item[2], item[3], item[4], item[5])
                elif kind == ClientHandle.ACK:
                    self._on_ack(item[2], item[3], item[4], item[5])
                elif kind == ClientHandle.CONNECT:
                    self._on_connect(item[2], item[4])
                elif kind == ClientHandle.CONNECT_ERROR:
                    self._on_connect_error(item[2], item[4])
                elif kind == ClientHandle.DISCONNECT:
                    self._on_server_disconnect(item[2])
                elif kind == ClientHandle.OPEN:
                    self._on_open(item[2], item[3])
                elif kind == ClientHandle.UPGRADED:
                    self._transport = "websocket"
                elif kind == ClientHandle.CLOSED:
                    self._on_closed(item[1], item[3], item[4])
            except Exception:
                self.logger.exception("ferrosio: error dispatching %r", item[:3])
            if self._engine is not engine:
                break  # finalized by a handler

    def _on_open(self, eio_sid: str, transport: str) -> None:
        self._link = "open"
        self.eio_sid = eio_sid
        self._transport = transport
        waiter = self._open_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        auth = self.connection_auth
        if callable(auth):
            self._spawn(self._connect_namespaces_later(self._gen))
        else:
            self._connect_namespaces(auth)

    async def _connect_namespaces_later(self, gen: int) -> None:
        auth = await _real(self.connection_auth)
        if gen == self._gen and self._link == "open":
            self._connect_namespaces(auth)

    def _connect_namespaces(self, auth: Any) -> None:
        engine = self._engine
        if engine is None:
            return
        data = orjson.dumps(auth) if auth is not None else None
        for ns in self._nsps.values():
            if ns.state == _PENDING:
                if ns.pid is not None:
                    engine.connect_namespace(self._gen, ns.name, _recovery_auth(ns, auth))
                else:
                    engine.connect_namespace(self._gen, ns.name, data)

    def _on_connect(self, nsp: str, data: bytes) -> None:
        ns = self._nsps.get(nsp)
        if ns is None or ns.state != _PENDING:
            return
        try:
            info = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            info = {}
        sid = info.get("sid") if isinstance(info, dict) else None
        ns.sid = str(sid) if sid is not None else None
        pid = info.get("pid") if isinstance(info, dict) else None
        pid = pid if isinstance(pid, str) else None
        # as socket.io-client: recovered when the server kept the private id it gave before
        ns.recovered = pid is not None and pid == ns.pid
        ns.pid = pid
        ns.state = _CONNECTED
        self.namespaces[nsp] = ns.sid or ""
        self.connected = True
        received, ns.received = ns.received, None
        if received:
            for ack_id, text, attachments in received:
                self._on_event(nsp, ack_id, text, attachments)
        # as socket.io-client: the offline buffer, then the retry queue, then "connect"
        engine = self._engine
        assert engine is not None
        while ns.buffer:
            ack_id, text, attachments = ns.buffer.popleft()
            engine.emit(self._gen, nsp, text, ack_id, attachments)
        self._drain_queue(ns, force=True)
        self._trigger("connect", nsp, ())
        if self._ns_changed is not None:
            self._ns_changed.set()

    def _on_connect_error(self, nsp: str, data: bytes) -> None:
        ns = self._nsps.get(nsp)
        if ns is None or ns.state == _CLOSED:
            return
        try:
            error = orjson.loads(data)
        except orjson.JSONDecodeError:
            error = {"message": data.decode("utf-8", "replace")}
        ns.error = error
        was = ns.state
        message = error.get("message") if isinstance(error, dict) else error
        self._close_namespace(ns, _refusal(error, str(message)))
        if was == _CONNECTED:
            self.namespaces.pop(nsp, None)
        self._trigger("connect_error", nsp, (error,))
        if self._ns_changed is not None:
            self._ns_changed.set()
        self._end_if_no_namespace()

    def _on_server_disconnect(self, nsp: str) -> None:
        ns = self._nsps.get(nsp)
        if ns is None or ns.state == _CLOSED:
            return
        was_connected = ns.state == _CONNECTED
        self.namespaces.pop(nsp, None)
        self._close_namespace(ns, exceptions.DisconnectedError(f"{nsp}: server disconnect"))
        if was_connected:
            self._trigger_disconnect(nsp, (), self.reason.SERVER_DISCONNECT)
        if self._ns_changed is not None:
            self._ns_changed.set()
        self._end_if_no_namespace()

    def _end_if_no_namespace(self) -> None:
        """With no namespace left to (re)connect, the connection closes for good."""
        if any(ns.state != _CLOSED for ns in self._nsps.values()):
            return
        self._active = False
        self.connected = False
        if self._link != "idle" and self._engine is not None:
            self._engine.close(self._gen)  # CLOSED follows and finalizes
        else:
            self._finalize()

    def _close_namespace(self, ns: _Namespace, err: BaseException) -> None:
        """Closed for good: buffered and queued emits and their acks fail with ``err``."""
        ns.state = _CLOSED
        buffered = ns.buffer
        ns.buffer = deque()
        queue = ns.queue
        ns.queue = deque()
        acks = ns.acks
        ns.acks = {}
        for ack_id in sorted(acks):
            ack = acks[ack_id]
            if ack.timed:
                self._timed -= 1
            self._settle(ack, err)
        del buffered
        for entry in queue:
            if entry.callback is not None:
                self._run(entry.callback, (err,))

    def _on_closed(self, gen: int, reason: str, detail: str) -> None:
        if gen != self._gen:
            return
        link, self._link = self._link, "idle"
        waiter = self._open_waiter
        closer = self._close_waiter
        if link != "open":
            if waiter is not None and not waiter.done():
                waiter.set_result(detail or reason)
            if closer is not None and not closer.done():
                closer.set_result(None)
            return
        self.connected = False
        self.namespaces = {}
        if any(ns.state != _CONNECTED and ns.state != _CLOSED for ns in self._nsps.values()):
            self._closed_early = detail or reason
        will_reconnect = (
            self._active and self.reconnection and reason != self.reason.CLIENT_DISCONNECT
        )
        lost = exceptions.DisconnectedError(f"connection lost: {reason}")
        for ns in self._nsps.values():
            if ns.state == _CLOSED:
                continue
            was_connected = ns.state == _CONNECTED
            ns.received = None  # held for a CONNECT reply that will not come
            if will_reconnect:
                ns.state = _PENDING
                self._clear_acks(ns, lost)
            else:
                self._close_namespace(ns, lost)
            if was_connected:
                self._trigger_disconnect(ns.name, (), reason)
        if closer is not None and not closer.done():
            closer.set_result(None)
        if will_reconnect:
            if self._reconnect_task is None or self._reconnect_task.done():
                self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())
        else:
            self._finalize()

    def _clear_acks(self, ns: _Namespace, err: BaseException) -> None:
        """The connection is lost: acks of packets already sent fail (the error-aware ones
        are told); those of buffered packets stay, their packets go out on reconnection."""
        buffered = {packet[0] for packet in ns.buffer}
        for ack_id in sorted(ns.acks):
            if ack_id in buffered:
                continue
            ack = self._pop_ack(ns, ack_id)
            if ack is not None:
                self._settle(ack, err)

    def _on_ack(self, nsp: str, ack_id: int, data: bytes, attachments: list[bytes] | None) -> None:
        ns = self._nsps.get(nsp)
        if ns is None:
            return
        ack = ns.acks.pop(ack_id, None)
        if ack is None:
            return
        if ack.timed:
            self._timed -= 1
        args = orjson.loads(data) if attachments is None else _codec.decode(data, attachments)
        fut = ack.fut
        if fut is not None:  # call(): the hot path
            if not fut.done():
                fut.set_result(tuple(args))
            return
        self._settle(ack, None, args)

    def _on_event(
        self, nsp: str, ack_id: int | None, data: bytes, attachments: list[bytes] | None
    ) -> None:
        ns = self._nsps.get(nsp)
        if ns is None or ns.state != _CONNECTED:
            if ns is not None and ns.state == _PENDING and ns.pid is not None:
                self._hold_received(ns, ack_id, data, attachments)
            return
        payload = orjson.loads(data) if attachments is None else _codec.decode(data, attachments)
        if ns.pid is not None and payload and type(payload[-1]) is str:
            # socket.io-client's rule: the last string argument of any event is taken for
            # the offset (and left in the arguments)
            ns.offset = payload[-1]
        event = payload[0]
        if event in self.reserved_events:
            self._refuse_reserved(nsp, event)  # and no ack, even if one was asked for
            return
        fn, lead = self._find_handler(nsp, event)
        if fn is None:
            if ack_id is not None:  # python-socketio answers an unhandled event with an empty ack
                self._send_ack(nsp, ack_id, None)
            return
        args = (*lead, *payload[1:])
        if ack_id is None:
            self._run(fn, args)
            return
        gen = self._gen
        self._run(fn, args, lambda result: self._send_ack(nsp, ack_id, result, gen), None, True)

    def _hold_received(
        self, ns: _Namespace, ack_id: int | None, data: bytes, attachments: list[bytes] | None
    ) -> None:
        """Holds an event that came before the CONNECT reply of a recovering namespace, up
        to ``max_buffered`` of them (the oldest dropped past it)."""
        if ns.received is None:
            ns.received = deque(maxlen=max(1, self.max_buffered))
        ns.received.append((ack_id, data, attachments))

    def _send_ack(self, nsp: str, ack_id: int, result: Any, gen: int | None = None) -> None:
        engine = self._engine
        if engine is None or (gen is not None and gen != self._gen):
            return  # the connection that asked is gone
        text, attachments = _codec.encode(_codec.ack_args(result))
        engine.ack(self._gen, nsp, ack_id, text, attachments)

    def _trigger(self, event: str, nsp: str, args: tuple[Any, ...]) -> None:
        """Runs the client's own ``connect`` or ``connect_error`` handler."""
        fn, lead = self._find_handler(nsp, event)
        if fn is not None:
            self._run(fn, (*lead, *args))

    # ----------------------------------------------------------------- helpers ----
    @property
    def sid(self) -> str | None:
        """The session id in the main namespace, while connected."""
        return self.namespaces.get("/")

    def get_sid(self, namespace: str | None = None) -> str | None:
        """The session id in ``namespace``, while connected."""
        return self.namespaces.get(namespace or "/")

    @property
    def recovered(self) -> bool:
        """Whether the last connection to the main namespace recovered the previous one's
        state (socket.io-client's ``socket.recovered``): see :meth:`is_recovered`."""
        return self.is_recovered()

    def is_recovered(self, namespace: str | None = None) -> bool:
        """Whether the last connection to ``namespace`` (``/`` by default) recovered the
        state of the one before, on a server with connection state recovery (ferrosio's
        ``connection_state_recovery`` or Node's ``connectionStateRecovery``): same sid, rooms,
        and the events missed meanwhile delivered. As socket.io-client, the client sends the
        server's private id and the last event's offset when it reconnects; the offset is the
        last argument of the events the server logged, left in the arguments the handlers
        get (as socket.io-client does)."""
        ns = self._nsps.get(namespace or "/")
        return ns is not None and ns.state == _CONNECTED and ns.recovered

    def transport(self) -> str | None:
        """``"websocket"`` or ``"polling"``: the transport in use."""
        return self._transport

    def start_background_task(
        self, target: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        """Runs ``target(*args, **kwargs)`` as a task."""
        return asyncio.ensure_future(target(*args, **kwargs))

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)


def _recovery_auth(ns: _Namespace, auth: Any) -> bytes:
    """The CONNECT data of a namespace that has a private id: socket.io-client's
    ``Object.assign({pid, offset}, auth)`` (``offset`` left out while no event came)."""
    data: dict[str, Any] = {"pid": ns.pid}
    if ns.offset is not None:
        data["offset"] = ns.offset
    if isinstance(auth, dict):
        data.update(auth)
    return orjson.dumps(data)


def _refusal(error: Any, message: str | None = None) -> exceptions.ConnectionRefusedError:
    """A refused namespace as an exception carrying the server's ``connect_error`` data."""
    if message is None:
        message = str(error.get("message") if isinstance(error, dict) else error)
    exc = exceptions.ConnectionRefusedError(message)
    if isinstance(error, dict):
        exc.error_args = error
    return exc
