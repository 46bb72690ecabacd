//! The HTTP front door and the engine thread: accepts connections, routes `/socket.io/`
//! requests to the transports, applies host commands, and shuts down gracefully.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS,
    CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE, VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::bridge::{Command, Inbound, InboundQueue};
use crate::config::{CorsPolicy, ServerConfig};
use crate::engineio::heartbeat;
use crate::engineio::packet::{encode_payload, Frame};
use crate::engineio::session::{CloseReason, EngineSession, Handshake, TransportKind};
use crate::engineio::EngineHandler;
use crate::error::ServerError;
use crate::raw_engine::RawEngineLayer;
use crate::sid::new_sid;
use crate::socketio::layer::SocketIoLayer;
use crate::transport::websocket::{self, WsConn};
use crate::transport::{polling, static_files};

type HttpResponse = Response<Full<Bytes>>;

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

    fn response(self) -> HttpResponse {
        let status = if self == HttpError::Forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self as u8,
            self.message()
        );
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}

/// The query parameters Engine.IO cares about.
#[derive(Default, Debug)]
struct EngineQuery<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

impl<'a> EngineQuery<'a> {
    fn parse(query: &'a str) -> Self {
        let mut q = EngineQuery::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => q.eio = Some(v),
                "transport" => q.transport = Some(v),
                "sid" => q.sid = Some(v),
                _ => {}
            }
        }
        q
    }
}

/// Shared state of the engine thread.
struct Engine {
    config: ServerConfig,
    gate: HostGate,
    inbound: Arc<InboundQueue>,
    layer: Arc<SocketIoLayer>,
    raw: Option<Arc<RawEngineLayer>>,
    sessions: Mutex<SessionTable>,
}

/// Live sessions by sid, with the endpoint each belongs to.
type SessionTable = foldhash::HashMap<Arc<str>, (Arc<EngineSession>, Endpoint)>;

/// Which endpoint a session belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    SocketIo,
    Engine,
}

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

