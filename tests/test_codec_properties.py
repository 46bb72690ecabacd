"""Property tests: ferrosio's Rust Socket.IO codec and python-socketio's ``Packet`` agree.

Generated packets (every type, namespaces, ack ids, JSON data with unicode and nesting, binary
attachments) go both ways: python-socketio encodes and ferrosio decodes, ferrosio encodes and
python-socketio decodes; for the same JSON text the two encoders give the same bytes.
Deterministic (``derandomize``) and bounded, so it runs in seconds in CI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from ferrosio import _ferrosio

# The binding keeps its codec entry points in a submodule of its own (an attribute of the
# extension, not an importable module path).
encode_packet = _ferrosio.codec.encode_packet
decode_packet = _ferrosio.codec.decode_packet

PROPERTY_SETTINGS = settings(max_examples=400, derandomize=True, deadline=None, database=None)

# JSON values: unicode (astral plane included) and nesting. Floats are finite: JSON has no NaN.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
# Keys never spell a binary placeholder (`{"_placeholder": true, "num": n}`).
json_keys = st.text(max_size=8).filter(lambda k: k not in ("_placeholder", "num"))


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
        max_leaves=12,
    )


plain_data = json_values(json_scalars)
# Binary types: bytes anywhere in the tree, at least one (checked by the strategy below).
binary_data = json_values(json_scalars | st.binary(max_size=16))

# A namespace: `/`, or `/` and characters other than the header's `,` and `?` delimiters.
namespaces = st.just("/") | st.text(
    st.characters(blacklist_characters=",?", blacklist_categories=("Cs",)), min_size=1, max_size=10
).map(lambda s: "/" + s)
ack_ids = st.integers(min_value=0, max_value=2**64 - 1)


@dataclass(frozen=True)
class LogicalPacket:
    """What a Socket.IO packet means: type, namespace, ack id, data (bytes for attachments)."""

    kind: int
    namespace: str
    ack_id: int | None
    data: Any


def _has_binary(data: Any) -> bool:
    return bool(sio_packet.Packet.data_is_binary(data))


@st.composite
def packets(draw: st.DrawFn) -> LogicalPacket:
    kind = draw(st.sampled_from(range(7)))
    nsp = draw(namespaces)
    if kind == sio_packet.CONNECT:
        data = draw(st.none() | st.dictionaries(json_keys, plain_data, max_size=4))
        return LogicalPacket(kind, nsp, None, data)
    if kind == sio_packet.DISCONNECT:
        return LogicalPacket(kind, nsp, None, None)
    if kind == sio_packet.CONNECT_ERROR:
        message = draw(st.text(max_size=20))
        extra = draw(st.none() | plain_data)
        data = {"message": message} if extra is None else {"message": message, "data": extra}
        return LogicalPacket(kind, nsp, None, data)
    binary = kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK)
    args = draw(st.lists(binary_data if binary else plain_data, max_size=4))
    if binary and not _has_binary(args):
        args.append(draw(st.binary(max_size=16)))
    if kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
        name = draw(st.text(min_size=1, max_size=12))
        return LogicalPacket(kind, nsp, draw(st.none() | ack_ids), [name, *args])
    return LogicalPacket(kind, nsp, draw(ack_ids), args)


def _sio_packet(p: LogicalPacket) -> sio_packet.Packet:
    # python-socketio makes EVENT/ACK binary itself when the data holds bytes.
    kind = {sio_packet.BINARY_EVENT: sio_packet.EVENT, sio_packet.BINARY_ACK: sio_packet.ACK}.get(
        p.kind, p.kind
    )
    return sio_packet.Packet(kind, data=p.data, namespace=p.namespace, id=p.ack_id)


def _split(encoded: str | list[Any]) -> tuple[str, list[bytes]]:
    if isinstance(encoded, list):
        return encoded[0], list(encoded[1:])
    return encoded, []


@given(packets())
@PROPERTY_SETTINGS
def test_ferrosio_decodes_what_python_socketio_encodes(p: LogicalPacket) -> None:
    text, attachments = _split(_sio_packet(p).encode())
    kind, nsp, ack_id, count, data = decode_packet(text.encode())
    assert (kind, nsp, ack_id, count) == (p.kind, p.namespace, p.ack_id, len(attachments))
    decoded = json.loads(data) if data else None
    if attachments:
        decoded = sio_packet.Packet.reconstruct_binary(decoded, attachments)
    assert decoded == p.data


@given(packets(), st.booleans())
@PROPERTY_SETTINGS
def test_python_socketio_decodes_what_ferrosio_encodes(p: LogicalPacket, ascii_only: bool) -> None:
    data, attachments = sio_packet.Packet.deconstruct_binary(p.data)
    # Raw UTF-8 as well as `\u` escapes: both are valid JSON for the peer to read.
    payload = b"" if data is None else json.dumps(data, ensure_ascii=ascii_only).encode()
    wire = encode_packet(p.kind, p.namespace, payload, p.ack_id, len(attachments))
    assert wire[:1] == b"4", "an Engine.IO message"
    received = sio_packet.Packet(encoded_packet=wire[1:].decode())
    for attachment in attachments:
        received.add_attachment(attachment)
    assert received.packet_type == p.kind
    assert (received.namespace or "/") == p.namespace
    assert received.id == p.ack_id
    assert received.data == p.data


@given(packets())
@PROPERTY_SETTINGS
def test_both_encoders_write_the_same_bytes(p: LogicalPacket) -> None:
    text, attachments = _split(_sio_packet(p).encode())
    data, _ = sio_packet.Packet.deconstruct_binary(p.data)
    # python-socketio's own JSON text, so only the packet header can differ.
    payload = b"" if data is None else sio_packet.Packet.json.dumps(data, separators=(",", ":"))
    payload_bytes = payload if isinstance(payload, bytes) else payload.encode()
    wire = encode_packet(p.kind, p.namespace, payload_bytes, p.ack_id, len(attachments))
    assert wire == b"4" + text.encode()


@given(packets(), st.text(st.characters(blacklist_characters=",", min_codepoint=33), max_size=8))
@PROPERTY_SETTINGS
def test_both_decoders_drop_a_namespace_query(p: LogicalPacket, query: str) -> None:
    # Socket.IO v4 clients appended the handshake query to the namespace: `/admin?x=1,`.
    if p.namespace == "/":
        return
    text, _ = _split(_sio_packet(p).encode())
    head = text.index(p.namespace) + len(p.namespace)
    text = f"{text[:head]}?{query}{text[head:]}"
    _, nsp, _, _, _ = decode_packet(text.encode())
    theirs = sio_packet.Packet(encoded_packet=text)
    assert nsp == theirs.namespace == p.namespace
