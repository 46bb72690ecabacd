"""The native engine (Rust). Private: use :mod:`ferrosio` instead."""

import os
from typing import Any, Final, Literal, TypeAlias

__version__: Final[str]

# Kind tags: the first item of every record ``ServerHandle.drain`` returns.
SOCKETIO_CONNECT: Final = 0
SOCKETIO_EVENT: Final = 1
SOCKETIO_ACK: Final = 2
SOCKETIO_DISCONNECT: Final = 3
ENGINEIO_OPEN: Final = 4
ENGINEIO_MESSAGE: Final = 5
ENGINEIO_CLOSE: Final = 6
CONTROL_AUTHORIZE: Final = 7
SOCKETIO_BROADCAST_REACH: Final = 8
CONTROL_CLUSTER: Final = 9
CONTROL_RESPONSE: Final = 10
CONTROL_READY: Final = 11
HTTP_REQUEST: Final = 12
HTTP_WRITTEN: Final = 13
HTTP_CLOSED: Final = 14
CONTROL_CLUSTER_MESSAGE: Final = 30
CONTROL_CLUSTER_SENT: Final = 31
SOCKETIO_KEPT: Final = 20
SOCKETIO_ROOM_REFUSED: Final = 21
# Response body chunks (``more=True``) that may be sent to the engine and not yet written.
HTTP_BODY_CREDIT: Final[int]

class FerrosioError(Exception): ...
class EngineNotRunningError(FerrosioError): ...

DisconnectReason: TypeAlias = Literal[
    "client disconnect", "server disconnect", "ping timeout", "transport close", "transport error"
]

class Handshake:
    """The HTTP request that opened a session (read once, to build the WSGI-style environ)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def headers(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in request order; names are lowercase."""
    @property
    def remote_addr(self) -> tuple[str, int]:
        """The client's ``(ip, port)``."""
    @property
    def local_addr(self) -> tuple[str, int]:
        """The server's ``(ip, port)`` the request came in on."""

# Socket.IO endpoint records.
# (kind, sid, nsp, eio_sid, auth JSON or None, handshake, recovered)
SocketIoConnect: TypeAlias = tuple[Literal[0], str, str, str, bytes | None, Handshake, bool]
# (kind, sid, nsp, ack_id or None, JSON array, attachments or None)
SocketIoEvent: TypeAlias = tuple[Literal[1], str, str, int | None, bytes, list[bytes] | None]
# (kind, sid, nsp, ack_id, JSON array, attachments or None)
SocketIoAck: TypeAlias = tuple[Literal[2], str, str, int, bytes, list[bytes] | None]
# (kind, sid, nsp, reason)
SocketIoDisconnect: TypeAlias = tuple[Literal[3], str, str, DisconnectReason]
# Bare Engine.IO endpoint records.
# (kind, sid, handshake)
EngineIoOpen: TypeAlias = tuple[Literal[4], str, Handshake]
# (kind, sid, str for a text message, bytes for a binary one)
EngineIoMessage: TypeAlias = tuple[Literal[5], str, str | bytes]
# (kind, sid, reason)
EngineIoClose: TypeAlias = tuple[Literal[6], str, DisconnectReason]
# Server control records: is the origin allowed (origin set), may the request open a session
# (check_request)? Answered with ``ServerHandle.authorize(id, ...)``.
# (kind, id, origin or None, check_request, handshake)
ControlAuthorize: TypeAlias = tuple[Literal[7], int, str | None, bool, Handshake]
# How many clients an ``emit_with_ack`` reached (the acks to expect for ack_id); it comes
# before those acks.
# (kind, nsp, ack_id, clients)
SocketIoBroadcastReach: TypeAlias = tuple[Literal[8], str, int, int]
# The cluster link lost Redis (connected False, with why) or got it back; once per change.
ControlCluster: TypeAlias = tuple[Literal[9], bool, str]
# The answer to a request a host web server handed over (``external_http``/``external_ws_open``;
# 101 accepts a WebSocket). (kind, id, status, [(name, value)], body)
ControlResponse: TypeAlias = tuple[Literal[10], int, int, list[tuple[bytes, bytes]], bytes]
# The host's WebSocket ``id`` has frames to take (``external_ws_take``), or must close.
# (kind, id)
ControlReady: TypeAlias = tuple[Literal[11], int]

