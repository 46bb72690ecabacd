//! WebSocket requests: the validation of the upgrade request, the plan (a new session, the
//! upgrade of a polling one, or a refusal), the 101 answer, and the task that takes the socket
//! back from hyper and runs the session on it ([`crate::transport::websocket`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::http::{handshake, HttpError, HttpResponse};
use super::sessions::Endpoint;
use super::FrontDoor;
use crate::engineio::session::{EngineSession, Handshake, TransportKind};
use crate::engineio::trim;
use crate::engineio::v3::Protocol;
use crate::transport::deflate;
use crate::transport::websocket::{self, WsConn};

/// What hyper's HTTP/1 connection allocates and frees when it hands the socket over: its read
/// buffer (8 KiB at first) and its write buffer.
const HTTP_CONN_BUFFERS: usize = 16 * 1024;

/// What a WebSocket request leads to.
enum WsPlan {
    /// A new session on this WebSocket.
    Open,
    /// The upgrade of this polling session.
    Upgrade(Arc<EngineSession>),
    /// The session is already upgraded or upgrading: accept, then close this socket.
    Refuse,
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request's headers, else None.
fn websocket_accept(h: &HeaderMap) -> Option<String> {
    let upgrade = h.get(UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let connection = h.get(CONNECTION)?.to_str().ok()?;
    if !connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    {
        return None;
    }
    if h.get(SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    Some(derive_accept_key(h.get(SEC_WEBSOCKET_KEY)?.as_bytes()))
}

/// Whether the request offers a permessage-deflate we accept (in any of its
/// `Sec-WebSocket-Extensions` headers).
fn offers_deflate(h: &HeaderMap) -> bool {
    h.get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(deflate::accepts_offer)
}

impl FrontDoor {
    /// A WebSocket: a new session, or the upgrade of a polling one (`sid` given).
    pub(super) fn websocket<B>(
        self: &Arc<Self>,
        mut req: Request<B>,
        sid: Option<String>,
        remote: SocketAddr,
        local: SocketAddr,
        endpoint: Endpoint,
        protocol: Protocol,
    ) -> HttpResponse {
        if req.method() != Method::GET {
            return HttpError::BadHandshakeMethod.response();
        }
        let Some(accept) = websocket_accept(req.headers()) else {
            return HttpError::BadRequest.response();
        };
        let plan = match sid {
            None => WsPlan::Open,
            Some(sid) => {
                let Some(session) = self.session(&sid, endpoint) else {
                    return HttpError::UnknownSid.response();
                };
                // An upgrade speaks the revision of its session (Node: 400 otherwise).
                if !self.config.allow_upgrades || session.protocol.revision() != protocol.revision()
                {
                    return HttpError::BadRequest.response();
                }
                // Already upgraded or upgrading: like the official server, complete the
                // WebSocket handshake and then close that socket; the session is untouched.
                if session.begin_upgrade() {
                    WsPlan::Upgrade(session)
                } else {
                    WsPlan::Refuse
                }
            }
        };
        let deflate_threshold = self
            .config
            .websocket_compression
            .filter(|_| offers_deflate(req.headers()));
        let handshake = handshake(&req, remote, local);
        let on_upgrade = hyper::upgrade::on(&mut req);
        // Boxed, and finished before the session runs: the upgrade's state is not kept for the
        // connection's lifetime (a task's size is memory per idle connection).
        let start = Box::pin(self.clone().start_websocket(
            on_upgrade,
            plan,
            handshake,
            endpoint,
            protocol,
            deflate_threshold,
        ));
        let front = self.clone();
        tokio::spawn(async move {
            let Some((ws, session)) = start.await else {
                return;
            };
            let (reason, session) = websocket::run(ws, session, front.handler(endpoint)).await;
            front.end_session(&session, reason);
        });
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        if deflate_threshold.is_some() {
            h.insert(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(deflate::RESPONSE),
            );
        }
        res
    }

    /// Completes a WebSocket upgrade: the socket back from hyper, then the new session, or the
    /// probe of the polling session being upgraded. None if the connection ends there.
    async fn start_websocket(
        self: Arc<Self>,
        on_upgrade: hyper::upgrade::OnUpgrade,
        plan: WsPlan,
        handshake: Handshake,
        endpoint: Endpoint,
        protocol: Protocol,
        deflate_threshold: Option<usize>,
    ) -> Option<(WsConn, Arc<EngineSession>)> {
        let Ok(upgraded) = on_upgrade.await else {
            if let WsPlan::Upgrade(s) = &plan {
                s.abort_upgrade();
            }
            return None;
        };
        // Every connection is served over TokioIo<TcpStream> or, with TLS, over
        // TokioIo<TlsStream<TcpStream>>, so this gives the socket back (with its rustls
        // session, taken apart: see `transport::websocket`), and what the client sent after
        // its request.
        let max_payload = self.config.max_payload;
        let mut ws = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(hyper::upgrade::Parts { io, read_buf, .. }) => WsConn::new(
                io.into_inner(),
                None,
                &read_buf,
                max_payload,
                deflate_threshold,
            ),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(hyper::upgrade::Parts { io, read_buf, .. }) => {
                    let (tcp, tls) = io.into_inner().into_inner();
                    let tls = Some(Box::new(parking_lot::Mutex::new(tls)));
                    WsConn::new(tcp, tls, &read_buf, max_payload, deflate_threshold)
                }
                Err(_) => {
                    if let WsPlan::Upgrade(s) = &plan {
                        s.abort_upgrade();
                    }
                    return None;
                }
            },
        };
        // hyper's connection ended with the upgrade, freeing its buffers: between the
        // connections' long-lived records they leave holes glibc keeps (a fifth of the RSS of
        // a wave of idle connections) until trimmed. Counted, so a wave trims at most every
        // `trim::MIN_INTERVAL`; in a task of its own, so the probe's answer or the open
        // packet does not wait for it.
        trim::after_free_soon(HTTP_CONN_BUFFERS);
        let session = match plan {
            WsPlan::Refuse => {
                ws.refuse().await;
                return None;
            }
            WsPlan::Upgrade(session) => {
                let timeout = self.config.upgrade_timeout;
                if !websocket::probe(&mut ws, &session, timeout).await {
                    session.abort_upgrade();
                    return None;
                }
                session.finish_upgrade();
                session
            }
            WsPlan::Open => {
                self.open_session(handshake, TransportKind::WebSocket, endpoint, protocol)
            }
        };
        Some((ws, session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser's upgrade request, with the key of RFC 6455 section 1.3.
    fn request() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        h.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn a_valid_request_gets_the_rfc_accept_value() {
        assert_eq!(
            websocket_accept(&request()).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn the_upgrade_token_ignores_case_and_connection_may_list_more() {
        let mut h = request();
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, upgrade"));
        assert!(websocket_accept(&h).is_some());
    }

    #[test]
    fn anything_missing_or_wrong_is_refused() {
        for name in [
            UPGRADE,
            CONNECTION,
            SEC_WEBSOCKET_VERSION,
            SEC_WEBSOCKET_KEY,
        ] {
            let mut h = request();
            h.remove(&name);
            assert_eq!(websocket_accept(&h), None, "without {name}");
        }
        let wrong = [
            (UPGRADE, "h2c"),
            (CONNECTION, "keep-alive"),
            (SEC_WEBSOCKET_VERSION, "8"),
        ];
        for (name, value) in wrong {
            let mut h = request();
            h.insert(name.clone(), HeaderValue::from_static(value));
            assert_eq!(websocket_accept(&h), None, "{name}: {value}");
        }
    }
}
