"""The server of tests/test_workers.py: ``ferrosio.run(sio, workers=N)`` with an
``AsyncRedisManager``. Every answer names the worker process (pid) that handled it.

- on connect, the client gets ``hello`` ``{"pid": ...}``;
- ``whoami`` is acked with ``{"pid": ...}``; ``echo`` with its data and the pid;
- ``bcast`` is sent to every client of every worker as ``bcast`` ``{"data", "pid"}``, and
  acked once published;
- ``GET /pid`` (an ASGI app on the same port) answers the pid of the worker that the kernel
  gave the connection to, with that worker's ``worker_stats()`` (handoff counters).

    python tests/apps/workers_app.py --redis redis://127.0.0.1:PORT/0 --workers 4 --port P

``--fail-startup``: the ASGI app's lifespan startup fails, so every worker exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import ferrosio

SIO: ferrosio.AsyncServer | None = None


async def pid_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    stats = SIO.worker_stats() if SIO is not None else None
    body = json.dumps({"pid": os.getpid(), "stats": stats}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def failing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "refused by the test"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fail-startup", action="store_true")
    args = parser.parse_args()

    sio = ferrosio.AsyncServer(
        client_manager=ferrosio.AsyncRedisManager(args.redis, channel="workers-test"),
        cors_allowed_origins="*",
    )
    global SIO
    SIO = sio

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.emit("hello", {"pid": os.getpid()}, to=sid)

    @sio.event
    async def whoami(sid: str) -> dict[str, int]:
        return {"pid": os.getpid()}

    @sio.event
    async def echo(sid: str, data: Any) -> dict[str, Any]:
        return {"data": data, "pid": os.getpid()}

    @sio.event
    async def bcast(sid: str, data: Any) -> bool:
        await sio.emit("bcast", {"data": data, "pid": os.getpid()})
        return True

    ferrosio.run(
        sio,
        args.host,
        args.port,
        workers=args.workers,
        other_asgi_app=failing_app if args.fail_startup else pid_app,
        shutdown_timeout=2,
    )


if __name__ == "__main__":
    main()
