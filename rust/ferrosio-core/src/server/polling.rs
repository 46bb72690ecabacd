//! Long-polling over HTTP: the GET that opens a session, and the GETs and POSTs on an open
//! one (one of each in flight at most; a POST body bounded in size and time). What a GET
//! returns and what a POST's packets do is the transport's, [`crate::transport::polling`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use hyper::{Method, Request, StatusCode};

use super::encoding::ContentCoding;
use super::http::{
    binary_response, handshake, ok_response, status_response, text_response, HttpError,
    HttpResponse,
};
use super::sessions::Endpoint;
use super::{FrontDoor, RequestBody};
use crate::engineio::packet::encode_payload;
use crate::engineio::session::{DisconnectReason, EngineSession, TransportKind};
use crate::engineio::v3::{self, Protocol};
use crate::transport::polling;

/// How long a POST body may take to arrive (bounds slow-body clients).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Releases a polling GET/POST slot when the request ends, however it ends.
struct SlotGuard<'a> {
    session: &'a EngineSession,
    get: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.get {
            self.session.release_get();
        } else {
            self.session.release_post();
        }
    }
}

/// A v3 polling response: text, or binary (`application/octet-stream`).
fn payload_response((body, binary): (bytes::Bytes, bool)) -> HttpResponse {
    if binary {
        binary_response(body)
    } else {
        text_response(body)
    }
}

impl FrontDoor {
    /// The handshake GET: a new session, answered at once with its open packet.
    pub(super) fn open_polling<B>(
        self: &Arc<Self>,
        req: &Request<B>,
        remote: SocketAddr,
        local: SocketAddr,
        endpoint: Endpoint,
        protocol: Protocol,
    ) -> HttpResponse {
        let session = self.open_session(
            handshake(req, remote, local),
            TransportKind::Polling,
            endpoint,
            protocol,
        );
        let (frames, _) = session.take();
        match protocol {
            Protocol::V4 => text_response(encode_payload(&frames)),
            Protocol::V3 { base64 } => payload_response(v3::encode_payload(&frames, base64)),
        }
    }

    /// A GET or POST on an existing polling session.
    pub(super) async fn poll<B: RequestBody>(
        self: &Arc<Self>,
        req: Request<B>,
        sid: &str,
        endpoint: Endpoint,
        protocol: Protocol,
    ) -> HttpResponse {
        let Some(session) = self.session(sid, endpoint) else {
            return HttpError::UnknownSid.response();
        };
        if session.transport() == TransportKind::WebSocket
            || session.protocol.revision() != protocol.revision()
        {
            return HttpError::BadRequest.response();
        }
        if session.pong_overdue() {
            self.end_session(&session, DisconnectReason::PingTimeout);
            return HttpError::UnknownSid.response();
        }
        match *req.method() {
            Method::GET => {
                let coding = self.config.http_compression.and_then(|threshold| {
                    Some((ContentCoding::negotiate(req.headers())?, threshold))
                });
                self.poll_get(&session, coding).await
            }
            Method::POST => self.poll_post(req, &session, endpoint).await,
            _ => HttpError::BadRequest.response(),
        }
    }

    /// Waits for what the session has to send; `coding`: the client accepts it, and bodies of
    /// at least that many bytes are compressed with it.
    async fn poll_get(
        &self,
        session: &Arc<EngineSession>,
        coding: Option<(ContentCoding, usize)>,
    ) -> HttpResponse {
        if !session.claim_get() {
            // Two GETs at once: the client is confused or hostile; end the session.
            self.end_session(session, DisconnectReason::TransportError);
            return HttpError::BadRequest.response();
        }
        let _slot = SlotGuard { session, get: true };
        let max = self.config.max_poll_response;
        // v3 sessions are compressed alike: Content-Encoding is below the payload framing.
        let (body, binary, compressible) = match session.protocol {
            Protocol::V4 => {
                let (body, compressible) = polling::get(session, max).await;
                (body, false, compressible)
            }
            Protocol::V3 { base64 } => polling::get_v3(session, max, base64).await,
        };
        if let Some(reason) = session.closed() {
            self.end_session(session, reason);
        }
        match coding {
            Some((coding, threshold)) if compressible && body.len() >= threshold => {
                let mut res = payload_response((coding.encode(&body), binary));
                let h = res.headers_mut();
                h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
                h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
                res
            }
            _ => payload_response((body, binary)),
        }
    }

    /// Reads the body (bounded by `max_payload` and [`BODY_TIMEOUT`]) and applies its packets.
    async fn poll_post<B: RequestBody>(
        &self,
        req: Request<B>,
        session: &Arc<EngineSession>,
        endpoint: Endpoint,
    ) -> HttpResponse {
        if !session.claim_post() {
            self.end_session(session, DisconnectReason::TransportError);
            return HttpError::BadRequest.response();
        }
        let _slot = SlotGuard {
            session,
            get: false,
        };
        let max = self.config.max_payload;
        // v3 clients post a binary payload when they send binary data (v4 never does).
        let binary_body = session.protocol.is_v3()
            && req
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            self.end_session(session, DisconnectReason::TransportError);
            return status_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
        }
        // The host is behind on this client's messages: hold the POST (the client sends no
        // other while one is in flight) until it drains.
        let handler = self.handler(endpoint);
        if let Some(budget) = handler.inbound_budget() {
            budget.wait_ready(&session.inbound).await;
        }
        let body = Limited::new(req.into_body(), max);
        let body = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                self.end_session(session, DisconnectReason::TransportError);
                return status_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
            }
            _ => {
                self.end_session(session, DisconnectReason::TransportError);
                return HttpError::BadRequest.response();
            }
        };
        let applied = match session.protocol {
            Protocol::V4 => polling::post(session, &handler, &body),
            Protocol::V3 { .. } => polling::post_v3(session, &handler, &body, binary_body),
        };
        if applied.is_err() {
            self.end_session(session, DisconnectReason::TransportError);
            return HttpError::BadRequest.response();
        }
        ok_response()
    }
}
