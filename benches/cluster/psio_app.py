"""One python-socketio node of the cluster broadcast benchmark (benches/cluster_broadcast.py):
``socketio.AsyncRedisManager`` under uvicorn (uvloop, httptools, websockets), as the reference
app runs python-socketio. Run with a venv holding python-socketio, redis, uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

import socketio  # type: ignore[import-not-found]
import uvicorn  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    sio = socketio.AsyncServer(
        async_mode="asgi", client_manager=socketio.AsyncRedisManager(args.redis)
    )

    @sio.on("bcast")
    async def bcast(sid: str, data: Any) -> None:
        await sio.emit("bcast", data, skip_sid=sid)

    app = socketio.ASGIApp(sio)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
