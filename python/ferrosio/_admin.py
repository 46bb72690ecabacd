"""The server side of the Socket.IO Admin UI (npm ``@socket.io/admin-ui``), behind
:meth:`ferrosio.AsyncServer.instrument`.

The UI is a Socket.IO client of the admin namespace (``/admin``). On connection it gets
``config`` (the features it may use) and, in development mode, ``all_sockets``; then, while it
stays connected, ``server_stats`` every ``server_stats_interval`` seconds and, in development
mode, ``socket_connected``, ``socket_disconnected``, ``room_joined``, ``room_left``,
``event_received`` and ``event_sent`` as they happen. Unless read-only, it may send ``emit``,
``join``, ``leave`` and ``_disconnect`` (each with a namespace and a filter: a room or a
socket id, or none for the whole namespace).

A server that never calls ``instrument`` pays nothing: the server consults its instrumentation
once per batch of records (to pick the event path) and at connections, disconnections and room
changes made through ``enter_room``/``leave_room``; the stats task runs only while an admin is
connected.

What ferrosio cannot report as Node does, because the engine keeps it in Rust: the transport
of a socket is the one it connected with (upgrades are not reported); room changes are those
made through ``enter_room``/``leave_room`` and the admin's own commands (not ``close_room`` or
``sockets_join``); ``aggregatedEvents`` counts Socket.IO events in and out (``packetsIn``,
``packetsOut``), connections and disconnections, not Engine.IO packets or bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

import orjson

from ferrosio import exceptions

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer, _Socket

#: Most admin sessions remembered (an admin UI that logged in with basic auth reconnects with
#: its session id instead of the password); past it the oldest is forgotten, and that UI asks
#: for the password again.
MAX_SESSIONS = 1000
#: Most aggregated-event buckets kept between two ``server_stats`` (one per second and kind);
#: past it new kinds of the same second are not counted.
MAX_EVENT_BUCKETS = 1000

_FEATURES_WRITE = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]


def _now_iso() -> str:
    """The time as a JS ``Date`` reaches the UI through JSON."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _check_auth(auth: Any) -> Callable[[Any], bool]:
    """The check of an admin's CONNECT auth, from ``instrument``'s ``auth`` argument."""
    if auth is None:
        raise ValueError(
            "auth must be specified (False disables authentication: never in production)"
        )
    if auth is False:
        return lambda _: True
    if callable(auth):
        return auth  # type: ignore[no-any-return]
    if isinstance(auth, dict) and auth.get("type") == "basic":
        return _basic_auth(auth)
    if isinstance(auth, dict):
        auth = [auth]
    if isinstance(auth, list) and all(isinstance(a, dict) for a in auth):
        allowed = list(auth)
        return lambda given: (
            isinstance(given, dict)
            and any(all(given.get(k) == v for k, v in a.items()) for a in allowed)
        )
    raise ValueError(
        "auth must be False, a dict of credentials, a list of them, "
        '{"type": "basic", "username": ..., "password": <bcrypt hash>} or a callable'
    )


def _basic_auth(auth: dict[str, Any]) -> Callable[[Any], bool]:
    """``@socket.io/admin-ui``'s own form: the password is a bcrypt hash."""
    try:
        import bcrypt
    except ImportError as exc:
        raise exceptions.UnsupportedFeatureError(
            'auth={"type": "basic", ...} checks bcrypt hashes: install the bcrypt package'
        ) from exc
    username, hashed = auth.get("username"), auth.get("password")
    if not isinstance(hashed, str) or not hashed.startswith("$2"):
        raise ValueError("the password of basic auth must be a bcrypt hash")

    def check(given: Any) -> bool:
        if not isinstance(given, dict) or given.get("username") != username:
            return False
        password = given.get("password")
        if not isinstance(password, str):
            return False
        return bool(bcrypt.checkpw(password.encode(), hashed.encode()))

    return check


