"""A bare Engine.IO endpoint beside the Socket.IO one, on the same listener.

python-engineio's server model: ``connect(sid, environ)``, ``message(sid, data)`` (``str`` for
text, ``bytes`` for binary) and ``disconnect(sid, reason)`` handlers, and :meth:`send`::

    sio = ferrosio.AsyncServer(engineio_path="engine.io")

    @sio.engineio.on("message")
    async def echo(sid, data):
        await sio.engineio.send(sid, data)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer

__all__ = ["EngineIOEndpoint"]

F = TypeVar("F", bound=Callable[..., Any])

_EVENTS = ("connect", "message", "disconnect")


class EngineIOEndpoint:
    """Handlers and sending for the bare Engine.IO endpoint of an :class:`AsyncServer`."""

    def __init__(self, server: AsyncServer, path: str) -> None:
        self.server = server
        self.path = path
        self.handlers: dict[str, Callable[..., Any]] = {}

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Registers a ``connect``, ``message`` or ``disconnect`` handler (also as a decorator)."""
        if event not in _EVENTS:
            raise ValueError(f"unknown Engine.IO event {event!r}; expected one of {_EVENTS}")

        def register(fn: F) -> F:
            self.handlers[event] = fn
            return fn

        if handler is not None:
            register(handler)
            return None
        return register

    async def send(self, sid: str, data: str | bytes) -> None:
        """Sends a message: ``str`` as a text packet, ``bytes`` as a binary one."""
        self.server._core().engineio_send(sid, data)

    async def disconnect(self, sid: str) -> None:
        """Closes the session."""
        self.server._core().engineio_close(sid)
