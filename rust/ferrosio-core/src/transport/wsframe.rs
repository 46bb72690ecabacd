//! WebSocket framing, server side (RFC 6455): masked client frames in, unmasked frames out.
//!
//! Ours rather than tungstenite's so that an idle connection holds no buffer: the transport
//! reads into one scratch buffer per thread and only an incomplete frame is kept per connection
//! (see [`WsReader`]). The only extension is permessage-deflate ([`super::deflate`]): with it
//! negotiated, RSV1 marks a compressed message; every other reserved bit must be zero.

use std::ops::ControlFlow;

use bytes::Bytes;
use thiserror::Error;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes we send.
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Why the bytes a client sent are not acceptable WebSocket frames.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum WsFrameError {
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("websocket text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("websocket message larger than {0} bytes")]
    TooLarge(usize),
    #[error("websocket message is not valid permessage-deflate data")]
    BadDeflate,
}

impl WsFrameError {
    /// The close code that tells the client what it did wrong.
    pub fn close_code(&self) -> u16 {
        match self {
            WsFrameError::Protocol(_) => CLOSE_PROTOCOL,
            WsFrameError::InvalidUtf8 | WsFrameError::BadDeflate => CLOSE_INVALID_DATA,
            WsFrameError::TooLarge(_) => CLOSE_TOO_BIG,
        }
    }
}

/// A complete message (or control frame) from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum WsMessage {
    /// Checked to be valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The close frame's body, checked: empty, or a valid status code and a UTF-8 reason.
    /// Echoed as it is (RFC 6455 5.5.1), as the official server's `ws` does.
    Close(Bytes),
}

/// A status code a peer may send in a close frame (RFC 6455 7.4; the same rule as Node's
/// `ws`): 1000-1014 without 1004 (reserved), 1005 and 1006 (never on the wire), or the
/// registered/private range 3000-4999.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

struct Header {
    fin: bool,
    /// RSV1: a compressed message (permessage-deflate).
    rsv1: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: u64,
}

/// Parses a frame header; `Ok(None)` if `buf` does not hold all of it yet.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsFrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 {
        return Err(WsFrameError::Protocol("reserved bits set"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsFrameError::Protocol("client frame not masked"));
    }
    let (ext, payload_len) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (2, u64::from(u16::from_be_bytes([b[0], b[1]])))
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut n = [0u8; 8];
            n.copy_from_slice(b);
            let len = u64::from_be_bytes(n);
            if len >> 63 != 0 {
                return Err(WsFrameError::Protocol("payload length has its top bit set"));
            }
            (8, len)
        }
        n => (0, u64::from(n)),
    };
    let Some(m) = buf.get(2 + ext..6 + ext) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: b0 & 0x0F,
        mask: [m[0], m[1], m[2], m[3]],
        header_len: 6 + ext,
        payload_len,
    }))
}

/// XORs `buf` with the masking key, eight bytes at a time.
fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask) as u64;
    let m64 = m | (m << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ m64).to_ne_bytes());
    }
    // The chunks covered a multiple of 4 bytes, so the key starts over at index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Reassembles client messages from bytes as they arrive, in any split.
#[derive(Default)]
pub struct WsReader {
    /// An incomplete frame carried to the next read; empty, and unallocated, between frames.
    partial: Vec<u8>,
    /// The fragmented message being assembled: (is text, payload so far).
    /// Boxed: rare (browsers and Node's `ws` send whole messages), and this reader lives in
    /// every connection's task.
    fragments: Option<Box<(bool, Vec<u8>)>>,
    /// permessage-deflate was negotiated: RSV1 may be set on a message's first frame.
    inflate: bool,
    /// The fragmented message being assembled is compressed.
    fragments_deflated: bool,
}

impl WsReader {
    /// A reader for a connection that negotiated permessage-deflate.
    pub fn deflate() -> Self {
        WsReader {
            inflate: true,
            ..WsReader::default()
        }
    }

