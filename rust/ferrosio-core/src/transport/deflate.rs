//! permessage-deflate (RFC 7692): the negotiation in the upgrade, and the compression of
//! messages both ways.
//!
//! What is negotiated is always `server_no_context_takeover; client_no_context_takeover`:
//! every message is compressed on its own, in both directions. That costs some ratio on
//! small messages (no dictionary shared across messages) but means no connection holds a zlib
//! context between messages: the (de)compressors are one per engine thread, reset per message
//! (a deflate context with a 32 KiB window is about 260 KiB, an inflate one about 40 KiB; see
//! docs/design.md for the measurements). It also makes a message's compressed bytes the same
//! for every recipient, so a broadcast is deflated once, not once per client: the last
//! [`CACHE_ENTRIES`] messages deflated on this thread are remembered by identity (the same
//! `Bytes` allocation, held by the cache so its address cannot be reused meanwhile).
//!
//! Client messages are inflated with the size of the inflated message bounded by
//! `max_payload`: a small message that inflates to more is refused with 1009 as soon as the
//! output passes the bound, with at most `max_payload + 1` bytes allocated for it.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::wsframe::WsFrameError;

/// The `Sec-WebSocket-Extensions` value of our answer to an acceptable offer.
pub const RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// What every sync-flushed deflate block ends with; removed from the wire (RFC 7692 7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How many deflated messages are remembered per thread, for broadcasts.
const CACHE_ENTRIES: usize = 8;

/// A message this large or larger is not remembered (its clone would be held by the cache).
const CACHE_MAX_BYTES: usize = 1 << 20;

/// Level 1 (zlib's deflate_quick): several times faster than level 2 for a somewhat lower
/// ratio (docs/design.md has both).
const LEVEL: u32 = 1;

/// Whether one `Sec-WebSocket-Extensions` header value holds an offer of permessage-deflate
/// we accept. An offer is refused if it has unknown or repeated parameters, or asks us to
/// compress with a window under 2^15 (one compressor per thread serves every connection, with
/// zlib's default window); the client's window does not matter to us (we inflate with the
/// largest).
pub fn accepts_offer(header: &str) -> bool {
    header.split(',').any(acceptable)
}

fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return false;
    }
    let mut seen: [bool; 4] = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" if value == Some("15") => 2,
            "client_max_window_bits" if value.is_none_or(window_bits) => 3,
            _ => return false,
        };
        if std::mem::replace(&mut seen[index], true) {
            return false;
        }
    }
    true
}

fn window_bits(value: &str) -> bool {
    matches!(value.parse::<u8>(), Ok(8..=15))
}

thread_local! {
    static DEFLATER: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    /// (message, its deflated payload or None when it does not shrink), newest last.
    static CACHE: RefCell<Vec<(Bytes, Option<Bytes>)>> = const { RefCell::new(Vec::new()) };
}

/// The permessage-deflate payload of `message`, or None when deflating does not make it
/// smaller (it is then sent as it is). Remembered for the next calls with the same `Bytes`.
pub fn deflate(message: &Bytes) -> Option<Bytes> {
    let hit = CACHE.with_borrow(|cache| {
        cache
            .iter()
            .rev()
            .find(|(m, _)| m.as_ptr() == message.as_ptr() && m.len() == message.len())
            .map(|(_, d)| d.clone())
    });
    if let Some(deflated) = hit {
        return deflated;
    }
    let deflated = deflate_uncached(message).filter(|d| d.len() < message.len());
    if message.len() < CACHE_MAX_BYTES {
        CACHE.with_borrow_mut(|cache| {
            if cache.len() == CACHE_ENTRIES {
                cache.remove(0);
            }
            cache.push((message.clone(), deflated.clone()));
        });
    }
    deflated
}