# Forwarded HTTP records (one port beside an ASGI app, ``forward_http=True``): a request for
# the application, its body whole (at most ``max_payload``); a response body chunk handed to
# the connection (one credit back); the client gone before the response ended.
# (kind, id, request head, http_version, body)
HttpRequest: TypeAlias = tuple[Literal[12], int, Handshake, str, bytes]
# (kind, id)
HttpWritten: TypeAlias = tuple[Literal[13], int]
# (kind, id)
HttpClosed: TypeAlias = tuple[Literal[14], int]

# A request from another node of the cluster for this host to answer, or (response True) an
# answer to one: the adapter's message as JSON with placeholders for the attachments.
# (kind, nsp, response, json, attachments or None)
ControlClusterMessage: TypeAlias = tuple[Literal[30], str, bool, bytes, list[bytes] | None]
# The request ``token`` (``cluster_request``) was published; servers: the nodes listening to
# the namespace's requests, this one included (None: not published, Redis lost).
# (kind, token, servers)
ControlClusterSent: TypeAlias = tuple[Literal[31], int, int | None]
# (kind, sid, nsp): the socket's state is kept for recovery (its DISCONNECT follows)
SocketIoKept: TypeAlias = tuple[Literal[20], str, str]
# (kind, sid, nsp, room, refused in the namespace so far): the socket is in
# ``max_rooms_per_socket`` rooms, its join of ``room`` was refused
SocketIoRoomRefused: TypeAlias = tuple[Literal[21], str, str, str, int]

ServerRecord: TypeAlias = (
    SocketIoEvent
    | SocketIoAck
    | SocketIoConnect
    | SocketIoDisconnect
    | EngineIoOpen
    | EngineIoMessage
    | EngineIoClose
    | ControlAuthorize
    | SocketIoBroadcastReach
    | ControlCluster
    | ControlResponse
    | ControlReady
    | HttpRequest
    | HttpWritten
    | HttpClosed
    | ControlClusterMessage
    | ControlClusterSent
    | SocketIoKept
    | SocketIoRoomRefused
)

