//! HTTP as Engine.IO speaks it: its error codes and their JSON bodies, the query parameters it
//! reads, the handshake record of a request, and the few plain responses the front door sends.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
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
    fn query_of_a_request_without_one_is_empty() {
        let req = Request::get("/socket.io/").body(()).unwrap();
        assert_eq!(EngineQuery::of(&req), EngineQuery::default());
        let req = Request::get("/socket.io/?EIO=4&transport=websocket")
            .body(())
            .unwrap();
        assert_eq!(EngineQuery::of(&req).transport, Some("websocket"));
    }
}
