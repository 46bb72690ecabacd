#!/usr/bin/env python3
"""ferrosio server with a short heartbeat (ping every 0.3 s, 0.5 s to answer).

Used by tests/test_client_heartbeat.py: frozen with SIGSTOP, a client must declare it dead
within pingInterval + pingTimeout. Same behaviour as short_ping_app.js (the official Node
server), so one test runs against both.

    python tests/apps/short_ping_app.py --port N [--host 127.0.0.1]

Handler: ``echo`` acknowledges with its arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

import ferrosio

sio = ferrosio.AsyncServer(ping_interval=0.3, ping_timeout=0.5)


@sio.on("echo")
def echo(sid: str, *args: Any) -> tuple[Any, ...]:
    return args


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    ferrosio.run(sio, host=a.host, port=a.port)


if __name__ == "__main__":
    main()
