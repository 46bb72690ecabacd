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
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import orjson

from ferrosio import _codec, _compat, exceptions
from ferrosio._asgi_host import ASGIApp, AsgiHost
from ferrosio._broadcast_acks import BroadcastAcks
from ferrosio._cluster_requests import ClusterRequests, RemoteSocket
from ferrosio._environ import EnvironSlot
from ferrosio._ferrosio import (
    CONTROL_AUTHORIZE,
    CONTROL_CLUSTER,
    CONTROL_CLUSTER_MESSAGE,
    CONTROL_CLUSTER_SENT,
    CONTROL_READY,
    CONTROL_RESPONSE,
    ENGINEIO_MESSAGE,
    ENGINEIO_OPEN,
    HTTP_CLOSED,
    HTTP_REQUEST,
    HTTP_WRITTEN,
    SOCKETIO_ACK,
    SOCKETIO_BROADCAST_REACH,
    SOCKETIO_CONNECT,
    SOCKETIO_DISCONNECT,
    SOCKETIO_EVENT,
    SOCKETIO_KEPT,
    SOCKETIO_ROOM_REFUSED,
    ServerHandle,
)
from ferrosio._handlers import (
    PLAIN_RESULTS,
    SERVER_RESERVED_EVENTS,
    Handler,
    HandlerRegistry,
    NamespaceMatcher,
    ack_requested,
    ack_result,
    mark_ack_requested,
    step_eagerly,
)
from ferrosio._recovery import KeptSessions, RecoveryOptions
from ferrosio.cluster import AsyncRedisManager
from ferrosio.engineio import EngineIOEndpoint

if TYPE_CHECKING:
    from ferrosio._admin import AdminInstrumentation
    from ferrosio._ferrosio import (
        EngineIoClose,
        EngineIoMessage,
        EngineIoOpen,
        Handshake,
        ServerRecord,
    )

__all__ = ["AsyncServer", "DynamicNamespace", "ack_requested"]

Origins: TypeAlias = "str | list[str] | Callable[[str], bool] | None"
#: A connection middleware: ``mw(sid, environ, auth)``, sync or async; raise
#: :class:`~ferrosio.exceptions.ConnectionRefusedError` to refuse the connection.
ConnectMiddleware: TypeAlias = Callable[[str, dict[str, Any], Any], Any]
#: A packet middleware: ``mw(sid, event, args)``, sync or async; ``args`` is the event's
#: argument list (editable in place); raise to drop the packet.
PacketMiddleware: TypeAlias = Callable[[str, str, list[Any]], Any]
#: An outgoing listener: ``fn(event, args, namespace, to)``; ``to`` is a sid, a list of rooms,
#: or None for everyone in the namespace.
OutgoingListener: TypeAlias = Callable[[str, list[Any], str, "str | list[str] | None"], Any]
_M = TypeVar("_M", bound=Callable[..., Any])

default_logger = logging.getLogger("ferrosio.server")


def _names(value: str | Iterable[str]) -> list[str]:
    """One room name or several, as a list."""
    return [value] if isinstance(value, str) else list(value)


# Outages of the Redis link and its recovery, once per change.
_cluster_logger = logging.getLogger("ferrosio.cluster")


class _Socket:
    """What the Python side keeps per connected socket (one per namespace connection).
    Its rooms are the engine's to know (``AsyncServer.rooms`` asks it); its environ is built
    when used (``_environ``)."""

    __slots__ = ("connected", "eio_sid", "environ", "nsp", "session", "sid")

    def __init__(self, sid: str, nsp: str, eio_sid: str, environ: EnvironSlot) -> None:
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
#: Most acknowledgements awaited from one client at once (``emit(callback=)``/``call``);
#: one more raises BufferFullError. The official server has no bound (docs/bounds.md).
MAX_ACKS_IN_FLIGHT = 10_000


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


