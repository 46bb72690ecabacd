"""What the server and the client share about handlers: the tables and the decorators that
fill them, the one lookup order, running a handler (sync or async) and its tasks, and the
disconnect reasons.

Handler lookup, for an event ``event`` arriving in namespace ``nsp`` (python-socketio's order):

1. ``handlers[nsp][event]``, called as registered;
2. ``handlers[nsp]["*"]``, called with the event name first;
3. ``handlers["*"][event]``, called with the namespace first;
4. ``handlers["*"]["*"]``, called with the event name, then the namespace;
5. the class-based namespace registered for ``nsp``: its ``on_<event>`` method (if ``nsp``
   has a class, it is the last rung: without that method, the event has no handler);
6. else a class-based namespace registered for ``"*"``: its ``on_<event>``, namespace first.

Reserved events (the server's ``connect`` and ``disconnect``; the client's ``connect``,
``connect_error`` and ``disconnect``) never reach a catch-all (rungs 2 and 4), and an event a
peer sends under a reserved name is refused, never dispatched.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from types import CoroutineType
from typing import Any, ClassVar, TypeVar, overload

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)
#: A dynamic namespace (server only): a compiled regular expression (a namespace matches when
#: ``pattern.search(name)`` does, as Node's ``RegExp.test``: anchor it with ``^...$``) or a
#: predicate ``fn(name) -> bool``.
NamespaceMatcher = re.Pattern[str] | Callable[[str], bool]


class DisconnectReason:
    """Why a connection or a namespace ended: the ``reason`` a ``disconnect`` handler gets.

    ``AsyncServer.reason`` and ``AsyncClient.reason``, as in python-socketio."""

    #: The server ended it (``disconnect()`` on the server, or the server's DISCONNECT).
    SERVER_DISCONNECT = "server disconnect"
    #: The client ended it (its DISCONNECT, or ``disconnect()`` on the client).
    CLIENT_DISCONNECT = "client disconnect"
    #: The peer stopped answering pings.
    PING_TIMEOUT = "ping timeout"
    #: The transport was closed.
    TRANSPORT_CLOSE = "transport close"
    #: The transport failed.
    TRANSPORT_ERROR = "transport error"
    #: Server only (ferrosio's): the client read slower than it was sent to, and more than
    #: ``max_send_buffer_size`` bytes waited for it.
    SEND_BUFFER_FULL = "send buffer full"


#: Events of the server's own: never a catch-all's, never accepted from a client.
SERVER_RESERVED_EVENTS = frozenset({"connect", "disconnect"})
#: Events of the client's own: never a catch-all's, never accepted from a server.
CLIENT_RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect"})

# Handler results that are surely not awaitable: skips inspect.isawaitable on the hot path.
PLAIN_RESULTS = frozenset({type(None), tuple, list, dict, str, int, float, bool, bytes})

_NO_ARGS: tuple[Any, ...] = ()

_ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ferrosio_ack_requested", default=False
)


def mark_ack_requested(ack: bool) -> None:
    """Sets what :func:`ack_requested` tells the handler about to be called."""
    # Handlers are called from the wake-up callback, whose context persists between calls:
    # set the flag only when it changes (set/reset per event cost two context copies).
    # Tasks copy the context when created, so a handler's task keeps its event's value.
    if _ack_requested.get() is not ack:
        _ack_requested.set(ack)


def ack_requested() -> bool:
    """True while a handler runs for an event whose sender asked for an acknowledgement.

    python-socketio has no equivalent; handlers that behave differently with and without an
    ack (the reference app's ``echo``) use it.
    """
    return _ack_requested.get()


def ack_result(args: Sequence[Any]) -> Any:
    """What ``call()`` returns for an acknowledgement's arguments: None for none, the argument
    for one, a tuple for several."""
    if len(args) > 1:
        return tuple(args)
    return args[0] if args else None


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Continues ``coro`` after its first step, which yielded ``pending`` (what a task awaits:
    a future, or None to yield to the loop). Everything the task sends or throws goes on to
    ``coro``, as ``yield from`` would."""
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation included: it belongs to the coroutine
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(value)
            except StopIteration as stop:
                return stop.value


def step_eagerly(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Runs a handler coroutine's first step now, in the caller's context.

    -> ``(True, result)`` if it finished without waiting (most handlers: ``await sio.emit``
    does not wait), sparing a task; else ``(False, awaitable)`` that runs the rest in a task.
    Exceptions raised by the first step propagate, except a cancellation (awaiting a future
    that was cancelled already): that one is re-raised in the task, which ends cancelled, as it
    would have without the eager step."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    except asyncio.CancelledError as exc:
        return False, _raise(exc)
    rest: Awaitable[Any] = _resume(coro, pending)
    return False, rest


async def _raise(exc: BaseException) -> Any:
    raise exc


def positional_arity(fn: Handler) -> int:
    """How many positional arguments ``fn`` takes (a large number for ``*args``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 99
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def resolve_logger(logger: bool | logging.Logger, default: logging.Logger) -> logging.Logger:
    """python-socketio's ``logger=`` rule: a Logger is used as is; True logs at INFO; False
    leaves errors only (unless the application configured the default logger itself)."""
    if isinstance(logger, logging.Logger):
        return logger
    if logger:
        default.setLevel(logging.INFO)
    elif default.level == logging.NOTSET:
        default.setLevel(logging.ERROR)
    return default


class HandlerRegistry:
    """Handlers of a server or a client: registering them (``on()``, ``event()``), finding
    the one for an event, running it.

    Subclasses set ``reserved_events`` and create the attributes annotated below."""

    #: The disconnect reasons, as ``AsyncServer.reason`` / ``AsyncClient.reason``.
    reason = DisconnectReason
    reserved_events: ClassVar[frozenset[str]]
    handlers: dict[str, dict[str, Handler]]
    namespace_handlers: dict[str, Any]
    logger: logging.Logger
    _arity: dict[Handler, int]
    _tasks: set[asyncio.Task[Any]]

    def _init_handlers(self, logger: bool | logging.Logger, default: logging.Logger) -> None:
        """Creates the (empty) tables and the logger; for the subclass's ``__init__``."""
        self.logger = resolve_logger(logger, default)
        self.handlers = {}
        self.namespace_handlers = {}
        self._arity = {}
        self._tasks = set()

    @overload
    def on(
        self, event: str, handler: None = None, namespace: str | NamespaceMatcher | None = None
    ) -> Callable[[F], F]: ...

    @overload
    def on(
        self, event: str, handler: Handler, namespace: str | NamespaceMatcher | None = None
    ) -> None: ...

    def on(
        self,
        event: str,
        handler: Handler | None = None,
        namespace: str | NamespaceMatcher | None = None,
    ) -> Callable[[F], F] | None:
        """Registers a handler for ``event`` in ``namespace`` (``/`` by default).

        Usable as ``x.on("event", fn)`` or as a decorator ``@x.on("event")``. ``"*"`` as the
        event catches the events of the namespace without a handler of their own (called with
        the event name first); ``"*"`` as the namespace catches the namespaces without a
        handler for the event (called with the namespace first; both ``"*"``: event name,
        then namespace).

        The handler for an event in namespace ``nsp`` is the first of: ``handlers[nsp][event]``,
        ``handlers[nsp]["*"]``, ``handlers["*"][event]``, ``handlers["*"]["*"]``, the
        ``on_<event>`` method of the class-based namespace registered for ``nsp`` (if there is
        one, it is the last rung), else that of one registered for ``"*"`` (namespace first),
        as in python-socketio. ``connect``,
        ``disconnect`` (and, on a client, ``connect_error``) never go to a ``"*"`` event
        handler, and a peer cannot send events with those names.

        On a server, ``namespace`` may also be a dynamic namespace (a compiled regular
        expression or a predicate): see :meth:`ferrosio.AsyncServer.of`.
        """
        table = self._handler_table(namespace)

        def register(fn: F) -> F:
            table[event] = fn
            self._arity[fn] = positional_arity(fn)
            return fn

        if handler is not None:
            register(handler)
            return None
        return register

    @overload
    def event(self, handler: F, /) -> F: ...

    @overload
    def event(self, /, *, namespace: str | NamespaceMatcher | None = None) -> Callable[[F], F]: ...

    def event(
        self, handler: Any = None, /, *, namespace: str | NamespaceMatcher | None = None
    ) -> Any:
        """Registers a handler named after the function: ``@x.event`` or
        ``@x.event(namespace="/chat")``."""
        if handler is not None:
            self.on(handler.__name__, handler)
            return handler

        def deco(fn: F) -> F:
            self.on(fn.__name__, fn, namespace=namespace)
            return fn

        return deco

    def _handler_table(self, namespace: str | NamespaceMatcher | None) -> dict[str, Handler]:
        """The handler table of ``namespace`` (created when new)."""
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError("a dynamic namespace (a pattern or a predicate) is a server feature")
        return self.handlers.setdefault(namespace or "/", {})

    def _arity_of(self, fn: Handler) -> int:
        n = self._arity.get(fn)
        if n is None:
            n = self._arity[fn] = positional_arity(fn)
        return n

    def _find_handler(self, nsp: str, event: str) -> tuple[Handler | None, tuple[Any, ...]]:
        """The handler for ``event`` in ``nsp`` and the arguments that go before the event's
        own (the event name and/or the namespace, for the catch-alls); the order is
        :meth:`on`'s."""
        handlers = self.handlers
        table = handlers.get(nsp)
        if table is not None:
            fn = table.get(event)
            if fn is not None:
                return fn, _NO_ARGS
            if event not in self.reserved_events:
                fn = table.get("*")
                if fn is not None:
                    return fn, (event,)
        table = handlers.get("*")
        if table is not None:
            fn = table.get(event)
            if fn is not None:
                return fn, (nsp,)
            if event not in self.reserved_events:
                fn = table.get("*")
                if fn is not None:
                    return fn, (event, nsp)
        spaces = self.namespace_handlers
        if spaces:
            # as in python-socketio, a class registered for nsp owns nsp: no "*" class after it
            space = spaces.get(nsp)
            if space is not None:
                return getattr(space, "on_" + event, None), _NO_ARGS
            space = spaces.get("*")
            if space is not None:
                fn = getattr(space, "on_" + event, None)
                if fn is not None:
                    return fn, (nsp,)
        return None, _NO_ARGS

    def _refuse_reserved(self, nsp: str, event: str) -> None:
        # A peer sending "connect" (say) must not reach the application's connect handler.
        self.logger.debug("ferrosio: refused an event named %r from the peer in %s", event, nsp)

    def _trigger_disconnect(self, nsp: str, args: tuple[Any, ...], reason: str) -> None:
        """Runs the ``disconnect`` handler with ``reason`` last, or without it for an older
        handler that does not take it."""
        fn, lead = self._find_handler(nsp, "disconnect")
        if fn is None:
            return
        full = (*lead, *args, reason)
        if self._arity_of(fn) < len(full):
            full = full[:-1]
        self._run(fn, full)

    def _run(
        self,
        fn: Handler,
        args: Iterable[Any],
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        ack: bool = False,
    ) -> None:
        """Calls a handler; a coroutine's first step runs now, the rest (if it waits) as a
        task. ``done`` gets the result; ``failed`` the exception (else it is logged)."""
        mark_ack_requested(ack)
        try:
            result = fn(*args)
            if type(result) is CoroutineType:
                finished, result = step_eagerly(result)
                if not finished:
                    self._spawn(self._finish(result, done, failed))
                    return
            elif type(result) not in PLAIN_RESULTS and inspect.isawaitable(result):
                self._spawn(self._finish(result, done, failed))
                return
        except Exception as exc:
            if failed is not None:
                failed(exc)
            else:
                self.logger.exception("ferrosio: handler %s raised", getattr(fn, "__name__", fn))
            return
        if done is not None:
            done(result)

    async def _finish(
        self,
        aw: Awaitable[Any],
        done: Callable[[Any], None] | None,
        failed: Callable[[BaseException], None] | None,
    ) -> None:
        try:
            result = await aw
        except Exception as exc:
            if failed is not None:
                failed(exc)
            else:
                self.logger.exception("ferrosio: handler raised")
            return
        if done is not None:
            try:
                done(result)
            except Exception:
                self.logger.exception("ferrosio: could not send the handler's result")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Runs ``coro`` as a task, kept referenced until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
