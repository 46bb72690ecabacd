"""One ferrosio node of the cluster broadcast benchmark (benches/cluster_broadcast.py):
``bcast`` from a client goes to every client of every node but the sender."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import ferrosio


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    sio = ferrosio.AsyncServer(client_manager=ferrosio.AsyncRedisManager(args.redis))

    @sio.on("bcast")
    async def bcast(sid: str, data: Any) -> None:
        await sio.emit("bcast", data, skip_sid=sid)

    await sio.serve("127.0.0.1", args.port)


if __name__ == "__main__":
    asyncio.run(main())
