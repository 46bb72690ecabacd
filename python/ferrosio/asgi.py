"""Serving an :class:`~ferrosio.AsyncServer` from any ASGI server (uvicorn, hypercorn, granian)
or inside an ASGI application (FastAPI, Starlette): python-socketio's ``ASGIApp``.

The engine stays the engine: sessions, heartbeats, the codec, rooms and fan-out run in Rust, as
with :func:`ferrosio.run`; only the bytes travel through the ASGI server. An HTTP request is
handed to the engine whole and answered through the engine's inbound queue (the same wake-up
that carries events); a WebSocket message is handed over on the event loop's thread (no thread
hop), and what the engine has to send arrives as one notice per batch, which the connection's
writer takes whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ferrosio import exceptions
from ferrosio._ferrosio import CONTROL_READY, CONTROL_RESPONSE

if TYPE_CHECKING:
    from ferrosio._ferrosio import ServerHandle
    from ferrosio.server import AsyncServer

__all__ = ["ASGIApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]

# How long a polling request of a session being upgraded waits for the upgrade's `5` (see
# ASGIApp._after_upgrade); the engine's own probe nudge is every 100 ms.
UPGRADE_HOLD = 0.1
UPGRADE_SETTLE = 0.005


class ASGIApp:
    """An ASGI application serving ``socketio_server`` at ``/<socketio_path>/``, python-socketio's
    ``socketio.ASGIApp`` with the same arguments::

        sio = ferrosio.AsyncServer(async_mode="asgi")
        app = ferrosio.ASGIApp(sio, other_asgi_app=fastapi_app)
        # uvicorn module:app   (or hypercorn, granian --interface asgi)

    or mounted under a prefix, ``fastapi_app.mount("/ws", ferrosio.ASGIApp(sio))`` (clients
    then connect with ``path="/ws/socket.io"``): the scope's ``root_path`` is honoured.

    :param socketio_server: the :class:`~ferrosio.AsyncServer` to serve. It must not also be
        started with :meth:`~ferrosio.AsyncServer.start` (one engine per server).
    :param other_asgi_app: where every other request goes, lifespan events included; without
        one, other requests get 404.
    :param static_files: python-socketio's mapping of URL paths to files or folders (or to
        ``{"filename": ..., "content_type": ...}``), served by the engine before
        ``other_asgi_app`` is asked; added to the server's own ``static_files``.
    :param socketio_path: the endpoint's path (``socket.io``), replacing the server's.
    :param on_startup: called (awaited if a coroutine function) at lifespan startup, after the
        engine started.
    :param on_shutdown: called at lifespan shutdown, before the server shuts down gracefully.

    The engine starts at lifespan startup, or at the first request under an ASGI server that
    sends no lifespan events.
    """

    def __init__(
        self,
        socketio_server: AsyncServer,
        other_asgi_app: ASGIApplication | None = None,
        static_files: dict[str, Any] | None = None,
        socketio_path: str = "socket.io",
        on_startup: Callable[[], Any] | None = None,
        on_shutdown: Callable[[], Any] | None = None,
    ) -> None:
        self.sio = socketio_server
        self.other_asgi_app = other_asgi_app
        self.static_files = dict(static_files or {})
        self.socketio_path = socketio_path
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self._path = "/" + socketio_path.strip("/") + "/"
        self._ids = itertools.count(1)
        self._responses: dict[int, asyncio.Future[Response]] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._starting: asyncio.Lock | None = None
        # Sessions whose upgrade WebSocket is open and has not sent `5` yet, by sid.
        self._upgrading: dict[str, asyncio.Event] = {}

    # ---------------------------------------------------------------- dispatch ----
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            if self.other_asgi_app is not None:
                await self.other_asgi_app(scope, receive, send)
            return
        path = _engine_path(scope)
        if path in self._endpoints() or (kind == "http" and self._is_static(path)):
            engine = await self._engine()
            if kind == "http":
                await self._http(engine, scope, path, receive, send)
            else:
                await self._websocket(engine, scope, path, receive, send)
        elif self.other_asgi_app is not None:
            await self.other_asgi_app(scope, receive, send)
        elif kind == "http":
            await _respond(send, (404, [(b"content-type", b"text/plain")], b"Not Found"))
        else:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})

    def _endpoints(self) -> tuple[str, ...]:
        """The engine's paths: Socket.IO's, and the bare Engine.IO endpoint's if any."""
        endpoint = self.sio.engineio
        if endpoint is None:
            return (self._path,)
        return (self._path, "/" + endpoint.path.strip("/") + "/")

    def _static_files(self) -> dict[str, Any]:
        """The server's own ``static_files`` and this app's (which win)."""
        return {**self.sio.static_files, **self.static_files}

    def _is_static(self, path: str) -> bool:
        """Whether a static route covers ``path``: its URL exactly, or anything under it when
        it maps a folder."""
        for url, target in self._static_files().items():
            if path == url:
                return True
            folder = target if isinstance(target, str) else None
            if folder and os.path.isdir(folder) and path.startswith(url.rstrip("/") + "/"):
                return True
        return False

    # ---------------------------------------------------------------- the engine ----
    async def _engine(self) -> ServerHandle:
        """The engine, started on first use (on this event loop)."""
        engine = self.sio._engine
        if engine is not None and self.sio._on_external == self._on_record:
            return engine
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            engine = self.sio._engine
            if engine is None or self.sio._on_external != self._on_record:
                if engine is not None:
                    raise exceptions.FerrosioError(
                        "this AsyncServer is already running elsewhere (start() or another "
                        "ASGIApp); an ASGIApp needs a server of its own"
                    )
                self.sio._launch(
                    None, 0, self._path, self._static_files(), on_external=self._on_record
                )
                engine = self.sio._engine
            assert engine is not None
            return engine

    def _on_record(self, item: Any) -> None:
        """An answer of the engine (called from the server's drain, on the event loop)."""
        if item[0] == CONTROL_RESPONSE:
            _, request_id, status, headers, body = item
            fut = self._responses.pop(request_id, None)
            if fut is not None and not fut.done():
                fut.set_result((status, headers, body))
        elif item[0] == CONTROL_READY:
            ready = self._ready.get(item[1])
            if ready is not None:
                ready.set()

    def _expect(self) -> tuple[int, asyncio.Future[Response]]:
        request_id = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._responses[request_id] = fut
        return request_id, fut

    # ---------------------------------------------------------------- lifespan ----
    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starts and stops the engine around the other app's own lifespan, if any."""
        other = self.other_asgi_app

        async def startup() -> str | None:
            try:
                await self._engine()
                await _call(self.on_startup)
            except Exception as exc:
                self.sio.logger.exception("ferrosio.ASGIApp: startup failed")
                return repr(exc)
            return None

        async def shutdown() -> None:
            try:
                await _call(self.on_shutdown)
            finally:
                await self.sio.shutdown()

        if other is None:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    error = await startup()
                    if error is not None:
                        await send({"type": "lifespan.startup.failed", "message": error})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

        # With another app: ours first at startup, last at shutdown; the app answers.
        failed: str | None = None

        async def wrapped_receive() -> Message:
            nonlocal failed
            message = await receive()
            if message["type"] == "lifespan.startup":
                failed = await startup()
            return message

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and failed is not None:
                message = {"type": "lifespan.startup.failed", "message": failed}
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await shutdown()
            await send(message)

        await other(scope, wrapped_receive, wrapped_send)

    # ---------------------------------------------------------------- HTTP ----
    async def _http(
        self, engine: ServerHandle, scope: Scope, path: str, receive: Receive, send: Send
    ) -> None:
        # The body, read whole and bounded: past max_http_buffer_size the engine answers 413
        # (and ends the session) without more of it.
        limit = self.sio.max_http_buffer_size
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if size <= limit:
                chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        query = scope.get("query_string", b"")
        if self._upgrading:
            await self._after_upgrade(query)
        request_id, fut = self._expect()
        try:
            engine.external_http(
                request_id,
                scope["method"],
                path,
                query.decode("latin-1"),
                [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])],
                b"".join(chunks),
                _addr(scope.get("client")),
                _addr(scope.get("server")),
            )
        except exceptions.FerrosioError:
            self._responses.pop(request_id, None)
            await _respond(send, (503, [(b"content-type", b"text/plain")], b"Not Running"))
            return
        try:
            response = await fut
        finally:
            self._responses.pop(request_id, None)
        await _respond(send, response)

    async def _after_upgrade(self, query: bytes) -> None:
        """Holds a request (polling, or another WebSocket) of a session being upgraded until
        its WebSocket's `5` is handled, for at most UPGRADE_HOLD. The ASGI server runs each
        connection in a task of its own, so a request sent after the `5` could otherwise
        overtake it (and be answered as polling instead of 400). A compliant client only
        polls there when its GET crossed the `3probe`; the engine releases that one with a
        noop every 100 ms anyway."""
        sid = _query_value(query, b"sid")
        upgrading = self._upgrading.get(sid) if sid is not None else None
        if upgrading is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(upgrading.wait(), UPGRADE_HOLD)
                # The `3probe` went out before the `5` was read: let it reach the client well
                # ahead of this answer, as it does from the engine's own listener.
                await asyncio.sleep(UPGRADE_SETTLE)

    # ---------------------------------------------------------------- WebSocket ----
    async def _websocket(
        self, engine: ServerHandle, scope: Scope, path: str, receive: Receive, send: Send
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        conn_id, fut = self._expect()
        ready = self._ready[conn_id] = asyncio.Event()
        sid = _query_value(scope.get("query_string", b""), b"sid")
        upgraded = None
        if sid is not None and sid not in self._upgrading:
            upgraded = self._upgrading[sid] = asyncio.Event()
        elif self._upgrading:
            # A second WebSocket for a session being upgraded: after the first one's `5`.
            await self._after_upgrade(scope.get("query_string", b""))
        try:
            engine.external_ws_open(
                conn_id,
                path,
                scope.get("query_string", b"").decode("latin-1"),
                [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])],
                _addr(scope.get("client")),
                _addr(scope.get("server")),
            )
            status, _headers, _body = await fut
            if status != 101:
                # Refused before the handshake: the ASGI server answers 403.
                await send({"type": "websocket.close", "code": 1008})
                return
            await send({"type": "websocket.accept"})
            writer = asyncio.ensure_future(self._ws_writer(engine, conn_id, ready, send))
            reader = asyncio.ensure_future(_ws_reader(engine, conn_id, receive, send, upgraded))
            try:
                await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (writer, reader):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            self._responses.pop(conn_id, None)
            self._ready.pop(conn_id, None)
            if upgraded is not None and sid is not None:
                upgraded.set()
                self._upgrading.pop(sid, None)
            with contextlib.suppress(Exception):
                engine.external_ws_close(conn_id)

    @staticmethod
    async def _ws_writer(
        engine: ServerHandle, conn_id: int, ready: asyncio.Event, send: Send
    ) -> None:
        """Sends each batch the engine has queued, when told there is one."""
        while True:
            await ready.wait()
            ready.clear()
            frames, close = engine.external_ws_take(conn_id)
            for frame in frames:
                if isinstance(frame, str):
                    await send({"type": "websocket.send", "text": frame})
                else:
                    await send({"type": "websocket.send", "bytes": frame})
            if close:
                await send({"type": "websocket.close", "code": 1000})
                return


