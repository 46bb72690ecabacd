//! Engine.IO v3 (socket.io-client 2.x), where it differs from v4 on the wire: only for sessions
//! whose handshake asked for `EIO=3` on a server that allows it (Node's `allowEIO3`).
//!
//! - Polling payloads are length-prefixed, `<length>:<packet>` repeated, the length counted in
//!   UTF-16 code units (JavaScript's `String.length`), not bytes; a binary packet in such a
//!   text payload is `b4<base64>` (the `b`, then its packet type).
//! - A client that supports binary (no `b64` in its query) may post, and is answered with, a
//!   binary payload: per packet a `0` (text) or `1` (binary) byte, the decimal digits of its
//!   length one byte each, `0xFF`, then the packet (text as UTF-8, binary as the type byte `4`
//!   and the data).
//! - A WebSocket binary frame starts with the packet type byte (`0x04` for a message).
//! - The client pings (`2`) and the server pongs (`3`): see `heartbeat` (v3 sessions) and
//!   `EngineSession::client_pinged`.
//!
//! Outbound frames are the v4 [`Frame`]s, shared with every v4 recipient of a broadcast: only
//! their framing here differs (at write time, per session).

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use super::packet::{EnginePacket, Frame};
use crate::error::EngineError;

/// The type byte of a message, ahead of a binary packet's data in v3.
pub const MESSAGE_TYPE: u8 = 4;

/// Most digits of one length in a payload: a length with more is malformed (and would
/// overflow), whatever the body's size limit.
const MAX_LENGTH_DIGITS: usize = 10;

/// The Engine.IO protocol revision a session speaks, chosen at its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Engine.IO v4 (Socket.IO v5): every current client.
    V4,
    /// Engine.IO v3 (Socket.IO v4, socket.io-client 2.x). `base64`: the client asked for
    /// binary data as base64 text (`b64=1` in its handshake query).
    V3 { base64: bool },
}

impl Protocol {
    pub fn is_v3(self) -> bool {
        matches!(self, Protocol::V3 { .. })
    }

    /// The `EIO` query value of this revision.
    pub fn revision(self) -> &'static str {
        match self {
            Protocol::V4 => "4",
            Protocol::V3 { .. } => "3",
        }
    }
}

/// Decodes one v3 text packet (a WebSocket text frame or one payload record): as v4, except
/// that a base64 binary packet carries its type after the `b` (`b4AQID`).
pub fn decode_text(data: Bytes) -> Result<EnginePacket, EngineError> {
    match data.first() {
        Some(b'b') => {
            if data.get(1) != Some(&(b'0' + MESSAGE_TYPE)) {
                return Err(EngineError::V3BinaryType);
            }
            base64::engine::general_purpose::STANDARD
                .decode(&data[2..])
                .map(|b| EnginePacket::Binary(Bytes::from(b)))
                .map_err(|_| EngineError::Base64)
        }
        _ => EnginePacket::decode_text(data),
    }
}

/// Decodes a v3 WebSocket binary frame: the type byte (a message), then the data.
pub fn decode_binary_frame(data: Bytes) -> Result<EnginePacket, EngineError> {
    match data.first() {
        Some(&MESSAGE_TYPE) => Ok(EnginePacket::Binary(data.slice(1..))),
        Some(_) => Err(EngineError::V3BinaryType),
        None => Err(EngineError::Empty),
    }
}

/// Decodes a text payload: `<length>:<packet>` records, lengths in UTF-16 code units.
pub fn decode_text_payload(body: &Bytes) -> Result<Vec<EnginePacket>, EngineError> {
    let text = std::str::from_utf8(body).map_err(|_| EngineError::Utf8)?;
    if text.is_empty() {
        return Err(EngineError::Empty);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let colon = text[i..]
            .find(':')
            .map(|c| i + c)
            .ok_or(EngineError::V3Length)?;
        let digits = &text[i..colon];
        if digits.is_empty()
            || digits.len() > MAX_LENGTH_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(EngineError::V3Length);
        }
        let units: usize = digits.parse().map_err(|_| EngineError::V3Length)?;
        let start = colon + 1;
        let end = utf16_end(&text[start..], units).ok_or(EngineError::V3Length)? + start;
        if end > start {
            out.push(decode_text(body.slice(start..end))?);
        }
        i = end;
    }
    if out.is_empty() {
        return Err(EngineError::Empty);
    }
    Ok(out)
}

/// The byte offset in `s` after its first `units` UTF-16 code units; None if `s` is shorter,
/// or the cut would split a character.
fn utf16_end(s: &str, units: usize) -> Option<usize> {
    let mut counted = 0;
    for (at, c) in s.char_indices() {
        if counted == units {
            return Some(at);
        }
        counted += c.len_utf16();
        if counted > units {
            return None;
        }
    }
    (counted == units).then_some(s.len())
}

