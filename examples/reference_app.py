#!/usr/bin/env python3
"""ferrosio reference app: ../shared/reference/CONTRACT.md on ferrosio.

    python examples/reference_app.py --port 3000 [--host 127.0.0.1] [--recovery]
    python examples/reference_app.py --port 3000 --workers 2 --redis redis://127.0.0.1:6379/0

Same command line and behaviour as the python-socketio and Node implementations beside the
contract. Runs until SIGINT/SIGTERM. ``--recovery`` turns connection state recovery on (to
measure what logging packets with offsets costs: benches/README.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import ferrosio

ASK_TIMEOUT_S = 5.0
ADMIN_TOKEN = "secret"

sio = ferrosio.AsyncServer(
    cors_allowed_origins="*",
    ping_interval=25,
    ping_timeout=20,
    max_http_buffer_size=1_000_000,
    transports=["polling", "websocket"],
    # read before argparse: the server is built at import, its handlers registered on it
    connection_state_recovery="--recovery" in sys.argv[1:],
)


def _echo(sid: str, namespace: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if ferrosio.ack_requested():
        return args  # a tuple acks with the same N args
    sio.emit_nowait("echo", args, to=sid, namespace=namespace)
    return None


# ------------------------------------------------------------------ "/" ----
@sio.on("connect")
async def on_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    await sio.enter_room(sid, "all")


@sio.on("echo")
def on_echo(sid: str, *args: Any) -> tuple[Any, ...] | None:
    return _echo(sid, "/", args)


@sio.on("join")
async def on_join(sid: str, room: Any = None, *_: Any) -> bool:
    await sio.enter_room(sid, room)
    return True


@sio.on("leave")
async def on_leave(sid: str, room: Any = None, *_: Any) -> bool:
    await sio.leave_room(sid, room)
    return True


@sio.on("to_room")
async def on_to_room(sid: str, room: str, event: str, *args: Any) -> bool:
    await sio.emit(event, args, room=room)
    return True  # only sent if the client asked


@sio.on("bcast")
async def on_bcast(sid: str, *args: Any) -> bool:
    await sio.emit("bcast", args, skip_sid=sid)
    return True  # only sent if the client asked


@sio.on("ask")
async def on_ask(sid: str, event: str, *args: Any) -> Any:
    try:
        reply = await sio.call(event, args, to=sid, timeout=ASK_TIMEOUT_S)
    except ferrosio.exceptions.TimeoutError:
        return "timeout"
    except ferrosio.exceptions.DisconnectedError:
        return None
    # call() unwraps: None for no args, the arg for one, a tuple for several.
    if reply is None:
        return ()
    return reply if isinstance(reply, tuple) else (reply,)


@sio.on("disconnect_me")
async def on_disconnect_me(sid: str, *_: Any) -> None:
    await sio.disconnect(sid)


@sio.on("rooms")
def on_rooms(sid: str, *_: Any) -> list[str]:
    return sorted(r for r in sio.rooms(sid) if r != sid)


# ----------------------------------------------------------- "/admin" ----
@sio.on("connect", namespace="/admin")
def on_admin_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    if not isinstance(auth, dict) or auth.get("token") != ADMIN_TOKEN:
        # -> CONNECT_ERROR  44/admin,{"message":"unauthorized"}
        raise ferrosio.exceptions.ConnectionRefusedError("unauthorized")


@sio.on("echo", namespace="/admin")
def on_admin_echo(sid: str, *args: Any) -> tuple[Any, ...] | None:
    return _echo(sid, "/admin", args)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--workers", type=int, default=1, help="worker processes (> 1 needs --redis)")
    p.add_argument("--redis", default=None, help="Redis URL: several servers (or workers) as one")
    p.add_argument("--recovery", action="store_true", help="connection state recovery on")
    a = p.parse_args()
    if a.redis is not None:
        sio.client_manager = ferrosio.AsyncRedisManager(a.redis)
    ferrosio.run(sio, host=a.host, port=a.port, workers=a.workers)


if __name__ == "__main__":
    main()
