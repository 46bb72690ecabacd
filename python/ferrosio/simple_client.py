"""python-socketio's ``SimpleClient`` and ``AsyncSimpleClient`` on ferrosio's client engine.

A client for scripts and tests: connect, emit, call, receive the server's events in order,
disconnect. :class:`AsyncSimpleClient` wraps a :class:`ferrosio.AsyncClient`;
:class:`SimpleClient` is its synchronous face: it runs an asyncio loop on a background thread
hosting an :class:`AsyncSimpleClient`, and every method waits for its result there.

Received events wait in a bounded buffer (``max_received``, 10,000 by default): when it is
full, the oldest event is dropped, counted in :attr:`AsyncSimpleClient.dropped` and logged, so a
script that stops reading cannot make the process grow without limit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ferrosio import exceptions
from ferrosio.client import AsyncClient

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer

__all__ = ["AsyncSimpleClient", "SimpleClient"]

T = TypeVar("T")
logger = logging.getLogger("ferrosio.client")


class AsyncSimpleClient:
    """A Socket.IO client with python-socketio's ``AsyncSimpleClient`` API.

    The positional and keyword arguments are those of :class:`ferrosio.AsyncClient` (e.g.
    ``reconnection=False``), except ``max_received``: the most received events kept until
    :meth:`receive` takes them (the oldest is dropped beyond it).
    """

    def __init__(self, *args: Any, max_received: int = 10_000, **kwargs: Any) -> None:
        if max_received < 1:
            raise ValueError("max_received must be at least 1")
        self.client_args = args
        self.client_kwargs = kwargs
        self.client: AsyncClient | None = None
        self.namespace = "/"
        self.connected = False
        #: Received events dropped because the buffer was full (``max_received``).
        self.dropped = 0
        self._max_received = max_received
        self._input: collections.deque[list[Any]] = collections.deque()
        self._input_event: asyncio.Event | None = None
        self._connected_event: asyncio.Event | None = None
        self._watch: asyncio.Task[None] | None = None

    async def connect(
        self,
        url: str | AsyncServer,
        headers: dict[str, str] | None = None,
        auth: Any = None,
        transports: list[str] | None = None,
        namespace: str = "/",
        socketio_path: str = "socket.io",
        wait_timeout: float = 5,
    ) -> None:
        """Connects to ``url`` and joins ``namespace``; returns once connected. ``url`` may
        be a running :class:`ferrosio.AsyncServer` of this process: an in-process connection
        (see :meth:`ferrosio.AsyncClient.connect`).

        :param headers: extra HTTP headers of the connection request.
        :param auth: the authentication data of the CONNECT packet.
        :param transports: ``["polling", "websocket"]`` by default (polling, then upgrade).
        :param namespace: the one namespace this client talks to (``/``).
        :param socketio_path: the server's endpoint path.
        :param wait_timeout: seconds to wait for the connection.
        :raises ferrosio.exceptions.ConnectionError: the connection failed or was refused.
        """
        if self.connected:
            raise RuntimeError("Already connected")
        self.namespace = namespace
        self._input.clear()
        input_event = self._input_event = asyncio.Event()
        connected_event = self._connected_event = asyncio.Event()
        client = self.client = AsyncClient(*self.client_args, **self.client_kwargs)

        def on_connect() -> None:
            self.connected = True
            connected_event.set()

        def on_disconnect(*_: Any) -> None:
            connected_event.clear()  # reconnecting, perhaps: emits wait for the outcome

        def on_event(event: str, *args: Any) -> None:
            if len(self._input) >= self._max_received:
                self._input.popleft()
                self.dropped += 1
                logger.warning(
                    "ferrosio: SimpleClient buffer full (%d events); the oldest was dropped",
                    self._max_received,
                )
            self._input.append([event, *args])
            input_event.set()

        client.on("connect", on_connect, namespace=namespace)
        client.on("disconnect", on_disconnect, namespace=namespace)
        client.on("*", on_event, namespace=namespace)
        await client.connect(
            url,
            headers=headers or {},
            auth=auth,
            transports=transports,
            namespaces=[namespace],
            socketio_path=socketio_path,
            wait_timeout=wait_timeout,
        )
        self._watch = asyncio.ensure_future(self._watch_end(client))

    async def _watch_end(self, client: AsyncClient) -> None:
        # The end for good (server disconnect, reconnection given up): waiters learn it.
        await client.wait()
        if self.client is client:
            self.connected = False
            if self._connected_event is not None:
                self._connected_event.set()
            if self._input_event is not None:
                self._input_event.set()

    @property
    def sid(self) -> str | None:
        """The session id of the connected namespace; None when not connected."""
        return self.client.get_sid(self.namespace) if self.client else None

    @property
    def transport(self) -> str:
        """``"websocket"`` or ``"polling"``; ``""`` when not connected."""
        return (self.client.transport() or "") if self.client else ""

    async def _ready(self) -> AsyncClient:
        """The client, once connected (waits through a reconnection)."""
        event = self._connected_event
        if event is None:
            raise exceptions.DisconnectedError("not connected")
        await event.wait()
        if not self.connected or self.client is None:
            raise exceptions.DisconnectedError("disconnected")
        return self.client

    async def emit(self, event: str, data: Any = None) -> None:
        """Emits ``event`` (``data`` a tuple for several arguments) without waiting for
        delivery. Raises :class:`~ferrosio.exceptions.DisconnectedError` when disconnected."""
        client = await self._ready()
        await client.emit(event, data, namespace=self.namespace)

    async def call(self, event: str, data: Any = None, timeout: float = 60) -> Any:
        """Emits ``event`` and returns the server's acknowledgement (None for no arguments,
        the argument for one, a tuple for several). Raises
        :class:`~ferrosio.exceptions.TimeoutError` after ``timeout`` seconds."""
        client = await self._ready()
        return await client.call(event, data, namespace=self.namespace, timeout=timeout)

    async def receive(self, timeout: float | None = None) -> list[Any]:
        """The next event from the server as ``[event, *args]``, waiting up to ``timeout``
        seconds (forever with None). Raises :class:`~ferrosio.exceptions.TimeoutError` if
        none came, :class:`~ferrosio.exceptions.DisconnectedError` if the client is
        disconnected for good and nothing is left."""
        event = self._input_event
        while not self._input:
            if event is None or not self.connected:
                raise exceptions.DisconnectedError("disconnected")
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                raise exceptions.TimeoutError(f"no event within {timeout} s") from None
            event.clear()
        return self._input.popleft()

    async def disconnect(self) -> None:
        """Disconnects; nothing happens if not connected."""
        client, self.client = self.client, None
        self.connected = False
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if client is not None:
            await client.disconnect()

    async def __aenter__(self) -> AsyncSimpleClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()


class SimpleClient:
    """A synchronous Socket.IO client with python-socketio's ``SimpleClient`` API.

    It runs an asyncio loop on a background (daemon) thread, hosting an
    :class:`AsyncSimpleClient` on ferrosio's engine; every method blocks until its result
    is there. Arguments as :class:`AsyncSimpleClient`. Do not call it from that loop's thread
    (from a handler of another ferrosio client hosted there, say).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: AsyncSimpleClient | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise exceptions.DisconnectedError("not connected")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()

    def _start(self) -> AsyncSimpleClient:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="ferrosio-simple-client", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        if self._client is None:

            async def make() -> AsyncSimpleClient:
                return AsyncSimpleClient(*self._args, **self._kwargs)  # created on its loop

            self._client = self._run(make())
        return self._client

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        self._client = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def connect(
        self,
        url: str | AsyncServer,
        headers: dict[str, str] | None = None,
        auth: Any = None,
        transports: list[str] | None = None,
        namespace: str = "/",
        socketio_path: str = "socket.io",
        wait_timeout: float = 5,
    ) -> None:
        """Connects as :meth:`AsyncSimpleClient.connect`; returns once connected."""
        client = self._start()
        try:
            self._run(
                client.connect(
                    url, headers, auth, transports, namespace, socketio_path, wait_timeout
                )
            )
        except BaseException:
            self._stop()
            raise

    @property
    def sid(self) -> str | None:
        """The session id of the connected namespace; None when not connected."""
        return self._client.sid if self._client is not None else None

    @property
    def transport(self) -> str:
        """``"websocket"`` or ``"polling"``; ``""`` when not connected."""
        return self._client.transport if self._client is not None else ""

    @property
    def connected(self) -> bool:
        """Whether the client is connected."""
        return self._client is not None and self._client.connected

    @property
    def dropped(self) -> int:
        """Received events dropped because the buffer was full."""
        return self._client.dropped if self._client is not None else 0

    def _connected_client(self) -> AsyncSimpleClient:
        if self._client is None:
            raise exceptions.DisconnectedError("not connected")
        return self._client

    def emit(self, event: str, data: Any = None) -> None:
        """As :meth:`AsyncSimpleClient.emit`."""
        self._run(self._connected_client().emit(event, data))

    def call(self, event: str, data: Any = None, timeout: float = 60) -> Any:
        """As :meth:`AsyncSimpleClient.call`."""
        return self._run(self._connected_client().call(event, data, timeout))

    def receive(self, timeout: float | None = None) -> list[Any]:
        """As :meth:`AsyncSimpleClient.receive`."""
        return self._run(self._connected_client().receive(timeout))

    def disconnect(self) -> None:
        """Disconnects and stops the background thread; nothing happens if not connected."""
        client = self._client
        try:
            if client is not None:
                self._run(client.disconnect())
        finally:
            self._stop()

    def __enter__(self) -> SimpleClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()
