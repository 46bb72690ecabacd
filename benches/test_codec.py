"""Packet codec micro-benchmarks: ferrosio beside the pure-Python python-socketio stack.

    python -m pytest benches/test_codec.py                       # timed (pytest-benchmark)
    python -m pytest benches/test_codec.py --benchmark-disable   # each body once: checks only

Every case is done by every implementation on the same input, and the outputs are checked for
equality *before* anything is timed (``_checked_*`` below, once per case). pytest-benchmark
groups put the implementations of one case side by side; its ``(x.xx)`` figures are ratios to
the fastest row of the group.

What one round does, per implementation:

``sio encode`` -- a packet to the bytes/str that go into one WebSocket text frame (+ binary
frames for attachments):

- ``ferrosio``: ``_codec.encode([event, *args])`` (orjson, binary placeholders) then
  ``_ferrosio.codec.encode_packet(type, nsp, json, ack_id, attachments)`` (Rust; returns the
  Engine.IO message ``4...`` directly). This is what ``AsyncServer.emit`` and acks do.
- ``psio``: ``socketio.packet.Packet(...).encode()`` then, per frame,
  ``engineio.packet.Packet(MESSAGE, data=frame).encode()``: python-socketio's own send path
  (``AsyncServer._send_packet`` -> ``AsyncServer.eio.send``). Same bytes as ferrosio.
- ``psio-sio-only``: ``socketio.packet.Packet(...).encode()`` alone (no Engine.IO framing).
  Same text without the leading ``4``.

``sio decode`` -- the text of one received WebSocket frame (+ binary frames) to Python objects:

- ``ferrosio``: ``_ferrosio.codec.decode_packet(text)`` then ``_codec.decode(json, attachments)``.
  Its input is the text after the ``4``: the engine strips it by slicing, in Rust.
- ``psio``: ``engineio.packet.Packet(encoded_packet=frame)`` then
  ``socketio.packet.Packet(encoded_packet=eio.data)`` (+ ``add_attachment`` per binary frame),
  python-socketio's receive path.
- ``psio-sio-only``: ``socketio.packet.Packet(encoded_packet=text)`` (+ ``add_attachment``).

``eio payload encode/decode`` -- a long-polling HTTP body (``\\x1e``-separated records, binary
as ``b<base64>``), bytes in and bytes out on both sides:

- ``psio``: ``engineio.payload.Payload(packets=[engineio.packet.Packet(MESSAGE, d) ...])``
  ``.encode().encode()`` / ``Payload(encoded_payload=body.decode())`` (python-engineio's
  polling GET/POST handlers do the same utf-8 steps).
- ``ferrosio``: ``_ferrosio.codec.encode_payload(frames)`` / ``decode_payload(body)`` (Rust, the
  engine's ``engineio::packet::encode_payload`` / ``EnginePacket::decode_payload``)::

      encode_payload(frames: list[str | bytes]) -> bytes
          # str: a whole Engine.IO text packet, type digit included ("42[...]", "2", "6");
          # bytes: a binary message, written as "b" + base64. Records joined with 0x1e.
      decode_payload(body: bytes) -> list[str | bytes]
          # the inverse: text packets as str (type digit included), binary messages
          # ("b<base64>") as decoded bytes; ValueError on malformed input.

  A build without them skips these cases with a message.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import engineio.packet as eio_packet
import engineio.payload as eio_payload
import pytest
import socketio.packet as sio_packet

from ferrosio import _codec
from ferrosio._ferrosio import codec as native_codec

EVENT, ACK, BINARY_EVENT, BINARY_ACK = (
    sio_packet.EVENT,
    sio_packet.ACK,
    sio_packet.BINARY_EVENT,
    sio_packet.BINARY_ACK,
)
_BINARY_TYPE = {EVENT: BINARY_EVENT, ACK: BINARY_ACK}

IMPLS = ["ferrosio", "psio", "psio-sio-only"]
PAYLOAD_IMPLS = ["ferrosio", "psio"]

# ------------------------------------------------------------------ inputs ----

_ITEMS = [
    {
        "id": i,
        "name": f"item-{i:03d}",
        "price": 10.25 + i,
        "qty": i * 3,
        "tags": ["red", "blue"],
        "ok": i % 2 == 0,
    }
    for i in range(12)
]


@dataclass(frozen=True)
class Case:
    """One Socket.IO packet: type (EVENT or ACK; binary variants are derived), nsp, id, data."""

    kind: int
    nsp: str
    ack_id: int | None
    data: list[Any]
    note: str


CASES: dict[str, Case] = {
    # a chat-like event with a small JSON object: 42["message",{...}]
    "event-small": Case(
        EVENT,
        "/",
        None,
        ["message", {"user": "alice", "text": "hello there", "ts": 1700000000123, "n": 1}],
        "EVENT, ~80 B of JSON",
    ),
    # ~1 KiB of structured JSON
    "event-1k": Case(EVENT, "/", None, ["update", {"page": 1, "items": _ITEMS}], "EVENT, ~1 KiB"),
    # one 1 KiB binary attachment nested in an object, with an ack id: 451-7["upload",{...}]
    "event-binary": Case(
        EVENT,
        "/",
        7,
        ["upload", {"name": "blob.bin", "chunk": 3, "data": bytes(range(256)) * 4}],
        "BINARY_EVENT, 1 KiB attachment, ack id",
    ),
    # the echo-ack scenario's reply: 431234["xxx...32"]
    "ack": Case(ACK, "/", 1234, ["x" * 32], "ACK, 32 B string"),
    # an event with an ack id in a custom namespace: 42/admin,99["echo",...]
    "event-nsp-id": Case(
        EVENT, "/admin", 99, ["echo", "x" * 32, 42, True], "EVENT in /admin with ack id"
    ),
}

# ------------------------------------------------------------ sio encoders ----
# Each returns the frames of one packet: the text frame (str or bytes), then any binary frames.


def enc_ferrosio(c: Case) -> tuple[Any, ...]:
    text, atts = _codec.encode(c.data)
    if atts:
        kind = _BINARY_TYPE[c.kind]
        return (native_codec.encode_packet(kind, c.nsp, text, c.ack_id, len(atts)), *atts)
    return (native_codec.encode_packet(c.kind, c.nsp, text, c.ack_id),)


def enc_psio(c: Case) -> tuple[Any, ...]:
    encoded = sio_packet.Packet(c.kind, data=c.data, namespace=c.nsp, id=c.ack_id).encode()
    frames = encoded if isinstance(encoded, list) else (encoded,)
    return tuple(eio_packet.Packet(eio_packet.MESSAGE, data=f).encode() for f in frames)


def enc_psio_sio_only(c: Case) -> tuple[Any, ...]:
    encoded = sio_packet.Packet(c.kind, data=c.data, namespace=c.nsp, id=c.ack_id).encode()
    return tuple(encoded) if isinstance(encoded, list) else (encoded,)


ENCODERS = {"ferrosio": enc_ferrosio, "psio": enc_psio, "psio-sio-only": enc_psio_sio_only}

# ------------------------------------------------------------ sio decoders ----
# Each returns (type, nsp, ack_id, data) with python-socketio's types (binary types included).


def dec_ferrosio(text: bytes, atts: list[bytes]) -> tuple[int, str, int | None, Any]:
    kind, nsp, ack_id, n, data = native_codec.decode_packet(text)
    return kind, nsp, ack_id, _codec.decode(data, atts if n else None)


def dec_psio(frame: str, atts: list[bytes]) -> tuple[int, str, int | None, Any]:
    eio = eio_packet.Packet(encoded_packet=frame)
    pkt = sio_packet.Packet(encoded_packet=eio.data)
    for a in atts:
        pkt.add_attachment(eio_packet.Packet(encoded_packet=a).data)
    return pkt.packet_type, pkt.namespace or "/", pkt.id, pkt.data


def dec_psio_sio_only(text: str, atts: list[bytes]) -> tuple[int, str, int | None, Any]:
    pkt = sio_packet.Packet(encoded_packet=text)
    for a in atts:
        pkt.add_attachment(a)
    return pkt.packet_type, pkt.namespace or "/", pkt.id, pkt.data


DECODERS = {"ferrosio": dec_ferrosio, "psio": dec_psio, "psio-sio-only": dec_psio_sio_only}

# ------------------------------------------------------- equality checks ----


def _as_bytes(x: str | bytes) -> bytes:
    return x.encode() if isinstance(x, str) else x


def _same_frames(a: tuple[Any, ...], b: tuple[Any, ...], what: str) -> None:
    """Byte-for-byte; if only the JSON spelling differs, parsed structures must be equal."""
    assert len(a) == len(b), f"{what}: {len(a)} vs {len(b)} frames"
    ta, tb = _as_bytes(a[0]), _as_bytes(b[0])
    if ta != tb:
        ja, jb = ta[ta.index(b"[") :], tb[tb.index(b"[") :]
        assert ta[: -len(ja)] == tb[: -len(jb)], f"{what}: headers differ: {ta!r} vs {tb!r}"
        assert json.loads(ja) == json.loads(jb), f"{what}: {ta!r} vs {tb!r}"
        pytest.fail(f"{what}: same structure, different JSON spelling: {ta!r} vs {tb!r}")
    assert [_as_bytes(x) for x in a[1:]] == [_as_bytes(x) for x in b[1:]], f"{what}: attachments"


@functools.cache
def _checked_encode(case: str) -> dict[str, tuple[Any, ...]]:
    """Runs every encoder once on `case` and checks they agree; returns their outputs."""
    c = CASES[case]
    out = {impl: fn(c) for impl, fn in ENCODERS.items()}
    _same_frames(out["ferrosio"], out["psio"], f"{case}: ferrosio vs python-socketio wire")
    sio_only = out["psio-sio-only"]
    _same_frames(("4" + sio_only[0], *sio_only[1:]), out["psio"], f"{case}: sio vs sio+eio")
    return out


@functools.cache
def _checked_decode(case: str) -> dict[str, tuple[Any, list[bytes]]]:
    """Wire input of every decoder for `case` (made by python-socketio), checked to decode
    to the same (type, nsp, id, data) everywhere, and to the case itself."""
    c = CASES[case]
    frames = enc_psio(c)
    text, atts = frames[0], list(frames[1:])
    inputs = {
        "ferrosio": (text[1:].encode(), atts),  # the engine hands over the text after the 4
        "psio": (text, atts),
        "psio-sio-only": (text[1:], atts),
    }
    kind = _BINARY_TYPE[c.kind] if atts else c.kind
    expected = (kind, c.nsp, c.ack_id, c.data)
    for impl, fn in DECODERS.items():
        got = fn(*inputs[impl])
        assert got == expected, f"{case}: {impl} decoded {got!r}, expected {expected!r}"
    return inputs


# --------------------------------------------------------- sio benchmarks ----


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_sio_encode(benchmark: Any, case: str, impl: str) -> None:
    expected = _checked_encode(case)[impl]
    benchmark.group = f"sio encode: {case}"
    benchmark.extra_info.update(op="sio encode", case=case, impl=impl, note=CASES[case].note)
    fn, c = ENCODERS[impl], CASES[case]
    assert benchmark(fn, c) == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_sio_decode(benchmark: Any, case: str, impl: str) -> None:
    text, atts = _checked_decode(case)[impl]
    benchmark.group = f"sio decode: {case}"
    benchmark.extra_info.update(op="sio decode", case=case, impl=impl, note=CASES[case].note)
    got = benchmark(DECODERS[impl], text, atts)
    assert got[3] == CASES[case].data


# ------------------------------------------------------ eio payload (polling) ----

_SMALL = sio_packet.Packet(EVENT, data=["echo", "x" * 32]).encode()
_BIN = sio_packet.Packet(EVENT, data=["upload", bytes(range(256)) * 4]).encode()

# The messages of one polling response/request: what each side has queued for the transport.
# psio queues the Socket.IO text / attachment bytes (wrapped in engineio Packets on send);
# ferrosio queues whole Engine.IO text packets ("4" included) and raw binary attachments.
PAYLOADS: dict[str, tuple[list[str | bytes], str]] = {
    "16-events": ([_SMALL] * 16, '16 x 42["echo",32 B]'),
    "binary-event": ([_BIN[0], _BIN[1]], "451-[...] + 1 KiB as b<base64>"),
}


def _ferrosio_frames(msgs: list[str | bytes]) -> list[str | bytes]:
    return [("4" + m) if isinstance(m, str) else m for m in msgs]


def penc_psio(msgs: list[str | bytes]) -> bytes:
    pkts = [eio_packet.Packet(eio_packet.MESSAGE, data=m) for m in msgs]
    body: str = eio_payload.Payload(packets=pkts).encode()
    return body.encode()


def pdec_psio(body: bytes) -> list[str | bytes]:
    pkts = eio_payload.Payload(encoded_payload=body.decode()).packets
    return [p.data if p.binary else f"{p.packet_type}{p.data}" for p in pkts]


def _ferrosio_payload_fns() -> tuple[Any, Any]:
    enc = getattr(native_codec, "encode_payload", None)
    dec = getattr(native_codec, "decode_payload", None)
    if enc is None or dec is None:
        pytest.skip(
            "this ferrosio build has no _ferrosio.codec.encode_payload/decode_payload (Engine.IO "
            "polling payload framing): encode_payload(list[str | bytes]) -> bytes, "
            "decode_payload(bytes) -> list[str | bytes]"
        )
    return enc, dec


@functools.cache
def _checked_payload(case: str) -> bytes:
    """python-engineio's body for `case`, checked against ferrosio's when ferrosio has the API."""
    msgs, _ = PAYLOADS[case]
    body = penc_psio(msgs)
    expected = _ferrosio_frames(msgs)
    assert pdec_psio(body) == expected, f"{case}: python-engineio round trip"
    enc = getattr(native_codec, "encode_payload", None)
    dec = getattr(native_codec, "decode_payload", None)
    if enc is not None and dec is not None:
        assert enc(expected) == body, f"{case}: ferrosio payload differs from python-engineio's"
        assert dec(body) == expected, f"{case}: ferrosio decode_payload"
    return body


@pytest.mark.parametrize("impl", PAYLOAD_IMPLS)
@pytest.mark.parametrize("case", list(PAYLOADS))
def test_eio_payload_encode(benchmark: Any, case: str, impl: str) -> None:
    body = _checked_payload(case)
    msgs, note = PAYLOADS[case]
    benchmark.group = f"eio payload encode: {case}"
    benchmark.extra_info.update(op="eio payload encode", case=case, impl=impl, note=note)
    if impl == "ferrosio":
        enc, _ = _ferrosio_payload_fns()
        assert benchmark(enc, _ferrosio_frames(msgs)) == body
    else:
        assert benchmark(penc_psio, msgs) == body


@pytest.mark.parametrize("impl", PAYLOAD_IMPLS)
@pytest.mark.parametrize("case", list(PAYLOADS))
def test_eio_payload_decode(benchmark: Any, case: str, impl: str) -> None:
    body = _checked_payload(case)
    msgs, note = PAYLOADS[case]
    benchmark.group = f"eio payload decode: {case}"
    benchmark.extra_info.update(op="eio payload decode", case=case, impl=impl, note=note)
    fn = _ferrosio_payload_fns()[1] if impl == "ferrosio" else pdec_psio
    assert benchmark(fn, body) == _ferrosio_frames(msgs)


# ------------------------------------------------------------ not timed ----


def test_non_ascii_json_spelling() -> None:
    """Not timed. Non-ASCII text: python-socketio writes \\uXXXX escapes (json.dumps default),
    ferrosio raw UTF-8 (orjson). Both are valid JSON and decode to the same values, on both
    sides; the byte counts differ, so the timed cases above stay ASCII."""
    c = Case(EVENT, "/", None, ["chat", "héllo wörld ✓ 😀"], "")
    f, p = enc_ferrosio(c)[0], enc_psio(c)[0].encode()
    assert f != p
    assert json.loads(f[2:]) == json.loads(p[2:]) == c.data
    assert dec_ferrosio(p[1:], []) == dec_psio(f.decode(), []) == (EVENT, "/", None, c.data)