_Hook = TypeVar("_Hook", bound=Callable[..., None])


def _reporting(hook: _Hook) -> _Hook:
    """A report the server calls inline: whatever fails in it is logged, never raised into
    the server (whose own work for the record, such as the disconnect handler, goes on)."""

    @functools.wraps(hook)
    def run(self: AdminInstrumentation, *args: Any) -> None:
        try:
            hook(self, *args)
        except Exception:
            self.sio.logger.exception("ferrosio admin: %s failed", hook.__name__)

    return run  # type: ignore[return-value]


class AdminInstrumentation:
    """What :meth:`ferrosio.AsyncServer.instrument` returns: the admin namespace's handlers
    and the reports to it. :meth:`uninstrument` stops them."""

    def __init__(
        self,
        sio: AsyncServer,
        auth: Any,
        mode: str,
        read_only: bool,
        server_id: str | None,
        namespace: str,
        server_stats_interval: float,
    ) -> None:
        if mode not in ("development", "production"):
            raise ValueError(f"mode must be 'development' or 'production', not {mode!r}")
        if server_stats_interval <= 0:
            raise ValueError("server_stats_interval must be positive")
        self.sio = sio
        self.check = _check_auth(auth)
        self.basic = isinstance(auth, dict) and auth.get("type") == "basic"
        self.namespace = namespace
        self.read_only = read_only
        self.development = mode == "development"
        self.server_id = server_id or socket.gethostname()
        self.interval = server_stats_interval
        self.started = time.monotonic()
        self.sessions: OrderedDict[str, None] = OrderedDict()
        self.admins: set[str] = set()
        self.connected_at: dict[str, tuple[float, str]] = {}  # sid -> (epoch ms, ISO time)
        self.buckets: dict[tuple[int, str, str | None], int] = {}
        self.stats_task: asyncio.Task[None] | None = None
        self.active = True
        features = [] if read_only else list(_FEATURES_WRITE)
        features.append("AGGREGATED_EVENTS")
        if self.development:
            features.append("ALL_EVENTS")
        self.features = features

        sio.on("connect", self._admin_connect, namespace=namespace)
        sio.on("disconnect", self._admin_disconnect, namespace=namespace)
        for event, handler in (
            ("emit", self._cmd_emit),
            ("join", self._cmd_join),
            ("leave", self._cmd_leave),
            ("_disconnect", self._cmd_disconnect),
        ):
            sio.on(event, self._command(handler), namespace=namespace)
        sio.on_any_outgoing(self._outgoing)

    def uninstrument(self) -> None:
        """Stops reporting; admins stay connected but get nothing more."""
        self.active = False
        if self.sio._instrumentation is self:
            self.sio._instrumentation = None
        with contextlib.suppress(ValueError):
            self.sio._outgoing.remove(self._outgoing)
        if self.stats_task is not None:
            self.stats_task.cancel()

    # --------------------------------------------------------------- the admin namespace ----
    async def _admin_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        session = auth.get("sessionId") if isinstance(auth, dict) else None
        if not (isinstance(session, str) and session in self.sessions):
            allowed = self.check(auth)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise exceptions.ConnectionRefusedError("invalid credentials")
            if self.basic:
                session = secrets.token_hex(8)
                self.sessions[session] = None
                while len(self.sessions) > MAX_SESSIONS:
                    self.sessions.popitem(last=False)
                # Sent once the CONNECT is accepted: the emit waits behind it in the engine.
                self.sio.emit_nowait("session", session, to=sid, namespace=self.namespace)
        self.admins.add(sid)
        self.sio.emit_nowait(
            "config", {"supportedFeatures": self.features}, to=sid, namespace=self.namespace
        )
        if self.development:
            sockets = [self._serialize(s) for s in list(self.sio._sockets.values()) if s.connected]
            self.sio.emit_nowait("all_sockets", sockets, to=sid, namespace=self.namespace)
        self._emit_stats(to=sid)
        if self.stats_task is None or self.stats_task.done():
            self.stats_task = asyncio.get_running_loop().create_task(self._stats_loop())

    def _admin_disconnect(self, sid: str, reason: str = "") -> None:
        self.admins.discard(sid)

    def _command(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """A command handler that refuses to act when read-only."""

        async def run(sid: str, *args: Any) -> None:
            if self.read_only or not self.active:
                self.sio.logger.info("ferrosio admin: read-only, command refused")
                return
            await handler(*args)

        return run

    async def _cmd_emit(self, nsp: str, room: str | None, event: str, *args: Any) -> None:
        await self.sio.emit(event, args, room=room or None, namespace=nsp)

    async def _cmd_join(self, nsp: str, room: str, selection: str | None = None) -> None:
        for sid in self._selected(nsp, selection):
            await self.sio.enter_room(sid, room, namespace=nsp)

    async def _cmd_leave(self, nsp: str, room: str, selection: str | None = None) -> None:
        for sid in self._selected(nsp, selection):
            if room in self.sio.rooms(sid, namespace=nsp):
                await self.sio.leave_room(sid, room, namespace=nsp)

    async def _cmd_disconnect(
        self, nsp: str, close: bool = False, selection: str | None = None
    ) -> None:
        for sid in self._selected(nsp, selection):
            if close:
                # The whole connection, as Node's disconnect(true).
                self.sio._core().abort(nsp, sid)
            else:
                await self.sio.disconnect(sid, namespace=nsp)

    def _selected(self, nsp: str, selection: str | None) -> list[str]:
        """This server's sockets of ``nsp`` in the room (or with the id) ``selection``; all of
        them without one."""
        sockets = [s.sid for s in list(self.sio._sockets.values()) if s.nsp == nsp and s.connected]
        if not selection:
            return sockets
        if selection in sockets:
            return [selection]
        return [sid for sid in sockets if selection in self.sio.rooms(sid, namespace=nsp)]

    # ------------------------------------------------------------------------ reports ----
    def _report(self, event: str, *args: Any) -> None:
        if self.admins and self.active and self.sio._engine is not None:
            self.sio.emit_nowait(event, args, namespace=self.namespace)

    def _count(self, kind: str, sub: str | None = None, n: int = 1) -> None:
        key = (int(time.time()) * 1000, kind, sub)
        if key in self.buckets or len(self.buckets) < MAX_EVENT_BUCKETS:
            self.buckets[key] = self.buckets.get(key, 0) + n

    @_reporting
    def socket_connected(self, s: _Socket) -> None:
        """Called by the server when it accepts a socket."""
        self.connected_at[s.sid] = (time.time() * 1000, _now_iso())
        slot = self.sio._environs.get(s.eio_sid)
        if slot is not None and slot.refs == 1:  # the connection's first socket
            self._count("rawConnection")
        if self.development:
            self._report("socket_connected", self._serialize(s), _now_iso())

    @_reporting
    def socket_disconnected(self, s: _Socket, reason: str) -> None:
        """Called by the server when a connected socket is gone (and forgotten)."""
        self.connected_at.pop(s.sid, None)
        if s.eio_sid not in self.sio._environs:  # the connection's last socket
            self._count("rawDisconnection", reason)
        self.admins.discard(s.sid)
        if self.development:
            self._report("socket_disconnected", s.nsp, s.sid, reason, _now_iso())

    @_reporting
    def event_received(self, nsp: str, sid: str, payload: list[Any]) -> None:
        """Called by the server with each event (``[name, *args]``) before its handler."""
        self._count("packetsIn")
        if self.development and nsp != self.namespace:
            self._report("event_received", nsp, sid, payload, _now_iso())

    @_reporting
    def room_joined(self, nsp: str, room: str, sid: str) -> None:
        if self.development:
            self._report("room_joined", nsp, room, sid, _now_iso())

    @_reporting
    def room_left(self, nsp: str, room: str, sid: str) -> None:
        if self.development:
            self._report("room_left", nsp, room, sid, _now_iso())

    @_reporting
    def _outgoing(self, event: str, args: list[Any], nsp: str, to: str | list[str] | None) -> None:
        if nsp == self.namespace or not self.active:
            return  # the admin namespace's own traffic is not reported (nor would it end)
        self._count("packetsOut")
        # As Node's onAnyOutgoing, per socket: emits to one socket.
        if self.development and isinstance(to, str) and to in self.sio._sockets:
            self._report("event_sent", nsp, to, [event, *args], _now_iso())

    # -------------------------------------------------------------------------- stats ----
    async def _stats_loop(self) -> None:
        # Ends with the last admin, or the server.
        while self.admins and self.active and self.sio._engine is not None:
            await asyncio.sleep(self.interval)
            if self.admins and self.active and self.sio._engine is not None:
                try:
                    self._emit_stats()
                except Exception:
                    self.sio.logger.exception("ferrosio admin: server_stats failed")

    def _emit_stats(self, to: str | None = None) -> None:
        sio = self.sio
        namespaces: dict[str, int] = {}
        clients: set[str] = set()
        polling: set[str] = set()
        for s in list(sio._sockets.values()):
            if not s.connected:
                continue
            namespaces[s.nsp] = namespaces.get(s.nsp, 0) + 1
            clients.add(s.eio_sid)
            if _transport(sio.get_environ(s.sid, namespace=s.nsp) or {}) == "polling":
                polling.add(s.eio_sid)
        namespaces.setdefault(self.namespace, 0)
        events = [
            {"timestamp": ts, "type": kind, "subType": sub, "count": n}
            for (ts, kind, sub), n in self.buckets.items()
        ]
        self.buckets.clear()
        stats = {
            "serverId": self.server_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "uptime": time.monotonic() - self.started,
            "clientsCount": len(clients),
            "pollingClientsCount": len(polling),
            "aggregatedEvents": events,
            "namespaces": [{"name": n, "socketsCount": c} for n, c in namespaces.items()],
        }
        sio.emit_nowait("server_stats", stats, to=to, namespace=self.namespace)

    def _serialize(self, s: _Socket) -> dict[str, Any]:
        """A socket as the UI shows it (Node's shape)."""
        # Built from the handshake record on demand (the server keeps no environ per socket).
        environ = self.sio.get_environ(s.sid, namespace=s.nsp) or {}
        headers = {
            key[5:].lower().replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and isinstance(value, str)
        }
        query_string = environ.get("QUERY_STRING", "")
        issued, time_text = self.connected_at.get(s.sid, (time.time() * 1000, _now_iso()))
        path = environ.get("PATH_INFO", "")
        try:
            data = orjson.loads(orjson.dumps(s.session or {}, default=str))
        except (TypeError, orjson.JSONEncodeError):
            data = {}
        return {
            "id": s.sid,
            "clientId": s.eio_sid,
            "transport": _transport(environ),
            "nsp": s.nsp,
            "data": data,
            "handshake": {
                "address": headers.get("cf-connecting-ip")
                or headers.get("x-forwarded-for")
                or environ.get("REMOTE_ADDR", ""),
                "headers": headers,
                "query": dict(parse_qsl(query_string)),
                "issued": int(issued),
                "secure": environ.get("wsgi.url_scheme") == "https",
                "time": time_text,
                "url": f"{path}?{query_string}" if query_string else path,
                "xdomain": "origin" in headers,
            },
            "rooms": self.sio.rooms(s.sid, namespace=s.nsp),
        }


def _transport(environ: dict[str, Any]) -> str:
    """The transport a connection opened with (its handshake's ``transport=``)."""
    query: str = environ.get("QUERY_STRING", "")
    for key, value in parse_qsl(query):
        if key == "transport":
            return value
    return "polling"
