//! Socket.IO v5 packets: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`.
//!
//! The JSON payload stays raw bytes: the Python layer decodes it once with orjson. The codec
//! only checks what the protocol requires of each packet type, so that malformed input is
//! refused here and never reaches a handler.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// Most attachments one packet may announce (guards the reassembly buffer).
pub const MAX_ATTACHMENTS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_byte(b: u8) -> Result<Self, ProtocolError> {
        Ok(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            other => return Err(ProtocolError::UnknownType(other as char)),
        })
    }

    fn digit(self) -> u8 {
        b'0' + self as u8
    }

    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// A decoded Socket.IO packet header plus its raw JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPacket {
    pub kind: PacketType,
    /// Namespace, `/` when absent on the wire.
    pub nsp: Bytes,
    pub attachments: u32,
    pub ack_id: Option<u64>,
    /// Raw JSON (possibly empty).
    pub data: Bytes,
}

impl SocketPacket {
    /// Decodes the text of one Engine.IO message (without the Engine.IO `4`).
    pub fn decode(text: Bytes) -> Result<Self, ProtocolError> {
        let bytes = &text[..];
        let Some(&first) = bytes.first() else {
            return Err(ProtocolError::Empty);
        };
        let kind = PacketType::from_byte(first)?;
        let mut i = 1;

        let mut attachments = 0u32;
        if kind.is_binary() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start || i >= bytes.len() || bytes[i] != b'-' {
                return Err(ProtocolError::BadAttachments);
            }
            let n = parse_u64(&bytes[start..i]).ok_or(ProtocolError::BadAttachments)?;
            if n > MAX_ATTACHMENTS {
                return Err(ProtocolError::TooManyAttachments(n));
            }
            attachments = n as u32;
            i += 1;
        }

