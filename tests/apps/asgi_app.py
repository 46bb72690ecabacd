"""A ferrosio app served through ``ferrosio.ASGIApp`` by an ASGI server, beside a FastAPI app
with a REST route on the same port; for tests/test_asgi.py and the official suites.

    python tests/apps/asgi_app.py --server uvicorn --app reference --mode wrap --port N

``--server``: uvicorn, hypercorn or granian. ``--app``: ``reference`` (examples/reference_app.py,
the contract app) or ``suite`` (tests/apps/suite_server.py). ``--mode``: ``wrap``
(``ASGIApp(sio, other_asgi_app=api)``), ``mount`` (``api.mount("/ws", ASGIApp(sio))``: the
endpoint is ``/ws/socket.io/``) or ``bare`` (``ASGIApp(sio)`` alone: anything else is 404).
``GET /api/hello`` is the REST route; ``GET /api/lifespan`` says which lifespan hooks ran.
The lifespan hooks also print ``STARTUP``/``SHUTDOWN``. Runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

import ferrosio

HERE = Path(__file__).resolve().parent
APPS = {
    "reference": HERE.parent.parent / "examples" / "reference_app.py",
    "suite": HERE / "suite_server.py",
}
HOOKS: list[str] = []


def _load_sio(name: str) -> ferrosio.AsyncServer:
    spec = importlib.util.spec_from_file_location(f"_asgi_{name}", APPS[name])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sio: ferrosio.AsyncServer = module.sio
    return sio


def _startup() -> None:
    HOOKS.append("startup")
    print("STARTUP", flush=True)


async def _shutdown() -> None:
    HOOKS.append("shutdown")
    print("SHUTDOWN", flush=True)


def build(app_name: str, mode: str) -> Any:
    """The ASGI application for ``app_name`` in ``mode``."""
    sio = _load_sio(app_name)
    api = FastAPI()

    @api.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @api.get("/api/lifespan")
    async def lifespan() -> list[str]:
        return HOOKS

    hooks: dict[str, Any] = {"on_startup": _startup, "on_shutdown": _shutdown}
    if mode == "wrap":
        return ferrosio.ASGIApp(sio, other_asgi_app=api, **hooks)
    if mode == "bare":
        return ferrosio.ASGIApp(sio, **hooks)
    if mode == "mount":
        api.mount("/ws", ferrosio.ASGIApp(sio))
        return api
    raise SystemExit(f"unknown mode {mode!r}")


# granian imports this module in its worker: the choice comes through the environment.
app = (
    build(os.environ["ASGI_APP_NAME"], os.environ["ASGI_APP_MODE"])
    if "ASGI_APP_NAME" in os.environ
    else None
)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--server", choices=["uvicorn", "hypercorn", "granian"], default="uvicorn")
    p.add_argument("--app", choices=sorted(APPS), default="reference")
    p.add_argument("--mode", choices=["wrap", "mount", "bare"], default="wrap")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    if a.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            build(a.app, a.mode), host=a.host, port=a.port, log_level="warning", lifespan="on"
        )
    elif a.server == "hypercorn":
        import asyncio
        import signal

        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"{a.host}:{a.port}"]
        config.loglevel = "WARNING"

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(build(a.app, a.mode), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

        asyncio.run(run())
    else:
        from granian import Granian  # type: ignore[attr-defined]
        from granian.constants import Interfaces

        os.environ["ASGI_APP_NAME"], os.environ["ASGI_APP_MODE"] = a.app, a.mode
        sys.path.insert(0, str(HERE))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        Granian(
            "asgi_app:app", address=a.host, port=a.port, interface=Interfaces.ASGI, workers=1
        ).serve()


if __name__ == "__main__":
    main()
