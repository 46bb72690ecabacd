//! The HTTP front door and the engine thread: accepts connections, routes `/socket.io/`
//! requests to the transports, applies host commands, and shuts down gracefully.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::bridge::{Command, Inbound, InboundQueue};
use crate::config::ServerConfig;
use crate::engineio::packet::Frame;
use crate::engineio::session::{CloseReason, EngineSession, Handshake};
use crate::engineio::EngineHandler;
use crate::error::ServerError;
use crate::sid::new_sid;
use crate::socketio::layer::SocketIoLayer;
use crate::transport::websocket::{self, Heartbeat};

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
    layer: Arc<SocketIoLayer>,
    sessions: Mutex<HashMap<Arc<str>, Arc<EngineSession>>>,
}

impl Engine {
    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            interval: self.config.ping_interval,
            timeout: self.config.ping_timeout,
        }
    }

    fn open_session(
        self: &Arc<Self>,
        handshake: Handshake,
        upgrades: &[&str],
    ) -> Arc<EngineSession> {
        let session = EngineSession::new(new_sid(), Arc::new(handshake));
        let cfg = &self.config;
        session.send(Frame::open(
            &session.sid,
            upgrades,
            cfg.ping_interval.as_millis() as u64,
            cfg.ping_timeout.as_millis() as u64,
            cfg.max_payload,
        ));
        self.sessions
            .lock()
            .insert(session.sid.clone(), session.clone());
        self.layer.on_open(&session);
        // Close connections that never join a namespace (socket.io's connectTimeout).
        let (engine, s) = (self.clone(), session.clone());
        tokio::spawn(async move {
            tokio::time::sleep(engine.layer.connect_timeout()).await;
            if s.closed().is_none() && !engine.layer.has_sockets(&s.sid) {
                s.close(CloseReason::ServerClose);
            }
        });
        session
    }

    fn end_session(&self, session: &Arc<EngineSession>, reason: CloseReason) {
        session.close(reason);
        if self.sessions.lock().remove(&session.sid).is_some() {
            self.layer.on_close(session, reason);
        }
    }

    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Result<HttpResponse, Infallible> {
        if req.uri().path() != self.config.path {
            let mut res = Response::new(Full::new(Bytes::from_static(b"Not Found")));
            *res.status_mut() = StatusCode::NOT_FOUND;
            return Ok(res);
        }
        let query_string = req.uri().query().unwrap_or("").to_owned();
        let query = EngineQuery::parse(&query_string);
        if query.eio != Some("4") {
            return Ok(HttpError::UnsupportedProtocolVersion.response());
        }
        let transport = match query.transport {
            Some("websocket") if self.config.allow_websocket => "websocket",
            Some("polling") if self.config.allow_polling => "polling",
            _ => return Ok(HttpError::UnknownTransport.response()),
        };
        if transport == "polling" {
            // Long-polling arrives with the next milestone; refuse it cleanly meanwhile.
            return Ok(HttpError::UnknownTransport.response());
        }
        if req.method() != Method::GET {
            return Ok(HttpError::BadHandshakeMethod.response());
        }
        if query.sid.is_some() {
            // Upgrading a polling session: not before long-polling exists.
            return Ok(HttpError::UnknownSid.response());
        }
        let Some(key) = websocket_key(&req) else {
            return Ok(HttpError::BadRequest.response());
        };
        let handshake = Handshake {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: query_string.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            remote_addr: remote,
            local_addr: local,
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let engine = self.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let io = TokioIo::new(upgraded);
            let ws = WebSocketStream::from_raw_socket(
                io,
                Role::Server,
                Some(websocket::ws_config(engine.config.max_payload)),
            )
            .await;
            let session = engine.open_session(handshake, &[]);
            let reason = websocket::run(
                ws,
                session.clone(),
                engine.layer.clone(),
                engine.heartbeat(),
            )
            .await;
            engine.end_session(&session, reason);
        });
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&key).unwrap_or(HeaderValue::from_static("")),
        );
        Ok(res)
    }
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

impl ServerHandle {
    /// Binds `addr` (errors come back here, synchronously) and starts the engine thread.
    pub fn start(config: ServerConfig, addr: &str) -> Result<ServerHandle, ServerError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let inbound = InboundQueue::new()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let layer = SocketIoLayer::new(inbound.clone(), config.connect_timeout);
        let thread = std::thread::Builder::new()
            .name("ferrosio-io".into())
            .spawn(move || {
                runtime.block_on(serve(listener, config, layer, rx));
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
    config: ServerConfig,
    layer: Arc<SocketIoLayer>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let engine = Arc::new(Engine {
        config,
        layer,
        sessions: Mutex::default(),
    });
    let grace = loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                // The host dropped its handle: stop without waiting.
                None => break Duration::ZERO,
                Some(Command::Shutdown { timeout_ms }) => break Duration::from_millis(timeout_ms),
                Some(cmd) => {
                    engine.layer.execute(cmd);
                    // Apply whatever else is queued before going back to the sockets.
                    let mut stop = None;
                    while let Ok(cmd) = commands.try_recv() {
                        if let Command::Shutdown { timeout_ms } = cmd {
                            stop = Some(Duration::from_millis(timeout_ms));
                            break;
                        }
                        engine.layer.execute(cmd);
                    }
                    if let Some(grace) = stop {
                        break grace;
                    }
                }
            },
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(remote);
                let engine = engine.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| engine.clone().handle(req, remote, local));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .max_buf_size(64 * 1024)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
        }
    };
    drop(listener);
    // Graceful: every session flushes what is queued, then closes.
    let sessions: Vec<_> = engine.sessions.lock().values().cloned().collect();
    for s in &sessions {
        s.close(CloseReason::ServerClose);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while !engine.sessions.lock().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
