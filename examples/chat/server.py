#!/usr/bin/env python3
"""ferrosio chat demo: a chat room server with usernames, rooms, acks and notices.

    npm install --prefix tests/node        # once: the official browser client bundle
    python examples/chat/server.py --port 5000 [--host 127.0.0.1] [--client-dist DIR]

then open http://127.0.0.1:5000/ in a browser (``?transport=polling`` forces long-polling).

Protocol (namespace ``/``):

* connect with ``auth = {"username": "..."}``: 1-32 characters, unique (case-insensitive);
  anything else is refused with a ``connect_error`` whose message says why.
* ``join``    ``{room}``        -> ack ``{ok: true, room, members: [usernames]}``
* ``leave``   ``{room}``        -> ack ``{ok: true, room}``
* ``message`` ``{room, text}``  -> ack ``{ok: true, id}``; everyone in the room (sender included)
  gets ``message`` ``{id, room, user, text, time}``
* the room gets ``notice`` ``{type: "join" | "leave", room, user, members, time}`` when someone
  joins, leaves or disconnects.
* every error is an ack ``{ok: false, error: "..."}``; the server never crashes on input.

``time`` is milliseconds since the epoch (what JavaScript's ``Date`` takes).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import ferrosio

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_CLIENT_DIST = REPO / "tests" / "node" / "node_modules" / "socket.io-client" / "dist"

MAX_USERNAME = 32
MAX_ROOM = 32
MAX_TEXT = 2000
MAX_ROOMS_PER_USER = 20

log = logging.getLogger("chat")

sio = ferrosio.AsyncServer(cors_allowed_origins="*", max_http_buffer_size=64_000)

# The server's state. A socket is one browser tab; a username belongs to one socket.
usernames: dict[str, str] = {}  # sid -> username
taken: dict[str, str] = {}  # username.casefold() -> sid
rooms: dict[str, dict[str, str]] = {}  # room -> {sid: username}, in joining order
message_ids = itertools.count(1)


class ChatError(Exception):
    """A request the server refuses; its text goes back in the ack."""


def now_ms() -> int:
    return int(time.time() * 1000)


def clean_name(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ChatError(f"{what} must be a string")
    name = " ".join(value.split())  # trim, and no newlines or runs of spaces
    if not name:
        raise ChatError(f"{what} must not be empty")
    if len(name) > limit:
        raise ChatError(f"{what} must be at most {limit} characters")
    return name


def room_of(data: Any) -> str:
    if not isinstance(data, dict):
        raise ChatError("expected an object like {room: 'lobby'}")
    return clean_name(data.get("room"), "room", MAX_ROOM)


def members(room: str) -> list[str]:
    return list(rooms.get(room, {}).values())


def answers(fn: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[Any]]:
    """Turns a handler's ChatError (or any bug) into an ``{ok: false, error}`` ack."""

    @functools.wraps(fn)
    async def wrapper(sid: str, *args: Any) -> dict[str, Any]:
        try:
            if sid not in usernames:
                raise ChatError("not connected")
            return await fn(sid, *args)
        except ChatError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:
            log.exception("%s failed", fn.__name__)
            return {"ok": False, "error": "internal server error"}

    return wrapper


@sio.on("connect")
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    name = auth.get("username") if isinstance(auth, dict) else None
    if name is None:
        raise ferrosio.exceptions.ConnectionRefusedError("a username is required")
    try:
        username = clean_name(name, "username", MAX_USERNAME)
    except ChatError as exc:
        raise ferrosio.exceptions.ConnectionRefusedError(str(exc)) from None
    if username.casefold() in taken:
        raise ferrosio.exceptions.ConnectionRefusedError(f"username {username!r} is taken")
    usernames[sid] = username
    taken[username.casefold()] = sid
    log.info("%s connected as %s", sid, username)


async def notice(kind: str, room: str, username: str) -> None:
    """Tells everyone in ``room`` that ``username`` joined or left."""
    data = {"type": kind, "room": room, "user": username, "members": members(room)}
    await sio.emit("notice", {**data, "time": now_ms()}, room=room)