impl Engine {
    fn handshake(
        &self,
        req: &Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Handshake {
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

    fn handler(&self, endpoint: Endpoint) -> Arc<dyn EngineHandler> {
        match (endpoint, &self.raw) {
            (Endpoint::Engine, Some(raw)) => raw.clone(),
            _ => self.layer.clone(),
        }
    }

    /// The session `sid` if it belongs to `endpoint`.
    fn session(&self, sid: &str, endpoint: Endpoint) -> Option<Arc<EngineSession>> {
        self.sessions
            .lock()
            .get(sid)
            .filter(|(_, e)| *e == endpoint)
            .map(|(s, _)| s.clone())
    }

    fn open_session(
        self: &Arc<Self>,
        handshake: Handshake,
        transport: TransportKind,
        endpoint: Endpoint,
    ) -> Arc<EngineSession> {
        let session = EngineSession::new(new_sid(), Arc::new(handshake), transport);
        let cfg = &self.config;
        let upgrades: &[&str] =
            if transport == TransportKind::Polling && cfg.allow_upgrades && cfg.allow_websocket {
                &["websocket"]
            } else {
                &[]
            };
        session.send(Frame::open(
            &session.sid,
            upgrades,
            cfg.ping_interval.as_millis() as u64,
            cfg.ping_timeout.as_millis() as u64,
            cfg.max_payload,
        ));
        self.sessions
            .lock()
            .insert(session.sid.clone(), (session.clone(), endpoint));
        self.handler(endpoint).on_open(&session);
        // One task per session for its timers: the heartbeat, and on the Socket.IO endpoint the
        // connect timeout (socket.io's connectTimeout: close if no namespace was joined).
        let (engine, s) = (self.clone(), session.clone());
        let connect_deadline =
            (endpoint == Endpoint::SocketIo).then(|| engine.layer.connect_timeout());
        tokio::spawn(async move {
            let cfg = &engine.config;
            let connect = connect_deadline.map(|after| {
                (tokio::time::Instant::now() + after, || {
                    engine.layer.has_sockets(&s.sid)
                })
            });
            let reason =
                heartbeat::run(s.clone(), cfg.ping_interval, cfg.ping_timeout, connect).await;
            engine.end_session(&s, reason);
        });
        session
    }

    /// Forgets a session and tells the layer above; safe to call more than once.
    fn end_session(&self, session: &Arc<EngineSession>, reason: CloseReason) {
        session.close(reason);
        let removed = self.sessions.lock().remove(&session.sid);
        if let Some((_, endpoint)) = removed {
            self.handler(endpoint).on_close(session, reason);
        }
    }

    /// The `Access-Control-*` headers for this request, or Err if its origin is refused.
    fn cors_headers(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, HttpError> {
        let Some(origin) = req.headers().get(ORIGIN) else {
            return Ok(Vec::new());
        };
        let origin_str = origin.to_str().unwrap_or("");
        let allowed = match &self.config.cors {
            CorsPolicy::Disabled => return Ok(Vec::new()),
            CorsPolicy::Any => true,
            CorsPolicy::List(list) => list.iter().any(|o| o == origin_str),
            CorsPolicy::Host => self.gate.origin_allowed(origin_str) == Some(true),
            CorsPolicy::SameOrigin => {
                let header = |name| {
                    req.headers()
                        .get(name)
                        .and_then(|h: &HeaderValue| h.to_str().ok())
                };
                let host = header(HOST).unwrap_or("");
                // Behind a TLS-terminating proxy the page's scheme is the forwarded one.
                let scheme = header(HeaderName::from_static("x-forwarded-proto")).unwrap_or("http");
                origin_str
                    .split_once("://")
                    .is_some_and(|(s, rest)| s.eq_ignore_ascii_case(scheme) && rest == host)
            }
        };
        if !allowed {
            return Err(HttpError::Forbidden);
        }
        // The answer depends on Origin: caches must not reuse it for another origin.
        let mut headers = vec![
            (ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (VARY, HeaderValue::from_static("Origin")),
        ];
        if self.config.cors_credentials {
            headers.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        Ok(headers)
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Result<HttpResponse, Infallible> {
        let endpoint = if req.uri().path() == self.config.path {
            Endpoint::SocketIo
        } else if self.raw.is_some() && self.config.engine_path.as_deref() == Some(req.uri().path())
        {
            Endpoint::Engine
        } else {
            return Ok(self.static_file(&req).await);
        };
        if let Some(refusal) = self.ask_host(&req, remote, local).await {
            return Ok(refusal.response());
        }
        let cors = match self.cors_headers(&req) {
            Ok(h) => h,
            Err(e) => return Ok(e.response()),
        };
        let mut res = self.route(req, remote, local, endpoint).await;
        res.headers_mut().extend(cors);
        Ok(res)
    }

    /// Lets the host decide what only it can: a callable CORS policy (once per origin) and an
    /// `allow_request` hook (once per new session). None means go ahead.
    async fn ask_host(
        &self,
        req: &Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Option<HttpError> {
        let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
        let ask_origin = self.config.cors == CorsPolicy::Host
            && origin.is_some_and(|o| self.gate.origin_allowed(o).is_none());
        let query = EngineQuery::parse(req.uri().query().unwrap_or(""));
        let opens_session =
            req.method() == Method::GET && query.sid.is_none() && query.transport.is_some();
        let ask_request = self.config.authorize_requests && opens_session;
        if !ask_origin && !ask_request {
            return None;
        }
        let asked_origin = if ask_origin {
            origin.map(str::to_owned)
        } else {
            None
        };
        let verdict = self
            .gate
            .ask(
                &self.inbound,
                asked_origin.clone(),
                ask_request,
                Arc::new(self.handshake(req, remote, local)),
            )
            .await;
        if let Some(origin) = asked_origin {
            self.gate.remember_origin(origin, verdict.origin_ok);
        }
        (!verdict.request_ok || (ask_origin && !verdict.origin_ok)).then_some(HttpError::Forbidden)
    }

    async fn route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
        endpoint: Endpoint,
    ) -> HttpResponse {
        if req.method() == Method::OPTIONS {
            return preflight(&req);
        }
        let query = EngineQuery::parse(req.uri().query().unwrap_or(""));
        if query.eio != Some("4") {
            return HttpError::UnsupportedProtocolVersion.response();
        }
        let sid = query.sid.map(str::to_owned);
        match query.transport {
            Some("websocket") if self.config.allow_websocket => {
                self.websocket(req, sid, remote, local, endpoint)
            }
            Some("polling") if self.config.allow_polling => match sid {
                None if req.method() == Method::GET => {
                    let session = self.open_session(
                        self.handshake(&req, remote, local),
                        TransportKind::Polling,
                        endpoint,
                    );
                    let (frames, _) = session.take();
                    text_response(encode_payload(&frames))
                }
                None => HttpError::BadHandshakeMethod.response(),
                Some(sid) => self.poll(req, &sid, endpoint).await,
            },
            _ => HttpError::UnknownTransport.response(),
        }
    }

    /// A GET or POST on an existing polling session.
    async fn poll(
        self: &Arc<Self>,
        req: Request<Incoming>,
        sid: &str,
        endpoint: Endpoint,
    ) -> HttpResponse {
        let Some(session) = self.session(sid, endpoint) else {
            return HttpError::UnknownSid.response();
        };
        if session.transport() == TransportKind::WebSocket {
            return HttpError::BadRequest.response();
        }
        if session.pong_overdue() {
            self.end_session(&session, CloseReason::PingTimeout);
            return HttpError::UnknownSid.response();
        }
        match *req.method() {
            Method::GET => {
                if !session.claim_get() {
                    // Two GETs at once: the client is confused or hostile; end the session.
                    self.end_session(&session, CloseReason::TransportError);
                    return HttpError::BadRequest.response();
                }
                let _slot = SlotGuard {
                    session: &session,
                    get: true,
                };
                let body = polling::get(&session).await;
                if let Some(reason) = session.closed() {
                    self.end_session(&session, reason);
                }
                text_response(body)
            }
            Method::POST => {
                if !session.claim_post() {
                    self.end_session(&session, CloseReason::TransportError);
                    return HttpError::BadRequest.response();
                }
                let _slot = SlotGuard {
                    session: &session,
                    get: false,
                };
                let max = self.config.max_payload;
                let declared = req
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                if declared.is_some_and(|n| n > max) {
                    self.end_session(&session, CloseReason::TransportError);
                    return status_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
                }
                let body = Limited::new(req.into_body(), max);
                let body = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
                    Ok(Ok(collected)) => collected.to_bytes(),
                    Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                        self.end_session(&session, CloseReason::TransportError);
                        return status_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
                    }
                    _ => {
                        self.end_session(&session, CloseReason::TransportError);
                        return HttpError::BadRequest.response();
                    }
                };
                let handler = self.handler(endpoint);
                if polling::post(&session, &handler, &body).is_err() {
                    self.end_session(&session, CloseReason::TransportError);
                    return HttpError::BadRequest.response();
                }
                let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
                res
            }
            _ => HttpError::BadRequest.response(),
        }
    }

    /// A WebSocket: a new session, or the upgrade of a polling one (`sid` given).
    fn websocket(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        sid: Option<String>,
        remote: SocketAddr,
        local: SocketAddr,
        endpoint: Endpoint,
    ) -> HttpResponse {
        if req.method() != Method::GET {
            return HttpError::BadHandshakeMethod.response();
        }
        let Some(accept) = websocket_key(&req) else {
            return HttpError::BadRequest.response();
        };
        let plan = match sid {
            None => WsPlan::Open,
            Some(sid) => {
                let Some(session) = self.session(&sid, endpoint) else {
                    return HttpError::UnknownSid.response();
                };
                if !self.config.allow_upgrades {
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
        let handshake = self.handshake(&req, remote, local);
        let on_upgrade = hyper::upgrade::on(&mut req);
        // Boxed, and finished before the session runs: the upgrade's state is not kept for the
        // connection's lifetime (a task's size is memory per idle connection).
        let start = Box::pin(
            self.clone()
                .start_websocket(on_upgrade, plan, handshake, endpoint),
        );
        let engine = self.clone();
        tokio::spawn(async move {
            let Some((ws, session)) = start.await else {
                return;
            };
            let reason = websocket::run(ws, session.clone(), engine.handler(endpoint)).await;
            engine.end_session(&session, reason);
        });
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
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
    ) -> Option<(WsConn, Arc<EngineSession>)> {
        let Ok(upgraded) = on_upgrade.await else {
            if let WsPlan::Upgrade(s) = &plan {
                s.abort_upgrade();
            }
            return None;
        };
        // Every connection is served over TokioIo<TcpStream>, so this gives the socket
        // back (and what the client sent after its request).
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            if let WsPlan::Upgrade(s) = &plan {
                s.abort_upgrade();
            }
            return None;
        };
        let hyper::upgrade::Parts { io, read_buf, .. } = parts;
        let mut ws = WsConn::new(io.into_inner(), &read_buf, self.config.max_payload);
        // Its allocation is hyper's whole read buffer: not something to keep per socket.
        drop(read_buf);
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
            WsPlan::Open => self.open_session(handshake, TransportKind::WebSocket, endpoint),
        };
        Some((ws, session))
    }

    async fn static_file(&self, req: &Request<Incoming>) -> HttpResponse {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return status_response(StatusCode::NOT_FOUND, "Not Found");
        }
        let Some((path, content_type)) =
            static_files::resolve(&self.config.static_files, req.uri().path())
        else {
            return status_response(StatusCode::NOT_FOUND, "Not Found");
        };
        match tokio::fs::read(&path).await {
            Ok(data) => {
                let mut res = Response::new(Full::new(Bytes::from(data)));
                if let Ok(v) = HeaderValue::from_str(&content_type) {
                    res.headers_mut().insert(CONTENT_TYPE, v);
                }
                res
            }
            Err(_) => status_response(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
}

impl Engine {
    fn execute(&self, cmd: Command) {
        match cmd {
            Command::EngineSend { sid, frames } => {
                if let Some(raw) = &self.raw {
                    raw.send(&sid, &frames);
                }
            }
            Command::EngineClose { sid } => {
                if let Some(raw) = &self.raw {
                    raw.close(&sid);
                }
            }
            Command::Authorize {
                id,
                origin_ok,
                request_ok,
            } => {
                self.gate.answer(
                    id,
                    Verdict {
                        origin_ok,
                        request_ok,
                    },
                );
            }
            Command::Batch(cmds) => {
                for cmd in cmds {
                    self.execute(cmd);
                }
            }
            other => self.layer.execute(other),
        }
    }
}

/// The host's decision about one request.
#[derive(Clone, Copy, Debug)]
struct Verdict {
    origin_ok: bool,
    request_ok: bool,
}

/// Questions to the host that a request waits on, and the host's cached CORS answers.
#[derive(Default)]
struct HostGate {
    next_id: std::sync::atomic::AtomicU64,
    pending: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Verdict>>>,
    origins: Mutex<HashMap<String, bool>>,
}

/// How long a request waits for the host to decide; silence is a refusal.
const HOST_DECISION_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct origins whose CORS answer is remembered.
const ORIGIN_CACHE_LIMIT: usize = 1024;

impl HostGate {
    fn origin_allowed(&self, origin: &str) -> Option<bool> {
        self.origins.lock().get(origin).copied()
    }

    fn remember_origin(&self, origin: String, allowed: bool) {
        let mut origins = self.origins.lock();
        if origins.len() >= ORIGIN_CACHE_LIMIT {
            origins.clear(); // bounded memory under origin-spraying clients
        }
        origins.insert(origin, allowed);
    }

    async fn ask(
        &self,
        inbound: &InboundQueue,
        origin: Option<String>,
        check_request: bool,
        handshake: Arc<Handshake>,
    ) -> Verdict {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().insert(id, tx);
        inbound.push(Inbound::Authorize {
            id,
            origin,
            check_request,
            handshake,
        });
        let refused = Verdict {
            origin_ok: false,
            request_ok: false,
        };
        let verdict = tokio::time::timeout(HOST_DECISION_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.pending.lock().remove(&id);
        verdict.unwrap_or(refused)
    }

    fn answer(&self, id: u64, verdict: Verdict) {
        if let Some(tx) = self.pending.lock().remove(&id) {
            let _ = tx.send(verdict);
        }
    }
}

/// What a WebSocket request leads to.
enum WsPlan {
    /// A new session on this WebSocket.
    Open,
    /// The upgrade of this polling session.
    Upgrade(Arc<EngineSession>),
    /// The session is already upgraded or upgrading: accept, then close this socket.
    Refuse,
}

/// How long a POST body may take to arrive (bounds slow-body clients).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

fn preflight(req: &Request<Incoming>) -> HttpResponse {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(requested) = req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    h.insert(
        VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Headers"),
    );
    res
}

fn text_response(body: Bytes) -> HttpResponse {
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

fn status_response(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, else None.
fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let h = req.headers();
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

/// A running server, as the host sees it.
pub struct ServerHandle {
    commands: mpsc::UnboundedSender<Command>,
    inbound: Arc<InboundQueue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    local_addr: SocketAddr,
}

/// Connections the kernel may hold before `accept`: std's 128 overflowed at 400 handshakes in
/// parallel (TcpExtListenOverflows; each drop costs the client a 1 s SYN retransmit).
const LISTEN_BACKLOG: i32 = 2048;

/// A non-blocking listener on `addr` ("host:port"), with address reuse and a deep backlog.
fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_err = None;
    for sa in addr.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // As every server does: a restart must not wait for TIME_WAIT sockets to expire.
        socket.set_reuse_address(true)?;
        match socket
            .bind(&sa.into())
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(()) => {
                socket.set_nonblocking(true)?;
                return Ok(socket.into());
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

impl ServerHandle {
    /// Binds `addr` (errors come back here, synchronously) and starts the engine thread.
    pub fn start(config: ServerConfig, addr: &str) -> Result<ServerHandle, ServerError> {
        let listener = bind(addr).map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        let local_addr = listener.local_addr()?;
        let inbound = InboundQueue::new()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let engine = Arc::new(Engine {
            layer: SocketIoLayer::new(inbound.clone(), config.connect_timeout),
            raw: config
                .engine_path
                .as_ref()
                .map(|_| RawEngineLayer::new(inbound.clone())),
            inbound: inbound.clone(),
            gate: HostGate::default(),
            sessions: Mutex::default(),
            config,
        });
        let thread = std::thread::Builder::new()
            .name("ferrosio-io".into())
            .spawn(move || {
                runtime.block_on(serve(listener, engine, rx));
            })?;
        Ok(ServerHandle {
            commands: tx,
            inbound,
            thread: Mutex::new(Some(thread)),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.inbound.wake_fd()
    }

    pub fn drain(&self) -> Vec<Inbound> {
        self.inbound.drain()
    }

    /// Returns drained events once converted, to be freed on the engine thread.
    pub fn recycle(&self, items: Vec<Inbound>) {
        self.inbound.recycle(items);
    }

    /// Queues a command; never blocks.
    pub fn command(&self, cmd: Command) -> Result<(), ServerError> {
        self.commands.send(cmd).map_err(|_| ServerError::NotRunning)
    }

    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Starts a graceful shutdown and waits for the engine thread to finish.
    pub fn shutdown(&self, timeout: Duration) {
        let _ = self.commands.send(Command::Shutdown {
            timeout_ms: timeout.as_millis() as u64,
        });
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(0));
    }
}

async fn serve(
    listener: std::net::TcpListener,
    engine: Arc<Engine>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    // Bound to one address, every connection's local address is that one: no getsockname.
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());

    let grace = loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                // The host dropped its handle: stop without waiting.
                None => break Duration::ZERO,
                Some(Command::Shutdown { timeout_ms }) => break Duration::from_millis(timeout_ms),
                Some(cmd) => {
                    engine.execute(cmd);
                    // Apply whatever else is queued before going back to the sockets.
                    let mut stop = None;
                    while let Ok(cmd) = commands.try_recv() {
                        if let Command::Shutdown { timeout_ms } = cmd {
                            stop = Some(Duration::from_millis(timeout_ms));
                            break;
                        }
                        engine.execute(cmd);
                    }
                    if let Some(grace) = stop {
                        break grace;
                    }
                }
            },
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let local = match bound {
                    Some(addr) => addr,
                    None => stream.local_addr().unwrap_or(remote),
                };
                let engine = engine.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| engine.clone().handle(req, remote, local));
                    let conn = hyper::server::conn::http1::Builder::new()
                        // Bounded headers, and a deadline for them: slowloris costs little.
                        .max_buf_size(64 * 1024)
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
        }
    };
    drop(listener);
    // Graceful: every session flushes what is queued, then closes.
    let sessions: Vec<_> = engine
        .sessions
        .lock()
        .values()
        .map(|(s, _)| s.clone())
        .collect();
    for s in &sessions {
        s.close(CloseReason::ServerClose);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while !engine.sessions.lock().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The HTTP fuzz target's way in (see [`crate::fuzzing`]): a fresh engine with one polling
/// session already open, serving one connection over any byte stream with the settings
/// [`serve`] uses. Returns that session's sid (so fuzz input can name it) and the connection.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_connection<IO>(
    config: ServerConfig,
    inbound: Arc<InboundQueue>,
    io: IO,
) -> (Arc<str>, impl std::future::Future<Output = ()>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let engine = Arc::new(Engine {
        layer: SocketIoLayer::new(inbound.clone(), config.connect_timeout),
        raw: None,
        inbound,
        gate: HostGate::default(),
        sessions: Mutex::default(),
        config,
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], 1));
    let handshake = Handshake::new(
        "GET",
        "/socket.io/",
        "EIO=4&transport=polling",
        [],
        addr,
        addr,
    );
    let session = engine.open_session(handshake, TransportKind::Polling, Endpoint::SocketIo);
    let service = hyper::service::service_fn(move |req| engine.clone().handle(req, addr, addr));
    // Same builder settings as `serve`.
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    (session.sid.clone(), async move {
        let _ = conn.await;
    })
}
