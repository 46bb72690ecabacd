"""Requests between the nodes of a cluster, as ``@socket.io/redis-adapter`` 8.x makes them:
fetch sockets, all rooms, server-side emit (with or without answers), broadcast with acks.

The Rust link carries the messages (``ServerHandle.cluster_request``/``cluster_message``;
records ``CONTROL_CLUSTER_MESSAGE``/``CONTROL_CLUSTER_SENT``); this module keeps the
bookkeeping (request ids, how many answers to expect, deadlines, the answers) and answers the
requests of the other nodes, Node's and ferrosio's alike. Emits and broadcasts without acks
never come here.

How many answers a request expects is Node's rule: the nodes subscribed to the namespace's
request channel (``PUBSUB NUMSUB``, counted by the link just before it publishes), minus this
one. A node that dies is unsubscribed by Redis as soon as its connection drops, so the next
requests no longer wait for it; a request already waiting for it ends at its deadline with a
:class:`ferrosio.exceptions.TimeoutError` saying how many answered of how many.

Bounds (docs/bounds.md): at most :data:`MAX_PENDING_REQUESTS` requests of this server wait for
answers at once (one more raises :class:`ferrosio.exceptions.BufferFullError`); every request
ends at its deadline (``requests_timeout``, 5 s by default as Node's); an answer holds at most
``MAX_HOST_MESSAGE`` bytes (16 MiB, checked by the link, larger ones are dropped and counted as
malformed); a request waits for at most as many answers as nodes were counted.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import orjson

from ferrosio import _codec, exceptions

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer

# Request types of the adapter (its ``RequestType`` enum).
SOCKETS = 0
ALL_ROOMS = 1
REMOTE_JOIN = 2
REMOTE_LEAVE = 3
REMOTE_DISCONNECT = 4
REMOTE_FETCH = 5
SERVER_SIDE_EMIT = 6
BROADCAST = 7
BROADCAST_CLIENT_COUNT = 8
BROADCAST_ACK = 9

#: Most requests of one server waiting for answers at once.
MAX_PENDING_REQUESTS = 1000


def _encode(message: dict[str, Any]) -> tuple[bytes, list[bytes] | None]:
    # ``_codec.encode`` takes any JSON value; binaries become placeholders + attachments.
    return _codec.encode(cast("list[Any]", message))


class RemoteSocket:
    """A socket of any server of the cluster, as :meth:`ferrosio.AsyncServer.fetch_sockets`
    returns it (Node's ``RemoteSocket``): a snapshot of its id, rooms, handshake and data, and
    methods acting on it wherever it is connected.

    :ivar sid: the socket's id (its namespace connection).
    :ivar namespace: its namespace.
    :ivar rooms: its rooms, its own sid room included.
    :ivar handshake: Node's ``socket.handshake``: ``headers``, ``time``, ``address``,
        ``xdomain``, ``secure``, ``issued`` (ms), ``url``, ``query``, ``auth``. A ferrosio
        server records ``auth`` and ``issued`` only when it is in a cluster
        (``client_manager``): alone, its sockets show ``{}`` and the time of the call.
    :ivar data: Node's ``socket.data``; for a ferrosio socket its session
        (:meth:`ferrosio.AsyncServer.get_session`) when JSON-serialisable, else ``{}``.
    :ivar local: whether the socket is connected to this server.
    """

    __slots__ = ("_server", "data", "handshake", "local", "namespace", "rooms", "sid")

    def __init__(
        self, server: AsyncServer, namespace: str, description: dict[str, Any], local: bool
    ) -> None:
        self._server = server
        self.namespace = namespace
        self.sid: str = str(description.get("id", ""))
        rooms = description.get("rooms")
        self.rooms: set[str] = {str(r) for r in rooms} if isinstance(rooms, list) else set()
        handshake = description.get("handshake")
        self.handshake: dict[str, Any] = handshake if isinstance(handshake, dict) else {}
        self.data: Any = description.get("data")
        self.local = local

    def __repr__(self) -> str:
        return f"RemoteSocket({self.sid!r}, namespace={self.namespace!r}, rooms={self.rooms!r})"

    async def emit(self, event: str, data: Any = None) -> None:
        """Emits ``event`` to this socket, on whichever server it is connected to."""
        await self._server.emit(event, data, to=self.sid, namespace=self.namespace)

    async def enter_room(self, room: str) -> None:
        """Makes this socket join ``room`` (Node's ``remoteSocket.join``)."""
        await self._server.enter_room(self.sid, room, namespace=self.namespace)

    async def leave_room(self, room: str) -> None:
        """Makes this socket leave ``room``."""
        await self._server.leave_room(self.sid, room, namespace=self.namespace)

    async def disconnect(self) -> None:
        """Disconnects this socket from its namespace."""
        await self._server.disconnect(self.sid, namespace=self.namespace)


def handshake_of(environ: dict[str, Any], auth: Any, issued: float) -> dict[str, Any]:
    """Node's ``socket.handshake`` for a ferrosio socket, from its environ."""
    headers = {
        key[5:].lower().replace("_", "-"): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    query_string = environ.get("QUERY_STRING", "") or ""
    path = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
    url = path if "?" in path or not query_string else f"{path}?{query_string}"
    return {
        "headers": headers,
        "time": time.strftime("%a %b %d %Y %H:%M:%S GMT+0000", time.gmtime(issued)),
        "address": environ.get("REMOTE_ADDR", ""),
        "xdomain": "origin" in headers,
        "secure": environ.get("wsgi.url_scheme") == "https",
        "issued": round(issued * 1000),
        "url": url,
        "query": dict(parse_qsl(query_string, keep_blank_values=True)),
        "auth": auth if isinstance(auth, dict) else {},
    }


class _Request:
    __slots__ = ("expected", "future", "kind", "responses", "timeout", "timer", "what")

    def __init__(self, what: str, kind: int, future: asyncio.Future[list[Any]], timeout: float):
        self.what = what
        self.kind = kind
        self.future = future
        self.timeout = timeout
        self.expected: int | None = None  # other nodes counted, once the link says
        self.responses: list[Any] = []
        self.timer: asyncio.TimerHandle | None = None


class _Relay:
    """Sends the count and the answers of this node's clients to a broadcast of another
    node back to it."""

    __slots__ = ("nsp", "owner", "request_id")

    def __init__(self, owner: ClusterRequests, nsp: str, request_id: str) -> None:
        self.owner = owner
        self.nsp = nsp
        self.request_id = request_id

    def count(self, clients: int) -> None:
        self.owner.respond(
            self.nsp,
            {"type": BROADCAST_CLIENT_COUNT, "requestId": self.request_id, "clientCount": clients},
        )

    def ack(self, args: Sequence[Any]) -> None:
        # Node relays the first argument of each answer.
        value = args[0] if args else None
        self.owner.respond(
            self.nsp, {"type": BROADCAST_ACK, "requestId": self.request_id, "packet": value}
        )


def _noop(_err: BaseException | None, _responses: list[Any]) -> None:
    pass


class ClusterRequests:
    """The requests of one :class:`ferrosio.AsyncServer` to the other nodes, and its answers
    to theirs."""

    def __init__(self, server: AsyncServer) -> None:
        self._server = server
        self._pending: dict[str, _Request] = {}
        self._tokens: dict[int, str] = {}  # request published -> its id
        self._token_ids = itertools.count(1)
        # Broadcasts with acks of this node: request id -> ack id, and publication token.
        self._broadcasts: dict[str, int] = {}
        self._broadcast_tokens: dict[int, int] = {}
        # Server-side event handlers: (namespace, event) -> handler.
        self.handlers: dict[tuple[str, str], Callable[..., Any]] = {}
        # What Node's handshake needs that the environ lacks: (auth, connection time), by sid.
        self._connected: dict[str, tuple[Any, float]] = {}
        self.stats = {
            "requests": 0,
            "requests_answered": 0,
            "requests_timed_out": 0,
            "requests_failed": 0,
        }

    def __len__(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------ local sockets ----
    def remember(self, sid: str, auth: Any) -> None:
        self._connected[sid] = (auth, time.time())

    def forget(self, sid: str) -> None:
        self._connected.pop(sid, None)

    def describe(self, nsp: str, sid: str, rooms: list[str]) -> dict[str, Any]:
        """A socket of this server as the adapter describes it in a fetch-sockets answer."""
        s = self._server._socket_in(sid, nsp)
        auth, issued = self._connected.get(sid, (None, time.time()))
        if s is None:
            handshake = handshake_of({}, auth, issued)
        else:
            # Built when used and let go right after (see ferrosio._environ).
            environ = s.environ.get(self._server._environ_of)
            handshake = handshake_of(environ, auth, issued)
            del environ
            s.environ.release()
        data: Any = {}
        if s is not None and s.session:
            try:
                orjson.dumps(s.session)
                data = s.session
            except TypeError:
                data = {}
        return {
            "id": sid,
            "handshake": handshake,
            "rooms": rooms,
            "data": data,
        }

    # ----------------------------------------------------------------- asking ----
    async def ask(
        self, nsp: str, kind: int, what: str, body: dict[str, Any], timeout: float
    ) -> list[Any]:
        """Publishes a request and returns the other nodes' answers (the adapter's messages),
        once every node counted has answered; TimeoutError at ``timeout`` seconds."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        engine = self._server._core()
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise exceptions.BufferFullError(
                f"{len(self._pending)} requests to the other servers already wait for answers"
            )
        request_id = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        entry = _Request(what, kind, loop.create_future(), timeout)
        text, attachments = _encode(
            {"uid": engine.cluster_uid(), "requestId": request_id, "type": kind, **body}
        )
        token = next(self._token_ids)
        if not engine.cluster_request(nsp, text, token, attachments=attachments):
            self.stats["requests_failed"] += 1
            raise exceptions.BufferFullError(
                f"{what}: the cluster link's queue is full (redis slower than the requests)"
            )
        self.stats["requests"] += 1
        self._pending[request_id] = entry
        self._tokens[token] = request_id
        entry.timer = loop.call_later(timeout, self._expire, request_id)
        return await entry.future

    def tell(self, nsp: str, body: dict[str, Any]) -> None:
        """Publishes a request nobody answers (a server-side emit without ack)."""
        engine = self._server._core()
        text, attachments = _encode({"uid": engine.cluster_uid(), **body})
        if not engine.cluster_message(nsp, text, attachments=attachments):
            self.stats["requests_failed"] += 1
            raise exceptions.BufferFullError(
                "the cluster link's queue is full (redis slower than the requests)"
            )
        self.stats["requests"] += 1

    def respond(self, nsp: str, body: dict[str, Any]) -> None:
        """Answers another node (on the namespace's response channel, as Node's adapter)."""
        engine = self._server._engine
        if engine is None:
            return
        text, attachments = _encode(body)
        # A full queue loses the answer: the asker times out (counted there).
        engine.cluster_message(nsp, text, response=True, attachments=attachments)

    def broadcast_with_ack(
        self,
        nsp: str,
        text: bytes,
        attachments: list[bytes] | None,
        rooms: list[str] | None,
        skip: list[str] | None,
        timeout: float,
        ack_id: int,
    ) -> None:
        """Sends a broadcast with acks (already delivered here under ``ack_id``) to the other
        nodes; their counts and answers go to the server's ``BroadcastAcks``."""
        engine = self._server._core()
        request_id = secrets.token_hex(8)
        options = {
            "rooms": rooms or [],
            "except": skip or [],
            "flags": {"timeout": round(timeout * 1000)},
        }
        head = orjson.dumps(
            {"uid": engine.cluster_uid(), "requestId": request_id, "type": BROADCAST}
        )
        # The event's JSON (with its placeholders) goes in as it is.
        message = b"".join(
            (
                head[:-1],
                b',"packet":{"type":2,"data":',
                text,
                b',"nsp":',
                orjson.dumps(nsp),
                b'},"opts":',
                orjson.dumps(options),
                b"}",
            )
        )
        token = next(self._token_ids)
        acks = self._server._broadcast_acks
        if not engine.cluster_request(nsp, message, token, attachments=attachments):
            self.stats["requests_failed"] += 1
            acks.expect_servers(ack_id, 0)  # this node's clients only
            return
        self.stats["requests"] += 1
        self._broadcasts[request_id] = ack_id
        self._broadcast_tokens[token] = ack_id
        loop = asyncio.get_running_loop()
        loop.call_later(timeout, self._broadcasts.pop, request_id, None)

    # ------------------------------------------------------------ link records ----
    def on_sent(self, token: int, servers: int | None) -> None:
        """The link published request ``token`` to ``servers`` nodes (this one included)."""
        ack_id = self._broadcast_tokens.pop(token, None)
        if ack_id is not None:
            if servers is None:
                # Redis lost: the broadcast reached this server's clients only; their
                # answers complete it.
                self.stats["requests_failed"] += 1
                servers = 1
            self._server._broadcast_acks.expect_servers(ack_id, max(servers - 1, 0))
            return
        request_id = self._tokens.pop(token, None)
        entry = self._pending.get(request_id) if request_id is not None else None
        if entry is None or request_id is None:
            return
        if servers is None:
            self._finish(request_id)
            self.stats["requests_failed"] += 1
            entry.future.set_exception(
                exceptions.ClusterError(f"{entry.what}: not sent, redis is unreachable")
            )
            return
        entry.expected = max(servers - 1, 0)
        self._check(request_id, entry)

    def on_message(
        self, nsp: str, response: bool, data: bytes, attachments: list[bytes] | None
    ) -> None:
        """A request from another node, or an answer to one (``response``)."""
        value = _codec.decode(data, attachments)
        if not isinstance(value, dict):
            return
        if response:
            self._on_response(value)
        else:
            self._on_request(nsp, value)

    def _on_response(self, value: dict[str, Any]) -> None:
        request_id = value.get("requestId")
        if not isinstance(request_id, str):
            return
        ack_id = self._broadcasts.get(request_id)
        if ack_id is not None:
            kind = value.get("type")
            if kind == BROADCAST_CLIENT_COUNT:
                count = value.get("clientCount")
                self._server._broadcast_acks.on_remote_count(
                    ack_id, count if isinstance(count, int) else 0
                )
            elif kind == BROADCAST_ACK:
                self._server._broadcast_acks.on_remote_ack(ack_id, value.get("packet"))
            return
        entry = self._pending.get(request_id)
        if entry is None:
            return  # another node's request, or a late answer
        if entry.expected is not None and len(entry.responses) >= entry.expected:
            return
        entry.responses.append(value)
        self._check(request_id, entry)

    def _check(self, request_id: str, entry: _Request) -> None:
        if entry.expected is not None and len(entry.responses) >= entry.expected:
            self._finish(request_id)
            self.stats["requests_answered"] += 1
            if not entry.future.done():
                entry.future.set_result(entry.responses)

    def _finish(self, request_id: str) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()

    def _expire(self, request_id: str) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        self.stats["requests_timed_out"] += 1
        expected = "?" if entry.expected is None else entry.expected
        missing = (
            "" if entry.expected is None else f", {entry.expected - len(entry.responses)} missing"
        )
        if not entry.future.done():
            entry.future.set_exception(
                exceptions.TimeoutError(
                    f"{entry.what}: {len(entry.responses)} of {expected} other servers answered "
                    f"within {entry.timeout} s{missing}"
                )
            )

    def fail_all(self, err: BaseException) -> None:
        """Ends every waiting request with ``err`` (the server stopped)."""
        pending, self._pending = self._pending, {}
        self._tokens.clear()
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                entry.future.set_exception(err)

    # -------------------------------------------------------- others' requests ----
    def _on_request(self, nsp: str, request: dict[str, Any]) -> None:
        engine = self._server._engine
        if engine is None:
            return
        kind = request.get("type")
        request_id = request.get("requestId")
        if kind == SERVER_SIDE_EMIT:
            self._on_server_side_emit(nsp, request)
            return
        if not isinstance(request_id, str):
            return
        if kind == REMOTE_FETCH:
            opts = request.get("opts") or {}
            found = engine.fetch_sockets(
                nsp, rooms=_strings(opts.get("rooms")), skip=_strings(opts.get("except"))
            )
            sockets = [self.describe(nsp, sid, rooms) for sid, rooms in found]
            self.respond(nsp, {"requestId": request_id, "sockets": sockets})
        elif kind == ALL_ROOMS:
            self.respond(nsp, {"requestId": request_id, "rooms": engine.all_rooms(nsp)})
        elif kind == SOCKETS:
            found = engine.fetch_sockets(nsp, rooms=_strings(request.get("rooms")))
            self.respond(nsp, {"requestId": request_id, "sockets": [sid for sid, _ in found]})
        elif kind == BROADCAST:
            self._relay_broadcast(nsp, request_id, request)
        elif kind in (REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT):
            # The one-socket form (older nodes): act only on a socket of this server.
            sid = request.get("sid")
            if not isinstance(sid, str) or self._server._socket_in(sid, nsp) is None:
                return
            room = request.get("room")
            if kind == REMOTE_JOIN and isinstance(room, str):
                engine.join(nsp, sid, room)
            elif kind == REMOTE_LEAVE and isinstance(room, str):
                engine.leave(nsp, sid, room)
            elif kind == REMOTE_DISCONNECT:
                engine.disconnect(nsp, sid)
            self.respond(nsp, {"requestId": request_id})

    def _relay_broadcast(self, nsp: str, request_id: str, request: dict[str, Any]) -> None:
        server = self._server
        engine = server._core()
        packet = request.get("packet")
        if not isinstance(packet, dict) or not isinstance(packet.get("data"), list):
            return
        opts = request.get("opts") or {}
        flags = opts.get("flags") or {}
        timeout_ms = flags.get("timeout") if isinstance(flags, dict) else None
        if not isinstance(timeout_ms, (int, float)) or timeout_ms <= 0:
            timeout_ms = self._requests_timeout() * 1000
        text, attachments = _codec.encode(packet["data"])
        ack_id = next(server._ack_ids)
        loop = server._loop or asyncio.get_running_loop()
        server._broadcast_acks.register(
            loop, ack_id, nsp, timeout_ms / 1000, _noop, relay=_Relay(self, nsp, request_id)
        )
        rooms = _strings(opts.get("rooms"))
        engine.emit_with_ack(
            nsp,
            text,
            ack_id,
            rooms=rooms or None,
            skip=_strings(opts.get("except")) or None,
            attachments=attachments,
        )

    def _on_server_side_emit(self, nsp: str, request: dict[str, Any]) -> None:
        data = request.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return
        event, args = data[0], data[1:]
        handler = self.handlers.get((nsp, event))
        if handler is None:
            return  # as Node: nobody listening, no answer
        request_id = request.get("requestId")
        if not isinstance(request_id, str):
            self._server._run(handler, args)
            return

        def done(result: Any) -> None:
            self.respond(nsp, {"type": SERVER_SIDE_EMIT, "requestId": request_id, "data": result})

        self._server._run(handler, args, done=done)

    def _requests_timeout(self) -> float:
        manager = self._server.client_manager
        return manager.requests_timeout if manager is not None else 5.0


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v) for v in value if isinstance(v, (str, int, float))]
