"""Class-based namespaces: ``on_<event>`` methods, as in python-socketio."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer

__all__ = ["AsyncNamespace"]


class AsyncNamespace:
    """Handlers of one namespace as methods: ``on_connect(sid, environ, auth)``,
    ``on_disconnect(sid, reason)``, ``on_<event>(sid, *args)``.

    Registered for ``"*"``, it serves every namespace without handlers of its own for the
    event, and its methods get the namespace first: ``on_<event>(namespace, sid, *args)``.
    The server calls the ``on_<event>`` methods directly (see :meth:`AsyncServer.on` for the
    lookup order); :meth:`trigger_event` is for the application's own use.

    Register with ``sio.register_namespace(MyNamespace("/chat"))``. The helper methods below
    default to this namespace.
    """

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or "/"
        self._server: AsyncServer | None = None

    def _set_server(self, server: AsyncServer) -> None:
        self._server = server

    @property
    def server(self) -> AsyncServer:
        if self._server is None:
            raise RuntimeError("namespace is not registered with a server")
        return self._server

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Calls ``on_<event>`` if it exists (awaiting it if it is a coroutine)."""
        handler = getattr(self, "on_" + event, None)
        if handler is None:
            return None
        result = handler(*args)
        if hasattr(result, "__await__"):
            result = await result
        return result

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
        """:meth:`AsyncServer.emit` (``timeout``, ``volatile`` and ``compress`` included), in
        this namespace unless told otherwise."""
        await self.server.emit(
            event,
            data,
            to,
            room,
            skip_sid,
            namespace or self.namespace,
            callback,
            ignore_queue,
            timeout=timeout,
            volatile=volatile,
            compress=compress,
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
        """:meth:`AsyncServer.send`, in this namespace unless told otherwise."""
        await self.server.send(
            data, to, room, skip_sid, namespace or self.namespace, callback, ignore_queue
        )

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
        """:meth:`AsyncServer.call`, in this namespace unless told otherwise."""
        return await self.server.call(
            event,
            data,
            to=to,
            sid=sid,
            namespace=namespace or self.namespace,
            timeout=timeout,
            ignore_queue=ignore_queue,
            room=room,
            skip_sid=skip_sid,
            broadcast=broadcast,
        )

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        await self.server.enter_room(sid, room, namespace or self.namespace)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        await self.server.leave_room(sid, room, namespace or self.namespace)

    async def close_room(self, room: str, namespace: str | None = None) -> None:
        await self.server.close_room(room, namespace or self.namespace)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        return self.server.rooms(sid, namespace or self.namespace)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """:meth:`AsyncServer.disconnect`, in this namespace unless told otherwise."""
        await self.server.disconnect(sid, namespace or self.namespace, ignore_queue)

    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]:
        return await self.server.get_session(sid, namespace or self.namespace)

    async def save_session(
        self, sid: str, session: dict[str, Any], namespace: str | None = None
    ) -> None:
        await self.server.save_session(sid, session, namespace or self.namespace)

    def session(self, sid: str, namespace: str | None = None) -> Any:
        return self.server.session(sid, namespace or self.namespace)
