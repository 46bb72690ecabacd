//! Entry points for the fuzz targets in `/fuzz` (feature `fuzzing` only).
//!
//! Each function runs one input through the real code and checks what must hold for any input.
//! Errors are expected answers to bad input; a panic here is a bug: either the code under test
//! panicked, or one of the invariants below does not hold.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bridge::InboundQueue;
use crate::config::ServerConfig;
use crate::engineio::packet::{encode_payload, EnginePacket, Frame};
use crate::socketio::packet::{encode_message, SocketPacket};
use crate::transport::wsframe::{
    WsFrameError, WsMessage, WsReader, CLOSE_INVALID_DATA, CLOSE_PROTOCOL, CLOSE_TOO_BIG,
};

/// Decodes one Socket.IO packet; a packet that decodes must encode back to the same packet.
pub fn decode_socket_packet(data: &[u8]) {
    let Ok(packet) = SocketPacket::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    // The encoder takes the namespace as text; the binding refuses non-UTF-8 ones the same way.
    let Ok(nsp) = std::str::from_utf8(&packet.nsp) else {
        return;
    };
    // `1/,/x` (an explicit main namespace, then a payload starting with `/`) has no shorter
    // form: the encoder omits `/,`, and `1/x` reads as namespace `/x`. Only DISCONNECT, which
    // never carries a payload in practice, accepts such a payload at all.
    if nsp == "/" && packet.ack_id.is_none() && packet.data.first() == Some(&b'/') {
        return;
    }
    let wire = encode_message(
        packet.kind,
        nsp,
        packet.ack_id,
        packet.attachments as usize,
        &packet.data,
    );
    assert_eq!(wire.first(), Some(&b'4'), "an Engine.IO message");
    let again = SocketPacket::decode(wire.slice(1..));
    assert_eq!(
        again.as_ref(),
        Ok(&packet),
        "round trip of {data:?} via {wire:?}"
    );
}

/// Decodes one msgpack-parser packet; a packet that decodes must encode (from its JSON form
/// and attachments, as Python hands packets over) back to the same packet and attachments.
pub fn decode_msgpack_packet(data: &[u8]) {
    let Ok((packet, attachments)) = crate::socketio::msgpack::decode(data, 10_000) else {
        return;
    };
    assert_eq!(packet.attachments as usize, attachments.len());
    // A peer's own `{"_placeholder": true, "num": n}` maps are ambiguous with the binaries'
    // (in socket.io-parser too): such packets need not round-trip.
    if memchr::memmem::find_iter(&packet.data, b"_placeholder").count() != attachments.len() {
        return;
    }
    let Ok(nsp) = std::str::from_utf8(&packet.nsp) else {
        panic!("a decoded namespace is UTF-8");
    };
    let wire = crate::socketio::msgpack::encode(
        packet.kind,
        nsp,
        packet.ack_id,
        &packet.data,
        &attachments,
    )
    .expect("decoded JSON encodes");
    let again = crate::socketio::msgpack::decode(&wire, 10_000);
    assert_eq!(
        again.as_ref(),
        Ok(&(packet, attachments)),
        "round trip of {data:?} via {wire:?}"
    );
}

