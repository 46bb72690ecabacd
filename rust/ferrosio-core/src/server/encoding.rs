//! HTTP compression of polling responses (Node's `httpCompression`, python-engineio's
//! `http_compression`): gzip or deflate as the request's `Accept-Encoding` allows, for a body of
//! at least the configured threshold that is not made only of `compress=False` packets.

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use hyper::header::{HeaderMap, ACCEPT_ENCODING};
use std::io::Write;

/// Level 1, as for permessage-deflate ([`crate::transport::deflate`]): the fastest.
const LEVEL: u32 = 1;

/// A content coding both sides know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    Gzip,
    /// The zlib format, which is what HTTP calls `deflate` (RFC 9110 8.4.1.2).
    Deflate,
}

impl ContentCoding {
    /// The `Content-Encoding` value.
    pub fn name(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
        }
    }

    /// The coding to answer a request with `headers` in: the one the client prefers (its
    /// q-values; `*` counts for both), gzip on a tie; None if it accepts neither.
    pub fn negotiate(headers: &HeaderMap) -> Option<ContentCoding> {
        let (mut gzip, mut deflate, mut any) = (None, None, None);
        for value in headers.get_all(ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';').map(str::trim);
                let name = parts.next().unwrap_or("").to_ascii_lowercase();
                let q = parts
                    .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
                let Some(q) = q else { continue };
                match name.as_str() {
                    "gzip" | "x-gzip" => gzip = Some(q),
                    "deflate" => deflate = Some(q),
                    "*" => any = Some(q),
                    _ => {}
                }
            }
        }
        let gzip = gzip.or(any).unwrap_or(0.0);
        let deflate = deflate.or(any).unwrap_or(0.0);
        if gzip <= 0.0 && deflate <= 0.0 {
            None
        } else if gzip >= deflate {
            Some(ContentCoding::Gzip)
        } else {
            Some(ContentCoding::Deflate)
        }
    }

    /// `body` in this coding.
    pub fn encode(self, body: &[u8]) -> Bytes {
        let out = Vec::with_capacity(body.len() / 3 + 64);
        let encoded = match self {
            ContentCoding::Gzip => {
                let mut e = GzEncoder::new(out, Compression::new(LEVEL));
                e.write_all(body).and_then(|()| e.finish())
            }
            ContentCoding::Deflate => {
                let mut e = ZlibEncoder::new(out, Compression::new(LEVEL));
                e.write_all(body).and_then(|()| e.finish())
            }
        };
        // Writing into a Vec cannot fail.
        Bytes::from(encoded.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use std::io::Read;

    fn accepting(value: &'static str) -> Option<ContentCoding> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static(value));
        ContentCoding::negotiate(&h)
    }

    #[test]
    fn the_coding_follows_accept_encoding() {
        assert_eq!(ContentCoding::negotiate(&HeaderMap::new()), None);
        assert_eq!(accepting("gzip, deflate, br"), Some(ContentCoding::Gzip));
        assert_eq!(accepting("deflate"), Some(ContentCoding::Deflate));
        assert_eq!(
            accepting("gzip;q=0.5, deflate"),
            Some(ContentCoding::Deflate)
        );
        assert_eq!(accepting("gzip;q=0, deflate;q=0"), None);
        assert_eq!(accepting("*"), Some(ContentCoding::Gzip));
        assert_eq!(accepting("identity, br"), None);
    }

    #[test]
    fn encoded_bodies_decode_to_the_body() {
        let body = "42[\"tick\",{\"n\":1}]\x1e".repeat(200);
        let gz = ContentCoding::Gzip.encode(body.as_bytes());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let z = ContentCoding::Deflate.encode(body.as_bytes());
        back.clear();
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
        assert!(gz.len() < body.len() / 10);
    }
}
