"""The native engine (Rust). Private: use :mod:`ferrosio` instead."""

import os
from typing import Any, Final

__version__: Final[str]

KIND_CONNECT: Final[int]
KIND_EVENT: Final[int]
KIND_ACK: Final[int]
KIND_DISCONNECT: Final[int]
KIND_ENGINE_OPEN: Final[int]
KIND_ENGINE_MESSAGE: Final[int]
KIND_ENGINE_CLOSE: Final[int]
KIND_AUTHORIZE: Final[int]

class FerrosioError(Exception): ...
class EngineNotRunningError(FerrosioError): ...

# (method, path, query, headers, remote_ip, remote_port, local_ip, local_port)
RawEnviron = tuple[str, str, str, list[tuple[str, str]], str, int, str, int]

class Engine:
    """An HTTP listener serving Engine.IO/Socket.IO on its own thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        path: str = "/socket.io/",
        ping_interval_ms: int = 25000,
        ping_timeout_ms: int = 20000,
        max_payload: int = 1000000,
        connect_timeout_ms: int = 45000,
        websocket: bool = True,
        polling: bool = True,
        upgrades: bool = True,
        engine_path: str | None = None,
        cors: str = "same-origin",
        cors_origins: list[str] | None = None,
        cors_credentials: bool = True,
        static_files: list[tuple[str, str, str | None]] | None = None,
        authorize_requests: bool = False,
    ) -> None: ...
    @property
    def port(self) -> int: ...
    def wake_fd(self) -> int: ...
    def is_running(self) -> bool: ...
    def drain(self) -> list[tuple[Any, ...]]:
        """Waiting events, oldest first:

        - ``(KIND_CONNECT, sid, nsp, eio_sid, auth_json | None, RawEnviron)``
        - ``(KIND_EVENT, sid, nsp, ack_id | None, json, attachments | None)``
        - ``(KIND_ACK, sid, nsp, ack_id, json, attachments | None)``
        - ``(KIND_DISCONNECT, sid, nsp, reason, None, None)``
        - ``(KIND_ENGINE_OPEN, sid, "", "", None, RawEnviron)``
        - ``(KIND_ENGINE_MESSAGE, sid, "", str | bytes, None, None)``
        - ``(KIND_ENGINE_CLOSE, sid, "", reason, None, None)``
        - ``(KIND_AUTHORIZE, id, origin | None, check_request, None, RawEnviron)``
        """
    def emit(
        self,
        nsp: str,
        data: bytes,
        *,
        to: str | None = None,
        rooms: list[str] | None = None,
        skip: list[str] | None = None,
        attachments: list[bytes] | None = None,
        ack_id: int | None = None,
    ) -> None: ...
    def ack(
        self,
        nsp: str,
        sid: str,
        ack_id: int,
        data: bytes,
        attachments: list[bytes] | None = None,
    ) -> None: ...
    def accept(self, nsp: str, sid: str) -> None: ...
    def reject(self, nsp: str, sid: str, data: bytes) -> None: ...
    def join(self, nsp: str, sid: str, room: str) -> None: ...
    def leave(self, nsp: str, sid: str, room: str) -> None: ...
    def close_room(self, nsp: str, room: str) -> None: ...
    def disconnect(self, nsp: str, sid: str) -> None: ...
    def engine_send(self, sid: str, data: str | bytes) -> None: ...
    def engine_close(self, sid: str) -> None: ...
    def authorize(self, id: int, origin_ok: bool, request_ok: bool) -> None: ...
    def begin_batch(self) -> None: ...
    def end_batch(self) -> None: ...
    def shutdown(self, timeout_ms: int = 5000) -> None: ...

class ClientEngine:
    """A Socket.IO client connection engine on its own thread: one connection attempt at a
    time, numbered by the caller with a generation ``gen``; records and commands of another
    generation never mix with the current one."""

    OPEN: Final[int]
    UPGRADED: Final[int]
    CONNECT: Final[int]
    CONNECT_ERROR: Final[int]
    EVENT: Final[int]
    ACK: Final[int]
    DISCONNECT: Final[int]
    CLOSED: Final[int]

    def __init__(self) -> None: ...
    def wake_fd(self) -> int: ...
    def is_running(self) -> bool: ...
    def drain(self) -> list[tuple[Any, ...]]:
        """Waiting records, oldest first:

        - ``(OPEN, gen, eio_sid, transport, open_packet_json, None)``
        - ``(UPGRADED, gen, "", "websocket", None, None)``
        - ``(CONNECT, gen, nsp, None, connect_json, None)``
        - ``(CONNECT_ERROR, gen, nsp, None, error_json, None)``
        - ``(EVENT, gen, nsp, ack_id | None, json, attachments | None)``
        - ``(ACK, gen, nsp, ack_id, json, attachments | None)``
        - ``(DISCONNECT, gen, nsp, None, None, None)``
        - ``(CLOSED, gen, "", reason, detail, None)``: always the last record of a generation
        """
    def connect(
        self,
        gen: int,
        host: str,
        port: int,
        path: str,
        query: str = "",
        headers: list[tuple[str, str]] | None = None,
        *,
        websocket: bool = True,
        polling: bool = True,
        upgrade: bool = True,
        request_timeout_ms: int = 5000,
        tls: bool = False,
        tls_verify: bool = True,
        tls_ca_file: str | os.PathLike[str] | None = None,
    ) -> None: ...
    def emit(
        self,
        gen: int,
        nsp: str,
        data: bytes,
        ack_id: int | None = None,
        attachments: list[bytes] | None = None,
    ) -> None: ...
    def ack(
        self,
        gen: int,
        nsp: str,
        ack_id: int,
        data: bytes,
        attachments: list[bytes] | None = None,
    ) -> None: ...
    def connect_namespace(self, gen: int, nsp: str, auth: bytes | None = None) -> None: ...
    def disconnect_namespace(self, gen: int, nsp: str) -> None: ...
    def close(self, gen: int) -> None: ...
    def shutdown(self) -> None: ...

def encode_packet(
    kind: int, nsp: str, data: bytes, ack_id: int | None = None, attachments: int = 0
) -> bytes:
    """Engine.IO message text of a Socket.IO packet. ``kind`` is the Socket.IO packet type
    digit (0 CONNECT .. 6 BINARY_ACK), not one of the ``KIND_*`` drain constants; with
    ``attachments`` an EVENT/ACK becomes BINARY_EVENT/BINARY_ACK."""

def decode_packet(text: bytes) -> tuple[int, str, int | None, int, bytes]: ...
def encode_payload(items: list[str | bytes]) -> bytes: ...
def decode_payload(body: bytes) -> list[str | bytes]: ...
