"""ferrosio's exceptions. Every one derives from :class:`FerrosioError`."""

from __future__ import annotations

import builtins
from typing import Any

from ferrosio._ferrosio import EngineNotRunningError, FerrosioError

__all__ = [
    "BadNamespaceError",
    "BufferFullError",
    "ClientDisconnectedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "DisconnectedError",
    "EngineNotRunningError",
    "FerrosioError",
    "LifespanError",
    "TimeoutError",
    "UnsupportedFeatureError",
]


class ConnectionError(FerrosioError):
    """A connection could not be made or was lost."""


class ConnectionRefusedError(ConnectionError):
    """Raise from a ``connect`` handler to refuse the connection.

    ``ConnectionRefusedError("unauthorized")`` sends ``{"message": "unauthorized"}``;
    a second argument becomes the ``data`` field, more arguments become a list in ``data``.
    """

    def __init__(self, *args: Any) -> None:
        if not args:
            self.error_args: dict[str, Any] = {"message": "Connection rejected by server"}
        elif len(args) == 1:
            self.error_args = {"message": str(args[0])}
        elif len(args) == 2:
            self.error_args = {"message": str(args[0]), "data": args[1]}
        else:
            self.error_args = {"message": str(args[0]), "data": list(args[1:])}
        super().__init__(self.error_args["message"])


class DisconnectedError(ConnectionError):
    """The peer went away before answering."""


class TimeoutError(FerrosioError, builtins.TimeoutError):
    """An acknowledgement did not arrive in time."""


class BadNamespaceError(FerrosioError):
    """The client's namespace is not connected and will not be (never requested, refused, or
    disconnected by the server or by ``AsyncClient.disconnect``)."""


class BufferFullError(FerrosioError):
    """A bounded queue is full: the client's offline buffer (or retry queue) of the namespace,
    or the acknowledgements awaited from one peer (``MAX_ACKS_IN_FLIGHT`` in ``ferrosio.server`` and
    ``ferrosio.client``)."""


class UnsupportedFeatureError(FerrosioError, NotImplementedError):
    """A python-socketio argument asks for something ferrosio does not do (yet), e.g.
    ``client_manager=`` (scaling out over Redis). The message names the feature."""


class ClientDisconnectedError(FerrosioError, OSError):
    """Raised by the ``send`` of a request forwarded to ``other_asgi_app`` once the client has
    gone away (an ``OSError``, as the ASGI specification asks)."""


class LifespanError(FerrosioError):
    """The ``other_asgi_app``'s lifespan startup failed (``lifespan.startup.failed``); the
    message is the application's."""


class ClusterError(FerrosioError):
    """A request to the other servers of a cluster (:meth:`ferrosio.AsyncServer.fetch_sockets`,
    ``all_rooms``, ``server_side_call``) could not be sent: Redis is unreachable."""
