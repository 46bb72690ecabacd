//! HTTP as Engine.IO speaks it: its error codes and their JSON bodies, the query parameters it
//! reads, the handshake record of a request, and the few plain responses the front door sends.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use crate::engineio::session::Handshake;

pub(super) type HttpResponse = Response<Full<Bytes>>;

/// Engine.IO HTTP error codes (body `{"code":N,"message":...}`), as the official server sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl HttpError {
    fn message(self) -> &'static str {
        match self {
            HttpError::UnknownTransport => "Transport unknown",
            HttpError::UnknownSid => "Session ID unknown",
            HttpError::BadHandshakeMethod => "Bad handshake method",
            HttpError::BadRequest => "Bad request",
            HttpError::Forbidden => "Forbidden",
            HttpError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub fn status(self) -> StatusCode {
        if self == HttpError::Forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    /// The JSON body: `{"code":N,"message":"..."}`.
    pub fn body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self as u8,
            self.message()
        )
    }

    pub(super) fn response(self) -> HttpResponse {
        let mut res = Response::new(Full::new(Bytes::from(self.body())));
        *res.status_mut() = self.status();
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}

/// The query parameters Engine.IO cares about; the last of a repeated one wins.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct EngineQuery<'a> {
    pub eio: Option<&'a str>,
    pub transport: Option<&'a str>,
    pub sid: Option<&'a str>,
    /// Engine.IO v3: binary data as base64 text (`b64=1`; Node takes any non-empty value).
    pub b64: bool,
}

impl<'a> EngineQuery<'a> {
    pub fn parse(query: &'a str) -> Self {
        let mut q = EngineQuery::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => q.eio = Some(v),
                "transport" => q.transport = Some(v),
                "sid" => q.sid = Some(v),
                "b64" => q.b64 = !v.is_empty(),
                _ => {}
            }
        }
        q
    }

    /// The query of a request (none: empty).
    pub fn of<B>(req: &'a Request<B>) -> Self {
        Self::parse(req.uri().query().unwrap_or(""))
    }
}

/// The record of a request the host sees for its session (its WSGI-style `environ`).
pub(super) fn handshake<B>(req: &Request<B>, remote: SocketAddr, local: SocketAddr) -> Handshake {
    let values: Vec<(&str, std::borrow::Cow<'_, str>)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes())))
        .collect();
    Handshake::new(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        values.iter().map(|(k, v)| (*k, v.as_ref())),
        remote,
        local,
    )
}

/// The most bytes a request's head (request line and header lines) may take. hyper's own
/// bound on its read buffer (`max_buf_size`, set to this) is only checked between reads, so a
/// head that arrives in a few large reads can reach about twice this before hyper refuses it:
/// [`head_too_large`] makes the bound exact.
pub(super) const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// True if `req`'s head took more than [`MAX_REQUEST_HEAD`] bytes on the wire (counted from
/// what hyper parsed: `METHOD URI HTTP/1.1`, `name: value` lines, CRLFs).
pub(super) fn head_too_large<B>(req: &Request<B>) -> bool {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let mut len = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n\r\n".len();
    for (name, value) in req.headers() {
        len += name.as_str().len() + ": \r\n".len() + value.len();
        if len > MAX_REQUEST_HEAD {
            return true;
        }
    }
    len > MAX_REQUEST_HEAD
}

/// 431 for a request whose head is over [`MAX_REQUEST_HEAD`]; the connection closes after it
/// (as hyper does when its own bound refuses a head).
pub(super) fn head_too_large_response() -> HttpResponse {
    let mut res = status_response(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "Request Header Fields Too Large",
    );
    res.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A polling response body.
pub(super) fn text_response(body: Bytes) -> HttpResponse {
    let mut res = Response::new(Full::new(body));
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    // Polling responses are one-off messages: never cache them.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A binary polling response body (Engine.IO v3's binary payload).
pub(super) fn binary_response(body: Bytes) -> HttpResponse {
    let mut res = text_response(body);
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    res
}

/// The answer to an accepted polling POST, as the official server sends it.
pub(super) fn ok_response() -> HttpResponse {
    let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    res
}

/// A plain-text status answer outside Engine.IO's error codes (404, 413).
pub(super) fn status_response(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_and_bodies_are_the_official_ones() {
        let cases = [
            (HttpError::UnknownTransport, 400, 0, "Transport unknown"),
            (HttpError::UnknownSid, 400, 1, "Session ID unknown"),
            (
                HttpError::BadHandshakeMethod,
                400,
                2,
                "Bad handshake method",
            ),
            (HttpError::BadRequest, 400, 3, "Bad request"),
            (HttpError::Forbidden, 403, 4, "Forbidden"),
            (
                HttpError::UnsupportedProtocolVersion,
                400,
                5,
                "Unsupported protocol version",
            ),
        ];
        for (err, status, code, message) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(
                err.body(),
                format!("{{\"code\":{code},\"message\":\"{message}\"}}")
            );
            let res = err.response();
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn query_keeps_only_what_engine_io_reads() {
        assert_eq!(
            EngineQuery::parse("EIO=4&transport=polling&t=Nx1&sid=abc"),
            EngineQuery {
                eio: Some("4"),
                transport: Some("polling"),
                sid: Some("abc"),
                b64: false,
            }
        );
        assert!(EngineQuery::parse("EIO=3&b64=1").b64);
        assert!(!EngineQuery::parse("EIO=3&b64=").b64);
        assert_eq!(EngineQuery::parse(""), EngineQuery::default());
        assert_eq!(
            EngineQuery::parse("EIO&transport=&sid=1&sid=2"),
            EngineQuery {
                eio: Some(""),
                transport: Some(""),
                sid: Some("2"),
                b64: false,
            },
            "a key without a value is present and empty; the last one wins"
        );
        assert_eq!(
            EngineQuery::parse("eio=4").eio,
            None,
            "keys are case-sensitive"
        );
    }

    #[test]
    fn a_head_is_measured_as_sent() {
        // "GET /x HTTP/1.1\r\n" + "a: <v>\r\n" + "\r\n"
        let at = |value_len: usize| {
            Request::get("/x")
                .header("a", "v".repeat(value_len))
                .body(())
                .unwrap()
        };
        let fixed = "GET /x HTTP/1.1\r\n".len() + "a: \r\n".len() + 2;
        assert!(!head_too_large(&at(MAX_REQUEST_HEAD - fixed)));
        assert!(head_too_large(&at(MAX_REQUEST_HEAD - fixed + 1)));
        let res = head_too_large_response();
        assert_eq!(res.status().as_u16(), 431);
        assert_eq!(res.headers()[CONNECTION], "close");
    }

    #[test]
    fn query_of_a_request_without_one_is_empty() {
        let req = Request::get("/socket.io/").body(()).unwrap();
        assert_eq!(EngineQuery::of(&req), EngineQuery::default());
        let req = Request::get("/socket.io/?EIO=4&transport=websocket")
            .body(())
            .unwrap();
        assert_eq!(EngineQuery::of(&req).transport, Some("websocket"));
    }
}
