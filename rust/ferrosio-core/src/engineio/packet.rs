//! Engine.IO v4 packets: one ASCII type digit, then an optional payload.
//!
//! Outbound packets are built once as [`Frame`]s (type digit included) so a broadcast can hand
//! the same bytes to every recipient; inbound packets borrow from the received buffer.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::EngineError;

/// The record separator between packets of a polling payload.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// A decoded inbound Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket {
    Open(Bytes),
    Close,
    Ping(Bytes),
    Pong(Bytes),
    /// A text message; the payload without the leading `4`.
    Message(Bytes),
    /// A binary message (a WebSocket binary frame, or `b<base64>` on polling).
    Binary(Bytes),
    Upgrade,
    Noop,
}

impl EnginePacket {
    /// Decodes a text packet (a WebSocket text frame or one polling record).
    pub fn decode_text(data: Bytes) -> Result<Self, EngineError> {
        let Some(&kind) = data.first() else {
            return Err(EngineError::Empty);
        };
        let rest = data.slice(1..);
        Ok(match kind {
            b'0' => Self::Open(rest),
            b'1' => Self::Close,
            b'2' => Self::Ping(rest),
            b'3' => Self::Pong(rest),
            b'4' => Self::Message(rest),
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            b'b' => Self::Binary(decode_base64(&rest)?),
            other => return Err(EngineError::UnknownType(other as char)),
        })
    }

    /// Decodes a polling payload: records separated by `\x1e`.
    pub fn decode_payload(body: &Bytes) -> Result<Vec<Self>, EngineError> {
        if body.is_empty() {
            return Err(EngineError::Empty);
        }
        let mut out = Vec::new();
        let mut start = 0;
        for end in memchr::memchr_iter(RECORD_SEPARATOR, body).chain(std::iter::once(body.len())) {
            out.push(Self::decode_text(body.slice(start..end))?);
            start = end + 1;
        }
        Ok(out)
    }
}

fn decode_base64(data: &[u8]) -> Result<Bytes, EngineError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map(Bytes::from)
        .map_err(|_| EngineError::Base64)
}

/// An encoded outbound packet, ready for any transport.
///
/// `Text` holds the whole Engine.IO packet including its type digit (`4...`, `2`, `6`);
/// `Binary` holds raw bytes (a WebSocket binary frame; `b<base64>` on polling).
/// `PlainText` and `PlainBinary` are the same for a packet emitted with `compress=False`
/// (Node's `socket.compress(false)`): never deflated on a WebSocket, and a polling response
/// made only of them is not compressed either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Bytes),
    Binary(Bytes),
    PlainText(Bytes),
    PlainBinary(Bytes),
}

impl Frame {
    pub const PING: Frame = Frame::Text(Bytes::from_static(b"2"));
    pub const CLOSE: Frame = Frame::Text(Bytes::from_static(b"1"));
    pub const NOOP: Frame = Frame::Text(Bytes::from_static(b"6"));

