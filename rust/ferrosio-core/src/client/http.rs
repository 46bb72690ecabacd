//! The HTTP side of the client: long-polling requests over hyper's HTTP/1.1 client connections,
//! and the TCP (+ TLS) + WebSocket handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HOST,
};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::tls::{ClientStream, TlsConnector};
use super::ConnectTarget;

/// A WebSocket of the client: over TCP/TLS, or in-process (`super::in_process`).
pub type Ws = super::in_process::WsLink;

/// How long a kept-alive connection may sit idle before we stop trusting it (Node's server
/// closes idle keep-alive connections after 5 s).
const MAX_IDLE: Duration = Duration::from_secs(2);
/// The largest response body (a polling payload) the client reads; a longer one fails the
/// request, so a server that streams without end cannot grow the client's memory. The same
/// as the WebSocket transport's message bound (tungstenite's default `max_message_size`).
pub const MAX_RESPONSE_BODY: usize = 64 << 20;

/// Builds `path?EIO=4&transport=...[&query][&sid=...]`.
pub fn request_path(target: &ConnectTarget, transport: &str, sid: Option<&str>) -> String {
    let mut p = format!("{}?EIO=4&transport={transport}", target.path);
    if transport == "polling" {
        // a cache buster, as the official clients send
        p.push_str("&t=");
        p.push_str(&cache_buster());
    }
    if !target.query.is_empty() {
        p.push('&');
        p.push_str(&target.query);
    }
    if let Some(sid) = sid {
        p.push_str("&sid=");
        p.push_str(sid);
    }
    p
}

fn cache_buster() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
    (0..7)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// A TCP connection to the endpoint, with the TLS handshake done when `tls` is given.
pub async fn connect_stream(
    target: &ConnectTarget,
    tls: Option<&TlsConnector>,
) -> Result<ClientStream, String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", target.host, target.port))?;
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(ClientStream::Plain(stream)),
        Some(tls) => match tls.connect(&target.host, stream).await {
            Ok(s) => Ok(ClientStream::Tls(Box::new(s))),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Opens a WebSocket to the endpoint (with `sid` when upgrading).
pub async fn ws_connect(
    target: &ConnectTarget,
    tls: Option<&TlsConnector>,
    sid: Option<&str>,
) -> Result<Ws, String> {
    let stream = connect_stream(target, tls).await?;
    let url = format!(
        "{}://{}{}",
        if tls.is_some() { "wss" } else { "ws" },
        host_header(target),
        request_path(target, "websocket", sid)
    );
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("bad websocket request: {e}"))?;
    for (k, v) in &target.headers {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            return Err(format!("invalid header {k:?}"));
        };
        req.headers_mut().append(k, v);
    }
    let config = WebSocketConfig::default().write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| format!("websocket handshake failed: {e}"))?;
    Ok(Ws::Net(Box::new(ws)))
}

fn host_header(target: &ConnectTarget) -> String {
    if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

/// One HTTP/1.1 keep-alive connection used for one kind of request (GETs or POSTs), so a
/// long-poll never waits behind a POST and the other way round.
pub struct HttpConn {
    target: Arc<ConnectTarget>,
    tls: Option<TlsConnector>,
    sender: Option<SendRequest<Full<Bytes>>>,
    last_used: Instant,
}

/// A failed request: the transport broke, or the server answered with an error status.
#[derive(Debug)]
pub enum HttpFailure {
    Io(String),
    Status(StatusCode, Bytes),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Io(e) => f.write_str(e),
            HttpFailure::Status(s, body) => {
                write!(f, "HTTP {s}: {}", String::from_utf8_lossy(body))
            }
        }
    }
}

impl HttpConn {
    pub fn new(target: Arc<ConnectTarget>, tls: Option<TlsConnector>) -> Self {
        HttpConn {
            target,
            tls,
            sender: None,
            last_used: Instant::now(),
        }
    }

