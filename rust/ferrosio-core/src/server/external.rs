//! The front door without a listener: the host's web server (an ASGI server; or an
//! in-process client, see `in_process`) owns the sockets and hands over whole requests. Everything
//! Engine.IO decides is still decided here, by the same code as for the engine's own
//! listener: the endpoint, the host gate, CORS, error codes and bodies, the handshake, polling
//! GET/POST, the upgrade, heartbeats and the connect timeout.
//!
//! The seam, for a host:
//!
//! - [`ServerHandle::start_unbound`]: the engine thread without a listening socket;
//! - [`ServerHandle::external_http`]: one HTTP request (its body read whole by the host),
//!   answered with [`ControlInbound::Response`] on the inbound queue (a polling GET answers
//!   when there is something to send, as on the engine's own listener);
//! - [`ServerHandle::external_ws_open`]: a WebSocket request, answered the same way (101:
//!   accepted; anything else: refused with that HTTP answer). From then on
//!   [`ServerHandle::external_ws_receive`] takes each message on the host's thread,
//!   [`ControlInbound::Ready`] says the outbox has frames (once per batch), which
//!   [`ServerHandle::external_ws_take`] hands over, and [`ServerHandle::external_ws_close`]
//!   ends the connection from the host's side.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};

use super::cors::cors_headers;
use super::http::{handshake, EngineQuery, HttpError, HttpResponse};
use super::{FrontDoor, ServerHandle};
use crate::bridge::ControlInbound;
use crate::config::ServerConfig;
use crate::engineio::packet::Frame;
use crate::engineio::session::{DisconnectReason, TransportKind};
use crate::engineio::v3::Protocol;
use crate::error::ServerError;
use crate::transport::external::{ExternalMessage, ExternalWs, Reply};

/// An HTTP request as the host's web server received it.
#[derive(Debug, Clone)]
pub struct ExternalRequest {
    pub method: String,
    /// The path the engine routes on (an ASGI host strips its `root_path` first).
    pub path: String,
    pub query: String,
    /// `(name, value)` pairs; names in any case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

impl ExternalRequest {
    pub(super) fn into_request(self) -> Result<Request<Full<Bytes>>, ServerError> {
        let uri = if self.query.is_empty() {
            self.path
        } else {
            format!("{}?{}", self.path, self.query)
        };
        let mut builder = Request::builder()
            .method(
                Method::from_bytes(self.method.as_bytes()).map_err(|_| ServerError::BadRequest)?,
            )
            .uri(uri);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(Full::new(self.body))
            .map_err(|_| ServerError::BadRequest)
    }
}

/// Sends `res` to the host as the answer to request `id`.
async fn reply(front: &FrontDoor, id: u64, res: HttpResponse) {
    let (parts, body) = res.into_parts();
    // A `Full` body is one chunk, ready now.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
        .collect();
    front.inbound.push(
        ControlInbound::Response {
            id,
            status: parts.status.as_u16(),
            headers,
            body,
        }
        .into(),
    );
}

impl FrontDoor {
    /// Decides on a WebSocket request and, if accepted, sets `conn` up to carry its session.
    pub(super) async fn open_external_ws(
        self: Arc<Self>,
        req: Request<Full<Bytes>>,
        remote: SocketAddr,
        local: SocketAddr,
        conn: Arc<ExternalWs>,
    ) -> HttpResponse {
        let Some(endpoint) = self.endpoint(req.uri().path()) else {
            return super::http::status_response(hyper::StatusCode::NOT_FOUND, "Not Found");
        };
        if let Some(refusal) = self.ask_host(&req, remote, local).await {
            return refusal.response();
        }
        let cors = match cors_headers(&self.config, &self.gate, req.headers()) {
            Ok(h) => h,
            Err(e) => return e.response(),
        };
        let query = EngineQuery::of(&req);
        let protocol = match query.eio {
            Some("4") => Protocol::V4,
            Some("3") if self.config.allow_eio3 => Protocol::V3 { base64: query.b64 },
            _ => return HttpError::UnsupportedProtocolVersion.response(),
        };
        if query.transport != Some("websocket") || !self.config.allow_websocket {
            return HttpError::UnknownTransport.response();
        }
        let handler = self.handler(endpoint);
        match query.sid {
            None => {
                let session = self.open_session(
                    handshake(&req, remote, local),
                    TransportKind::WebSocket,
                    endpoint,
                    protocol,
                );
                if conn.open(session.clone(), handler) {
                    self.clone().drain_external(conn.clone());
                } else {
                    // The client went away while the front door decided.
                    self.end_session(&session, DisconnectReason::TransportClose);
                }
            }
            Some(sid) => {
                let Some(session) = self.session(sid, endpoint) else {
                    return HttpError::UnknownSid.response();
                };
                if !self.config.allow_upgrades || session.protocol.revision() != protocol.revision()
                {
                    return HttpError::BadRequest.response();
                }
                // Already upgraded or upgrading: accepted, then closed at once (as the
                // official server does); the session is untouched.
                if session.begin_upgrade() {
                    if !conn.probe(session.clone(), handler) {
                        session.abort_upgrade();
                    }
                    let (front, conn) = (self.clone(), conn.clone());
                    tokio::spawn(async move {
                        let deadline = tokio::time::Instant::now() + front.config.upgrade_timeout;
                        // The probe finishes on the host's thread; look in on it until then.
                        while conn.probing() && tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(PROBE_POLL).await;
                            conn.nudge_polling();
                        }
                        if conn.probing() {
                            conn.close(DisconnectReason::TransportError);
                            front.notify_external(&conn);
                        }
                    });
                } else {
                    conn.close(DisconnectReason::TransportError);
                    self.notify_external(&conn);
                }
            }
        }
        let mut res = HttpResponse::new(Full::new(Bytes::new()));
        *res.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        res.headers_mut().extend(cors);
        res
    }