    /// Parses `data` (after whatever was carried over) and hands each complete message to
    /// `on_message`, until it breaks. An error means the connection must be closed with
    /// [`WsFrameError::close_code`]; messages before the bad frame were delivered.
    pub fn feed<F>(
        &mut self,
        data: &[u8],
        max_payload: usize,
        on_message: &mut F,
    ) -> Result<ControlFlow<()>, WsFrameError>
    where
        F: FnMut(WsMessage) -> ControlFlow<()>,
    {
        if self.partial.is_empty() {
            let (used, flow, frame_len) = self.parse(data, max_payload, on_message)?;
            if flow.is_continue() && used < data.len() {
                // Room for the whole frame once, not a read's worth at a time.
                self.partial.reserve_exact(frame_len.max(data.len() - used));
                self.partial.extend_from_slice(&data[used..]);
            }
            return Ok(flow);
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(data);
        let (used, flow, frame_len) = self.parse(&buf, max_payload, on_message)?;
        if flow.is_continue() && used < buf.len() {
            buf.drain(..used);
            buf.reserve_exact(frame_len.saturating_sub(buf.len()));
            self.partial = buf;
        }
        Ok(flow)
    }

    fn parse<F>(
        &mut self,
        data: &[u8],
        max_payload: usize,
        on_message: &mut F,
    ) -> Result<(usize, ControlFlow<()>, usize), WsFrameError>
    where
        F: FnMut(WsMessage) -> ControlFlow<()>,
    {
        let mut pos = 0;
        let mut incomplete_len = 0;
        while let Some(h) = parse_header(&data[pos..])? {
            let control = h.opcode & 0x8 != 0;
            if h.rsv1 && (!self.inflate || !matches!(h.opcode, OP_TEXT | OP_BINARY)) {
                return Err(WsFrameError::Protocol("reserved bits set"));
            }
            if control && h.payload_len > 125 {
                return Err(WsFrameError::Protocol("control frame over 125 bytes"));
            }
            let held = self.fragments.as_deref().map_or(0, |(_, v)| v.len() as u64);
            if !control && held + h.payload_len > max_payload as u64 {
                return Err(WsFrameError::TooLarge(max_payload));
            }
            let len = h.payload_len as usize;
            let end = pos + h.header_len + len;
            if data.len() < end {
                incomplete_len = end - pos;
                break;
            }
            let mut payload = data[pos + h.header_len..end].to_vec();
            unmask(&mut payload, h.mask);
            pos = end;
            if let Some(msg) = self.frame(h.fin, h.rsv1, h.opcode, payload, max_payload)? {
                if on_message(msg).is_break() {
                    return Ok((pos, ControlFlow::Break(()), 0));
                }
            }
        }
        Ok((pos, ControlFlow::Continue(()), incomplete_len))
    }

    fn frame(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: u8,
        payload: Vec<u8>,
        max_payload: usize,
    ) -> Result<Option<WsMessage>, WsFrameError> {
        match opcode {
            OP_TEXT | OP_BINARY => {
                if self.fragments.is_some() {
                    return Err(WsFrameError::Protocol(
                        "new message inside a fragmented one",
                    ));
                }
                let text = opcode == OP_TEXT;
                if fin {
                    return complete(text, rsv1, payload, max_payload).map(Some);
                }
                self.fragments = Some(Box::new((text, payload)));
                self.fragments_deflated = rsv1;
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some((_, held)) = self.fragments.as_deref_mut() else {
                    return Err(WsFrameError::Protocol("continuation without a message"));
                };
                held.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let (text, whole) = self.fragments.take().map(|b| *b).unwrap_or_default();
                complete(text, self.fragments_deflated, whole, max_payload).map(Some)
            }
            OP_CLOSE | OP_PING | OP_PONG if !fin => {
                Err(WsFrameError::Protocol("fragmented control frame"))
            }
            OP_CLOSE => match payload.len() {
                0 => Ok(Some(WsMessage::Close(Bytes::new()))),
                1 => Err(WsFrameError::Protocol("close frame with a 1-byte body")),
                _ if !is_valid_close_code(u16::from_be_bytes([payload[0], payload[1]])) => {
                    Err(WsFrameError::Protocol("invalid close code"))
                }
                _ if std::str::from_utf8(&payload[2..]).is_err() => Err(WsFrameError::InvalidUtf8),
                _ => Ok(Some(WsMessage::Close(Bytes::from(payload)))),
            },
            OP_PING => Ok(Some(WsMessage::Ping(Bytes::from(payload)))),
            OP_PONG => Ok(Some(WsMessage::Pong)),
            _ => Err(WsFrameError::Protocol("unknown opcode")),
        }
    }
}

fn complete(
    text: bool,
    deflated: bool,
    payload: Vec<u8>,
    max_payload: usize,
) -> Result<WsMessage, WsFrameError> {
    let payload = if deflated {
        super::deflate::inflate(&payload, max_payload)?
    } else {
        payload
    };
    if !text {
        return Ok(WsMessage::Binary(Bytes::from(payload)));
    }
    if std::str::from_utf8(&payload).is_err() {
        return Err(WsFrameError::InvalidUtf8);
    }
    Ok(WsMessage::Text(Bytes::from(payload)))
}

/// Appends one unmasked, unfragmented server frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_header(out, 0x80 | opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends an unmasked frame whose payload is `prefix` then `payload` (Engine.IO v3's binary
/// frames: the packet type byte ahead of the data), without joining them first.
pub fn write_frame_prefixed(out: &mut Vec<u8>, opcode: u8, prefix: u8, payload: &[u8]) {
    write_header(out, 0x80 | opcode, 1 + payload.len());
    out.push(prefix);
    out.extend_from_slice(payload);
}

/// Appends one unmasked, unfragmented server frame whose payload is permessage-deflate data
/// (RSV1 set).
pub fn write_deflated_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_header(out, 0xC0 | opcode, payload.len());
    out.extend_from_slice(payload);
}