class DynamicNamespace:
    """A dynamic namespace (:meth:`AsyncServer.of`): its ``matcher`` and what every matching
    child namespace shares (its handlers and middlewares)."""

    __slots__ = ("connect_middlewares", "handlers", "matcher", "packet_middlewares")

    def __init__(self, matcher: NamespaceMatcher) -> None:
        self.matcher = matcher
        self.handlers: dict[str, Handler] = {}
        self.connect_middlewares: list[ConnectMiddleware] = []
        self.packet_middlewares: list[PacketMiddleware] = []

    def matches(self, nsp: str) -> bool:
        """Whether the namespace ``nsp`` is a child of this one."""
        m = self.matcher
        if isinstance(m, re.Pattern):
            return m.search(nsp) is not None
        return bool(m(nsp))


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
    :param client_manager: ``None`` (this server alone) or a
        :class:`ferrosio.AsyncRedisManager`: a cluster of servers over Redis, ferrosio's and
        Node's (``@socket.io/redis-adapter``) alike.
    :param serializer: the Socket.IO parser clients must use: ``"default"`` (JSON, the
        official clients' default) or ``"msgpack"`` (npm's ``socket.io-msgpack-parser``: each
        packet one MessagePack message, binary values inline). Handlers see the same Python
        values either way (``bytes`` for binaries, ``dict`` for maps). Not with a
        ``client_manager`` yet.
    :param attachment_timeout: seconds the attachments of one packet may take to arrive (30);
        checked at each ping, so an overdue packet is caught within ``ping_interval`` more.
    :param max_send_buffer_size: the most bytes that may wait to be written to one client
        (16 MB): what is queued for it, what its socket has not taken, what waits for a polling
        GET, an upgrade or a pending CONNECT. Past it, a ``volatile`` emit to the client is
        dropped; any other emit disconnects the client, with the reason ``"send buffer full"``
        (a slow or stalled reader cannot hold the server's memory).
    :param max_poll_response_size: the most bytes of one long-polling response (1 MB; at least
        one packet, whose binary attachments always go with it); the rest waits for the next GET.
    :param max_inbound_buffer_size: the most bytes of one client's messages that may wait for
        the handlers (64 KB; each message also counts 64 bytes for its bookkeeping). Past it,
        the server stops reading that client (TCP backpressure: its sends slow down, a polling
        POST is held) until the handlers catch up; nothing is dropped. A single larger message
        is still accepted. Small, so that one flooding client adds little to the wait of the
        others' events.
    :param max_inbound_total_size: the same bound over all clients together (16 MB): past it,
        every client with messages waiting is paused; others read on.
    :param max_rooms_per_socket: the most rooms one client may be in, its own sid room aside
        (10,000; python-socketio and Node have no bound). A join past it is refused: the client
        stays out of that room, and ``logger`` warns once per client (so an
        application that joins rooms its clients name cannot be made to grow without end).
    :param trusted_proxies: the reverse proxies whose ``X-Forwarded-Proto`` and
        ``X-Forwarded-For`` headers are reflected in the environ (``wsgi.url_scheme``,
        ``REMOTE_ADDR``): ``"*"`` (any peer), or addresses and networks such as
        ``["127.0.0.1", "10.0.0.0/8"]``. ``None`` (the default) trusts no one: the environ
        has the peer's address and the listener's scheme, and the headers only as
        ``HTTP_X_FORWARDED_*``.
    :param allow_eio3: also accept clients of the previous protocol revision, Engine.IO v3 /
        Socket.IO v4: ``socket.io-client`` 2.x (still in many mobile apps) and the Swift,
        Java and C++ clients of that generation (Node's ``allowEIO3``; python-socketio has
        no such option). Such clients join the main namespace ``/`` as soon as they connect
        (its ``connect`` handler runs then, with ``auth=None``: they send none), send no
        auth when joining other namespaces, and ping the server themselves (a client that
        stops pinging for ``ping_interval + ping_timeout`` is disconnected). Their sids are
        the ones such clients compute themselves (the Engine.IO session id in ``/``,
        ``"/chat#<that id>"`` in ``/chat``), as in Node. Everything else
        (events, acks, binary, rooms, broadcasts to clients of both revisions) works as
        for current clients, on ferrosio's own listener and under an ASGI server
        (:class:`ferrosio.ASGIApp`). ``False`` (the default) refuses them with HTTP 400,
        ``Unsupported protocol version``.
    :param connection_state_recovery: Node's ``connectionStateRecovery``: ``True`` (the
        defaults) or a dict of ``max_disconnection_duration`` (seconds, 120) and
        ``skip_middlewares`` (True), with ferrosio's bounds ``max_sessions`` (10,000 lost
        sockets kept, the oldest forgotten first), ``max_log_size`` (16 MB of logged packets per
        namespace, the oldest dropped first), ``max_missed_packets`` (10,000) and
        ``max_missed_size`` (4 MB) per socket. A socket lost while in its namespace
        (``transport close``, ``transport error``, ``ping timeout``, or an Engine.IO close
        without a Socket.IO DISCONNECT) keeps its sid, rooms and session data that long;
        a client that comes back with its private id and last offset (the official client
        with ``connectionStateRecovery``, or :class:`AsyncClient`) gets them back and every
        packet it missed, in order; otherwise (expired, forgotten, or missed more than the
        bounds) it gets a new session. Every event emitted without ``callback`` and not
        ``volatile`` carries its offset as its last argument, as in Node.
        :meth:`is_recovered` tells a recovered socket in ``connect``. Not with a
        ``client_manager`` or ``serializer="msgpack"``.

    :param per_message_deflate: negotiate WebSocket compression (permessage-deflate, Node's
        ``perMessageDeflate``) with clients that offer it (browsers and the npm client do):
        messages of at least ``compression_threshold`` bytes are then compressed both ways.
        Off by default, as in Node: it costs CPU per message. Each message is compressed on
        its own (no context takeover), so a connection holds no compression state and a
        broadcast is compressed once for all its recipients. A compressed client message is
        bounded by ``max_http_buffer_size`` once inflated (past it: close code 1009).
    :param http_compression: gzip or deflate long-polling responses of at least
        ``compression_threshold`` bytes, as the request's ``Accept-Encoding`` allows (on by
        default, as in python-socketio and Node).
    :param compression_threshold: the smallest message or response compressed, in bytes
        (1024).

    python-socketio's other arguments are accepted where their value means what ferrosio does
    anyway (``async_handlers=True``, ``monitor_clients=True``, ``json=None``, ``async_mode=None``
    ...); a value asking for something ferrosio does not do, such as ``serializer="pickle"``,
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
        max_send_buffer_size: int = 16_000_000,
        max_poll_response_size: int = 1_000_000,
        max_inbound_buffer_size: int = 64_000,
        max_inbound_total_size: int = 16_000_000,
        max_rooms_per_socket: int = 10_000,
        trusted_proxies: str | Iterable[str] | None = None,
        allow_eio3: bool = False,
        connection_state_recovery: bool | dict[str, Any] | None = None,
        per_message_deflate: bool = False,
        client_manager: Any = None,
        serializer: str = "default",
        json: Any = None,
        async_handlers: bool = True,
        async_mode: str | None = None,
        monitor_clients: bool | None = None,
        http_compression: bool = True,
        compression_threshold: int = 1024,
        cookie: Any = None,
        engineio_logger: bool | logging.Logger | None = None,
    ) -> None:
        _compat.check(_compat.SERVER, locals())
        self.cors_allowed_origins = cors_allowed_origins
        self.cors_credentials = cors_credentials
        self.allow_upgrades = allow_upgrades
        self.allow_eio3 = allow_eio3
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
        for name, size in (
            ("max_send_buffer_size", max_send_buffer_size),
            ("max_poll_response_size", max_poll_response_size),
            ("max_inbound_buffer_size", max_inbound_buffer_size),
            ("max_inbound_total_size", max_inbound_total_size),
        ):
            if not isinstance(size, int) or size <= 0:
                raise ValueError(f"{name} must be a positive number of bytes, not {size!r}")
        if not isinstance(max_rooms_per_socket, int) or max_rooms_per_socket <= 0:
            raise ValueError(
                f"max_rooms_per_socket must be a positive number, not {max_rooms_per_socket!r}"
            )
        self.max_rooms_per_socket = max_rooms_per_socket
        # Clients already warned of about the room bound (until they disconnect).
        self._rooms_refused_warned: set[str] = set()
        self.max_send_buffer_size = max_send_buffer_size
        self.max_poll_response_size = max_poll_response_size
        self.max_inbound_buffer_size = max_inbound_buffer_size
        self.max_inbound_total_size = max_inbound_total_size
        self.trusted_proxies = (
            TrustedProxies(trusted_proxies) if trusted_proxies is not None else None
        )
        if not isinstance(compression_threshold, int) or compression_threshold < 0:
            raise ValueError(
                f"compression_threshold must be a number of bytes, not {compression_threshold!r}"
            )
        self.per_message_deflate = bool(per_message_deflate)
        self.http_compression = bool(http_compression)
        self.compression_threshold = compression_threshold
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
        # Per Engine.IO session, shared by its sockets: the environ, built when used.
        self._environs: dict[str, EnvironSlot] = {}
        self._acks: dict[int, tuple[str, Callable[..., Any]]] = {}
        self._acks_by_sid: dict[str, set[int]] = {}
        self._ack_ids = itertools.count(1)
        self._broadcast_acks = BroadcastAcks()
        self._cluster = ClusterRequests(self)  # requests between the nodes of a cluster
        self._connect_middlewares: dict[str, list[ConnectMiddleware]] = {}
        self._packet_middlewares: dict[str, list[PacketMiddleware]] = {}
        self._outgoing: list[OutgoingListener] = []
        # The admin UI's reports (instrument()); None: nothing to report, nothing paid.
        self._instrumentation: AdminInstrumentation | None = None
        self._dynamic: list[DynamicNamespace] = []
        self._children: dict[str, int] = {}  # child namespace -> its sockets
        self._engine: ServerHandle | None = None
        # Set in a worker process of ``run(workers=N)``: (its number, N, the handoff directory).
        self._worker: tuple[int, int, str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.client_manager: AsyncRedisManager | None = client_manager
        if serializer == "msgpack" and client_manager is not None:
            raise exceptions.UnsupportedFeatureError(
                "serializer='msgpack' with a client_manager: a msgpack server in a Redis "
                "cluster is not supported yet"
            )
        self.serializer = serializer
        self._init_recovery(connection_state_recovery)
        if self._recovery is not None and serializer == "msgpack":
            raise exceptions.UnsupportedFeatureError(
                "connection state recovery with serializer='msgpack' is not supported yet: the "
                "offsets are stamped on JSON packets only"
            )
        # Where the engine's answers to a host web server's requests go (ferrosio.ASGIApp).
        self._on_external: Callable[[Any], None] | None = None
        self._asgi_host: AsgiHost | None = None

    # ------------------------------------------------------------------ handlers ----
    def register_namespace(self, namespace_handler: Any) -> None:
        """Registers a class-based namespace (an :class:`ferrosio.AsyncNamespace`)."""
        namespace_handler._set_server(self)
        self.namespace_handlers[namespace_handler.namespace] = namespace_handler

    def _handler_table(self, namespace: str | NamespaceMatcher | None) -> dict[str, Handler]:
        if namespace is None or isinstance(namespace, str):
            if namespace in self._children:
                self._detach_child(namespace)
            return super()._handler_table(namespace)
        return self.of(namespace).handlers

    def _detach_child(self, nsp: str) -> None:
        """Registering on a live child's own name makes it a namespace of its own: it keeps a
        copy of what it shared (so the registration does not reach its siblings) and stays."""
        del self._children[nsp]
        self.handlers[nsp] = dict(self.handlers.get(nsp, {}))
        self._connect_middlewares[nsp] = list(self._connect_middlewares.get(nsp, ()))
        self._packet_middlewares[nsp] = list(self._packet_middlewares.get(nsp, ()))

    def of(self, matcher: NamespaceMatcher) -> DynamicNamespace:
        """Declares a dynamic namespace (Node's ``io.of(/^\\/dynamic-\\d+$/)``): every
        namespace a client asks for that ``matcher`` accepts is created on demand, with the
        handlers and middlewares registered for ``matcher`` (also those registered later).

        ``matcher`` is a compiled regular expression (``pattern.search(name)``, as Node's
        ``RegExp.test``: anchor it) or a predicate ``fn(name) -> bool``. Register on it by
        passing it as ``namespace=`` to :meth:`on`, :meth:`event`, :meth:`use` or
        :meth:`use_packet`; calling ``of`` first is optional. A namespace with handlers of its
        own is not a child; dynamic namespaces are tried in declaration order. A child is
        forgotten when its last client leaves; registering on a live child's own name makes it
        a namespace of its own (with a copy of what it had). Handlers are called as registered
        (``sid`` first); :meth:`namespace_of` tells which child a client joined. To emit to a child,
        name it: ``emit(..., namespace="/dynamic-1")``.
        """
        for dyn in self._dynamic:
            if dyn.matcher is matcher or dyn.matcher == matcher:
                return dyn
        dyn = DynamicNamespace(matcher)
        self._dynamic.append(dyn)
        return dyn

    def use(
        self,
        middleware: ConnectMiddleware | None = None,
        *,
        namespace: str | NamespaceMatcher | None = None,
    ) -> Any:
        """Adds a connection middleware to ``namespace`` (``/`` by default), as Node's
        ``io.of(nsp).use(...)``: ``@sio.use()`` or ``sio.use(fn, namespace="/chat")``.

        ``middleware(sid, environ, auth)`` (sync or async) runs for every client joining the
        namespace, before its ``connect`` handler, in registration order. Raising
        :class:`~ferrosio.exceptions.ConnectionRefusedError` (``"message"``, then optional
        data) refuses the client: the message and data reach its ``connect_error``; returning
        ``False`` refuses it too; any other exception is logged and refuses it.
        """

        def register(fn: _M) -> _M:
            self._middlewares_of(namespace, connect=True).append(fn)
            return fn

        if middleware is not None:
            register(middleware)
            return middleware
        return register

    def use_packet(
        self,
        middleware: PacketMiddleware | None = None,
        *,
        namespace: str | NamespaceMatcher | None = None,
    ) -> Any:
        """Adds a packet middleware to ``namespace`` (``/`` by default), as Node's
        ``socket.use(...)`` for every socket of it: ``@sio.use_packet()`` or
        ``sio.use_packet(fn)``.

        ``middleware(sid, event, args)`` (sync or async) runs for every event a client sends,
        before its handler, in registration order; ``args`` is the list of the event's
        arguments and may be changed in place. Raising an exception drops the event (its
        handler does not run, no ack is sent; the exception is logged at INFO). Without
        packet middlewares, events pay nothing for this.
        """

        def register(fn: _M) -> _M:
            self._middlewares_of(namespace, connect=False).append(fn)
            return fn

        if middleware is not None:
            register(middleware)
            return middleware
        return register

    def _middlewares_of(self, namespace: str | NamespaceMatcher | None, connect: bool) -> Any:
        if namespace is not None and not isinstance(namespace, str):
            dyn = self.of(namespace)
            return dyn.connect_middlewares if connect else dyn.packet_middlewares
        if namespace in self._children:
            self._detach_child(namespace)
        table: dict[str, Any] = self._connect_middlewares if connect else self._packet_middlewares
        return table.setdefault(namespace or "/", [])

    def on_any_outgoing(self, listener: OutgoingListener) -> OutgoingListener:
        """Adds a listener called for every event the server emits (Node's
        ``onAnyOutgoing``, for all sockets): ``listener(event, args, namespace, to)``, where
        ``to`` is the sid, the list of rooms, or None for everyone. Called when the emit is
        made, before it is sent; usable as a decorator. Exceptions are logged. Acks are not
        events and are not reported. Without listeners, emits pay one check."""
        self._outgoing.append(listener)
        return listener

    def _notify_outgoing(self, event: str, data: Any, nsp: str, to: str | list[str] | None) -> None:
        args = list(_codec.to_args(data))
        for listener in list(self._outgoing):
            try:
                result = listener(event, args, nsp, to)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                self.logger.exception("ferrosio: outgoing listener raised")

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
    ) -> AdminInstrumentation:
        """Serves the `Socket.IO Admin UI <https://socket.io/docs/v4/admin-ui/>`_ (npm
        ``@socket.io/admin-ui``) on ``namespace``, as python-socketio does.

        :param auth: who may connect to the admin namespace: a dict of the credentials the UI
            sends (``{"username": ..., "password": ...}``), a list of such dicts, a callable
            given the UI's auth dict and returning whether it may connect (sync or async),
            the Node package's form ``{"type": "basic", "username": ..., "password": <bcrypt
            hash>}`` (needs the ``bcrypt`` package; the UI then reconnects with a session
            id), or ``False`` for no authentication (never in production). Required.
        :param mode: ``"development"`` reports every socket, room change and event as it
            happens; ``"production"`` only the periodic server stats.
        :param read_only: refuse the UI's commands (emit, join, leave, disconnect).
        :param server_id: the name of this server in the UI (default: the host name).
        :param namespace: the admin namespace.
        :param server_stats_interval: seconds between two ``server_stats`` reports, sent only
            while an admin is connected.
        :returns: the instrumentation; its ``uninstrument()`` stops it.

        What differs from Node's reports (the engine keeps these in Rust): a socket's
        transport is the one it connected with (upgrades are not reported); the room changes
        reported are those made with :meth:`enter_room`/:meth:`leave_room` and by the UI;
        the aggregated events count Socket.IO events in and out, connections and
        disconnections (no Engine.IO packet or byte counts).
        """
        from ferrosio._admin import AdminInstrumentation

        if self._instrumentation is not None:
            raise exceptions.FerrosioError("the server is already instrumented")
        self._instrumentation = AdminInstrumentation(
            self, auth, mode, read_only, server_id, namespace, server_stats_interval
        )
        return self._instrumentation

    # ------------------------------------------------------------------ lifecycle ----
    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        other_asgi_app: ASGIApp | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
    ) -> int:
        """Starts listening without blocking; returns the bound port (useful with port 0).

        :param other_asgi_app: an ASGI application (FastAPI, Starlette, ...) to serve on the
            same port: every HTTP request outside the Socket.IO path (and ``static_files``)
            goes to it. Its lifespan ``startup`` runs before this returns (a failure raises
            :class:`~ferrosio.exceptions.LifespanError`), ``shutdown`` in :meth:`shutdown`.
            Request bodies are read whole first, up to ``max_http_buffer_size`` (413 beyond);
            responses stream. WebSocket routes of the application are refused with 404.
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
        self._asgi_host = None
        if other_asgi_app is not None:
            host_app = AsgiHost(other_asgi_app, self.logger)
            await host_app.startup()
            self._asgi_host = host_app
        self._launch(
            host,
            port,
            self.socketio_path,
            self.static_files,
            forward_http=other_asgi_app is not None,
            tls=(ssl_certfile, ssl_keyfile, ssl_ca_certs),
        )
        assert self._engine is not None
        self.logger.info("ferrosio listening on %s:%d", host, self._engine.port)
        return self._engine.port

    def _launch(
        self,
        host: str | None,
        port: int,
        path: str,
        static_files: dict[str, Any],
        on_external: Callable[[Any], None] | None = None,
        forward_http: bool = False,
        tls: tuple[Any, Any, Any] = (None, None, None),
    ) -> None:
        """Starts the engine: listening on ``host:port``, or (``host=None``) fed by a host web
        server (:class:`ferrosio.ASGIApp`), whose answers go to ``on_external``; with
        ``forward_http``, requests outside the endpoints go to :attr:`_asgi_host`; ``tls``:
        certificate, key and client CA files (see :meth:`start`)."""
        if self._engine is not None and self._engine.is_running():
            raise exceptions.FerrosioError("server is already running")
        if host is None and self.per_message_deflate:
            raise exceptions.UnsupportedFeatureError(
                "per_message_deflate under an ASGI server (its WebSocket framing and compression "
                "are the ASGI server's: e.g. uvicorn's ws_per_message_deflate) is not supported"
            )
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._on_external = on_external
        self._engine = ServerHandle(
            host,
            port,
            path=path,
            ping_interval_ms=round(self.ping_interval * 1000),
            ping_timeout_ms=round(self.ping_timeout * 1000),
            max_payload=self.max_http_buffer_size,
            connect_timeout_ms=round(self.connect_timeout * 1000),
            websocket="websocket" in self.transports,
            polling="polling" in self.transports,
            upgrades=self.allow_upgrades,
            engineio_path=self.engineio.path if self.engineio else None,
            static_files=self._static_routes(static_files),
            authorize_requests=self.allow_request is not None,
            max_attachments=self.max_attachments,
            max_attachment_bytes=self.max_attachment_bytes,
            attachment_timeout_ms=round(self.attachment_timeout * 1000),
            max_send_buffer=self.max_send_buffer_size,
            max_poll_response=self.max_poll_response_size,
            max_inbound_buffer=self.max_inbound_buffer_size,
            max_inbound_total=self.max_inbound_total_size,
            max_rooms_per_socket=self.max_rooms_per_socket,
            cluster_url=self.client_manager.url if self.client_manager else None,
            cluster_key=self.client_manager.channel if self.client_manager else "socket.io",
            forward_http=forward_http,
            tls_cert_file=tls[0],
            tls_key_file=tls[1],
            tls_client_ca_file=tls[2],
            worker=self._worker if host is not None else None,
            allow_eio3=self.allow_eio3,
            recovery=self._recovery.engine_args() if self._recovery else None,
            serializer=self.serializer,
            **self._cors_options(),
            websocket_compression=self.compression_threshold if self.per_message_deflate else None,
            http_compression=self.compression_threshold if self.http_compression else None,
        )
        self._scheme = "https" if tls[0] is not None else "http"
        self._client_certs = tls[2] is not None
        self._loop.add_reader(self._engine.wake_fd(), self._drain)

    async def start_in_process(self) -> None:
        """Starts the server without a listener, for in-process clients only
        (``await client.connect(sio)``, see :meth:`ferrosio.AsyncClient.connect`): no socket,
        no port. A server started with :meth:`start` or :meth:`serve` takes in-process clients
        too, beside its network ones. Stopped by :meth:`shutdown`.

        :raises ferrosio.exceptions.FerrosioError: the server is already running.
        """
        if self._engine is not None and self._engine.is_running():
            raise exceptions.FerrosioError("server is already running")
        self._asgi_host = None
        self._launch(None, 0, self.socketio_path, self.static_files)

    def _in_process_engine(self) -> ServerHandle | None:
        """The running engine, for an in-process client; None when the server is stopped."""
        engine = self._engine
        return engine if engine is not None and engine.is_running() else None

    # --------------------------------------------------- connection state recovery ----
    def _init_recovery(self, option: bool | dict[str, Any] | None) -> None:
        self._recovery = RecoveryOptions.parse(option)
        if self._recovery is not None and self.client_manager is not None:
            raise exceptions.UnsupportedFeatureError(
                "connection state recovery with a client_manager (a cluster) is not supported "
                "yet: lost sessions are kept by the process that had them"
            )
        self.connection_state_recovery = self._recovery
        self._kept = KeptSessions(self._recovery) if self._recovery is not None else None
        # sids of connected sockets that were recovered (usually empty)
        self._recovered: set[str] = set()

    def _on_kept(self, sid: str, nsp: str) -> None:
        """The engine keeps the lost socket ``sid`` for recovery: so is its session data."""
        s = self._sockets.get(sid)
        if s is not None and self._kept is not None:
            self._kept.keep(sid, nsp, s.session)

    def _on_room_refused(self, sid: str, nsp: str, room: str, total: int) -> None:
        """The engine refused ``sid``'s join of ``room``: it is in ``max_rooms_per_socket``
        rooms. Warned of once per client (it may try many more)."""
        if sid in self._rooms_refused_warned or sid not in self._sockets:
            return
        self._rooms_refused_warned.add(sid)
        self.logger.warning(
            "ferrosio: %s in %s is in max_rooms_per_socket=%d rooms: its join of %r was refused "
            "(and any further one; %d refused in this namespace so far)",
            sid,
            nsp,
            self.max_rooms_per_socket,
            room[:100],
            total,
        )

    def _skip_middlewares(self, sid: str) -> bool:
        return (
            self._recovery is not None
            and self._recovery.skip_middlewares
            and sid in self._recovered
        )

    def is_recovered(self, sid: str, namespace: str | None = None) -> bool:
        """Whether the client ``sid`` of ``namespace`` (``/`` by default) is a lost socket that
        came back with ``connection_state_recovery``: same sid, its rooms and session data, and
        the packets it missed replayed (Node's ``socket.recovered``). Known from the moment its
        ``connect`` handler (and middlewares) run; False for an unknown sid."""
        return sid in self._recovered and self._socket_in(sid, namespace) is not None

    def recovery_stats(self) -> dict[str, int] | None:
        """Connection state recovery's state (``None`` when it is off or the server is not
        running): ``sessions`` kept for lost sockets, ``packets`` and ``bytes`` in the
        namespaces' logs, ``session_data`` (sessions whose ``save_session`` data is kept)."""
        if self._recovery is None or self._engine is None or self._kept is None:
            return None
        sessions, packets, size = self._engine.recovery_stats()
        return {
            "sessions": sessions,
            "packets": packets,
            "bytes": size,
            "session_data": len(self._kept),
        }

    def cluster_stats(self) -> dict[str, int | bool] | None:
        """The counters of the Redis link when the server is in a cluster (``None`` otherwise):
        ``connected``, ``published`` and ``received`` broadcasts, ``dropped`` (broadcasts that
        reached this server's clients but not the other nodes': Redis unreachable or slower
        than the broadcasts), ``malformed`` messages ignored, ``outages``; and the requests to
        the other nodes (:meth:`fetch_sockets`...): ``requests`` sent, ``requests_answered``
        by every node, ``requests_timed_out`` (a node did not answer), ``requests_failed``
        (not sent: Redis unreachable, or the link's queue full)."""
        stats = self._engine.cluster_stats() if self._engine is not None else None
        if stats is not None:
            stats.update(self._cluster.stats)
        return stats

    def worker_stats(self) -> dict[str, int] | None:
        """In a worker of ``ferrosio.run(workers=N)``: ``worker`` (its number, from 0),
        ``workers`` (N), ``handed_out`` (connections it accepted for another worker's session
        and passed to that worker) and ``taken_in`` (connections passed to it). ``None`` in a
        server running alone."""
        return self._engine.worker_stats() if self._engine is not None else None

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        other_asgi_app: ASGIApp | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
    ) -> None:
        """Serves until :meth:`shutdown` is called (from a handler, a signal, another task).

        ``other_asgi_app`` and the ``ssl_*`` arguments are :meth:`start`'s.
        """
        await self.start(
            host,
            port,
            other_asgi_app=other_asgi_app,
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
        if self._broadcast_acks:
            self._broadcast_acks.fail_all(exceptions.DisconnectedError("the server stopped"))
        if self._cluster:
            self._cluster.fail_all(exceptions.DisconnectedError("the server stopped"))
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        if self._asgi_host is not None:
            await self._asgi_host.shutdown(timeout)
            self._asgi_host = None
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

    def _static_routes(self, static_files: dict[str, Any]) -> list[tuple[str, str, str | None]]:
        routes: list[tuple[str, str, str | None]] = []
        for url, target in static_files.items():
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
        *,
        timeout: float | None = None,
        volatile: bool = False,
        compress: bool = True,
    ) -> None:
        """Emits ``event`` to one client (``to=sid``), rooms, or everyone in the namespace.

        ``data`` may be a tuple to send several arguments. With ``callback``, the single
        recipient's acknowledgement is passed to it (``callback(*args)``). Returns without
        waiting for the network. ``ignore_queue=True`` keeps the emit on this server when it
        is in a cluster (``client_manager``); without one it changes nothing.

        With ``callback`` and ``timeout`` (seconds), the emit may go to many clients and the
        callback is Node's (``io.timeout(ms).emit(ev, (err, responses) => ...)``):
        ``callback(err, responses)`` once, when every client reached has answered (``err``
        None) or at the deadline (``err`` a :class:`~ferrosio.exceptions.TimeoutError` naming
        how many of how many answered); ``responses`` lists the answers in arrival order (each
        as :meth:`call` returns one).

        ``volatile=True`` (ferrosio's, after Node's ``socket.volatile.emit``; not in
        python-socketio) marks a packet that may be lost: it is dropped for a client that
        cannot take it right now (its socket has unwritten data, a polling client has no GET
        open, its CONNECT is pending) or whose send buffer it would overflow
        (``max_send_buffer_size``), instead of being queued. Use it for updates a newer one
        replaces (positions, typing indicators).

        ``compress=False`` (ferrosio's, after Node's ``socket.compress(false).emit``) sends the
        packet uncompressed even where compression is on (``per_message_deflate``,
        ``http_compression``): for data that is already compressed, or too small to gain.
        """
        self.emit_nowait(
            event,
            data,
            to,
            room,
            skip_sid,
            namespace,
            callback,
            ignore_queue,
            timeout=timeout,
            volatile=volatile,
            compress=compress,
        )

    def emit_nowait(
        self,
        event: str,
        data: Any = None,
        to: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        ignore_queue: bool = False,
        *,
        timeout: float | None = None,
        volatile: bool = False,
        compress: bool = True,
    ) -> None:
        """Like :meth:`emit`, callable from synchronous code."""
        nsp = namespace or "/"
        engine = self._core()
        text, attachments = _codec.encode([event, *_codec.to_args(data)])
        sid, rooms, skip = self._targets(nsp, to if to is not None else room, skip_sid)
        ack_id = None
        if callback is not None:
            if timeout is not None:
                fn = callback

                def completion(err: BaseException | None, responses: list[Any]) -> None:
                    self._run(fn, (err, responses))

                self._emit_with_ack(
                    event,
                    data,
                    nsp,
                    text,
                    attachments,
                    sid,
                    rooms,
                    skip,
                    timeout,
                    completion,
                    compress,
                )
                return
            if sid is None:
                raise ValueError(
                    f"a callback needs one client connected to {nsp} as to=<sid>, not "
                    f"{to if to is not None else room!r}; for the answers of many clients, "
                    "give a timeout: callback(err, responses) as in Node"
                )
            ack_id = self._register_ack(sid, callback)
        if self._outgoing:
            self._notify_outgoing(event, data, nsp, sid if sid is not None else rooms)
        local = ignore_queue and self.client_manager is not None
        if volatile or local or not compress:
            engine.emit(
                nsp,
                text,
                to=sid,
                rooms=rooms,
                skip=skip,
                attachments=attachments,
                ack_id=ack_id,
                volatile=volatile,
                local=local,
                compress=compress,
            )
            return
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
        await self.emit("message", data, to, room, skip_sid, namespace, callback, ignore_queue)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: str | Iterable[str] | None = None,
        sid: str | None = None,
        namespace: str | None = None,
        timeout: float = 60,
        ignore_queue: bool = False,
        *,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        broadcast: bool = False,
    ) -> Any:
        """Emits to one client (``to``, or its alias ``sid``) and waits for its
        acknowledgement.

        Returns the acknowledgement's argument (a tuple if several, None if none). Raises
        :class:`ferrosio.exceptions.TimeoutError` after ``timeout`` seconds, and
        :class:`ferrosio.exceptions.DisconnectedError` if the client is not connected to the
        namespace, or goes away before answering. ``ignore_queue`` changes nothing (no queue).

        To many clients (Node's ``io.to(room).timeout(ms).emitWithAck(...)``): ``room=`` (a
        room or several), ``to=`` a list of rooms, or ``broadcast=True`` for everyone in the
        namespace, minus ``skip_sid``. Returns the list of the answers in arrival order, once
        every client reached has answered (``[]`` if none was reached); raises
        :class:`ferrosio.exceptions.TimeoutError` naming how many of how many answered if some
        did not within ``timeout`` seconds.
        """
        if room is not None or broadcast or (to is not None and not isinstance(to, str)):
            return await self._call_many(
                event, data, room if room is not None else to, skip_sid, namespace, timeout
            )
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
            self._drop_ack(target, on_ack)  # a late answer is dropped, the slot freed
            raise exceptions.TimeoutError(f"no acknowledgement within {timeout} s") from None
        return ack_result(args)

    async def _call_many(
        self,
        event: str,
        data: Any,
        rooms: str | Iterable[str] | None,
        skip_sid: str | Iterable[str] | None,
        namespace: str | None,
        timeout: float,
    ) -> list[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()

        def completion(err: BaseException | None, responses: list[Any]) -> None:
            if fut.done():
                return
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(responses)

        nsp = namespace or "/"
        self._core()
        text, attachments = _codec.encode([event, *_codec.to_args(data)])
        sid, room_list, skip = self._targets(nsp, rooms, skip_sid)
        self._emit_with_ack(
            event, data, nsp, text, attachments, sid, room_list, skip, timeout, completion
        )
        return await fut

    def _emit_with_ack(
        self,
        event: str,
        data: Any,
        nsp: str,
        text: bytes,
        attachments: list[bytes] | None,
        sid: str | None,
        rooms: list[str] | None,
        skip: list[str] | None,
        timeout: float,
        completion: Callable[[BaseException | None, list[Any]], None],
        compress: bool = True,
    ) -> None:
        """One broadcast under one ack id (as Node's); the engine reports how many clients it
        reached, :class:`BroadcastAcks` collects their answers."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        engine = self._core()
        if self._outgoing:
            self._notify_outgoing(event, data, nsp, sid if sid is not None else rooms)
        loop = self._loop or asyncio.get_running_loop()
        ack_id = next(self._ack_ids)
        clustered = self.client_manager is not None
        self._broadcast_acks.register(loop, ack_id, nsp, timeout, completion, clustered=clustered)
        engine.emit_with_ack(
            nsp,
            text,
            ack_id,
            rooms=[sid] if sid is not None else rooms,
            skip=skip,
            attachments=attachments,
            compress=compress,
        )
        if clustered:
            self._cluster.broadcast_with_ack(
                nsp,
                text,
                attachments,
                [sid] if sid is not None else rooms,
                skip,
                timeout,
                ack_id,
            )

    def _register_ack(self, sid: str, callback: Callable[..., Any]) -> int:
        ids = self._acks_by_sid.setdefault(sid, set())
        if len(ids) >= MAX_ACKS_IN_FLIGHT:  # a client that never answers: refuse, keep nothing
            raise exceptions.BufferFullError(
                f"{sid}: {len(ids)} acknowledgements are already awaited from this client"
            )
        ack_id = next(self._ack_ids)
        self._acks[ack_id] = (sid, callback)
        ids.add(ack_id)
        return ack_id

    def _drop_ack(self, sid: str, callback: Callable[..., Any]) -> None:
        """Forgets the ack awaited with ``callback`` (its call() timed out)."""
        ids = self._acks_by_sid.get(sid)
        for ack_id in ids or ():
            entry = self._acks.get(ack_id)
            if entry is not None and entry[1] is callback:
                del self._acks[ack_id]
                ids.discard(ack_id)  # type: ignore[union-attr]  # not None: iterated
                return

    # ----------------------------------------------------------- cluster requests ----
    async def fetch_sockets(
        self,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        ignore_queue: bool = False,
        *,
        timeout: float | None = None,
    ) -> list[RemoteSocket]:
        """The clients in ``room`` (a room or sid, or several; everyone in the namespace when
        None) minus ``skip_sid``, on every server of the cluster (Node's
        ``io.in(room).fetchSockets()``): :class:`~ferrosio.cluster.RemoteSocket` snapshots
        with ``sid``, ``rooms``, ``handshake`` and ``data``, and methods acting on the socket
        wherever it is. This server's come first. ``ignore_queue=True`` or no
        ``client_manager``: this server's only.

        :param timeout: seconds to wait for the other servers (``requests_timeout`` of the
            :class:`~ferrosio.AsyncRedisManager` by default).
        :raises ferrosio.exceptions.TimeoutError: a server counted did not answer in time (the
            message says how many answered).
        :raises ferrosio.exceptions.ClusterError: Redis is unreachable.
        """
        nsp, selected, skip = self._selection(namespace, room, skip_sid)
        engine = self._core()
        local = [
            RemoteSocket(self, nsp, self._cluster.describe(nsp, sid, rooms), True)
            for sid, rooms in engine.fetch_sockets(nsp, rooms=selected, skip=skip)
        ]
        if self.client_manager is None or ignore_queue:
            return local
        answers = await self._cluster.ask(
            nsp,
            5,  # REMOTE_FETCH
            "fetch_sockets",
            {"opts": {"rooms": selected or [], "except": skip or []}},
            self._requests_timeout(timeout),
        )
        for answer in answers:
            for described in answer.get("sockets") or ():
                if isinstance(described, dict):
                    local.append(RemoteSocket(self, nsp, described, False))
        return local

    async def all_rooms(
        self, namespace: str | None = None, *, timeout: float | None = None
    ) -> set[str]:
        """Every room of ``namespace`` on every server of the cluster, sid rooms included
        (Node's ``io.of(nsp).adapter.allRooms()``). Raises as :meth:`fetch_sockets`."""
        nsp = namespace or "/"
        rooms = set(self._core().all_rooms(nsp))
        if self.client_manager is None:
            return rooms
        answers = await self._cluster.ask(
            nsp,
            1,
            "all_rooms",
            {},
            self._requests_timeout(timeout),  # ALL_ROOMS
        )
        for answer in answers:
            rooms.update(str(r) for r in answer.get("rooms") or ())
        return rooms

    async def server_side_emit(self, event: str, *args: Any, namespace: str | None = None) -> None:
        """Sends ``event`` with ``args`` to the other servers of the cluster (not to clients;
        Node's ``io.serverSideEmit``): their :meth:`on_server_side` handlers for it run (Node's
        ``io.on(event, ...)``). Without a ``client_manager`` there is no other server: nothing
        is sent."""
        if self.client_manager is None:
            return
        self._cluster.tell(namespace or "/", {"type": 6, "data": [event, *args]})

    async def server_side_call(
        self, event: str, *args: Any, namespace: str | None = None, timeout: float | None = None
    ) -> list[Any]:
        """As :meth:`server_side_emit`, waiting for every other server's answer (Node's
        ``io.serverSideEmitWithAck``): the list of what their handlers returned (a Node
        handler's callback argument). Raises as :meth:`fetch_sockets`; a server without a
        handler for ``event`` does not answer (as Node's), so the call times out."""
        if self.client_manager is None:
            return []
        answers = await self._cluster.ask(
            namespace or "/",
            6,  # SERVER_SIDE_EMIT
            "server_side_call",
            {"data": [event, *args]},
            self._requests_timeout(timeout),
        )
        return [answer.get("data") for answer in answers]

    def on_server_side(
        self,
        event: str,
        handler: Callable[..., Any] | None = None,
        namespace: str | None = None,
    ) -> Any:
        """Registers the handler of ``event`` sent by other servers of the cluster
        (:meth:`server_side_emit`, Node's ``io.serverSideEmit``); as a decorator
        (``@sio.on_server_side("event")``) or with ``handler``. It is called with the event's
        arguments (no sid); sync or async; what it returns answers a
        :meth:`server_side_call` (Node's ``serverSideEmitWithAck``: its callback argument)."""
        nsp = namespace or "/"

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._cluster.handlers[(nsp, event)] = fn
            return fn

        if handler is not None:
            return register(handler)
        return register

    def _requests_timeout(self, timeout: float | None) -> float:
        if timeout is not None:
            return timeout
        return self.client_manager.requests_timeout if self.client_manager is not None else 5.0

    # ------------------------------------------------------------------ rooms ----
    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Adds a client to a room; in a cluster (``client_manager``), a client of any server."""
        nsp = namespace or "/"
        if self._remote(sid, nsp):
            self._core().sockets_join(nsp, [room], rooms=[sid])
        else:
            self._core().join(nsp, sid, room)
        if self._instrumentation is not None:
            self._instrumentation.room_joined(nsp, room, sid)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Removes a client from a room; in a cluster, a client of any server."""
        nsp = namespace or "/"
        if self._remote(sid, nsp):
            self._core().sockets_leave(nsp, [room], rooms=[sid])
        else:
            self._core().leave(nsp, sid, room)
        if self._instrumentation is not None:
            self._instrumentation.room_left(nsp, room, sid)

    def _remote(self, sid: str, nsp: str) -> bool:
        """Whether ``sid`` may be a socket of another server of the cluster."""
        return self.client_manager is not None and self._socket_in(sid, nsp) is None

    async def sockets_join(
        self,
        rooms: str | Iterable[str],
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """Makes the clients in ``room`` (a room or sid, or several; everyone in the namespace
        when None) minus ``skip_sid`` join ``rooms``, on every server of the cluster (Node's
        ``io.in(room).except(skip).socketsJoin(rooms)``); ``ignore_queue=True``: this server's
        clients only. Without a ``client_manager``, this server's clients."""
        nsp, selected, skip = self._selection(namespace, room, skip_sid)
        self._core().sockets_join(nsp, _names(rooms), rooms=selected, skip=skip, local=ignore_queue)

    async def sockets_leave(
        self,
        rooms: str | Iterable[str],
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """As :meth:`sockets_join`, leaving ``rooms`` (Node's ``socketsLeave``)."""
        nsp, selected, skip = self._selection(namespace, room, skip_sid)
        self._core().sockets_leave(
            nsp, _names(rooms), rooms=selected, skip=skip, local=ignore_queue
        )

    async def disconnect_sockets(
        self,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """Disconnects the clients in ``room`` minus ``skip_sid`` from the namespace, on every
        server of the cluster (Node's ``disconnectSockets()``); their ``disconnect`` handlers
        run on their own servers with reason ``server disconnect``."""
        nsp, selected, skip = self._selection(namespace, room, skip_sid)
        self._core().disconnect_sockets(nsp, rooms=selected, skip=skip, local=ignore_queue)

    def _selection(
        self, namespace: str | None, room: Any, skip_sid: Any
    ) -> tuple[str, list[str] | None, list[str] | None]:
        skip = _names(skip_sid) if skip_sid else None
        return namespace or "/", _names(room) if room is not None else None, skip

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
        handler runs with reason ``server disconnect``. In a cluster, ``sid`` may be a client of
        another server (unless ``ignore_queue``); without one ``ignore_queue`` changes nothing."""
        nsp = namespace or "/"
        if self._remote(sid, nsp) and not ignore_queue:
            self._core().disconnect_sockets(nsp, rooms=[sid])
        else:
            self._core().disconnect(nsp, sid)

    def namespace_of(self, sid: str) -> str | None:
        """The namespace the client ``sid`` joined (a sid belongs to one namespace); None for
        an unknown sid. Useful in the handlers of a dynamic namespace (:meth:`of`)."""
        s = self._sockets.get(sid)
        return s.nsp if s is not None else None

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
        if s is None:
            return None
        environ = s.environ.get(self._environ_of)
        s.environ.release()
        return environ

    def _environ_of(self, handshake: Handshake) -> dict[str, Any]:
        return _build_environ(handshake, self._scheme, self.trusted_proxies)

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
        plain = not self._packet_middlewares and self._instrumentation is None
        on_event = self._on_event if plain else self._on_event_filtered
        for item in items:
            try:
                if item[0] == SOCKETIO_EVENT:
                    _, sid, nsp, ack_id, data, attachments = item
                    on_event(sid, nsp, ack_id, data, attachments)
                elif item[0] == SOCKETIO_ACK:
                    _, sid, nsp, acked_id, data, attachments = item
                    self._on_ack(sid, nsp, acked_id, data, attachments)
                elif item[0] == SOCKETIO_CONNECT:
                    _, sid, nsp, eio_sid, auth, handshake, recovered = item
                    self._on_connect(sid, nsp, eio_sid, auth, handshake, recovered)
                elif item[0] == SOCKETIO_KEPT:
                    self._on_kept(item[1], item[2])
                elif item[0] == SOCKETIO_ROOM_REFUSED:
                    _, sid, nsp, room, total = item
                    self._on_room_refused(sid, nsp, room, total)
                elif item[0] == SOCKETIO_DISCONNECT:
                    _, sid, nsp, reason = item
                    self._on_disconnect(sid, nsp, reason)
                elif item[0] == CONTROL_AUTHORIZE:
                    _, request_id, origin, check_request, handshake = item
                    self._authorize(request_id, origin, check_request, handshake)
                elif item[0] == SOCKETIO_BROADCAST_REACH:
                    _, _nsp, acked_id, count = item
                    self._broadcast_acks.on_reach(acked_id, count)
                elif item[0] == CONTROL_CLUSTER:
                    _, connected, detail = item
                    if connected:
                        _cluster_logger.warning("ferrosio: redis reachable again; resubscribed")
                    else:
                        _cluster_logger.error(
                            "ferrosio: lost redis (%s); serving local clients, reconnecting",
                            detail,
                        )
                elif item[0] == CONTROL_CLUSTER_MESSAGE:
                    _, msg_nsp, is_response, msg, msg_attachments = item
                    self._cluster.on_message(msg_nsp, is_response, msg, msg_attachments)
                elif item[0] == CONTROL_CLUSTER_SENT:
                    _, token, servers = item
                    self._cluster.on_sent(token, servers)
                elif item[0] == CONTROL_RESPONSE or item[0] == CONTROL_READY:
                    if self._on_external is not None:
                        self._on_external(item)
                elif item[0] == HTTP_REQUEST or item[0] == HTTP_WRITTEN or item[0] == HTTP_CLOSED:
                    if self._asgi_host is not None and self._engine is not None:
                        self._asgi_host.on_record(self._engine, item)
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
        (``["/"]`` by default, ``"*"`` for any); else a dynamic namespace's child."""
        if nsp in self.handlers or nsp in self.namespace_handlers:
            return True
        if nsp in self._connect_middlewares or nsp in self._packet_middlewares:
            return True
        if self._dynamic and self._adopt(nsp):
            return True
        if self.namespaces == "*":
            return True
        return nsp in (self.namespaces if self.namespaces is not None else ["/"])

    def _adopt(self, nsp: str) -> bool:
        """Makes ``nsp`` a child of the first dynamic namespace accepting it: it shares the
        parent's tables (so later registrations apply to it too)."""
        for dyn in self._dynamic:
            try:
                accepted = dyn.matches(nsp)
            except Exception:
                self.logger.exception("ferrosio: namespace predicate raised; %s refused", nsp)
                accepted = False
            if accepted:
                # (shared lists: while a child lives, events of every namespace take the
                # packet-middleware path, which costs one lookup when the list is empty)
                self.handlers[nsp] = dyn.handlers
                self._connect_middlewares[nsp] = dyn.connect_middlewares
                self._packet_middlewares[nsp] = dyn.packet_middlewares
                self._children[nsp] = 0
                return True
        return False

    def _on_event_filtered(
        self, sid: str, nsp: str, ack_id: int | None, data: bytes, attachments: list[bytes] | None
    ) -> None:
        """:meth:`_on_event` when packet middlewares exist (somewhere) or the server is
        instrumented: report the event, run the middlewares first."""
        middlewares = self._packet_middlewares.get(nsp)
        admin = self._instrumentation
        if not middlewares and admin is None:
            self._on_event(sid, nsp, ack_id, data, attachments)
            return
        s = self._sockets.get(sid)
        if s is None or not s.connected:
            return
        try:
            payload = (
                orjson.loads(data) if attachments is None else _codec.decode(data, attachments)
            )
        except ValueError as exc:
            self._undecodable(nsp, sid, exc)
            return
        if admin is not None:
            admin.event_received(nsp, sid, payload)
            if not middlewares:
                self._on_event(sid, nsp, ack_id, data, attachments)
                return
        event = payload[0]
        if event in SERVER_RESERVED_EVENTS:
            self._refuse_reserved(nsp, event)
            return
        args = payload[1:]
        finished, rest = step_eagerly(self._filter_packet(sid, nsp, ack_id, event, args))
        if not finished:
            self._spawn(rest)

    async def _filter_packet(
        self, sid: str, nsp: str, ack_id: int | None, event: str, args: list[Any]
    ) -> None:
        for middleware in list(self._packet_middlewares.get(nsp, ())):
            try:
                result = middleware(sid, event, args)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.logger.info(
                    "ferrosio: packet middleware dropped %r from %s: %r", event, sid, exc
                )
                return
        s = self._sockets.get(sid)
        if s is None or not s.connected:
            return  # left while an async middleware ran
        self._deliver(sid, nsp, ack_id, event, args)

    def _deliver(self, sid: str, nsp: str, ack_id: int | None, event: str, args: list[Any]) -> None:
        """Runs the handler of an event that went through the packet middlewares (the same
        steps as the end of :meth:`_on_event`, which keeps them inline for speed)."""
        fn, lead = self._find_handler(nsp, event)
        if fn is None:
            if ack_id is not None:
                self._send_ack(nsp, sid, ack_id, None)
            return
        full = (*lead, sid, *args)
        if ack_id is None:
            self._run(fn, full)
            return
        acked = ack_id
        self._run(fn, full, lambda result: self._send_ack(nsp, sid, acked, result), ack=True)

    def _on_event(
        self, sid: str, nsp: str, ack_id: int | None, data: bytes, attachments: list[bytes] | None
    ) -> None:
        # The hot path: keep it free of per-event closures and needless calls.
        s = self._sockets.get(sid)
        if s is None or not s.connected:
            return
        try:
            payload = (
                orjson.loads(data) if attachments is None else _codec.decode(data, attachments)
            )
        except ValueError as exc:  # orjson.JSONDecodeError is one
            self._undecodable(nsp, sid, exc)
            return
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

    def _undecodable(self, nsp: str, sid: str, exc: ValueError) -> None:
        """An event the engine framed but orjson cannot decode (nested deeper than 1024,
        a number out of double range, a missing attachment): one warning, and the client's
        connection is closed as for a malformed packet (docs/bounds.md)."""
        self.logger.warning(
            "ferrosio: closing the connection of %s in %s: undecodable event (%s)", sid, nsp, exc
        )
        engine = self._engine
        if engine is not None:
            engine.abort(nsp, sid)

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

    def _on_ack(
        self, sid: str, nsp: str, ack_id: int, data: bytes, attachments: list[bytes] | None
    ) -> None:
        entry = self._acks.get(ack_id)
        if entry is None:
            if self._broadcast_acks:
                self._broadcast_acks.on_ack(sid, ack_id, _codec.decode(data, attachments))
            return
        if entry[0] != sid:
            return
        try:
            args = _codec.decode(data, attachments)
        except ValueError as exc:  # left in place: the disconnect settles it
            self._undecodable(nsp, sid, exc)
            return
        del self._acks[ack_id]
        ids = self._acks_by_sid.get(sid)
        if ids is not None:
            ids.discard(ack_id)
        self._run(entry[1], args)

    def _on_connect(
        self,
        sid: str,
        nsp: str,
        eio_sid: str,
        auth_data: bytes | None,
        handshake: Handshake,
        recovered: bool = False,
    ) -> None:
        engine = self._core()
        if not self._namespace_allowed(nsp):
            engine.reject(nsp, sid, b'{"message":"Invalid namespace"}')
            return
        try:
            auth = orjson.loads(auth_data) if auth_data else None
        except orjson.JSONDecodeError:
            auth = None
        slot = self._environs.get(eio_sid)
        if slot is None:
            slot = self._environs[eio_sid] = EnvironSlot(handshake)
        slot.refs += 1
        environ = slot.get(self._environ_of)
        s = self._sockets[sid] = _Socket(sid, nsp, eio_sid, slot)
        if self.client_manager is not None:
            self._cluster.remember(sid, auth)  # for Node's handshake in fetch_sockets
        if nsp in self._children:
            self._children[nsp] += 1
        if recovered:
            self._recovered.add(sid)
            s.session = self._kept.take(sid, nsp) if self._kept is not None else None
        middlewares = self._connect_middlewares.get(nsp)
        if middlewares and not (self._recovered and self._skip_middlewares(sid)):
            finished, rest = step_eagerly(self._run_middlewares(s, middlewares, environ, auth))
            if not finished:
                self._spawn(rest)
        else:
            self._run_connect_handler(s, environ, auth)
        # Kept only while the handlers (or the application) hold it, see ferrosio._environ; a
        # connect still running lets go of it when it finishes (_connect_result).
        del environ
        if s.connected or self._sockets.get(sid) is not s:
            slot.release()

    async def _run_middlewares(
        self,
        s: _Socket,
        middlewares: list[ConnectMiddleware],
        environ: dict[str, Any],
        auth: Any,
    ) -> None:
        """The connection middlewares in order, then the connect handler (Node's order)."""
        for middleware in list(middlewares):
            try:
                result = middleware(s.sid, environ, auth)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self._connect_failed(s, exc)
                return
            if self._sockets.get(s.sid) is not s or self._engine is None:
                return  # the client left (or the server stopped) meanwhile
            if result is False:
                self._refuse(s, {"message": "Connection rejected by server"})
                return
        self._run_connect_handler(s, environ, auth)

    def _run_connect_handler(self, s: _Socket, environ: dict[str, Any], auth: Any) -> None:
        engine = self._core()
        nsp, sid = s.nsp, s.sid
        fn, lead = self._find_handler(nsp, "connect")
        if self.always_connect:
            s.connected = True
            engine.accept(nsp, sid)
            if self._instrumentation is not None:
                self._instrumentation.socket_connected(s)
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
        s.environ.release()
        if result is False:
            self._refuse(s, {"message": "Connection rejected by server"})
            return
        if self._sockets.get(s.sid) is not s:
            return  # the client left while its connect handler ran
        if not s.connected:
            s.connected = True
            self._core().accept(s.nsp, s.sid)
            if self._instrumentation is not None:
                self._instrumentation.socket_connected(s)

    def _connect_failed(self, s: _Socket, exc: BaseException) -> None:
        s.environ.release()
        if isinstance(exc, exceptions.ConnectionRefusedError):
            self._refuse(s, exc.error_args)
            return
        self.logger.error("ferrosio: connect handler raised", exc_info=exc)
        self._refuse(s, {"message": "Connection rejected by server"})

    def _refuse(self, s: _Socket, error: dict[str, Any]) -> None:
        s.environ.release()
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
        if self.client_manager is not None:
            self._cluster.forget(s.sid)
        if self._recovered:
            self._recovered.discard(s.sid)
        if self._rooms_refused_warned:
            self._rooms_refused_warned.discard(s.sid)
        if self._children and s.nsp in self._children:
            self._forget_child_socket(s.nsp)
        s.environ.refs -= 1
        if s.environ.refs <= 0 and self._environs.get(s.eio_sid) is s.environ:
            del self._environs[s.eio_sid]
            s.environ.close()
        for ack_id in self._acks_by_sid.pop(s.sid, ()):
            entry = self._acks.pop(ack_id, None)
            fut = getattr(entry[1], "__ferrosio_future__", None) if entry else None
            if fut is not None and not fut.done():
                fut.set_exception(exceptions.DisconnectedError(f"{s.sid} disconnected"))

    def _forget_child_socket(self, nsp: str) -> None:
        # A child namespace lives while it has sockets (clients choose the names: bounded).
        left = self._children[nsp] - 1
        if left > 0:
            self._children[nsp] = left
            return
        del self._children[nsp]
        self.handlers.pop(nsp, None)
        self._connect_middlewares.pop(nsp, None)
        self._packet_middlewares.pop(nsp, None)

    def _on_disconnect(self, sid: str, nsp: str, reason: str) -> None:
        s = self._sockets.get(sid)
        if s is None:
            return
        was_connected = s.connected
        self._forget(s)
        if not was_connected:
            return
        if self._instrumentation is not None:
            self._instrumentation.socket_disconnected(s, reason)
        if reason == "send buffer full":
            self.logger.warning(
                "ferrosio: disconnected %s from %s: send buffer full (more than "
                "max_send_buffer_size=%d bytes waited for a client that did not read them)",
                sid,
                nsp,
                self.max_send_buffer_size,
            )
        self._trigger_disconnect(nsp, (sid,), reason)
