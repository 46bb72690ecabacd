"""The Socket.IO server: python-socketio's ``AsyncServer`` API on ferrosio's Rust engine.

Which of python-socketio's arguments are supported, accepted or refused: :mod:`ferrosio._compat`.
How a handler is found for an event: :meth:`AsyncServer.on`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from ferrosio import _codec, _compat, exceptions
from ferrosio._ferrosio import (
    CONTROL_AUTHORIZE,
    ENGINEIO_MESSAGE,
    ENGINEIO_OPEN,
    SOCKETIO_ACK,
    SOCKETIO_CONNECT,
    SOCKETIO_DISCONNECT,
    SOCKETIO_EVENT,
    ServerHandle,
)
from ferrosio._handlers import (
    PLAIN_RESULTS,
    SERVER_RESERVED_EVENTS,
    HandlerRegistry,
    ack_requested,
    ack_result,
    mark_ack_requested,
    step_eagerly,
)
from ferrosio.engineio import EngineIOEndpoint

if TYPE_CHECKING:
    from ferrosio._ferrosio import (
        EngineIoClose,
        EngineIoMessage,
        EngineIoOpen,
        Handshake,
        ServerRecord,
    )

__all__ = ["AsyncServer", "ack_requested"]

Origins: TypeAlias = "str | list[str] | Callable[[str], bool] | None"

default_logger = logging.getLogger("ferrosio.server")


class _Socket:
    """What the Python side keeps per connected socket (one per namespace connection).
    Its rooms are the engine's to know (``AsyncServer.rooms`` asks it)."""

    __slots__ = ("connected", "eio_sid", "environ", "nsp", "session", "sid")

    def __init__(self, sid: str, nsp: str, eio_sid: str, environ: dict[str, Any]) -> None:
        self.sid = sid
        self.nsp = nsp
        self.eio_sid = eio_sid
        self.environ = environ
        self.session: dict[str, Any] | None = None  # created on first use
        self.connected = False


# An environ lives as long as its connection, so equal strings are shared between
# environs: header names always, values when short (user agent, host, accept-encoding...).
# Both caches are bounded: header names and values come from clients.
_ENVIRON_KEYS: dict[str, str] = {}
_ENVIRON_VALUES: dict[str, str] = {}
_ENVIRON_CACHE_MAX = 4096
_SHARED_VALUE_MAX_LEN = 256


def _environ_key(name: str) -> str:
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if len(_ENVIRON_KEYS) < _ENVIRON_CACHE_MAX:
            _ENVIRON_KEYS[name] = key
    return key