/// Decodes a binary payload (the client posted `application/octet-stream`).
pub fn decode_binary_payload(body: &Bytes) -> Result<Vec<EnginePacket>, EngineError> {
    if body.is_empty() {
        return Err(EngineError::Empty);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let is_text = match body[i] {
            0 => true,
            1 => false,
            _ => return Err(EngineError::V3Length),
        };
        i += 1;
        let mut len: usize = 0;
        let mut digits = 0;
        loop {
            let Some(&d) = body.get(i) else {
                return Err(EngineError::V3Length);
            };
            i += 1;
            if d == 0xFF {
                break;
            }
            if d > 9 || digits == MAX_LENGTH_DIGITS {
                return Err(EngineError::V3Length);
            }
            len = len * 10 + usize::from(d);
            digits += 1;
        }
        if digits == 0 || len > body.len() - i {
            return Err(EngineError::V3Length);
        }
        let packet = body.slice(i..i + len);
        i += len;
        out.push(if is_text {
            std::str::from_utf8(&packet).map_err(|_| EngineError::Utf8)?;
            decode_text(packet)?
        } else {
            decode_binary_frame(packet)?
        });
    }
    Ok(out)
}

/// Encodes frames as a v3 polling response: a binary payload when there is binary data and
/// the client takes it (`base64` false), else a text payload (binary as `b4<base64>`).
/// Returns the body and whether it is binary (`application/octet-stream`).
pub fn encode_payload(frames: &[Frame], base64: bool) -> (Bytes, bool) {
    let binary = !base64 && frames.iter().any(Frame::is_binary);
    let mut out = BytesMut::new();
    if binary {
        for frame in frames {
            let (kind, prefix, data): (u8, &[u8], &[u8]) = match frame {
                Frame::Text(b) | Frame::PlainText(b) => (0, &[], b),
                Frame::Binary(b) | Frame::PlainBinary(b) => (1, &[MESSAGE_TYPE], b),
            };
            out.put_u8(kind);
            let len = (prefix.len() + data.len()).to_string();
            out.extend(len.bytes().map(|d| d - b'0'));
            out.put_u8(0xFF);
            out.extend_from_slice(prefix);
            out.extend_from_slice(data);
        }
        return (out.freeze(), true);
    }
    for frame in frames {
        match frame {
            Frame::Text(b) | Frame::PlainText(b) => {
                // Frames are built from valid UTF-8 (Python strings, JSON); lossy only as a
                // guard, so a length is never computed on bytes the client cannot read.
                let s = String::from_utf8_lossy(b);
                let units: usize = s.chars().map(char::len_utf16).sum();
                out.extend_from_slice(units.to_string().as_bytes());
                out.put_u8(b':');
                out.extend_from_slice(s.as_bytes());
            }
            Frame::Binary(b) | Frame::PlainBinary(b) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(b);
                out.extend_from_slice((2 + encoded.len()).to_string().as_bytes());
                out.extend_from_slice(b":b4");
                out.extend_from_slice(encoded.as_bytes());
            }
        }
    }
    (out.freeze(), false)
}

/// A binary frame for a v3 client that asked for base64: the text packet `b4<base64>`.
pub fn base64_text(data: &[u8]) -> Vec<u8> {
    let mut out = b"b4".to_vec();
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    out
}

