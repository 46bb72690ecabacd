"""``ferrosio.run``: serve on uvloop until SIGINT/SIGTERM, then shut down gracefully."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer


def run(
    server: AsyncServer,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    shutdown_timeout: float = 5.0,
    use_uvloop: bool = True,
) -> None:
    """Serves ``server`` until interrupted (SIGINT or SIGTERM), on uvloop when installed.

    On the signal, queued packets are flushed, clients get a clean close and disconnect
    handlers run, then this returns.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start(host, port)
        signalled = asyncio.ensure_future(stop.wait())
        stopped = server._stopped  # fails if the engine bridge breaks
        waiting: set[asyncio.Future[Any]] = {signalled}
        if stopped is not None:
            waiting.add(stopped)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signalled.cancel()
            await server.shutdown(shutdown_timeout)
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
