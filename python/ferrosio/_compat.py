"""python-socketio's arguments and what ferrosio does with each: the one place they are checked.

ferrosio's public methods take explicit parameters only, so an argument it does not know
raises ``TypeError`` (a typo like ``ping_intervall=`` fails instead of being ignored). The
arguments python-socketio (and python-engineio underneath) has are one of:

- **supported**: ferrosio does what the argument asks;
- **accepted**: the values that mean what ferrosio does anyway are accepted; any other value
  raises :class:`~ferrosio.exceptions.UnsupportedFeatureError` naming the feature;
- **unsupported**: any value but the "off" one raises that error.

``AsyncServer(...)``

================================  ==========================================================
argument                          ferrosio
================================  ==========================================================
logger, always_connect,           supported
namespaces, ping_interval (a
number), ping_timeout,
max_http_buffer_size,
allow_upgrades,
cors_allowed_origins,
cors_credentials, transports,
http_compression,
compression_threshold
ping_interval=(interval, grace)   unsupported: a ping grace period
client_manager                    supported: None or a ``ferrosio.AsyncRedisManager``; other
                                  managers (python-socketio's Redis, Kafka, ... classes)
                                  are unsupported
serializer                        supported: ``"default"``, ``"msgpack"`` (npm's
                                  socket.io-msgpack-parser; not with a client_manager);
                                  pickle, cbor, a custom packet class: unsupported
json                              accepted: None (ferrosio encodes with orjson)
async_handlers                    accepted: True (handlers run concurrently, as tasks)
async_mode                        accepted: None, ``"asgi"`` (served by ``ferrosio.ASGIApp``
                                  or on ferrosio's own listener alike); ``"aiohttp"``, ...:
                                  unsupported
monitor_clients                   accepted: None, True (inactive clients are always closed)
cookie                            accepted: None (no session cookie)
engineio_logger                   accepted: None, False (the Engine.IO layer is Rust)
================================  ==========================================================

``AsyncClient(...)``

================================  ==========================================================
logger, reconnection*,            supported
randomization_factor,
request_timeout, ssl_verify
serializer, json                  as on the server
handle_sigint                     accepted: False (no SIGINT handler is installed)
engineio_logger                   as on the server
http_session                      accepted: None (the connection is made in Rust)
websocket_extra_options           accepted: None, {}
timestamp_requests                accepted: True (polling requests carry ``t=``)
================================  ==========================================================

ferrosio's own keywords are not python-socketio's and not in these tables, e.g.
``allow_eio3`` (Node's ``allowEIO3``: Engine.IO v3 clients; python-socketio 5 has no such
option).

Methods: ``ignore_queue`` on the server's ``emit``, ``send``, ``call`` and ``disconnect`` is
accepted with any value: on a server with an ``AsyncRedisManager``, ``emit``/``send`` with
``ignore_queue=True`` stay on this server (python-socketio's meaning); without a client manager
there is no queue, so it changes nothing. Every ``namespace=`` is honoured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ferrosio.cluster import AsyncRedisManager
from ferrosio.exceptions import UnsupportedFeatureError


class _Rule(NamedTuple):
    accepts: Callable[[Any], bool]
    feature: str  # what any other value asks for, named in the error


def _only(*values: Any) -> Callable[[Any], bool]:
    return lambda value: any(value is v or (v == value and type(v) is type(value)) for v in values)


def _any(value: Any) -> bool:
    return True


SERVER: Mapping[str, _Rule] = {
    "ping_interval": _Rule(
        lambda value: not isinstance(value, tuple), "a ping grace period (ping_interval tuple)"
    ),
    "client_manager": _Rule(
        lambda value: value is None or isinstance(value, AsyncRedisManager),
        "client_manager other than ferrosio.AsyncRedisManager (python-socketio's managers, "
        "Kafka, ...; use ferrosio.AsyncRedisManager(url) for a Redis cluster)",
    ),
    "serializer": _Rule(
        _only("default", "msgpack"), "serializer (pickle, cbor or a custom packet class)"
    ),
    "json": _Rule(_only(None), "json (a custom JSON module; ferrosio encodes with orjson)"),
    "async_handlers": _Rule(
        _only(True), "async_handlers=False (running a client's events one at a time)"
    ),
    "async_mode": _Rule(
        _only(None, "asgi"),
        "async_mode (serving through aiohttp, Sanic or Tornado; ferrosio serves on its own "
        "listener, or in an ASGI server through ferrosio.ASGIApp)",
    ),
    "monitor_clients": _Rule(
        _only(None, True), "monitor_clients=False (keeping inactive clients connected)"
    ),
    "cookie": _Rule(_only(None), "cookie (an Engine.IO session cookie)"),
    "engineio_logger": _Rule(
        _only(None, False), "engineio_logger (logging of the Engine.IO layer, which is in Rust)"
    ),
}

CLIENT: Mapping[str, _Rule] = {
    "serializer": SERVER["serializer"],
    "json": SERVER["json"],
    "engineio_logger": SERVER["engineio_logger"],
    "handle_sigint": _Rule(_only(False), "handle_sigint (disconnecting on Ctrl-C)"),
    "http_session": _Rule(_only(None), "http_session (an aiohttp session of the application)"),
    "websocket_extra_options": _Rule(
        lambda value: not value, "websocket_extra_options (options for the WebSocket client)"
    ),
    "timestamp_requests": _Rule(
        _only(True), "timestamp_requests=False (polling requests without a t= cache buster)"
    ),
}


def check(rules: Mapping[str, _Rule], arguments: Mapping[str, Any]) -> None:
    """Raises :class:`UnsupportedFeatureError` for the first argument of ``rules`` whose value
    in ``arguments`` (a constructor's ``locals()``) asks for something ferrosio does not do."""
    for name, rule in rules.items():
        value = arguments[name]
        if not rule.accepts(value):
            raise UnsupportedFeatureError(f"{name}={value!r}: {rule.feature} is not supported yet")
