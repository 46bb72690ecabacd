"""One port beside an ASGI application: ferrosio's listener serves the Socket.IO endpoint
natively and hands every other HTTP request to the app (``other_asgi_app=``).

The engine forwards such a request whole: its body is read up to ``max_http_buffer_size``
(413 beyond) before the app runs, so ``receive`` returns it in one ``http.request`` message,
then ``http.disconnect`` once the client is gone or the response is complete. ``send`` streams:
the head, then each body chunk to the client as it is sent. At most ``HTTP_BODY_CREDIT`` chunks
may wait in the engine unwritten: beyond, ``send`` waits until the client takes them (a slow
client slows the app instead of growing a queue). ``send`` after the client went away raises
:class:`~ferrosio.exceptions.ClientDisconnectedError` (an ``OSError``, as ASGI 2.4 asks).

Lifespan: ``startup`` runs before the server listens (``lifespan.startup.failed`` raises
:class:`~ferrosio.exceptions.LifespanError`), ``shutdown`` after the engine stopped. An app
that does not speak lifespan (raises or returns on the lifespan scope without answering) is
served without it. WebSocket routes of the app are not served: the engine answers them 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ferrosio import exceptions
from ferrosio._ferrosio import HTTP_BODY_CREDIT, HTTP_REQUEST, HTTP_WRITTEN

if TYPE_CHECKING:
    from ferrosio._ferrosio import Handshake, HttpClosed, HttpRequest, HttpWritten, ServerHandle

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.4"}


class _Exchange:
    """One forwarded request and the state of its response."""

    def __init__(self, engine: ServerHandle, request_id: int, body: bytes) -> None:
        self.engine = engine
        self.id = request_id
        self.body: bytes | None = body
        self.gone = asyncio.Event()  # the client left, or the response is complete
        self.client_left = False
        self.unwritten = 0  # body chunks sent with more_body and not written yet
        self.credit = asyncio.Event()
        self.started = False
        self.complete = False

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.client_left:
            raise exceptions.ClientDisconnectedError("the client went away")
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.started = True
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
            self.engine.http_start(self.id, int(message["status"]), headers)
        elif kind == "http.response.body" and self.started and not self.complete:
            more = bool(message.get("more_body", False))
            if more:
                while self.unwritten >= HTTP_BODY_CREDIT:
                    self.credit.clear()
                    await self.credit.wait()
                    if self.client_left:
                        raise exceptions.ClientDisconnectedError("the client went away")
                self.unwritten += 1
            else:
                self.complete = True
                self.gone.set()
            self.engine.http_body(self.id, bytes(message.get("body", b"")), more)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} at this point of the response")

    def written(self) -> None:
        self.unwritten -= 1
        self.credit.set()

    def left(self) -> None:
        self.client_left = True
        self.gone.set()
        self.credit.set()


def _scope(handshake: Handshake, http_version: str, state: dict[str, Any]) -> dict[str, Any]:
    raw_path = handshake.path
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": http_version,
        "method": handshake.method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1", "replace"),
        "query_string": handshake.query.encode("latin-1", "replace"),
        "root_path": "",
        # The engine passes values as text (bytes that are not UTF-8 became U+FFFD).
        "headers": [(n.encode("latin-1"), v.encode()) for n, v in handshake.headers],
        "client": handshake.remote_addr,
        "server": handshake.local_addr,
        "state": dict(state),
    }


class AsgiHost:
    """Runs an ASGI application for the requests the engine forwards."""

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger
        self.state: dict[str, Any] = {}
        self._exchanges: dict[int, _Exchange] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifespan_queue: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_task: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[Message] = asyncio.Queue()

    # ------------------------------------------------------------------ lifespan ----
    async def startup(self) -> None:
        """Runs the app's ``lifespan.startup``; raises LifespanError if it failed."""
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}

        async def send(message: Message) -> None:
            await self._answers.put(message)

        async def run() -> None:
            try:
                await self.app(scope, self._lifespan_queue.get, send)
            except Exception as exc:  # reported through the queue
                await self._answers.put({"type": "_ferrosio.lifespan.error", "exc": exc})
            else:
                await self._answers.put({"type": "_ferrosio.lifespan.returned"})

        self._lifespan_task = asyncio.get_running_loop().create_task(run())
        await self._lifespan_queue.put({"type": "lifespan.startup"})
        answer = await self._answers.get()
        kind = answer["type"]
        if kind == "lifespan.startup.complete":
            return
        if kind == "lifespan.startup.failed":
            raise exceptions.LifespanError(
                f"the ASGI application's startup failed: {answer.get('message', '')}"
            )
        # Raised or returned without answering: the app does not speak lifespan.
        self.logger.info("ferrosio: the ASGI application does not support lifespan: %s", kind)
        self._lifespan_task = None

    async def shutdown(self, timeout: float) -> None:
        """Ends the forwarded requests still running, then runs ``lifespan.shutdown``."""
        for exchange in self._exchanges.values():
            exchange.left()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        task, self._lifespan_task = self._lifespan_task, None
        if task is None:
            return
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        try:
            answer = await asyncio.wait_for(self._answers.get(), timeout)
        except asyncio.TimeoutError:
            self.logger.warning("ferrosio: the ASGI application's shutdown timed out")
            task.cancel()
            return
        if answer["type"] == "lifespan.shutdown.failed":
            self.logger.error("ferrosio: the ASGI application's shutdown failed: %s", answer)

    # ------------------------------------------------------------------ requests ----
    def on_record(self, engine: ServerHandle, item: HttpRequest | HttpWritten | HttpClosed) -> None:
        if item[0] == HTTP_REQUEST:
            _, request_id, handshake, http_version, body = item
            exchange = _Exchange(engine, request_id, body)
            self._exchanges[request_id] = exchange
            scope = _scope(handshake, http_version, self.state)
            task = asyncio.get_running_loop().create_task(self._run(scope, exchange))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        found = self._exchanges.get(item[1])
        if found is None:
            return
        if item[0] == HTTP_WRITTEN:
            found.written()
        else:
            found.left()

    async def _run(self, scope: dict[str, Any], exchange: _Exchange) -> None:
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if exchange.client_left:  # the app let our ClientDisconnectedError (or its own) out
                return
            self.logger.exception("ferrosio: the ASGI application failed on %s", scope["path"])
        finally:
            del self._exchanges[exchange.id]
            exchange.gone.set()
            if not exchange.complete and not exchange.client_left:
                # No (complete) response: 500 before the head, else the connection is cut.
                with contextlib.suppress(exceptions.EngineNotRunningError):
                    exchange.engine.http_abort(exchange.id)
