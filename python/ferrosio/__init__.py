"""ferrosio: a Socket.IO server for Python whose transport engine is Rust.

Its API follows python-socketio's ``AsyncServer``; migrating is changing the import::

    import ferrosio

    sio = ferrosio.AsyncServer(cors_allowed_origins="*")

    @sio.event
    async def echo(sid, data):
        return data

    ferrosio.run(sio, port=5000)
"""

from __future__ import annotations

from ferrosio import exceptions
from ferrosio._ferrosio import __version__
from ferrosio._run import run
from ferrosio.client import AsyncClient, AsyncClientNamespace
from ferrosio.namespace import AsyncNamespace
from ferrosio.server import AsyncServer, ack_requested

Server = AsyncServer
Namespace = AsyncNamespace

__all__ = [
    "AsyncClient",
    "AsyncClientNamespace",
    "AsyncNamespace",
    "AsyncServer",
    "Namespace",
    "Server",
    "__version__",
    "ack_requested",
    "exceptions",
    "run",
]