    /// Tells the host `conn` has something for it, unless a notice is out already; an
    /// in-process client's reader is woken directly instead.
    fn notify_external(&self, conn: &Arc<ExternalWs>) {
        if conn.wake_local() {
            return;
        }
        if conn.claim_notice() {
            self.inbound
                .push(ControlInbound::Ready { id: conn.id() }.into());
        }
    }

    /// The task that watches an open external connection's session: a notice per batch of
    /// frames, and the session's end once it closes.
    fn drain_external(self: Arc<Self>, conn: Arc<ExternalWs>) {
        let Some(session) = conn.session() else {
            return;
        };
        if conn.is_local() {
            // The in-process reader waits on the session's outbox itself (no hop through this
            // thread per batch), where it sees the close too; the session's end reaches the
            // front door through the heartbeats, which a closing session tells. No task.
            return;
        }
        tokio::spawn(async move {
            // Frames may be queued already (the open packet, or what polling left).
            self.notify_external(&conn);
            loop {
                if let Some(reason) = session.closed() {
                    self.notify_external(&conn);
                    self.end_session(&session, reason);
                    return;
                }
                session.wait().await;
                self.notify_external(&conn);
            }
        });
    }
}

/// How often a pending upgrade probe is looked in on (it completes on the host's thread),
/// and a polling GET released meanwhile (the official server's 100 ms). At most
/// `upgrade_timeout / PROBE_POLL` noops (100 by default) are queued by one probe.
const PROBE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl ServerHandle {
    /// The engine thread without a listening socket: requests come from the host
    /// ([`ServerHandle::external_http`], [`ServerHandle::external_ws_open`]).
    pub fn start_unbound(config: ServerConfig) -> Result<ServerHandle, ServerError> {
        ServerHandle::launch(config, None)
    }

    /// One HTTP request; its answer comes back as [`ControlInbound::Response`] with `id`.
    pub fn external_http(&self, id: u64, req: ExternalRequest) -> Result<(), ServerError> {
        let (remote, local) = (req.remote, req.local);
        let front = self.front.clone();
        let req = req.into_request();
        self.runtime.spawn(async move {
            let res = match req {
                Ok(req) => {
                    // Only a real socket can be taken over; an upgrade comes as a WebSocket.
                    if EngineQuery::of(&req).transport == Some("websocket")
                        && front.endpoint(req.uri().path()).is_some()
                    {
                        HttpError::BadRequest.response()
                    } else {
                        match front.clone().handle(req, remote, local).await {
                            Ok(res) => res,
                            Err(never) => match never {},
                        }
                    }
                }
                Err(_) => HttpError::BadRequest.response(),
            };
            reply(&front, id, res).await;
        });
        self.check_running()
    }

    /// A WebSocket request; the answer comes back as [`ControlInbound::Response`] with `id`
    /// (101: accepted), and `id` names the connection from then on.
    pub fn external_ws_open(&self, id: u64, req: ExternalRequest) -> Result<(), ServerError> {
        let conn = ExternalWs::new(id, self.front.config.max_payload);
        self.external.lock().insert(id, conn.clone());
        let (remote, local) = (req.remote, req.local);
        let front = self.front.clone();
        let req = req.into_request();
        self.runtime.spawn(async move {
            let res = match req {
                Ok(req) => {
                    front
                        .clone()
                        .open_external_ws(req, remote, local, conn)
                        .await
                }
                Err(_) => HttpError::BadRequest.response(),
            };
            reply(&front, id, res).await;
        });
        self.check_running()
    }

    /// One message from the client of connection `id`, handled on the caller's thread.
    pub fn external_ws_receive(&self, id: u64, msg: ExternalMessage) -> Reply {
        let conn = self.external.lock().get(&id).cloned();
        match conn {
            Some(conn) => {
                let was_probing = conn.probing();
                let reply = conn.receive(msg);
                if was_probing && conn.session().is_some() {
                    // The upgrade is done: from now on the outbox drains to this WebSocket.
                    let front = self.front.clone();
                    self.runtime
                        .spawn(async move { front.drain_external(conn) });
                }
                reply
            }
            None => Reply::Close(1000),
        }
    }

    /// What connection `id` has to send, and whether to close after it.
    pub fn external_ws_take(&self, id: u64) -> (Vec<Frame>, bool) {
        let conn = self.external.lock().get(&id).cloned();
        match conn {
            Some(conn) => conn.take(),
            None => (Vec::new(), true),
        }
    }

    /// The host's side of connection `id` ended (the client went away, or the host is done).
    pub fn external_ws_close(&self, id: u64) {
        if let Some(conn) = self.external.lock().remove(&id) {
            conn.close(DisconnectReason::TransportClose);
        }
    }

    fn check_running(&self) -> Result<(), ServerError> {
        if self.is_running() {
            Ok(())
        } else {
            Err(ServerError::NotRunning)
        }
    }
}
