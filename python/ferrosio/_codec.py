"""JSON and binary-attachment handling of Socket.IO payloads.

Binary values (``bytes``, ``bytearray``, ``memoryview``) anywhere in the data become
``{"_placeholder": true, "num": i}`` in depth-first order, and travel as attachments.
"""

from __future__ import annotations

from typing import Any

import orjson

_BINARY = (bytes, bytearray, memoryview)


def encode(items: list[Any]) -> tuple[bytes, list[bytes] | None]:
    """JSON-encodes a packet's array; returns the text and the binary attachments, if any."""
    try:
        return orjson.dumps(items), None
    except TypeError:
        pass  # binary values or non-str keys: the slower path below handles both
    attachments: list[bytes] = []

    def extract(value: Any) -> Any:
        if isinstance(value, _BINARY):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    text = orjson.dumps(items, default=extract, option=orjson.OPT_NON_STR_KEYS)
    return text, attachments or None


def decode(data: bytes, attachments: list[bytes] | None) -> Any:
    """Decodes a packet's JSON, putting the attachments back in place of their placeholders."""
    value = orjson.loads(data)
    if attachments:
        value = _restore(value, attachments)
    return value


def _restore(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, list):
        return [_restore(v, attachments) for v in value]
    if isinstance(value, dict):
        if value.get("_placeholder") is True and type(value.get("num")) is int:
            num = value["num"]
            if 0 <= num < len(attachments):
                return attachments[num]
            raise ValueError(f"attachment {num} missing")
        return {k: _restore(v, attachments) for k, v in value.items()}
    return value


def to_args(data: Any) -> list[Any]:
    """python-socketio's rule for ``emit(data=...)``: tuple -> several args, None -> none."""
    if isinstance(data, tuple):
        return list(data)
    if data is None:
        return []
    return [data]


def ack_args(result: Any) -> list[Any]:
    """A handler's return value as ack arguments: None -> none, tuple -> several, else one."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]
