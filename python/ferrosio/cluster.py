"""Several servers as one over Redis, wire-compatible with Node's ``@socket.io/redis-adapter``
8.x and ``@socket.io/redis-emitter``.

A ferrosio server given ``client_manager=ferrosio.AsyncRedisManager(url)`` and a Node
socket.io server using ``createAdapter(pub, sub)`` on the same Redis (and the same channel
prefix, Node's ``key`` option) form one cluster: a broadcast from any of them reaches the
selected clients of all of them. The adapter is Rust (one task per server owns the Redis
connections, reconnects and resubscribes by itself); this module only holds its settings and
the emitters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ferrosio import _codec
from ferrosio._cluster_requests import RemoteSocket
from ferrosio._ferrosio import RedisPublisher

__all__ = ["AsyncRedisEmitter", "AsyncRedisManager", "RedisEmitter", "RemoteSocket"]


class AsyncRedisManager:
    """A Redis cluster for :class:`ferrosio.AsyncServer` (``client_manager=``).

    :param url: the Redis server, ``redis://[user:password@]host:port[/db]``.
    :param channel: the prefix of the Redis channels (Node's ``key`` option). The default is
        Node's ``"socket.io"``, so a ferrosio node and a Node node with default settings meet;
        python-socketio's default is ``"socketio"``, which does not speak Node's protocol.

    Broadcasts (to everyone, rooms, minus rooms or sids) from any node reach the clients of
    every node; ``emit(..., ignore_queue=True)`` stays on this server. If Redis goes away the
    server keeps serving its own clients, logs the outage once (``ferrosio.cluster`` logger)
    and reconnects by itself; broadcasts published meanwhile reach this server's clients only
    and are counted as ``dropped`` in :meth:`ferrosio.AsyncServer.cluster_stats`.

    :param requests_timeout: seconds a request to the other nodes waits for their answers
        (Node's ``requestsTimeout``, 5 s by default): :meth:`ferrosio.AsyncServer.fetch_sockets`,
        ``all_rooms``, ``server_side_call``.

    Requests between nodes (fetch sockets, all rooms, server-side emit, broadcast with acks)
    wait for every node subscribed to the namespace's requests when they are sent, Node's and
    ferrosio's; a node that dies stops being counted as soon as Redis drops its connection.
    During a Redis outage requests fail at once (:class:`ferrosio.exceptions.ClusterError`)
    or at their deadline; ``cluster_stats()`` counts them (``requests_failed``,
    ``requests_timed_out``).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        channel: str = "socket.io",
        *,
        requests_timeout: float = 5.0,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://", "redis+unix://")):
            raise ValueError(f"not a Redis URL: {url!r} (expected redis://host:port/db)")
        if requests_timeout <= 0:
            raise ValueError(f"requests_timeout must be positive, not {requests_timeout!r}")
        self.url = url
        self.channel = channel
        self.requests_timeout = requests_timeout

    def __repr__(self) -> str:
        return (
            f"AsyncRedisManager({self.url!r}, channel={self.channel!r}, "
            f"requests_timeout={self.requests_timeout!r})"
        )


def _emit_args(
    event: str,
    data: Any,
    to: str | Iterable[str] | None,
    room: str | Iterable[str] | None,
    skip_sid: str | Iterable[str] | None,
    namespace: str | None,
) -> tuple[str, bytes, dict[str, Any]]:
    target = to if to is not None else room
    rooms = [target] if isinstance(target, str) else list(target) if target is not None else None
    skip = [skip_sid] if isinstance(skip_sid, str) else list(skip_sid) if skip_sid else None
    text, attachments = _codec.encode([event, *_codec.to_args(data)])
    nsp = namespace or "/"
    if not nsp.startswith("/"):
        nsp = "/" + nsp
    return nsp, text, {"rooms": rooms, "skip": skip, "attachments": attachments}


class RedisEmitter:
    """Emits to the clients of a cluster from a process that runs no server (a Celery or RQ
    worker, a cron job), as Node's ``@socket.io/redis-emitter`` does. Blocking.

    :param url: the cluster's Redis server.
    :param channel: the cluster's channel prefix (see :class:`AsyncRedisManager`).

    The connection is opened on first use and reopened once if it broke since.
    """

    def __init__(self, url: str = "redis://localhost:6379/0", channel: str = "socket.io") -> None:
        self._publisher = RedisPublisher(url, channel)

    def emit(
        self,
        event: str,
        data: Any = None,
        to: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
    ) -> int:
        """Emits ``event`` to the clients in ``to``/``room`` (a room, a sid, or several; everyone
        in the namespace when None) minus ``skip_sid``, on every node.

        ``data`` follows :meth:`ferrosio.AsyncServer.emit` (a tuple sends several arguments).
        Returns how many servers were subscribed (Redis's answer to PUBLISH). Raises
        :class:`ferrosio.exceptions.FerrosioError` if Redis cannot be reached.
        """
        nsp, text, options = _emit_args(event, data, to, room, skip_sid, namespace)
        return self._publisher.broadcast(nsp, text, **options)


class AsyncRedisEmitter:
    """:class:`RedisEmitter` for asyncio programs: ``await emitter.emit(...)`` runs the
    publication in a worker thread, so the event loop never waits on Redis."""

    def __init__(self, url: str = "redis://localhost:6379/0", channel: str = "socket.io") -> None:
        self._emitter = RedisEmitter(url, channel)

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
    ) -> int:
        """As :meth:`RedisEmitter.emit`."""
        return await asyncio.to_thread(
            self._emitter.emit, event, data, to, room, skip_sid, namespace
        )
