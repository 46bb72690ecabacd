"""A Socket.IO ``echo`` server with (``--asgi``) a FastAPI app on the same port, or
(``--uvicorn``) that FastAPI app alone under uvicorn: the servers of the one-port measurements
(docs/design.md, "One port beside an ASGI app").

    python benches/one_port_app.py --port 3000              # ferrosio alone
    python benches/one_port_app.py --port 3000 --asgi       # ferrosio + FastAPI, one port
    python benches/one_port_app.py --port 3000 --uvicorn    # FastAPI under uvicorn

Load: ``wrk -t1 -c32 -d10s http://127.0.0.1:3000/api/hello`` for HTTP; the shared
``compare.py --scenario echo-ack`` for Socket.IO.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI

import ferrosio


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/hello")
    async def hello() -> dict[str, Any]:
        return {"hello": "world", "n": 42}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--asgi", action="store_true")
    parser.add_argument("--uvicorn", action="store_true")
    args = parser.parse_args()
    if args.uvicorn:
        import uvicorn

        uvicorn.run(make_app(), host="127.0.0.1", port=args.port, log_level="warning")
        return
    sio = ferrosio.AsyncServer(cors_allowed_origins="*")

    @sio.event
    def echo(sid: str, *data: Any) -> Any:
        return data

    ferrosio.run(sio, "127.0.0.1", args.port, other_asgi_app=make_app() if args.asgi else None)


if __name__ == "__main__":
    main()
