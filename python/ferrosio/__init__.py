"""ferrosio: a Socket.IO server for Python whose transport engine is Rust.

Its API follows python-socketio's ``AsyncServer`` and ``AsyncClient``; migrating is changing
the import::

    import ferrosio

    sio = ferrosio.AsyncServer(cors_allowed_origins="*")

    @sio.event
    async def echo(sid, data):
        return data

    ferrosio.run(sio, port=5000)

Arguments of python-socketio that ferrosio does not support raise
:class:`ferrosio.exceptions.UnsupportedFeatureError` naming the feature (``serializer="pickle"``,
for one); unknown arguments raise ``TypeError``. ``client_manager=ferrosio.AsyncRedisManager(url)``
joins a cluster with other ferrosio and Node socket.io servers over Redis.

The handler for an event in namespace ``nsp`` is the first of: ``handlers[nsp][event]``,
``handlers[nsp]["*"]`` (event name first), ``handlers["*"][event]`` (namespace first),
``handlers["*"]["*"]`` (event name, then namespace), the class-based namespace of ``nsp`` (its
``on_<event>``), else a class-based namespace registered for ``"*"`` (namespace first).
``connect`` and ``disconnect`` (on a client also ``connect_error``) never reach a catch-all,
and a peer cannot send events under those names.
"""

from __future__ import annotations

from ferrosio import exceptions
from ferrosio._ferrosio import __version__
from ferrosio._run import run
from ferrosio.asgi import ASGIApp
from ferrosio.client import AsyncClient, AsyncClientNamespace
from ferrosio.cluster import AsyncRedisEmitter, AsyncRedisManager, RedisEmitter
from ferrosio.namespace import AsyncNamespace
from ferrosio.server import AsyncServer, ack_requested
from ferrosio.simple_client import AsyncSimpleClient, SimpleClient

# No ``Server`` or ``Namespace``: those are python-socketio's synchronous API, which ferrosio
# does not have (but for ``SimpleClient``); an alias of the async classes would make
# ``sio.emit(...)`` send nothing.

__all__ = [
    "ASGIApp",
    "AsyncClient",
    "AsyncClientNamespace",
    "AsyncNamespace",
    "AsyncRedisEmitter",
    "AsyncRedisManager",
    "AsyncServer",
    "AsyncSimpleClient",
    "RedisEmitter",
    "SimpleClient",
    "__version__",
    "ack_requested",
    "exceptions",
    "run",
]
