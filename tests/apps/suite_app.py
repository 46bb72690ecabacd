#!/usr/bin/env python3
"""Protocol-suite app on ferrosio (Socket.IO part only, path /socket.io/).

Same handlers and settings as ../shared/protocol/suite-servers/psio_suite_server.py
and node_suite_server.js: ping interval 300 ms, ping timeout 200 ms, max
payload 1e6, connect timeout 1 s, CORS any origin.  Used by
tests/test_raw_protocol.py.

    python tests/apps/suite_app.py [--port 3000] [--host 127.0.0.1]
"""

import argparse
import os

import ferrosio

sio = ferrosio.AsyncServer(
    ping_interval=0.3,
    ping_timeout=0.2,
    max_http_buffer_size=1_000_000,
    cors_allowed_origins="*",
    connect_timeout=1.0,
    attachment_timeout=0.5,  # caught at the next 300 ms heartbeat tick
)


@sio.on("connect")
async def connect(sid, environ, auth=None):
    await sio.emit("auth", auth if auth is not None else {}, to=sid)


@sio.on("message")
async def message(sid, *args):
    await sio.emit("message-back", tuple(args), to=sid)


@sio.on("message-with-ack")
async def message_with_ack(sid, *args):
    return tuple(args)


@sio.on("connect", namespace="/custom")
async def custom_connect(sid, environ, auth=None):
    await sio.emit("auth", auth if auth is not None else {}, to=sid, namespace="/custom")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 3000)))
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    ferrosio.run(sio, host=a.host, port=a.port)  # blocks until SIGINT/SIGTERM


if __name__ == "__main__":
    main()