    async fn fresh_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, HttpFailure> {
        let stream = connect_stream(&self.target, self.tls.as_ref())
            .await
            .map_err(HttpFailure::Io)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpFailure::Io(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(self.sender.insert(sender))
    }

    /// `GET` (no body) or `POST` (`body`); the response body when the status is 200.
    pub async fn request(&mut self, path: &str, body: Option<Bytes>) -> Result<Bytes, HttpFailure> {
        let reusable = self
            .sender
            .as_ref()
            .is_some_and(|s| !s.is_closed() && self.last_used.elapsed() < MAX_IDLE);
        if !reusable {
            self.sender = None;
        }
        let first = self.send_once(path, body.clone()).await;
        let result = match first {
            // A kept-alive connection the server closed meanwhile: the request was not
            // processed, so it is safe to send it again on a new connection.
            Err(HttpFailure::Io(_)) if reusable => {
                self.sender = None;
                self.send_once(path, body).await
            }
            other => other,
        };
        if result.is_err() {
            self.sender = None;
        }
        self.last_used = Instant::now();
        result
    }

    async fn send_once(&mut self, path: &str, body: Option<Bytes>) -> Result<Bytes, HttpFailure> {
        let target = self.target.clone();
        let sender = match self.sender.as_mut() {
            Some(s) => s,
            None => self.fresh_sender().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| HttpFailure::Io(e.to_string()))?;
        let mut req = Request::builder()
            .method(if body.is_some() {
                Method::POST
            } else {
                Method::GET
            })
            .uri(path)
            .header(HOST, host_header(&target));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "text/plain;charset=UTF-8");
        }
        if !target
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept-encoding"))
        {
            req = req.header(ACCEPT_ENCODING, "gzip, deflate");
        }
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| HttpFailure::Io(format!("bad request: {e}")))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| HttpFailure::Io(e.to_string()))?;
        let status = res.status();
        let coding = res.headers().get(CONTENT_ENCODING).cloned();
        let body = Limited::new(res.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| HttpFailure::Io(e.to_string()))?
            .to_bytes();
        let body = match coding {
            None => body,
            Some(coding) => decode_body(coding.as_bytes(), &body).map_err(HttpFailure::Io)?,
        };
        if status != StatusCode::OK {
            return Err(HttpFailure::Status(status, body));
        }
        Ok(body)
    }
}

/// A compressed response body (the server's `http_compression`), decoded into at most
/// [`MAX_RESPONSE_BODY`] bytes: a body that inflates to more fails the request.
fn decode_body(coding: &[u8], body: &[u8]) -> Result<Bytes, String> {
    use std::io::Read;
    let limit = MAX_RESPONSE_BODY as u64 + 1;
    let mut out = Vec::new();
    let read = match coding {
        b"gzip" | b"x-gzip" => flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        b"deflate" => flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        b"identity" => return Ok(Bytes::copy_from_slice(body)),
        other => {
            return Err(format!(
                "unknown Content-Encoding {:?}",
                String::from_utf8_lossy(other)
            ))
        }
    };
    read.map_err(|e| format!("bad compressed response: {e}"))?;
    if out.len() > MAX_RESPONSE_BODY {
        return Err(format!(
            "response body larger than {MAX_RESPONSE_BODY} bytes once decoded"
        ));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod decode_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_deflate_bodies_are_decoded_and_bounded() {
        let body = b"42[\"x\",\"yyyyyyyyyyyyyyyy\"]".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode_body(b"gzip", &gz).unwrap(), body);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&body).unwrap();
        assert_eq!(decode_body(b"deflate", &z.finish().unwrap()).unwrap(), body);
        assert!(decode_body(b"br", &body).is_err());
        assert!(decode_body(b"gzip", b"not gzip").is_err());
        // A bomb: more than the bound once inflated.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..65 {
            bomb.write_all(&vec![0u8; 1 << 20]).unwrap();
        }
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert!(decode_body(b"gzip", &bomb)
            .unwrap_err()
            .contains("larger than"));
    }
}
