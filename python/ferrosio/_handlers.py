"""Handler tables and the decorators that fill them, shared by the server and the client."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar, overload

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)


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
    """``on()`` / ``event()`` registration into ``handlers[namespace][event]``."""

    handlers: dict[str, dict[str, Handler]]
    _arity: dict[Handler, int]

    @overload
    def on(
        self, event: str, handler: None = None, namespace: str | None = None
    ) -> Callable[[F], F]: ...

    @overload
    def on(self, event: str, handler: Handler, namespace: str | None = None) -> None: ...

    def on(
        self, event: str, handler: Handler | None = None, namespace: str | None = None
    ) -> Callable[[F], F] | None:
        """Registers a handler for ``event`` in ``namespace`` (``/`` by default).

        ``"*"`` as the event catches every event without a handler of its own (called with the
        event name first). Usable as ``x.on("event", fn)`` or as a decorator ``@x.on("event")``.
        """
        nsp = namespace or "/"

        def register(fn: F) -> F:
            self.handlers.setdefault(nsp, {})[event] = fn
            self._arity[fn] = positional_arity(fn)
            return fn

        if handler is not None:
            register(handler)
            return None
        return register

    @overload
    def event(self, handler: F, /) -> F: ...

    @overload
    def event(self, /, *, namespace: str | None = None) -> Callable[[F], F]: ...

    def event(self, handler: Any = None, /, *, namespace: str | None = None) -> Any:
        """Registers a handler named after the function: ``@x.event`` or
        ``@x.event(namespace="/chat")``."""
        if handler is not None:
            self.on(handler.__name__, handler)
            return handler

        def deco(fn: F) -> F:
            self.on(fn.__name__, fn, namespace=namespace)
            return fn

        return deco

    def _arity_of(self, fn: Handler) -> int:
        n = self._arity.get(fn)
        if n is None:
            n = self._arity[fn] = positional_arity(fn)
        return n