    /// Size on the wire, used for buffer accounting.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// The packet's bytes, whatever the variant.
    pub fn payload(&self) -> &Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) | Frame::PlainText(b) | Frame::PlainBinary(b) => b,
        }
    }

    /// A binary frame (an attachment, or a bare Engine.IO binary message).
    pub fn is_binary(&self) -> bool {
        matches!(self, Frame::Binary(_) | Frame::PlainBinary(_))
    }

    /// False for a packet emitted with `compress=False`.
    pub fn compressible(&self) -> bool {
        matches!(self, Frame::Text(_) | Frame::Binary(_))
    }

    /// The same frame, marked never to be compressed.
    pub fn plain(self) -> Frame {
        match self {
            Frame::Text(b) => Frame::PlainText(b),
            Frame::Binary(b) => Frame::PlainBinary(b),
            plain => plain,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pong answering a ping: `3` and the ping's payload (`2probe` -> `3probe`).
    pub fn pong(payload: &[u8]) -> Frame {
        let mut pong = Vec::with_capacity(1 + payload.len());
        pong.push(b'3');
        pong.extend_from_slice(payload);
        Frame::Text(pong.into())
    }

    /// Builds the open packet sent on handshake.
    pub fn open(
        sid: &str,
        upgrades: &[&str],
        ping_interval_ms: u64,
        ping_timeout_ms: u64,
        max_payload: usize,
    ) -> Frame {
        let open = serde_json::json!({
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": ping_interval_ms,
            "pingTimeout": ping_timeout_ms,
            "maxPayload": max_payload,
        });
        let mut buf = BytesMut::with_capacity(128);
        buf.put_u8(b'0');
        buf.extend_from_slice(open.to_string().as_bytes());
        Frame::Text(buf.freeze())
    }
}

/// Joins frames into one polling response body (`\x1e`-separated, binary as `b<base64>`).
pub fn encode_payload<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(RECORD_SEPARATOR);
        }
        match frame {
            Frame::Text(b) | Frame::PlainText(b) => out.extend_from_slice(b),
            Frame::Binary(b) | Frame::PlainBinary(b) => {
                out.put_u8(b'b');
                let start = out.len();
                let n = base64::encoded_len(b.len(), true).unwrap_or(0);
                out.resize(start + n, 0);
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(b, &mut out[start..])
                    .unwrap_or(0);
                out.truncate(start + written);
            }
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_text_type() {
        let t = |s: &'static str| EnginePacket::decode_text(Bytes::from_static(s.as_bytes()));
        assert_eq!(t("1"), Ok(EnginePacket::Close));
        assert_eq!(
            t("2probe"),
            Ok(EnginePacket::Ping(Bytes::from_static(b"probe")))
        );
        assert_eq!(t("3"), Ok(EnginePacket::Pong(Bytes::new())));
        assert_eq!(
            t("4hello"),
            Ok(EnginePacket::Message(Bytes::from_static(b"hello")))
        );
        assert_eq!(t("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(t("6"), Ok(EnginePacket::Noop));
        assert_eq!(
            t("bAQIDBA=="),
            Ok(EnginePacket::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        );
    }

    #[test]
    fn rejects_malformed_packets_with_typed_errors() {
        let t = |s: &'static [u8]| EnginePacket::decode_text(Bytes::from_static(s));
        assert_eq!(t(b""), Err(EngineError::Empty));
        assert_eq!(t(b"9"), Err(EngineError::UnknownType('9')));
        assert_eq!(t(b"b!!!"), Err(EngineError::Base64));
    }

    #[test]
    fn payload_round_trip() {
        let frames = vec![
            Frame::Text(Bytes::from_static(b"4hello")),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::PING,
        ];
        let body = encode_payload(&frames);
        assert_eq!(&body[..], b"4hello\x1ebAQIDBA==\x1e2");
        let decoded = EnginePacket::decode_payload(&body).unwrap();
        assert_eq!(
            decoded,
            vec![
                EnginePacket::Message(Bytes::from_static(b"hello")),
                EnginePacket::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                EnginePacket::Ping(Bytes::new()),
            ]
        );
    }

    #[test]
    fn payload_with_empty_record_is_an_error() {
        assert_eq!(
            EnginePacket::decode_payload(&Bytes::from_static(b"4a\x1e")),
            Err(EngineError::Empty)
        );
        assert_eq!(
            EnginePacket::decode_payload(&Bytes::new()),
            Err(EngineError::Empty)
        );
    }

    #[test]
    fn pong_echoes_the_ping_payload() {
        assert_eq!(Frame::pong(b""), Frame::Text(Bytes::from_static(b"3")));
        assert_eq!(
            Frame::pong(b"probe"),
            Frame::Text(Bytes::from_static(b"3probe"))
        );
    }

    #[test]
    fn open_packet_has_integer_milliseconds() {
        let Frame::Text(b) = Frame::open("abc", &[], 300, 200, 1_000_000) else {
            panic!()
        };
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with("0{"));
        let v: serde_json::Value = serde_json::from_str(&s[1..]).unwrap();
        assert_eq!(v["pingInterval"], 300);
        assert_eq!(v["pingTimeout"], 200);
        assert_eq!(v["upgrades"], serde_json::json!([]));
        assert_eq!(v["maxPayload"], 1_000_000);
        assert_eq!(v["sid"], "abc");
    }
}
