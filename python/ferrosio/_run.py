"""``ferrosio.run``: serve on uvloop until SIGINT/SIGTERM, then shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrosio._asgi_host import ASGIApp
    from ferrosio.server import AsyncServer

logger = logging.getLogger("ferrosio.run")


def _ensure_visible() -> None:
    """``run`` is the process's entry point, like uvicorn: its startup line must be seen even
    when the application configured no logging. An application that did keeps full control."""
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def _describe(server: AsyncServer, host: str, port: int | None, loop_name: str) -> str:
    """Where the server listens and the options a deployment most often gets wrong."""
    origins = server.cors_allowed_origins
    if origins is None:
        cors = "same origin"
    elif callable(origins):
        cors = "callable"
    elif isinstance(origins, str):
        cors = origins
    else:
        cors = ", ".join(origins) or "disabled"
    shown_host = f"[{host}]" if ":" in host else host
    parts = [
        f"transports: {', '.join(server.transports)}",
        f"upgrades: {'on' if server.allow_upgrades else 'off'}",
        f"ping: {server.ping_interval:g} s / timeout {server.ping_timeout:g} s",
        f"max message: {server.max_http_buffer_size} B",
        f"CORS: {cors}",
        f"loop: {loop_name}",
    ]
    if server.engineio is not None:
        parts.append(f"Engine.IO endpoint: /{server.engineio.path.strip('/')}/")
    if server._asgi_host is not None:
        parts.append(f"ASGI app: {type(server._asgi_host.app).__name__}")
    if server.static_files:
        parts.append(f"static: {', '.join(server.static_files)}")
    if server._worker is not None:
        parts.append(f"worker {server._worker[0]} of {server._worker[1]}, pid {os.getpid()}")
    path = server.socketio_path.strip("/")
    if server._scheme == "https":
        parts.append("TLS" + (": client certificates required" if server._client_certs else ""))
    return f"listening on {server._scheme}://{shown_host}:{port}/{path}/ ({'; '.join(parts)})"


def run(
    server: AsyncServer,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    shutdown_timeout: float = 5.0,
    use_uvloop: bool = True,
    other_asgi_app: ASGIApp | None = None,
    ssl_certfile: str | os.PathLike[str] | None = None,
    ssl_keyfile: str | os.PathLike[str] | None = None,
    ssl_ca_certs: str | os.PathLike[str] | None = None,
    workers: int = 1,
) -> None:
    """Serves ``server`` until interrupted (SIGINT or SIGTERM), on uvloop when installed.

    On the signal, queued packets are flushed, clients get a clean close and disconnect
    handlers run, then this returns.

    At startup it logs, on the ``ferrosio.run`` logger, where it listens and with which
    options (transports, ping interval and timeout, largest message, CORS, event loop). When
    the application has configured no logging, that logger writes to stderr.

    :param server: the server to run.
    :param host: the address to listen on (``0.0.0.0`` or ``::`` for every interface).
    :param port: the port; 0 picks a free one (the log line says which).
    :param shutdown_timeout: seconds allowed for the graceful shutdown.
    :param use_uvloop: run on uvloop when it is installed.
    :param other_asgi_app: an ASGI application (FastAPI, Starlette, ...) served on the same
        port: every HTTP request outside the Socket.IO path goes to it, with its lifespan
        (see :meth:`ferrosio.AsyncServer.start`).
    :param ssl_certfile: serve HTTPS/WSS with this PEM certificate chain (with
        ``ssl_keyfile``); see :meth:`ferrosio.AsyncServer.start`.
    :param ssl_keyfile: the certificate's PEM private key.
    :param ssl_ca_certs: require client certificates issued by these PEM CAs.
    :param workers: serve the port with this many worker processes (Linux; at most 64). The
        calling process becomes their supervisor: it forks the workers, replaces one that
        dies (its clients reconnect to the others) and on SIGTERM or SIGINT stops them all
        gracefully. Clients need no sticky sessions: a request that reaches a worker other
        than its session's is handed to that worker. Each worker is a copy of this process
        at the time of the call (forked), with its own engine thread and event loop: build
        the server and register the handlers before calling ``run``, and start nothing
        (threads, event loops, connections) in the process before it; open connections in
        a ``connect`` handler or at first use instead. Needs
        ``client_manager=ferrosio.AsyncRedisManager(...)`` (broadcasts reach every worker's
        clients through Redis) and cannot serve TLS itself (terminate TLS in front).
    :raises ValueError: ``workers`` is out of range, or ``workers > 1`` without an
        ``AsyncRedisManager``, with TLS, or not on Linux.
    """

    _ensure_visible()
    if workers != 1:
        from ferrosio import _workers

        _workers.check(server, workers, ssl_certfile)
        _workers.supervise(
            server,
            workers,
            host,
            port,
            shutdown_timeout=shutdown_timeout,
            serve=lambda bound: run(
                server,
                host,
                bound,
                shutdown_timeout=shutdown_timeout,
                use_uvloop=use_uvloop,
                other_asgi_app=other_asgi_app,
            ),
        )
        return

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start(
            host,
            port,
            other_asgi_app=other_asgi_app,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_ca_certs=ssl_ca_certs,
        )
        loop_name = type(loop).__module__.split(".")[0]  # "uvloop" or "asyncio"
        logger.info("%s", _describe(server, host, server.port, loop_name))
        signalled = asyncio.ensure_future(stop.wait())
        stopped = server._stopped  # fails if the engine bridge breaks
        waiting: set[asyncio.Future[Any]] = {signalled}
        if stopped is not None:
            waiting.add(stopped)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signalled.cancel()
            logger.info("shutting down (flushing, up to %g s)", shutdown_timeout)
            await server.shutdown(shutdown_timeout)
            logger.info("stopped")
        if stopped is not None and stopped.done() and stopped.exception() is not None:
            raise stopped.exception()  # type: ignore[misc]

    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main())
            return
    asyncio.run(main())