/// The header of an unmasked frame of `n` payload bytes whose first byte is `first` (FIN,
/// RSV bits, opcode); room reserved for the payload.
#[inline]
fn write_header(out: &mut Vec<u8>, first: u8, n: usize) {
    out.reserve(10 + n);
    out.push(first);
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

/// Appends a close frame with `code` (none: an empty close frame).
pub fn write_close(out: &mut Vec<u8>, code: Option<u16>) {
    match code {
        Some(code) => write_frame(out, OP_CLOSE, &code.to_be_bytes()),
        None => write_frame(out, OP_CLOSE, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefixed_frame_is_the_frame_of_prefix_and_payload() {
        for n in [0, 124, 125, 126, 65_534, 65_535, 70_000] {
            let payload = vec![7u8; n];
            let mut joined = vec![4u8];
            joined.extend_from_slice(&payload);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_frame(&mut a, OP_BINARY, &joined);
            write_frame_prefixed(&mut b, OP_BINARY, 4, &payload);
            assert_eq!(a, b, "{n} bytes");
        }
    }

    /// A masked client frame, as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let n = payload.len();
        if n < 126 {
            out.push(0x80 | n as u8);
        } else if n <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn read_all(chunks: &[&[u8]], max: usize) -> Result<Vec<WsMessage>, WsFrameError> {
        let mut r = WsReader::default();
        let mut got = Vec::new();
        for c in chunks {
            let _ = r.feed(c, max, &mut |m| {
                got.push(m);
                ControlFlow::Continue(())
            })?;
        }
        Ok(got)
    }

    #[test]
    fn messages_survive_any_split_and_leave_nothing_held() {
        let big = vec![b'x'; 70_000];
        let mut wire = client_frame(true, OP_TEXT, b"42[\"echo\",1]", [1, 2, 3, 4]);
        wire.extend(client_frame(true, OP_BINARY, &[0, 255, 7], [9, 8, 7, 6]));
        wire.extend(client_frame(true, OP_TEXT, &big, [0xAA, 0x55, 0, 1]));
        wire.extend(client_frame(true, OP_PING, b"hi", [5, 5, 5, 5]));
        let expected = vec![
            WsMessage::Text(Bytes::from_static(b"42[\"echo\",1]")),
            WsMessage::Binary(Bytes::from_static(&[0, 255, 7])),
            WsMessage::Text(Bytes::from(big.clone())),
            WsMessage::Ping(Bytes::from_static(b"hi")),
        ];
        for step in [1, 2, 3, 7, 100, 4096, wire.len()] {
            let chunks: Vec<&[u8]> = wire.chunks(step).collect();
            let mut r = WsReader::default();
            let mut got = Vec::new();
            for c in &chunks {
                let flow = r
                    .feed(c, 1 << 20, &mut |m| {
                        got.push(m);
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                assert!(flow.is_continue());
            }
            assert_eq!(got, expected, "split every {step} bytes");
            assert!(r.fragments.is_none(), "no message left half-assembled");
            assert_eq!(r.partial.capacity(), 0, "no buffer kept once idle");
        }
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_interleave() {
        let mut wire = client_frame(false, OP_TEXT, b"42[\"a", [1, 1, 1, 1]);
        wire.extend(client_frame(true, OP_PING, b"", [2, 2, 2, 2]));
        wire.extend(client_frame(false, OP_CONTINUATION, b"bc\",", [3, 3, 3, 3]));
        wire.extend(client_frame(true, OP_CONTINUATION, b"1]", [4, 4, 4, 4]));
        let got = read_all(&[&wire], 100).unwrap();
        assert_eq!(
            got,
            vec![
                WsMessage::Ping(Bytes::new()),
                WsMessage::Text(Bytes::from_static(b"42[\"abc\",1]"))
            ]
        );
    }

    #[test]
    fn bad_frames_name_their_close_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x81, 0x02, b'h', b'i'], CLOSE_PROTOCOL), // unmasked
            (client_frame(true, 0x3, b"", [0; 4]), CLOSE_PROTOCOL),
            (
                {
                    let mut f = client_frame(true, OP_TEXT, b"x", [0; 4]);
                    f[0] |= 0x40; // RSV1 without permessage-deflate
                    f
                },
                CLOSE_PROTOCOL,
            ),
            (
                client_frame(true, OP_CONTINUATION, b"x", [0; 4]),
                CLOSE_PROTOCOL,
            ),
            (client_frame(false, OP_PING, b"", [0; 4]), CLOSE_PROTOCOL),
            (
                client_frame(true, OP_PING, &[0; 126], [0; 4]),
                CLOSE_PROTOCOL,
            ),
            (client_frame(true, OP_CLOSE, &[3], [0; 4]), CLOSE_PROTOCOL),
            (
                client_frame(true, OP_TEXT, &[0xC3, 0x28], [7; 4]),
                CLOSE_INVALID_DATA,
            ),
            (
                client_frame(true, OP_BINARY, &[0; 101], [0; 4]),
                CLOSE_TOO_BIG,
            ),
            (
                {
                    let mut f = client_frame(false, OP_TEXT, &[b'a'; 60], [0; 4]);
                    f.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 41], [0; 4]));
                    f
                },
                CLOSE_TOO_BIG,
            ),
        ];
        for (wire, code) in cases {
            let err = read_all(&[&wire], 100).unwrap_err();
            assert_eq!(err.close_code(), code, "{err} for {wire:?}");
        }
    }

    #[test]
    fn compressed_messages_are_inflated_when_negotiated() {
        let text = Bytes::from(format!("42[\"big\",\"{}\"]", "ab".repeat(3000)));
        let deflated = super::super::deflate::deflate(&text).unwrap();
        let mut whole = client_frame(true, OP_TEXT, &deflated, [1, 2, 3, 4]);
        whole[0] |= 0x40;
        // The same message in two fragments: RSV1 on the first only.
        let (a, b) = deflated.split_at(deflated.len() / 2);
        let mut split = client_frame(false, OP_TEXT, a, [5, 6, 7, 8]);
        split[0] |= 0x40;
        split.extend(client_frame(true, OP_CONTINUATION, b, [9, 9, 9, 9]));
        for wire in [whole, split] {
            let mut r = WsReader::deflate();
            let mut got = Vec::new();
            let _ = r
                .feed(&wire, 1 << 20, &mut |m| {
                    got.push(m);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(got, vec![WsMessage::Text(text.clone())]);
            let err = read_all(&[&wire], 1 << 20).unwrap_err();
            assert_eq!(
                err.close_code(),
                CLOSE_PROTOCOL,
                "RSV1 without the extension"
            );
            let mut small = WsReader::deflate();
            let err = small.feed(&wire, 1000, &mut |_| ControlFlow::Continue(()));
            assert_eq!(
                err,
                Err(WsFrameError::TooLarge(1000)),
                "bound on the inflated size"
            );
        }
        let mut ping = client_frame(true, OP_PING, b"", [0; 4]);
        ping[0] |= 0x40;
        let mut r = WsReader::deflate();
        let err = r.feed(&ping, 100, &mut |_| ControlFlow::Continue(()));
        assert_eq!(
            err.unwrap_err().close_code(),
            CLOSE_PROTOCOL,
            "RSV1 on a control frame"
        );
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        // Only the header of a 1 GiB frame has arrived: refused now, nothing buffered for it.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        assert_eq!(
            read_all(&[&header], 1 << 20).unwrap_err(),
            WsFrameError::TooLarge(1 << 20)
        );
    }

    #[test]
    fn break_stops_delivery_and_close_codes_are_read() {
        let mut wire = client_frame(true, OP_CLOSE, &1001u16.to_be_bytes(), [1, 2, 3, 4]);
        wire.extend(client_frame(true, OP_TEXT, b"late", [1, 2, 3, 4]));
        let mut r = WsReader::default();
        let mut got = Vec::new();
        let flow = r
            .feed(&wire, 100, &mut |m| {
                got.push(m);
                ControlFlow::Break(())
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(
            got,
            vec![WsMessage::Close(Bytes::copy_from_slice(
                &1001u16.to_be_bytes()
            ))]
        );
    }

    #[test]
    fn close_frames_are_checked_as_node_ws_does() {
        for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice("bye é".as_bytes());
            let wire = client_frame(true, OP_CLOSE, &body, [9, 8, 7, 6]);
            assert_eq!(
                read_all(&[&wire], 100).unwrap(),
                vec![WsMessage::Close(Bytes::from(body))],
                "{code}"
            );
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535] {
            let wire = client_frame(true, OP_CLOSE, &code.to_be_bytes(), [0; 4]);
            let err = read_all(&[&wire], 100).unwrap_err();
            assert_eq!(err.close_code(), CLOSE_PROTOCOL, "{code}");
        }
        let mut body = 1000u16.to_be_bytes().to_vec();
        body.extend_from_slice(&[0xFF, 0xFE]);
        let err = read_all(&[&client_frame(true, OP_CLOSE, &body, [0; 4])], 100).unwrap_err();
        assert_eq!(err.close_code(), CLOSE_INVALID_DATA);
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        for (n, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
        ] {
            let mut out = Vec::new();
            write_frame(&mut out, OP_TEXT, &vec![b'a'; n]);
            assert_eq!(out.len(), header + n, "payload {n}");
            assert_eq!(out[0], 0x81);
        }
        let mut out = Vec::new();
        write_close(&mut out, Some(CLOSE_TOO_BIG));
        assert_eq!(out, vec![0x88, 2, 0x03, 0xF1]);
    }

    #[test]
    fn unmask_matches_the_byte_by_byte_definition() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