/// Decodes a polling payload; a payload that decodes must re-encode to the same packets.
pub fn decode_engine_payload(data: &[u8]) {
    let Ok(packets) = EnginePacket::decode_payload(&Bytes::copy_from_slice(data)) else {
        return;
    };
    assert_eq!(
        packets.len(),
        memchr::memchr_iter(crate::engineio::packet::RECORD_SEPARATOR, data).count() + 1,
        "one packet per record"
    );
    let text = |digit: u8, rest: &[u8]| {
        let mut v = Vec::with_capacity(1 + rest.len());
        v.push(digit);
        v.extend_from_slice(rest);
        Frame::Text(Bytes::from(v))
    };
    let frames: Vec<Frame> = packets
        .iter()
        .map(|p| match p {
            EnginePacket::Open(rest) => text(b'0', rest),
            EnginePacket::Close => Frame::CLOSE,
            EnginePacket::Ping(rest) => text(b'2', rest),
            EnginePacket::Pong(rest) => text(b'3', rest),
            EnginePacket::Message(rest) => text(b'4', rest),
            EnginePacket::Upgrade => text(b'5', b""),
            EnginePacket::Noop => Frame::NOOP,
            EnginePacket::Binary(b) => Frame::Binary(b.clone()),
        })
        .collect();
    let body = encode_payload(&frames);
    let again = EnginePacket::decode_payload(&body);
    assert_eq!(
        again.as_ref(),
        Ok(&packets),
        "round trip of {data:?} via {body:?}"
    );
}

/// Decodes an Engine.IO v3 polling payload: the first byte picks the kind (even: a text
/// payload, odd: a binary one), the rest is the body. A payload that decodes must re-encode
/// (as text with base64, and as the client takes it without base64) to the same packets.
pub fn decode_engine_v3_payload(data: &[u8]) {
    use crate::engineio::v3;
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let decoded = if kind % 2 == 0 {
        v3::decode_text_payload(&body)
    } else {
        v3::decode_binary_payload(&body)
    };
    let Ok(packets) = decoded else {
        return;
    };
    let frames: Vec<Frame> = packets.iter().map(as_frame).collect();
    for base64 in [true, false] {
        let (wire, binary) = v3::encode_payload(&frames, base64);
        let again = if binary {
            v3::decode_binary_payload(&wire)
        } else {
            v3::decode_text_payload(&wire)
        };
        assert_eq!(
            again.as_ref(),
            Ok(&packets),
            "round trip of {data:?} via {wire:?}"
        );
    }
}

/// The outbound frame that carries `packet`.
fn as_frame(packet: &EnginePacket) -> Frame {
    let text = |digit: u8, rest: &[u8]| {
        let mut v = Vec::with_capacity(1 + rest.len());
        v.push(digit);
        v.extend_from_slice(rest);
        Frame::Text(Bytes::from(v))
    };
    match packet {
        EnginePacket::Open(rest) => text(b'0', rest),
        EnginePacket::Close => Frame::CLOSE,
        EnginePacket::Ping(rest) => text(b'2', rest),
        EnginePacket::Pong(rest) => text(b'3', rest),
        EnginePacket::Message(rest) => text(b'4', rest),
        EnginePacket::Upgrade => text(b'5', b""),
        EnginePacket::Noop => Frame::NOOP,
        EnginePacket::Binary(b) => Frame::Binary(b.clone()),
    }
}

/// Everything a [`WsReader`] makes of a byte stream: the messages, then the error if any.
type WsOutcome = (Vec<WsMessage>, Option<WsFrameError>);

fn read_ws<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, max_payload: usize) -> WsOutcome {
    let mut reader = WsReader::default();
    let mut messages = Vec::new();
    for chunk in chunks {
        let fed = reader.feed(chunk, max_payload, &mut |m| {
            messages.push(m);
            ControlFlow::Continue(())
        });
        if let Err(e) = fed {
            return (messages, Some(e));
        }
    }
    (messages, None)
}