async def _ws_reader(
    engine: ServerHandle,
    conn_id: int,
    receive: Receive,
    send: Send,
    upgraded: asyncio.Event | None,
) -> None:
    """Hands each message to the engine until the client goes; sets ``upgraded`` once an
    upgrade's `5` is handled."""
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        text = message.get("text")
        data: str | bytes = text if text is not None else message.get("bytes") or b""
        reply = engine.external_ws_receive(conn_id, data)
        if upgraded is not None and data == "5":
            upgraded.set()
            upgraded = None
        if reply is None:
            continue
        if isinstance(reply, str):
            await send({"type": "websocket.send", "text": reply})
        else:
            await send({"type": "websocket.close", "code": reply})
            return


def _query_value(query: bytes, key: bytes) -> str | None:
    """The last value of ``key`` in a query string (as the engine reads it), if any."""
    value = None
    prefix = key + b"="
    for pair in query.split(b"&"):
        if pair.startswith(prefix):
            value = pair[len(prefix) :].decode("latin-1")
    return value


def _engine_path(scope: Scope) -> str:
    """The request's path without the prefix the app is mounted under (``root_path``)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    # Servers and frameworks differ: some strip the prefix from ``path``, some do not.
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root.rstrip("/")) :] or "/"
    return path


def _addr(pair: Any) -> tuple[str, int] | None:
    if not pair:
        return None
    host, port = pair[0], pair[1]
    return (str(host), int(port or 0))


async def _respond(send: Send, response: Response) -> None:
    status, headers, body = response
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _call(hook: Callable[[], Any] | None) -> None:
    if hook is None:
        return
    result = hook()
    if inspect.isawaitable(result):
        await result