/// A frame as a v3 client takes it over a WebSocket whose framing is not ours (a host's ASGI
/// server): a binary frame gets its type byte, or becomes `b4<base64>` text for a client that
/// asked for base64. Text frames are unchanged; a plain (`compress=False`) frame stays plain.
pub fn websocket_frame(frame: Frame, base64: bool) -> Frame {
    if !frame.is_binary() {
        return frame;
    }
    let compressible = frame.compressible();
    let b = frame.payload();
    let out = if base64 {
        Frame::Text(base64_text(b).into())
    } else {
        let mut out = Vec::with_capacity(1 + b.len());
        out.push(MESSAGE_TYPE);
        out.extend_from_slice(b);
        Frame::Binary(out.into())
    };
    if compressible {
        out
    } else {
        out.plain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Frame {
        Frame::Text(Bytes::from_static(s.as_bytes()))
    }

    fn msg(s: &'static str) -> EnginePacket {
        EnginePacket::Message(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn text_payload_lengths_count_utf16_units() {
        let frames = [text("4é"), text("4😀"), text("2")];
        let (body, binary) = encode_payload(&frames, false);
        assert!(!binary);
        assert_eq!(std::str::from_utf8(&body).unwrap(), "2:4é3:4😀1:2");
        let decoded = decode_text_payload(&body).unwrap();
        assert_eq!(
            decoded,
            vec![msg("é"), msg("😀"), EnginePacket::Ping(Bytes::new())]
        );
    }

    #[test]
    fn binary_goes_as_a_binary_payload_unless_the_client_asked_for_base64() {
        let frames = [
            text("451-[\"b\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3])),
        ];
        let (body, binary) = encode_payload(&frames, false);
        assert!(binary);
        let mut expected = vec![0, 3, 9, 0xFF];
        expected.extend_from_slice(b"451-[\"b\",{\"_placeholder\":true,\"num\":0}]");
        expected.extend_from_slice(&[1, 4, 0xFF, 4, 1, 2, 3]);
        assert_eq!(&body[..], &expected[..]);
        assert_eq!(
            decode_binary_payload(&body).unwrap(),
            vec![
                msg("51-[\"b\",{\"_placeholder\":true,\"num\":0}]"),
                EnginePacket::Binary(Bytes::from_static(&[1, 2, 3])),
            ]
        );
        let (body, binary) = encode_payload(&frames, true);
        assert!(!binary);
        assert!(body.ends_with(b"6:b4AQID"), "{body:?}");
        assert_eq!(
            decode_text_payload(&body).unwrap()[1],
            EnginePacket::Binary(Bytes::from_static(&[1, 2, 3]))
        );
    }

    #[test]
    fn a_text_payload_without_binary_stays_text() {
        let (body, binary) = encode_payload(&[text("40")], false);
        assert_eq!((&body[..], binary), (&b"2:40"[..], false));
    }

    #[test]
    fn malformed_payloads_are_refused_with_typed_errors() {
        let t = |s: &'static [u8]| decode_text_payload(&Bytes::from_static(s));
        assert_eq!(t(b""), Err(EngineError::Empty));
        assert_eq!(t(b"4hello"), Err(EngineError::V3Length), "no length");
        assert_eq!(t(b":4"), Err(EngineError::V3Length), "empty length");
        assert_eq!(t(b"x:4"), Err(EngineError::V3Length));
        assert_eq!(t(b"9:4abc"), Err(EngineError::V3Length), "too short");
        assert_eq!(t(b"2:4abc"), Err(EngineError::V3Length), "leftover");
        assert_eq!(t(b"99999999999:4"), Err(EngineError::V3Length));
        assert_eq!(
            t(b"1:\xf0\x9f\x98\x80"),
            Err(EngineError::V3Length),
            "half a pair"
        );
        assert_eq!(t(b"0:"), Err(EngineError::Empty));
        assert_eq!(t(b"1:9"), Err(EngineError::UnknownType('9')));
        assert_eq!(t(b"3:b4!"), Err(EngineError::Base64));
        assert_eq!(t(b"3:b5A"), Err(EngineError::V3BinaryType));
        assert_eq!(t(b"2:\xff\xfe"), Err(EngineError::Utf8));
        let b = |s: &'static [u8]| decode_binary_payload(&Bytes::from_static(s));
        assert_eq!(b(b""), Err(EngineError::Empty));
        assert_eq!(b(&[2, 1, 0xFF, b'4']), Err(EngineError::V3Length));
        assert_eq!(b(&[0, 1]), Err(EngineError::V3Length), "no 0xFF");
        assert_eq!(b(&[0, 0xFF]), Err(EngineError::V3Length), "no digits");
        assert_eq!(b(&[0, 12, 0xFF, b'4']), Err(EngineError::V3Length));
        assert_eq!(b(&[0, 5, 0xFF, b'4']), Err(EngineError::V3Length), "short");
        assert_eq!(b(&[0, 2, 0xFF, 0xC3, 0x28]), Err(EngineError::Utf8));
        assert_eq!(b(&[1, 2, 0xFF, 3, 1]), Err(EngineError::V3BinaryType));
        assert_eq!(b(&[0, 0, 0xFF]), Err(EngineError::Empty));
        assert_eq!(b(&[0; 20]), Err(EngineError::V3Length), "too many digits");
    }

    #[test]
    fn websocket_frames_carry_the_type() {
        assert_eq!(
            decode_binary_frame(Bytes::from_static(&[4, 9, 8])),
            Ok(EnginePacket::Binary(Bytes::from_static(&[9, 8])))
        );
        assert_eq!(
            decode_binary_frame(Bytes::from_static(&[2])),
            Err(EngineError::V3BinaryType)
        );
        assert_eq!(decode_binary_frame(Bytes::new()), Err(EngineError::Empty));
        assert_eq!(
            decode_text(Bytes::from_static(b"b4AQI=")),
            Ok(EnginePacket::Binary(Bytes::from_static(&[1, 2])))
        );
        assert_eq!(
            decode_text(Bytes::from_static(b"3probe")),
            Ok(EnginePacket::Pong(Bytes::from_static(b"probe")))
        );
        assert_eq!(base64_text(&[1, 2]), b"b4AQI=".to_vec());
        let bin = || Frame::Binary(Bytes::from_static(&[1, 2]));
        assert_eq!(
            websocket_frame(bin(), false),
            Frame::Binary(Bytes::from_static(&[4, 1, 2]))
        );
        assert_eq!(
            websocket_frame(bin(), true),
            Frame::Text(Bytes::from_static(b"b4AQI="))
        );
        assert_eq!(websocket_frame(text("42[]"), true), text("42[]"));
        // An emit with compress=False stays so.
        assert_eq!(
            websocket_frame(bin().plain(), false),
            Frame::PlainBinary(Bytes::from_static(&[4, 1, 2]))
        );
        assert_eq!(
            websocket_frame(bin().plain(), true),
            Frame::PlainText(Bytes::from_static(b"b4AQI="))
        );
    }
}