/// Feeds `wire` to a [`WsReader`] whole, cut at `splits` (chunk lengths; what is left is the
/// last chunk), and one byte at a time: all three must give the same messages and error.
pub fn feed_ws_frames(wire: &[u8], max_payload: usize, splits: &[usize]) {
    let whole = read_ws([wire], max_payload);
    for m in &whole.0 {
        if let WsMessage::Text(t) = m {
            assert!(std::str::from_utf8(t).is_ok(), "text messages are UTF-8");
        }
    }
    if let Some(e) = &whole.1 {
        assert!([CLOSE_PROTOCOL, CLOSE_INVALID_DATA, CLOSE_TOO_BIG].contains(&e.close_code()));
    }

    let mut chunks = Vec::with_capacity(splits.len() + 1);
    let mut rest = wire;
    for &n in splits {
        let (head, tail) = rest.split_at(n.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    assert_eq!(read_ws(chunks, max_payload), whole, "split at {splits:?}");

    // Quadratic at worst in the frames held: only for inputs of ordinary fuzzing size.
    if wire.len() <= 4096 {
        assert_eq!(
            read_ws(wire.chunks(1), max_payload),
            whole,
            "fed one byte at a time"
        );
    }
}

/// The inbound queue every fuzzed engine pushes to (a socket pair: made once, drained per run).
fn inbound() -> &'static Arc<InboundQueue> {
    static INBOUND: OnceLock<Arc<InboundQueue>> = OnceLock::new();
    INBOUND.get_or_init(|| InboundQueue::new().expect("a socket pair for the inbound queue"))
}

/// What fuzz input writes where it means the open session's sid.
pub const SID_PLACEHOLDER: &[u8] = b"$SID";

/// Writes `data` as raw bytes on one HTTP connection to a fresh engine (on an in-memory stream,
/// with tokio's clock paused so timeouts and long polls end at once), with one polling session
/// open whose sid replaces [`SID_PLACEHOLDER`] in `data`. Returns what the server wrote back.
/// Panics if the server writes something other than HTTP, or holds the connection past every
/// timeout it has.
pub fn serve_http_bytes(data: &[u8]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let response = runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let config = ServerConfig {
            max_payload: 64 * 1024,
            ..ServerConfig::default()
        };
        let (sid, connection) = crate::server::fuzz_connection(config, inbound().clone(), server);
        let request = replace_all(data, SID_PLACEHOLDER, sid.as_bytes());
        // The client keeps its side open (the server, like hyper by default, drops a response
        // to a half-closed connection) and reads until the server closes. The deadline, in
        // virtual time, is beyond every timeout the server applies (headers, bodies, heartbeat):
        // a connection still open then would be one a hostile client can hold forever.
        let exchange = async move {
            let mut response = Vec::new();
            // The server may stop reading (a refused request): then stop writing too.
            let _ = client.write_all(&request).await;
            let _ = client.read_to_end(&mut response).await;
            response
        };
        let mut exchange = std::pin::pin!(exchange);
        let connection = std::pin::pin!(connection);
        let deadline = tokio::time::sleep(Duration::from_secs(120));
        tokio::select! {
            response = &mut exchange => response,
            () = deadline => panic!("the connection outlived every server timeout"),
            () = connection => {
                // The server is done with the connection; take what it wrote.
                tokio::time::timeout(Duration::from_secs(1), exchange).await.unwrap_or_default()
            }
        }
    });
    drop(runtime);
    drop(inbound().drain());
    if !response.is_empty() {
        assert!(response.starts_with(b"HTTP/1."), "an HTTP response");
    }
    response
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = memchr::memmem::find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_accept_their_seeds() {
        decode_socket_packet(b"52-/admin,789[\"baz\",{\"_placeholder\":true,\"num\":0}]");
        decode_socket_packet(b"1/,/x");
        // {type: 2, nsp: "/", data: ["e", <bin 01>], id: 1}
        decode_msgpack_packet(
            b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e\xc4\x01\x01\xa2id\x01",
        );
        decode_engine_payload(b"4hello\x1ebAQIDBA==\x1e2");
        let frame = [0x81, 0x82, 1, 2, 3, 4, b'4' ^ 1, b'2' ^ 2];
        feed_ws_frames(&frame, 100, &[1, 3]);
        let res = serve_http_bytes(
            b"GET /socket.io/?EIO=4&transport=polling&sid=$SID HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        assert!(
            res.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&res)
        );
        assert!(String::from_utf8_lossy(&res).contains("pingInterval"));
    }
}