def _shared(value: str) -> str:
    if len(value) > _SHARED_VALUE_MAX_LEN:
        return value
    shared = _ENVIRON_VALUES.get(value)
    if shared is not None:
        return shared
    if len(_ENVIRON_VALUES) >= _ENVIRON_CACHE_MAX:
        _ENVIRON_VALUES.clear()  # a flood of distinct values: start over, stay bounded
    _ENVIRON_VALUES[value] = value
    return value


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers are believed.

    ``"*"`` trusts every peer; otherwise a list of addresses and networks
    (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``).
    """

    __slots__ = ("_any", "_networks")

    def __init__(self, spec: str | Iterable[str]) -> None:
        items = [spec] if isinstance(spec, str) else list(spec)
        self._any = "*" in items
        try:
            self._networks = [
                ipaddress.ip_network(item.strip(), strict=False) for item in items if item != "*"
            ]
        except ValueError as e:
            raise ValueError(f"trusted_proxies: {e}") from None

    def trusts(self, ip: str) -> bool:
        """Whether the peer at ``ip`` is a trusted proxy."""
        if self._any:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._networks)

    def apply(self, environ: dict[str, Any]) -> None:
        """Reflects the forwarded scheme and client address in ``environ`` if its peer is
        trusted. The client is the right-most ``X-Forwarded-For`` entry that is not itself a
        trusted proxy (entries to its left were written by the client, and may be forged); if
        every entry is a trusted proxy (``"*"``), the left-most."""
        if not self.trusts(environ["REMOTE_ADDR"]):
            return
        proto = environ.get("HTTP_X_FORWARDED_PROTO")
        if proto:
            scheme = proto.split(",")[0].strip().lower()
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded:
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            client = next((h for h in reversed(hops) if not self.trusts(h)), None)
            if client is None and hops:
                client = hops[0]
            if client is not None:
                environ["REMOTE_ADDR"] = client


def _build_environ(
    hs: Handshake, scheme: str = "http", proxies: TrustedProxies | None = None
) -> dict[str, Any]:
    remote_ip, remote_port = hs.remote_addr
    local_ip, local_port = hs.local_addr
    environ: dict[str, Any] = {
        "REQUEST_METHOD": _shared(hs.method),
        "PATH_INFO": _shared(hs.path),
        "QUERY_STRING": hs.query,
        "REMOTE_ADDR": _shared(remote_ip),
        "REMOTE_PORT": str(remote_port),
        "SERVER_NAME": _shared(local_ip),
        "SERVER_PORT": _shared(str(local_port)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": scheme,
    }
    for name, value in hs.headers:
        key = _environ_key(name)
        if key in environ and key[0] == "H":  # a repeated header: joined, as in WSGI
            environ[key] = f"{environ[key]},{value}"
        else:
            environ[key] = _shared(value)
    if proxies is not None:
        proxies.apply(environ)
    return environ


class AsyncServer(HandlerRegistry):
    """A Socket.IO server. Handlers run on the running asyncio loop; the network runs in Rust.

    The arguments follow python-socketio's ``AsyncServer``. Intervals are in seconds and may be
    fractional.

    :param cors_allowed_origins: origins allowed to connect: a list, ``"*"`` or a callable.
    :param ping_interval: seconds between server pings.
    :param ping_timeout: seconds to wait for a pong before closing the connection.
    :param max_http_buffer_size: the largest message accepted, in bytes.
    :param transports: allowed transports, ``["polling", "websocket"]`` by default.
    :param namespaces: namespaces clients may connect to; ``"*"`` for any. By default, ``/`` and
        every namespace with handlers.
    :param always_connect: send the CONNECT reply before running the ``connect`` handler.
    :param logger: ``True`` to log at INFO, a ``logging.Logger`` to use it, ``False`` to log
        errors only.
    :param connect_timeout: seconds a connection may stay without joining a namespace.
    :param socketio_path: the endpoint's path (``socket.io``).
    :param cors_credentials: send ``Access-Control-Allow-Credentials: true``.
    :param allow_upgrades: let polling clients upgrade to WebSocket.
    :param static_files: python-socketio's mapping of URL paths to files or folders (or to
                ``{"filename": ..., "content_type": ...}``), served from the same port.
    :param allow_request: called with the environ of every request that would open a
        session, before the session exists; a false result refuses it with 403 (sync or async).
    :param engineio_path: also serve a bare Engine.IO endpoint at this path; its handlers are
        registered on :attr:`engineio`.
    :param max_attachments: the most binary attachments one packet may announce (10, as Node's
        socket.io-parser); a client announcing more is disconnected.
    :param max_attachment_bytes: the most bytes of binary attachments one packet may carry;
        ``None`` (the default) means ``max_http_buffer_size``.
    :param attachment_timeout: seconds the attachments of one packet may take to arrive (30);
        checked at each ping, so an overdue packet is caught within ``ping_interval`` more.
    :param trusted_proxies: the reverse proxies whose ``X-Forwarded-Proto`` and
        ``X-Forwarded-For`` headers are reflected in the environ (``wsgi.url_scheme``,
        ``REMOTE_ADDR``): ``"*"`` (any peer), or addresses and networks such as
        ``["127.0.0.1", "10.0.0.0/8"]``. ``None`` (the default) trusts no one: the environ
        has the peer's address and the listener's scheme, and the headers only as
        ``HTTP_X_FORWARDED_*``.

    python-socketio's other arguments are accepted where their value means what ferrosio does
    anyway (``async_handlers=True``, ``monitor_clients=True``, ``json=None``, ``async_mode=None``
    ...); a value asking for something ferrosio does not do, such as a ``client_manager``,
    raises :class:`~ferrosio.exceptions.UnsupportedFeatureError` naming the feature (the table
    is in :mod:`ferrosio._compat`). An argument neither knows raises ``TypeError``.

    Handlers are looked up as :meth:`on` describes.
    """

    reserved_events = SERVER_RESERVED_EVENTS

    def __init__(
        self,
        *,
        cors_allowed_origins: Origins = None,
        ping_interval: float = 25,
        ping_timeout: float = 20,
        max_http_buffer_size: int = 1_000_000,
        transports: Iterable[str] | None = None,
        namespaces: str | Iterable[str] | None = None,
        always_connect: bool = False,
        logger: bool | logging.Logger = False,
        connect_timeout: float = 45,
        socketio_path: str = "socket.io",
        cors_credentials: bool = True,
        allow_upgrades: bool = True,
        static_files: dict[str, Any] | None = None,
        engineio_path: str | None = None,
        allow_request: Callable[[dict[str, Any]], bool | Awaitable[bool]] | None = None,
        max_attachments: int = 10,
        max_attachment_bytes: int | None = None,
        attachment_timeout: float = 30,
        trusted_proxies: str | Iterable[str] | None = None,
        client_manager: Any = None,
        serializer: str = "default",
        json: Any = None,
        async_handlers: bool = True,
        async_mode: str | None = None,
        monitor_clients: bool | None = None,
        http_compression: bool = False,
        compression_threshold: int = 1024,
        cookie: Any = None,
        engineio_logger: bool | logging.Logger | None = None,
    ) -> None:
        _compat.check(_compat.SERVER, locals())
        self.cors_allowed_origins = cors_allowed_origins
        self.cors_credentials = cors_credentials
        self.allow_upgrades = allow_upgrades
        self.static_files = dict(static_files or {})
        self.allow_request = allow_request
        self.engineio: EngineIOEndpoint | None = (
            EngineIOEndpoint(self, engineio_path) if engineio_path else None
        )
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_http_buffer_size = max_http_buffer_size
        self.max_attachments = max_attachments
        self.max_attachment_bytes = max_attachment_bytes
        self.attachment_timeout = attachment_timeout
        self.trusted_proxies = (
            TrustedProxies(trusted_proxies) if trusted_proxies is not None else None
        )
        self._scheme = "http"
        self._client_certs = False
        self.transports = list(transports) if transports is not None else ["polling", "websocket"]
        for t in self.transports:
            if t not in ("polling", "websocket"):
                raise ValueError(f"unknown transport {t!r}")
        self.namespaces: str | list[str] | None = (
            namespaces if namespaces is None or isinstance(namespaces, str) else list(namespaces)
        )
        self.always_connect = always_connect
        self.connect_timeout = connect_timeout
        self.socketio_path = socketio_path
        self._init_handlers(logger, default_logger)
        self._sockets: dict[str, _Socket] = {}
        self._environs: dict[str, dict[str, Any]] = {}
        self._eio_refs: dict[str, int] = {}
        self._acks: dict[int, tuple[str, Callable[..., Any]]] = {}
        self._acks_by_sid: dict[str, set[int]] = {}
        self._ack_ids = itertools.count(1)
        self._engine: ServerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ handlers ----
    def register_namespace(self, namespace_handler: Any) -> None:
        """Registers a class-based namespace (an :class:`ferrosio.AsyncNamespace`)."""
        namespace_handler._set_server(self)
        self.namespace_handlers[namespace_handler.namespace] = namespace_handler

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        """python-socketio's way to serve through a web framework: not supported."""
        raise exceptions.UnsupportedFeatureError(
            "attach (serving through a web framework; ferrosio serves on its own listener: "
            "start(), serve() or ferrosio.run()) is not supported yet"
        )

    def instrument(
        self,
        auth: Any = None,
        mode: str = "development",
        read_only: bool = False,
        server_id: str | None = None,
        namespace: str = "/admin",
        server_stats_interval: float = 2,
    ) -> None:
        """python-socketio's Admin UI instrumentation: not supported."""
        raise exceptions.UnsupportedFeatureError(
            "instrument (the Socket.IO Admin UI) is not supported yet"
        )

    # ------------------------------------------------------------------ lifecycle ----
    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
    ) -> int:
        """Starts listening without blocking; returns the bound port (useful with port 0).

        :param ssl_certfile: serve HTTPS and WSS with this PEM certificate chain (leaf first;
            TLS is done in Rust, rustls; ALPN ``http/1.1``). Needs ``ssl_keyfile``.
        :param ssl_keyfile: the PEM private key of ``ssl_certfile``.
        :param ssl_ca_certs: a PEM file of CAs: clients must then present a certificate
            issued by one of them.
        :raises ferrosio.exceptions.FerrosioError: a certificate, key or CA file is missing,
            unreadable or holds nothing usable, or the key is not the certificate's.
        :raises ValueError: only one of ``ssl_certfile`` and ``ssl_keyfile`` is given, or
            ``ssl_ca_certs`` without them.
        """
        if self._engine is not None and self._engine.is_running():
            raise exceptions.FerrosioError("server is already running")
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._engine = ServerHandle(
            host,
            port,
            path=self.socketio_path,
            ping_interval_ms=round(self.ping_interval * 1000),
            ping_timeout_ms=round(self.ping_timeout * 1000),
            max_payload=self.max_http_buffer_size,
            connect_timeout_ms=round(self.connect_timeout * 1000),
            websocket="websocket" in self.transports,
            polling="polling" in self.transports,
            upgrades=self.allow_upgrades,
            engineio_path=self.engineio.path if self.engineio else None,
            static_files=self._static_routes(),
            authorize_requests=self.allow_request is not None,
            max_attachments=self.max_attachments,
            max_attachment_bytes=self.max_attachment_bytes,
            attachment_timeout_ms=round(self.attachment_timeout * 1000),
            tls_cert_file=ssl_certfile,
            tls_key_file=ssl_keyfile,
            tls_client_ca_file=ssl_ca_certs,
            **self._cors_options(),
        )
        self._scheme = "https" if ssl_certfile is not None else "http"
        self._client_certs = ssl_ca_certs is not None
        self._loop.add_reader(self._engine.wake_fd(), self._drain)
        self.logger.info("ferrosio listening on %s:%d", host, self._engine.port)
        return self._engine.port

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
    ) -> None:
        """Serves until :meth:`shutdown` is called (from a handler, a signal, another task).

        The ``ssl_*`` arguments are :meth:`start`'s.
        """
        await self.start(
            host,
            port,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_ca_certs=ssl_ca_certs,
        )
        assert self._stopped is not None
        await asyncio.shield(self._stopped)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Graceful shutdown: queued packets are flushed, then every connection is closed.

        Disconnect handlers run for the sockets that were connected.
        """
        engine, loop = self._engine, self._loop
        if engine is None or loop is None:
            return
        await loop.run_in_executor(None, engine.shutdown, round(timeout * 1000))
        loop.remove_reader(engine.wake_fd())
        self._drain()  # the disconnects the shutdown produced
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self._engine = None
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def _cors_options(self) -> dict[str, Any]:
        origins = self.cors_allowed_origins
        if origins is None:
            return {"cors": "same-origin", "cors_credentials": self.cors_credentials}
        if origins == "*":
            return {"cors": "any", "cors_credentials": self.cors_credentials}
        if isinstance(origins, str):
            origins = [origins]
        if callable(origins):
            return {"cors": "host", "cors_credentials": self.cors_credentials}
        if "*" in origins:  # python-engineio: ["*"] allows any origin, as "*" does
            return {"cors": "any", "cors_credentials": self.cors_credentials}
        if not origins:
            return {"cors": "disabled", "cors_credentials": self.cors_credentials}
        return {
            "cors": "list",
            "cors_origins": list(origins),
            "cors_credentials": self.cors_credentials,
        }

    def _static_routes(self) -> list[tuple[str, str, str | None]]:
        routes: list[tuple[str, str, str | None]] = []
        for url, target in self.static_files.items():
            if isinstance(target, dict):
                routes.append((url, str(target["filename"]), target.get("content_type")))
            else:
                routes.append((url, str(target), None))
        return routes

    @property
    def port(self) -> int | None:
        """The port the server listens on, once started."""
        return self._engine.port if self._engine is not None else None

    def _core(self) -> ServerHandle:
        if self._engine is None:
            raise exceptions.EngineNotRunningError("the server is not running; call serve() first")
        return self._engine

    # --------------------------------------------------------------- emitting ----
    def _targets(
        self, nsp: str, to: Any, skip_sid: Any
    ) -> tuple[str | None, list[str] | None, list[str] | None]:
        skip = [skip_sid] if isinstance(skip_sid, str) else list(skip_sid) if skip_sid else None
        if to is None:
            return None, None, skip
        if isinstance(to, str):
            s = self._sockets.get(to)
            if s is not None and s.nsp == nsp and skip is None:
                return to, None, None
            return None, [to], skip
        return None, list(to), skip

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """Emits ``event`` to one client (``to=sid``), rooms, or everyone in the namespace.

        ``data`` may be a tuple to send several arguments. With ``callback``, the single
        recipient's acknowledgement is passed to it. Returns without waiting for the network.
        ``ignore_queue`` is python-socketio's; without a message queue it changes nothing.
        """
        self.emit_nowait(event, data, to, room, skip_sid, namespace, callback)

    def emit_nowait(
        self,
        event: str,
        data: Any = None,
        to: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        """Like :meth:`emit`, callable from synchronous code."""
        nsp = namespace or "/"
        engine = self._core()
        text, attachments = _codec.encode([event, *_codec.to_args(data)])
        sid, rooms, skip = self._targets(nsp, to if to is not None else room, skip_sid)
        ack_id = None
        if callback is not None:
            if sid is None:
                raise ValueError(
                    f"a callback needs one client connected to {nsp} as to=<sid>, not "
                    f"{to if to is not None else room!r} (callbacks from rooms or everyone "
                    "are not supported)"
                )
            ack_id = self._register_ack(sid, callback)
        engine.emit(
            nsp, text, to=sid, rooms=rooms, skip=skip, attachments=attachments, ack_id=ack_id
        )

    async def send(
        self,
        data: Any,
        to: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """Emits a ``message`` event (as :meth:`emit`)."""
        await self.emit("message", data, to, room, skip_sid, namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        sid: str | None = None,
        namespace: str | None = None,
        timeout: float = 60,
        ignore_queue: bool = False,
    ) -> Any:
        """Emits to one client (``to``, or its alias ``sid``) and waits for its
        acknowledgement.

        Returns the acknowledgement's argument (a tuple if several, None if none). Raises
        :class:`ferrosio.exceptions.TimeoutError` after ``timeout`` seconds, and
        :class:`ferrosio.exceptions.DisconnectedError` if the client is not connected to the
        namespace, or goes away before answering. ``ignore_queue`` changes nothing (no queue).
        """
        target = to if to is not None else sid
        if target is None:
            raise ValueError("call() needs one recipient, to=<sid>: it cannot broadcast")
        if not isinstance(target, str):
            raise TypeError(f"call() goes to one client: to=<sid>, not {type(target).__name__}")
        nsp = namespace or "/"
        s = self._sockets.get(target)
        if s is None or s.nsp != nsp or not s.connected:
            raise exceptions.DisconnectedError(f"{target} is not connected to namespace {nsp}")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def on_ack(*args: Any) -> None:
            if not fut.done():
                fut.set_result(args)

        on_ack.__ferrosio_future__ = fut  # type: ignore[attr-defined]
        self.emit_nowait(event, data, to=target, namespace=nsp, callback=on_ack)
        try:
            args = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise exceptions.TimeoutError(f"no acknowledgement within {timeout} s") from None
        return ack_result(args)

    def _register_ack(self, sid: str, callback: Callable[..., Any]) -> int:
        ack_id = next(self._ack_ids)
        self._acks[ack_id] = (sid, callback)
        self._acks_by_sid.setdefault(sid, set()).add(ack_id)
        return ack_id

    # ------------------------------------------------------------------ rooms ----
    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Adds a client to a room."""
        self._core().join(namespace or "/", sid, room)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Removes a client from a room."""
        self._core().leave(namespace or "/", sid, room)

    async def close_room(self, room: str, namespace: str | None = None) -> None:
        """Removes every client from a room."""
        self._core().close_room(namespace or "/", room)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        """The rooms a client is in, its own sid room first; ``[]`` for an unknown client or a
        stopped server. Reflects every room change requested before the call (the engine keeps
        the rooms and applies requests in order; this waits for its answer)."""
        engine = self._engine
        if engine is None:
            return []
        return engine.rooms(namespace or "/", sid)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """Disconnects a client from ``namespace`` (``/`` by default); its ``disconnect``
        handler runs with reason ``server disconnect``. ``ignore_queue`` changes nothing."""
        nsp = namespace or "/"
        self._core().disconnect(nsp, sid)

    def _socket_in(self, sid: str, namespace: str | None) -> _Socket | None:
        """The socket ``sid`` if it belongs to ``namespace`` (``/`` by default): a sid is
        unknown in any other namespace, as in python-socketio."""
        s = self._sockets.get(sid)
        if s is None or s.nsp != (namespace or "/"):
            return None
        return s

    # --------------------------------------------------------------- sessions ----
    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]:
        """The user session dict of a client of ``namespace`` (``/`` by default); KeyError
        for a sid that is not connected to it."""
        s = self._socket_in(sid, namespace)
        if s is None:
            raise KeyError(f"unknown session {sid} in namespace {namespace or '/'}")
        if s.session is None:
            s.session = {}
        return s.session

    async def save_session(
        self, sid: str, session: dict[str, Any], namespace: str | None = None
    ) -> None:
        """Replaces the user session dict of a client of ``namespace`` (``/`` by default);
        KeyError for a sid that is not connected to it."""
        s = self._socket_in(sid, namespace)
        if s is None:
            raise KeyError(f"unknown session {sid} in namespace {namespace or '/'}")
        s.session = session

    @contextlib.asynccontextmanager
    async def session(
        self, sid: str, namespace: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """``async with sio.session(sid) as session:`` edits the session in place."""
        session = await self.get_session(sid, namespace)
        yield session
        await self.save_session(sid, session, namespace)

    def get_environ(self, sid: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The WSGI-style environ of the client's connection request; None for a sid that is
        not connected to ``namespace`` (``/`` by default)."""
        s = self._socket_in(sid, namespace)
        return s.environ if s is not None else None

    # --------------------------------------------------------------- dispatch ----
    def _drain(self) -> None:
        engine = self._engine
        if engine is None:
            return
        try:
            engine.begin_batch()
            try:
                self._dispatch(engine.drain())  # per-event errors are caught in there
            finally:
                # shut down meanwhile: nothing is listening any more
                with contextlib.suppress(exceptions.EngineNotRunningError):
                    engine.end_batch()
        except Exception as exc:
            # The bridge itself failed (e.g. a Python layer newer than the native module):
            # the wake-up fd would stay readable and this would spin, so stop serving instead.
            self.logger.critical("ferrosio: the engine bridge failed; stopping", exc_info=exc)
            if self._loop is not None:
                self._loop.remove_reader(engine.wake_fd())
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_exception(exc)

    def _dispatch(self, items: list[ServerRecord]) -> None:
        # Each branch narrows the record to its exact tuple type; events come first.
        on_event = self._on_event
        for item in items:
            try:
                if item[0] == SOCKETIO_EVENT:
                    _, sid, nsp, ack_id, data, attachments = item
                    on_event(sid, nsp, ack_id, data, attachments)
                elif item[0] == SOCKETIO_ACK:
                    _, sid, _nsp, acked_id, data, attachments = item
                    self._on_ack(sid, acked_id, data, attachments)
                elif item[0] == SOCKETIO_CONNECT:
                    _, sid, nsp, eio_sid, auth, handshake = item
                    self._on_connect(sid, nsp, eio_sid, auth, handshake)
                elif item[0] == SOCKETIO_DISCONNECT:
                    _, sid, nsp, reason = item
                    self._on_disconnect(sid, nsp, reason)
                elif item[0] == CONTROL_AUTHORIZE:
                    _, request_id, origin, check_request, handshake = item
                    self._authorize(request_id, origin, check_request, handshake)
                else:
                    self._on_engineio(item)
            except Exception:
                self.logger.exception("ferrosio: error dispatching %r", item[:3])

    def _on_engineio(self, item: EngineIoOpen | EngineIoMessage | EngineIoClose) -> None:
        endpoint = self.engineio
        if endpoint is None:
            return
        if item[0] == ENGINEIO_OPEN:
            _, sid, handshake = item
            fn = endpoint.handlers.get("connect")
            args: tuple[Any, ...] = (
                sid,
                _build_environ(handshake, self._scheme, self.trusted_proxies),
            )
        elif item[0] == ENGINEIO_MESSAGE:
            _, sid, message = item
            fn = endpoint.handlers.get("message")
            args = (sid, message)
        else:
            _, sid, reason = item
            fn = endpoint.handlers.get("disconnect")
            args = (sid, reason) if fn is not None and self._arity_of(fn) >= 2 else (sid,)
        if fn is not None:
            self._run(fn, args)

    def _authorize(
        self, request_id: int, origin: str | None, check_request: bool, handshake: Handshake
    ) -> None:
        """Answers the engine: is this origin allowed, may this request open a session?"""
        engine = self._core()
        origin_ok = True
        if origin is not None:
            policy = self.cors_allowed_origins
            try:
                origin_ok = bool(policy(origin)) if callable(policy) else False
            except Exception:
                self.logger.exception("ferrosio: cors_allowed_origins raised; origin refused")
                origin_ok = False
        hook = self.allow_request
        if not check_request or hook is None or not origin_ok:
            engine.authorize(request_id, origin_ok, True)
            return
        try:
            verdict = hook(_build_environ(handshake, self._scheme, self.trusted_proxies))
        except Exception:
            self.logger.exception("ferrosio: allow_request raised; request refused")
            engine.authorize(request_id, origin_ok, False)
            return
        if not inspect.isawaitable(verdict):
            engine.authorize(request_id, origin_ok, bool(verdict))
            return

        async def finish(aw: Awaitable[Any]) -> None:
            try:
                allowed = bool(await aw)
            except Exception:
                self.logger.exception("ferrosio: allow_request raised; request refused")
                allowed = False
            if self._engine is not None:
                self._engine.authorize(request_id, origin_ok, allowed)

        self._spawn(finish(verdict))

    def _namespace_allowed(self, nsp: str) -> bool:
        """python-socketio's rule: a namespace with handlers, or listed in ``namespaces``
        (``["/"]`` by default, ``"*"`` for any)."""
        if nsp in self.handlers or nsp in self.namespace_handlers or self.namespaces == "*":
            return True
        return nsp in (self.namespaces if self.namespaces is not None else ["/"])

    def _on_event(
        self, sid: str, nsp: str, ack_id: int | None, data: bytes, attachments: list[bytes] | None
    ) -> None:
        # The hot path: keep it free of per-event closures and needless calls.
        s = self._sockets.get(sid)
        if s is None or not s.connected:
            return
        payload = orjson.loads(data) if attachments is None else _codec.decode(data, attachments)
        event = payload[0]
        if event in SERVER_RESERVED_EVENTS:
            self._refuse_reserved(nsp, event)  # and no ack, even if one was asked for
            return
        fn, lead = self._find_handler(nsp, event)
        if fn is None:
            if ack_id is not None:  # python-socketio answers an unhandled event with an empty ack
                self._send_ack(nsp, sid, ack_id, None)
            return
        payload[0] = sid
        if lead:
            payload[0:0] = lead
        if ack_id is None:
            self._run(fn, payload)
            return
        mark_ack_requested(True)
        try:
            result = fn(*payload)
            if type(result) is CoroutineType:
                finished, result = step_eagerly(result)
                if not finished:
                    self._spawn(self._finish_ack(result, nsp, sid, ack_id))
                    return
        except Exception:
            self.logger.exception("ferrosio: handler %s raised", getattr(fn, "__name__", fn))
            return
        if type(result) in PLAIN_RESULTS or not inspect.isawaitable(result):
            self._send_ack(nsp, sid, ack_id, result)
            return
        self._spawn(self._finish_ack(result, nsp, sid, ack_id))

    def _send_ack(self, nsp: str, sid: str, ack_id: int, result: Any) -> None:
        """Sends a handler's return value as the ack (None: no args, tuple: several)."""
        engine = self._engine
        if engine is None:
            return  # shut down while the handler ran
        # None: no args, a tuple: several, else one (orjson writes a tuple as an array).
        args = () if result is None else result if type(result) is tuple else (result,)
        try:
            engine.ack(nsp, sid, ack_id, orjson.dumps(args))
        except TypeError:  # binary values (or non-str keys): the general encoder
            text, attachments = _codec.encode(list(args))
            engine.ack(nsp, sid, ack_id, text, attachments)

    async def _finish_ack(self, aw: Awaitable[Any], nsp: str, sid: str, ack_id: int) -> None:
        try:
            result = await aw
        except Exception:
            self.logger.exception("ferrosio: handler raised")
            return
        if self._engine is not None:
            self._send_ack(nsp, sid, ack_id, result)

    def _on_ack(self, sid: str, ack_id: int, data: bytes, attachments: list[bytes] | None) -> None:
        entry = self._acks.get(ack_id)
        if entry is None or entry[0] != sid:
            return
        del self._acks[ack_id]
        ids = self._acks_by_sid.get(sid)
        if ids is not None:
            ids.discard(ack_id)
        args = _codec.decode(data, attachments)
        self._run(entry[1], args)

    def _on_connect(
        self, sid: str, nsp: str, eio_sid: str, auth_data: bytes | None, handshake: Handshake
    ) -> None:
        engine = self._core()
        if not self._namespace_allowed(nsp):
            engine.reject(nsp, sid, b'{"message":"Invalid namespace"}')
            return
        try:
            auth = orjson.loads(auth_data) if auth_data else None
        except orjson.JSONDecodeError:
            auth = None
        environ = self._environs.get(eio_sid)
        if environ is None:
            environ = self._environs[eio_sid] = _build_environ(
                handshake, self._scheme, self.trusted_proxies
            )
        self._eio_refs[eio_sid] = self._eio_refs.get(eio_sid, 0) + 1
        s = self._sockets[sid] = _Socket(sid, nsp, eio_sid, environ)
        fn, lead = self._find_handler(nsp, "connect")
        if self.always_connect:
            s.connected = True
            engine.accept(nsp, sid)
        if fn is None:
            self._connect_result(s, True)
            return
        args: tuple[Any, ...] = (*lead, sid, environ, auth)
        if self._arity_of(fn) < len(args):  # an older handler without the auth argument
            args = args[:-1]
        self._run(
            fn,
            args,
            lambda result: self._connect_result(s, result),
            lambda exc: self._connect_failed(s, exc),
        )

    def _connect_result(self, s: _Socket, result: Any) -> None:
        if result is False:
            self._refuse(s, {"message": "Connection rejected by server"})
            return
        if self._sockets.get(s.sid) is not s:
            return  # the client left while its connect handler ran
        if not s.connected:
            s.connected = True
            self._core().accept(s.nsp, s.sid)

    def _connect_failed(self, s: _Socket, exc: BaseException) -> None:
        if isinstance(exc, exceptions.ConnectionRefusedError):
            self._refuse(s, exc.error_args)
            return
        self.logger.error("ferrosio: connect handler raised", exc_info=exc)
        self._refuse(s, {"message": "Connection rejected by server"})

    def _refuse(self, s: _Socket, error: dict[str, Any]) -> None:
        engine = self._core()
        if self._sockets.get(s.sid) is not s:
            return
        if s.connected:  # always_connect: already accepted, so disconnect instead
            engine.disconnect(s.nsp, s.sid)
            return
        self._forget(s)
        engine.reject(s.nsp, s.sid, orjson.dumps(error))

    def _forget(self, s: _Socket) -> None:
        self._sockets.pop(s.sid, None)
        refs = self._eio_refs.get(s.eio_sid, 1) - 1
        if refs <= 0:
            self._eio_refs.pop(s.eio_sid, None)
            self._environs.pop(s.eio_sid, None)
        else:
            self._eio_refs[s.eio_sid] = refs
        for ack_id in self._acks_by_sid.pop(s.sid, ()):
            entry = self._acks.pop(ack_id, None)
            fut = getattr(entry[1], "__ferrosio_future__", None) if entry else None
            if fut is not None and not fut.done():
                fut.set_exception(exceptions.DisconnectedError(f"{s.sid} disconnected"))

    def _on_disconnect(self, sid: str, nsp: str, reason: str) -> None:
        s = self._sockets.get(sid)
        if s is None:
            return
        was_connected = s.connected
        self._forget(s)
        if not was_connected:
            return
        self._trigger_disconnect(nsp, (sid,), reason)