fn deflate_uncached(message: &[u8]) -> Option<Bytes> {
    DEFLATER.with_borrow_mut(|slot| {
        let d = slot.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        d.reset();
        let mut out = Vec::with_capacity(message.len() / 2 + 64);
        let start_in = d.total_in();
        loop {
            let used = (d.total_in() - start_in) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            d.compress_vec(&message[used..], &mut out, FlushCompress::Sync)
                .ok()?;
            // Done once all input is in and the flush had room to finish.
            if (d.total_in() - start_in) as usize == message.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out.ends_with(&TRAILER) {
            return None;
        }
        out.truncate(out.len() - TRAILER.len());
        Some(Bytes::from(out))
    })
}

/// Inflates one client message (all its frames' payloads joined), refusing one that inflates
/// to more than `max_payload` bytes.
pub fn inflate(payload: &[u8], max_payload: usize) -> Result<Vec<u8>, WsFrameError> {
    INFLATER.with_borrow_mut(|slot| {
        let d = slot.get_or_insert_with(|| Decompress::new(false));
        d.reset(false);
        let limit = max_payload.saturating_add(1);
        let mut out: Vec<u8> = Vec::with_capacity(limit.min(payload.len().saturating_mul(4) + 64));
        for input in [payload, &TRAILER[..]] {
            let start_in = d.total_in();
            loop {
                if out.len() == out.capacity() {
                    if out.len() >= limit {
                        return Err(WsFrameError::TooLarge(max_payload));
                    }
                    out.reserve_exact(out.capacity().max(1024).min(limit - out.len()));
                }
                let used = (d.total_in() - start_in) as usize;
                let status = d
                    .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| WsFrameError::BadDeflate)?;
                if out.len() > max_payload {
                    return Err(WsFrameError::TooLarge(max_payload));
                }
                let done_in = (d.total_in() - start_in) as usize == input.len();
                match status {
                    Status::StreamEnd => return Ok(out),
                    _ if done_in && out.len() < out.capacity() => break,
                    Status::BufError if out.len() < out.capacity() => {
                        return Err(WsFrameError::BadDeflate)
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_of_browsers_and_ws_are_accepted() {
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=15",
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
        ] {
            assert!(accepts_offer(offer), "{offer}");
        }
        for offer in [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert!(!accepts_offer(offer), "{offer}");
        }
    }

    fn message(n: usize) -> Bytes {
        let text: String = (0..n)
            .map(|i| format!("{{\"user\":\"u{}\",\"x\":{i}}},", i % 7))
            .collect();
        Bytes::from(format!("42[\"tick\",[{text}0]]"))
    }

    #[test]
    fn deflate_then_inflate_gives_the_message_back() {
        for n in [10, 100, 5000] {
            let m = message(n);
            let d = deflate(&m).expect("JSON shrinks");
            assert!(d.len() < m.len() / 2, "{} -> {}", m.len(), d.len());
            assert_eq!(inflate(&d, 1 << 20).unwrap(), m.as_ref());
        }
    }

    #[test]
    fn the_same_bytes_are_deflated_once() {
        let m = message(50);
        let first = deflate(&m).unwrap();
        let again = deflate(&m.clone()).unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "served from the cache");
        let copy = Bytes::copy_from_slice(&m);
        let other = deflate(&copy).unwrap();
        assert_ne!(
            other.as_ptr(),
            first.as_ptr(),
            "another allocation is deflated again"
        );
        assert_eq!(other, first, "to the same bytes (no context takeover)");
    }

    #[test]
    fn incompressible_messages_are_sent_as_they_are() {
        let noise: Vec<u8> = (0..2000).map(|_| fastrand::u8(..)).collect();
        assert_eq!(deflate(&Bytes::from(noise)), None);
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_bound() {
        let zeros = Bytes::from(vec![b'0'; 10_000_000]);
        let bomb = deflate_uncached(&zeros).unwrap();
        assert!(bomb.len() < 100_000);
        assert_eq!(
            inflate(&bomb, 1_000_000),
            Err(WsFrameError::TooLarge(1_000_000))
        );
        assert_eq!(inflate(&bomb, 10_000_000).unwrap().len(), 10_000_000);
    }

    #[test]
    fn garbage_is_invalid_data() {
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff], 1000),
            Err(WsFrameError::BadDeflate)
        );
    }
}
