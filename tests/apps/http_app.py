#!/usr/bin/env python3
"""Small ferrosio app whose HTTP-facing options come from the command line.

Used by tests/test_raw_http.py for what the shared suite/reference apps cannot
show: the same-origin and list CORS policies, CORS disabled, static files, and
a heartbeat slow enough to observe a pending GET being closed.

    python tests/apps/http_app.py --port N [--host 127.0.0.1]
        [--cors same-origin | any | none | ORIGIN,ORIGIN,...]
        [--static-dir DIR]            static_files {"/": DIR/index.html, "/static": DIR}
        [--ping-interval S] [--ping-timeout S] [--max-http-buffer-size N]
        [--transports polling,websocket] [--no-upgrades]

Handlers: ``echo`` acknowledges with its arguments when asked, else emits
``echo`` back with them (as the reference app does).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import ferrosio


def cors_option(value: str) -> str | list[str] | None:
    if value == "same-origin":
        return None
    if value == "any":
        return "*"
    if value == "none":
        return []
    return [o for o in value.split(",") if o]


def build(a: argparse.Namespace) -> ferrosio.AsyncServer:
    static_files = None
    if a.static_dir:
        static_files = {
            "/": os.path.join(a.static_dir, "index.html"),
            "/static": a.static_dir,
        }
    sio = ferrosio.AsyncServer(
        cors_allowed_origins=cors_option(a.cors),
        ping_interval=a.ping_interval,
        ping_timeout=a.ping_timeout,
        max_http_buffer_size=a.max_http_buffer_size,
        static_files=static_files,
        transports=[t for t in a.transports.split(",") if t],
        allow_upgrades=a.upgrades,
    )

    @sio.on("echo")
    def on_echo(sid: str, *args: Any) -> tuple[Any, ...] | None:
        if ferrosio.ack_requested():
            return args
        sio.emit_nowait("echo", args, to=sid)
        return None

    return sio


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cors", default="same-origin")
    p.add_argument("--static-dir", default=None)
    p.add_argument("--ping-interval", type=float, default=25.0)
    p.add_argument("--ping-timeout", type=float, default=20.0)
    p.add_argument("--max-http-buffer-size", type=int, default=1_000_000)
    p.add_argument("--transports", default="polling,websocket")
    p.add_argument("--no-upgrades", dest="upgrades", action="store_false")
    a = p.parse_args()
    ferrosio.run(build(a), host=a.host, port=a.port)


if __name__ == "__main__":
    main()