async def _leave(sid: str, room: str) -> None:
    """Takes ``sid`` out of ``room`` and tells the others."""
    room_members = rooms.get(room)
    if room_members is None or sid not in room_members:
        return
    username = room_members.pop(sid)
    if not room_members:
        del rooms[room]
    await sio.leave_room(sid, room)
    await notice("leave", room, username)


@sio.on("join")
@answers
async def join(sid: str, data: Any = None, *_: Any) -> dict[str, Any]:
    room = room_of(data)
    username = usernames[sid]
    room_members = rooms.get(room, {})
    if sid not in room_members:
        if sum(sid in m for m in rooms.values()) >= MAX_ROOMS_PER_USER:
            raise ChatError(f"you can be in at most {MAX_ROOMS_PER_USER} rooms")
        rooms.setdefault(room, {})[sid] = username
        await sio.enter_room(sid, room)
        # The joiner gets this notice too: it is the first line of the room in their page.
        await notice("join", room, username)
    return {"ok": True, "room": room, "members": members(room)}


@sio.on("leave")
@answers
async def leave(sid: str, data: Any = None, *_: Any) -> dict[str, Any]:
    room = room_of(data)
    if sid not in rooms.get(room, {}):
        raise ChatError(f"you are not in room {room!r}")
    await _leave(sid, room)
    return {"ok": True, "room": room}


@sio.on("message")
@answers
async def message(sid: str, data: Any = None, *_: Any) -> dict[str, Any]:
    room = room_of(data)
    text = data.get("text")
    if not isinstance(text, str):
        raise ChatError("text must be a string")
    text = text.strip()
    if not text:
        raise ChatError("text must not be empty")
    if len(text) > MAX_TEXT:
        raise ChatError(f"text must be at most {MAX_TEXT} characters")
    if sid not in rooms.get(room, {}):
        raise ChatError(f"join room {room!r} first")
    msg = {"id": next(message_ids), "room": room, "user": usernames[sid], "text": text}
    msg["time"] = now_ms()
    await sio.emit("message", msg, room=room)
    return {"ok": True, "id": msg["id"]}


@sio.on("*")
async def unknown(event: str, sid: str, *_: Any) -> dict[str, Any]:
    return {"ok": False, "error": f"unknown event {event!r}"}


@sio.on("disconnect")
async def disconnect(sid: str, reason: str = "") -> None:
    username = usernames.pop(sid, None)
    if username is None:
        return
    taken.pop(username.casefold(), None)
    for room in [r for r, m in rooms.items() if sid in m]:
        try:
            await _leave(sid, room)
        except Exception:
            log.exception("cleanup of %s in %s failed", username, room)
    log.info("%s (%s) disconnected: %s", sid, username, reason)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--client-dist",
        type=Path,
        default=DEFAULT_CLIENT_DIST,
        help="folder holding socket.io.min.js (default: %(default)s)",
    )
    p.add_argument("--certfile", help="serve HTTPS with this PEM certificate (with --keyfile)")
    p.add_argument("--keyfile", help="the certificate's PEM private key")
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--asgi",
        action="store_true",
        help="serve through ferrosio.ASGIApp under uvicorn instead of ferrosio's own listener",
    )
    a = p.parse_args()
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    dist = a.client_dist.resolve()
    if not (dist / "socket.io.min.js").is_file():
        sys.exit(
            f"error: the Socket.IO browser client is missing: {dist / 'socket.io.min.js'}\n"
            f"Install it with:  npm install --prefix {REPO / 'tests' / 'node'}\n"
            "(or point --client-dist at a socket.io-client/dist folder)"
        )
    sio.static_files = {
        "/": str(HERE / "index.html"),
        "/app.js": str(HERE / "app.js"),
        "/style.css": str(HERE / "style.css"),
        "/socket.io-client": str(dist),  # /socket.io-client/socket.io.min.js
    }
    scheme = "https" if a.certfile else "http"
    print(f"chat: {scheme}://{a.host}:{a.port}/  (Ctrl+C to stop)", flush=True)
    if a.asgi:
        import uvicorn

        uvicorn.run(ferrosio.ASGIApp(sio), host=a.host, port=a.port, log_level="warning")
        return
    ferrosio.run(sio, host=a.host, port=a.port, ssl_certfile=a.certfile, ssl_keyfile=a.keyfile)


if __name__ == "__main__":
    main()