        let nsp = if bytes.get(i) == Some(&b'/') {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            // v4 clients appended a query to the namespace (`/admin?x=1`); it is not part of it.
            let end = memchr::memchr(b'?', &bytes[start..i]).map_or(i, |q| start + q);
            let nsp = text.slice(start..end);
            if i < bytes.len() {
                i += 1; // the comma
            }
            nsp
        } else {
            Bytes::from_static(b"/")
        };

        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let ack_id = if i > start {
            Some(parse_u64(&bytes[start..i]).ok_or(ProtocolError::BadAckId)?)
        } else {
            None
        };
        let data = text.slice(i..);
        let packet = SocketPacket {
            kind,
            nsp,
            attachments,
            ack_id,
            data,
        };
        packet.validate()?;
        Ok(packet)
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        let data = trim_ascii(&self.data);
        match self.kind {
            PacketType::Connect => {
                if !data.is_empty() && (data[0] != b'{' || !is_json(data)) {
                    return Err(ProtocolError::BadPayload(
                        "CONNECT payload must be an object",
                    ));
                }
            }
            PacketType::Disconnect => {}
            PacketType::Event | PacketType::BinaryEvent => {
                if data.first() != Some(&b'[') || !is_json(data) {
                    return Err(ProtocolError::BadPayload("EVENT payload must be an array"));
                }
                if trim_ascii(&data[1..]).first() != Some(&b'"') {
                    return Err(ProtocolError::BadPayload(
                        "EVENT needs a string event name first",
                    ));
                }
            }
            PacketType::Ack | PacketType::BinaryAck => {
                if self.ack_id.is_none() {
                    return Err(ProtocolError::BadAckId);
                }
                if data.first() != Some(&b'[') || !is_json(data) {
                    return Err(ProtocolError::BadPayload("ACK payload must be an array"));
                }
            }
            PacketType::ConnectError => {
                if data.first() != Some(&b'{') || !is_json(data) {
                    return Err(ProtocolError::BadPayload(
                        "CONNECT_ERROR payload must be an object",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn is_json(data: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
}

/// Appends `/nsp,` unless the namespace is the main one.
fn put_nsp(buf: &mut BytesMut, nsp: &str) {
    if nsp != "/" {
        buf.extend_from_slice(nsp.as_bytes());
        buf.put_u8(b',');
    }
}

/// Encodes a whole outbound Socket.IO packet as Engine.IO message text (`4` included), in one
/// allocation: the bytes a WebSocket text frame or a polling record carries.
pub fn encode_message(
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    attachments: usize,
    data: &[u8],
) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + nsp.len() + 24);
    buf.put_u8(b'4');
    buf.put_u8(kind.digit());
    if kind.is_binary() {
        put_decimal(&mut buf, attachments as u64);
        buf.put_u8(b'-');
    }
    put_nsp(&mut buf, nsp);
    if let Some(id) = ack_id {
        put_decimal(&mut buf, id);
    }
    buf.extend_from_slice(data);
    buf.freeze()
}

/// Writes `n` in decimal without allocating.
fn put_decimal(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// `40{"sid":"…"}` / `40/nsp,{"sid":"…"}`: the server's CONNECT reply.
pub fn encode_connect_reply(nsp: &str, sid: &str) -> Bytes {
    let data = format!("{{\"sid\":\"{sid}\"}}");
    encode_message(PacketType::Connect, nsp, None, 0, data.as_bytes())
}

/// `40/nsp,{"sid":…,"pid":…}`: the CONNECT reply when connection state recovery is on, with
/// the socket's private session id (Node's `pid`).
pub fn encode_connect_reply_with_pid(nsp: &str, sid: &str, pid: &str) -> Bytes {
    let data = format!("{{\"sid\":\"{sid}\",\"pid\":\"{pid}\"}}");
    encode_message(PacketType::Connect, nsp, None, 0, data.as_bytes())
}

/// `41/nsp,` (`41` for the main namespace).
pub fn encode_disconnect(nsp: &str) -> Bytes {
    encode_message(PacketType::Disconnect, nsp, None, 0, b"")
}

/// `44/nsp,{"message":…}`: a refused CONNECT. `data` is the JSON object.
pub fn encode_connect_error(nsp: &str, data: &[u8]) -> Bytes {
    encode_message(PacketType::ConnectError, nsp, None, 0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &'static str) -> Result<SocketPacket, ProtocolError> {
        SocketPacket::decode(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn connect_variants() {
        let p = d("0").unwrap();
        assert_eq!(
            (p.kind, &p.nsp[..], &p.data[..]),
            (PacketType::Connect, &b"/"[..], &b""[..])
        );
        let p = d("0/admin,{\"token\":\"secret\"}").unwrap();
        assert_eq!(&p.nsp[..], b"/admin");
        assert_eq!(&p.data[..], br#"{"token":"secret"}"#);
        let p = d("0/custom").unwrap();
        assert_eq!(&p.nsp[..], b"/custom");
        assert!(p.data.is_empty());
        let p = d("2/admin?x=1,[\"a\"]").unwrap();
        assert_eq!(&p.nsp[..], b"/admin");
        let p = d("0/custom,").unwrap();
        assert_eq!(&p.nsp[..], b"/custom");
        assert_eq!(
            d("0[1]"),
            Err(ProtocolError::BadPayload(
                "CONNECT payload must be an object"
            ))
        );
    }

    #[test]
    fn events_and_acks() {
        let p = d("212[\"foo\"]").unwrap();
        assert_eq!(
            (p.kind, p.ack_id, &p.data[..]),
            (PacketType::Event, Some(12), &b"[\"foo\"]"[..])
        );
        let p = d("2/admin,[\"bar\"]").unwrap();
        assert_eq!((&p.nsp[..], p.ack_id), (&b"/admin"[..], None));
        let p = d("3/admin,13[\"bar\"]").unwrap();
        assert_eq!(
            (p.kind, &p.nsp[..], p.ack_id),
            (PacketType::Ack, &b"/admin"[..], Some(13))
        );
        let p = d("312[]").unwrap();
        assert_eq!(&p.data[..], b"[]");
    }

    #[test]
    fn binary_header() {
        let p = d("52-/admin,789[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]").unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.ack_id),
            (PacketType::BinaryEvent, 2, Some(789))
        );
        assert_eq!(&p.nsp[..], b"/admin");
        let p = d("61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]").unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.ack_id),
            (PacketType::BinaryAck, 1, Some(15))
        );
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        assert_eq!(d(""), Err(ProtocolError::Empty));
        assert_eq!(d("abc"), Err(ProtocolError::UnknownType('a')));
        assert_eq!(d("9"), Err(ProtocolError::UnknownType('9')));
        assert!(matches!(d("2{}"), Err(ProtocolError::BadPayload(_))));
        assert!(matches!(d("2abc["), Err(ProtocolError::BadPayload(_))));
        assert!(matches!(d("2[1]"), Err(ProtocolError::BadPayload(_))));
        assert!(matches!(d("2[]"), Err(ProtocolError::BadPayload(_))));
        assert!(matches!(d("2[\"a\""), Err(ProtocolError::BadPayload(_))));
        assert!(matches!(d("2"), Err(ProtocolError::BadPayload(_))));
        assert_eq!(d("3[]"), Err(ProtocolError::BadAckId));
        assert_eq!(
            d("299999999999999999999999[\"a\"]"),
            Err(ProtocolError::BadAckId)
        );
        assert_eq!(d("5[\"a\"]"), Err(ProtocolError::BadAttachments));
        assert_eq!(d("51["), Err(ProtocolError::BadAttachments));
        assert_eq!(
            d("599999-[\"a\"]"),
            Err(ProtocolError::TooManyAttachments(99999))
        );
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix of a few tricky inputs, plus byte noise.
        let seeds: [&[u8]; 4] = [
            b"52-/admin,789[\"x\",{}]",
            b"0/a,{\"t\":1}",
            b"3/n,12[]",
            b"41/x,",
        ];
        for seed in seeds {
            for n in 0..=seed.len() {
                let _ = SocketPacket::decode(Bytes::copy_from_slice(&seed[..n]));
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..24);
            let v: Vec<u8> = (0..len)
                .map(|_| b"0123456-/,[]{}\"a \xff"[rng.usize(0..18)])
                .collect();
            let _ = SocketPacket::decode(Bytes::from(v));
        }
    }

    #[test]
    fn encodes_exact_bytes() {
        assert_eq!(
            &encode_message(PacketType::Event, "/", None, 0, b"[\"foo\"]")[..],
            b"42[\"foo\"]"
        );
        assert_eq!(
            &encode_message(PacketType::Ack, "/admin", Some(13), 0, b"[\"bar\"]")[..],
            b"43/admin,13[\"bar\"]"
        );
        assert_eq!(
            &encode_message(PacketType::BinaryAck, "/", Some(789), 2, b"[1]")[..],
            b"462-789[1]"
        );
        assert_eq!(
            &encode_connect_reply("/", "abc")[..],
            b"40{\"sid\":\"abc\"}"
        );
        assert_eq!(
            &encode_connect_reply("/admin", "abc")[..],
            b"40/admin,{\"sid\":\"abc\"}"
        );
        assert_eq!(&encode_disconnect("/")[..], b"41");
        assert_eq!(&encode_disconnect("/admin")[..], b"41/admin,");
        assert_eq!(
            &encode_connect_error("/random", br#"{"message":"Invalid namespace"}"#)[..],
            b"44/random,{\"message\":\"Invalid namespace\"}"
        );
    }
}