class ServerHandle:
    """A running server: an HTTP listener serving Engine.IO/Socket.IO on its own thread.

    Paths are normalised here (a slash at both ends). ``max_attachments`` (default 10, as
    Node's socket.io-parser), ``max_attachment_bytes`` (default ``max_payload``) and
    ``attachment_timeout_ms`` (default 30 s, checked at each heartbeat tick) bound one binary
    packet in reassembly; exceeding one closes that connection as a protocol error.
    ``max_send_buffer`` bounds the bytes waiting to be written to one client (past it a
    volatile packet is dropped, any other disconnects it: ``"send buffer full"``);
    ``max_poll_response`` one polling response; ``max_inbound_buffer`` and
    ``max_inbound_total`` what waits in :meth:`drain` per client and overall (past them the
    engine stops reading those clients until the next drain). ``max_rooms_per_socket``: a join
    past it is refused and reported (``SOCKETIO_ROOM_REFUSED`` records).
    ``tls_cert_file`` with ``tls_key_file`` serves TLS (``tls_client_ca_file``: client
    certificates required); the files are read here, and a bad one raises ``FerrosioError``.
    ``worker=(index, count, dir)``: one of ``count`` worker processes on this port
    (``SO_REUSEPORT``); a connection for another worker's session is handed to it through the
    Unix sockets in ``dir``.
    ``allow_eio3`` also accepts Engine.IO v3 clients (socket.io-client 2.x).
    ``serializer``: the Socket.IO parser every client must use, ``"default"`` (JSON) or
    ``"msgpack"`` (npm's socket.io-msgpack-parser); either way the records carry JSON with
    placeholders and attachments, and ``emit``/``ack`` take them.
    ``websocket_compression``: negotiate permessage-deflate and compress messages of at least
    that many bytes; ``http_compression``: gzip/deflate polling responses of at least that many
    bytes (None: off).
    """

    def __init__(
        self,
        host: str | None,
        port: int = 0,
        *,
        path: str = "/socket.io/",
        ping_interval_ms: int = 25000,
        ping_timeout_ms: int = 20000,
        max_payload: int = 1000000,
        connect_timeout_ms: int = 45000,
        websocket: bool = True,
        polling: bool = True,
        upgrades: bool = True,
        engineio_path: str | None = None,
        cors: str = "same-origin",
        cors_origins: list[str] | None = None,
        cors_credentials: bool = True,
        static_files: list[tuple[str, str, str | None]] | None = None,
        authorize_requests: bool = False,
        max_attachments: int = 10,
        max_attachment_bytes: int | None = None,
        attachment_timeout_ms: int = 30000,
        max_send_buffer: int = 16000000,
        max_poll_response: int = 1000000,
        max_inbound_buffer: int = 64000,
        max_inbound_total: int = 16000000,
        max_rooms_per_socket: int = 10000,
        cluster_url: str | None = None,
        cluster_key: str = "socket.io",
        forward_http: bool = False,
        tls_cert_file: str | os.PathLike[str] | None = None,
        tls_key_file: str | os.PathLike[str] | None = None,
        tls_client_ca_file: str | os.PathLike[str] | None = None,
        worker: tuple[int, int, str | os.PathLike[str]] | None = None,
        allow_eio3: bool = False,
        recovery: tuple[int, int, int, int, int] | None = None,
        serializer: str = "default",
        websocket_compression: int | None = None,
        http_compression: int | None = None,
    ) -> None: ...
    def recovery_stats(self) -> tuple[int, int, int]:
        """Connection state recovery: (sessions kept, packets logged, bytes logged)."""
    def cluster_stats(self) -> dict[str, int | bool] | None:
        """The cluster link's counters, or None when the server is not in a cluster."""
    def worker_stats(self) -> dict[str, int] | None:
        """This worker's number, the worker count and its handoff counters, or None when the
        server is not one of several workers on its port."""
    @property
    def port(self) -> int: ...
    def wake_fd(self) -> int: ...
    def is_running(self) -> bool: ...
    def drain(self) -> list[ServerRecord]:
        """Waiting records, oldest first (see the ``ServerRecord`` members)."""
    def emit(
        self,
        nsp: str,
        data: bytes,
        *,
        to: str | None = None,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        attachments: list[bytes] | None = None,
        ack_id: int | None = None,
        volatile: bool = False,
        local: bool = False,
        compress: bool = True,
    ) -> None: ...
    def emit_with_ack(
        self,
        nsp: str,
        data: bytes,
        ack_id: int,
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        attachments: list[bytes] | None = None,
        compress: bool = True,
    ) -> None:
        """Broadcasts an EVENT asking every recipient for an ack under ``ack_id`` (one id for
        all, as Node); answered by a ``SocketIoBroadcastReach`` record."""
    def ack(
        self,
        nsp: str,
        sid: str,
        ack_id: int,
        data: bytes,
        attachments: list[bytes] | None = None,
    ) -> None: ...
    def accept(self, nsp: str, sid: str) -> None: ...
    def reject(self, nsp: str, sid: str, data: bytes) -> None: ...
    def join(self, nsp: str, sid: str, room: str) -> None: ...
    def sockets_join(
        self,
        nsp: str,
        join: list[str],
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        local: bool = False,
    ) -> None: ...
    def sockets_leave(
        self,
        nsp: str,
        leave: list[str],
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        local: bool = False,
    ) -> None: ...
    def disconnect_sockets(
        self,
        nsp: str,
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        local: bool = False,
    ) -> None: ...
    def leave(self, nsp: str, sid: str, room: str) -> None: ...
    def close_room(self, nsp: str, room: str) -> None: ...
    def disconnect(self, nsp: str, sid: str) -> None: ...
    def abort(self, nsp: str, sid: str) -> None:
        """Closes the socket's whole connection as a protocol error."""
    def rooms(self, nsp: str, sid: str) -> list[str]:
        """The socket's rooms, its own sid first, after every command sent before this call
        (an open batch is flushed first); ``[]`` for an unknown socket or a stopped server.
        Blocks (without the GIL) until the engine thread answers."""
    def fetch_sockets(
        self, nsp: str, *, rooms: list[str] | None = None, skip: list[str] | None = None
    ) -> list[tuple[str, list[str]]]:
        """This server's sockets in any of ``rooms`` (all when None) minus ``skip``, as
        ``(sid, rooms)``, own sid first. Blocks (without the GIL) for the engine's answer."""
    def all_rooms(self, nsp: str) -> list[str]:
        """Every room of ``nsp`` on this server, sid rooms included. Blocks (no GIL)."""
    def cluster_uid(self) -> str | None:
        """This server's id among the nodes of its cluster; None when not in one."""
    def cluster_request(
        self, nsp: str, data: bytes, token: int, *, attachments: list[bytes] | None = None
    ) -> bool:
        """Publishes a request to the nodes of ``nsp`` after counting them (a
        ``ControlClusterSent`` record with ``token`` follows); False if the queue is full."""
    def cluster_message(
        self,
        nsp: str,
        data: bytes,
        *,
        response: bool = False,
        to: str | None = None,
        attachments: list[bytes] | None = None,
    ) -> bool:
        """Publishes on the request channel, the response channel (``response``) or node
        ``to``'s response channel; False if the queue is full."""
    def engineio_send(self, sid: str, data: str | bytes) -> None: ...
    def engineio_close(self, sid: str) -> None: ...
    def authorize(self, id: int, origin_ok: bool, request_ok: bool) -> None: ...
    # Forwarded HTTP: the answer to an ``HttpRequest``.
    def http_start(self, id: int, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def http_body(self, id: int, data: bytes, more: bool) -> None: ...
    def http_abort(self, id: int) -> None: ...
    def begin_batch(self) -> None: ...
    def end_batch(self) -> None: ...
    def shutdown(self, timeout_ms: int = 5000) -> None: ...
    # The seam for a host web server (``host=None``: no listener): requests are handed over
    # whole, answered by ``ControlResponse`` records with the same id.
    def external_http(
        self,
        id: int,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        remote: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> None:
        """One HTTP request (``path`` without any mount prefix, body read whole)."""
    def external_ws_open(
        self,
        id: int,
        path: str,
        query: str,
        headers: list[tuple[bytes, bytes]],
        remote: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> None:
        """A WebSocket request; its answer's status 101 accepts it, and ``id`` names it."""
    def external_ws_receive(self, id: int, data: str | bytes) -> str | int | None:
        """One message of WebSocket ``id``, handled at once: None, a text frame to send now,
        or a close code (close the WebSocket with it)."""
    def external_ws_take(self, id: int) -> tuple[list[str | bytes], bool]:
        """The frames WebSocket ``id`` has to send, and whether to close it after them."""
    def external_ws_close(self, id: int) -> None:
        """The host's side of WebSocket ``id`` ended."""

class ClientHandle:
    """A Socket.IO client connection engine on its own thread: one connection attempt at a
    time, numbered by the caller with a generation ``gen``; records and commands of another
    generation never mix with the current one."""

    OPEN: Final[int]
    UPGRADED: Final[int]
    CONNECT: Final[int]
    CONNECT_ERROR: Final[int]
    EVENT: Final[int]
    ACK: Final[int]
    DISCONNECT: Final[int]
    CLOSED: Final[int]

    def __init__(self, serializer: str = "default") -> None:
        """``serializer``: the server's Socket.IO parser, ``"default"`` or ``"msgpack"``."""
    def wake_fd(self) -> int: ...
    def drain(self) -> list[tuple[Any, ...]]:
        """Waiting records, oldest first:

        - ``(OPEN, gen, eio_sid, transport, open_packet_json, None)``
        - ``(UPGRADED, gen, "", "websocket", None, None)``
        - ``(CONNECT, gen, nsp, None, connect_json, None)``
        - ``(CONNECT_ERROR, gen, nsp, None, error_json, None)``
        - ``(EVENT, gen, nsp, ack_id | None, json, attachments | None)``
        - ``(ACK, gen, nsp, ack_id, json, attachments | None)``
        - ``(DISCONNECT, gen, nsp, None, None, None)``
        - ``(CLOSED, gen, "", reason, detail, None)``: always the last record of a generation
        """
    def connect(
        self,
        gen: int,
        host: str,
        port: int,
        path: str,
        query: str = "",
        headers: list[tuple[str, str]] | None = None,
        *,
        websocket: bool = True,
        polling: bool = True,
        upgrade: bool = True,
        request_timeout_ms: int = 5000,
        tls: bool = False,
        tls_verify: bool = True,
        tls_ca_file: str | os.PathLike[str] | None = None,
        max_attachments: int = 10,
        max_attachment_bytes: int = 1000000,
        attachment_timeout_ms: int = 30000,
        in_process: ServerHandle | None = None,
    ) -> None:
        """Starts connection attempt ``gen``. With ``tls``, every connection is TLS, verified
        (``tls_verify``) against the system's CAs or those of ``tls_ca_file``. Binary packets
        from the server are bounded as on the server: at most ``max_attachments`` (10),
        ``max_attachment_bytes`` (1 MB) of attachments, complete within
        ``attachment_timeout_ms`` (30 s, checked at each ping). With ``in_process`` (a server
        of this process), an in-process WebSocket to it, no socket (``host``, ``port``,
        ``polling``, ``upgrade`` and TLS do not apply)."""
    def emit(
        self,
        gen: int,
        nsp: str,
        data: bytes,
        ack_id: int | None = None,
        attachments: list[bytes] | None = None,
    ) -> None: ...
    def ack(
        self,
        gen: int,
        nsp: str,
        ack_id: int,
        data: bytes,
        attachments: list[bytes] | None = None,
    ) -> None: ...
    def connect_namespace(self, gen: int, nsp: str, auth: bytes | None = None) -> None: ...
    def disconnect_namespace(self, gen: int, nsp: str) -> None: ...
    def close(self, gen: int) -> None: ...
    def shutdown(self) -> None: ...

class _Codec:
    """``_ferrosio.codec``: the codec on its own, for benchmarks (no server or client use)."""

    @staticmethod
    def encode_packet(
        kind: int, nsp: str, data: bytes, ack_id: int | None = None, attachments: int = 0
    ) -> bytes:
        """Engine.IO message text of a Socket.IO packet. ``kind`` is the Socket.IO packet type
        digit (0 CONNECT .. 6 BINARY_ACK); with ``attachments`` an EVENT/ACK becomes
        BINARY_EVENT/BINARY_ACK."""
    @staticmethod
    def decode_packet(text: bytes) -> tuple[int, str, int | None, int, bytes]: ...
    @staticmethod
    def encode_payload(items: list[str | bytes]) -> bytes: ...
    @staticmethod
    def decode_payload(body: bytes) -> list[str | bytes]: ...

codec: Final[_Codec]

class RedisPublisher:
    """Publishes broadcasts to a Redis cluster without a server (blocking; the GIL is
    released while it talks to Redis)."""

    def __init__(self, url: str, key: str = "socket.io") -> None: ...
    def broadcast(
        self,
        nsp: str,
        data: bytes,
        *,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        attachments: list[bytes] | None = None,
    ) -> int: ...
