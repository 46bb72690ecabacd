//! Server settings, with python-socketio's defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::socketio::assembler::AttachmentLimits;

/// Which browser origins may connect (checked on polling and WebSocket requests alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// python-socketio's default: only pages served from the same host.
    SameOrigin,
    /// Any origin (reflected in `Access-Control-Allow-Origin`).
    Any,
    /// These origins (`scheme://host[:port]`).
    List(Vec<String>),
    /// No CORS headers and no origin check (a proxy in front handles it).
    Disabled,
    /// The host decides per origin (a Python callable); answers are cached per origin.
    Host,
}

/// One entry of python-socketio's `static_files` mapping.
#[derive(Debug, Clone)]
pub struct StaticRoute {
    /// The URL path (`/` or `/static`).
    pub url: String,
    /// A file, or a directory whose files are served under `url`.
    pub path: PathBuf,
    /// Overrides the type guessed from the file extension.
    pub content_type: Option<String>,
}

/// TLS on the listener: PEM files, read when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// The certificate's private key.
    pub key_file: PathBuf,
    /// If set, clients must present a certificate issued by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Socket.IO endpoint's path, with leading and trailing slash (`/socket.io/`).
    pub path: String,
    /// The bare Engine.IO endpoint's path, if any (`/engine.io/`).
    pub engineio_path: Option<String>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `max_http_buffer_size`: the largest message (WebSocket) or POST body (polling), in bytes.
    pub max_payload: usize,
    /// How long a connection may stay without joining any namespace.
    pub connect_timeout: Duration,
    /// How long a probe WebSocket may take to finish an upgrade.
    pub upgrade_timeout: Duration,
    pub allow_websocket: bool,
    pub allow_polling: bool,
    pub allow_upgrades: bool,
    /// Accept Engine.IO v3 clients (socket.io-client 2.x; Node's `allowEIO3`).
    pub allow_eio3: bool,
    pub cors: CorsPolicy,
    pub cors_credentials: bool,
    pub static_files: Vec<StaticRoute>,
    /// Ask the host before opening a session (an `allow_request` hook).
    pub authorize_requests: bool,
    /// Most binary attachments one packet may announce (Node's socket.io-parser default: 10).
    pub max_attachments: usize,
    /// Most bytes of one packet's binary attachments together; `None`: `max_payload`.
    pub max_attachment_bytes: Option<usize>,
    /// How long the attachments of one binary packet may take to arrive (checked at each
    /// heartbeat tick, so a late packet is caught within one `ping_interval` after this).
    pub attachment_timeout: Duration,
    /// Most bytes that may wait to be written to one client (its outbox, WebSocket backlog,
    /// frames held during an upgrade or a pending CONNECT). Past it a volatile packet is
    /// dropped; any other packet disconnects the client ("send buffer full").
    pub max_send_buffer: usize,
    /// Most bytes of one polling response (at least one packet); the rest waits for the next GET.
    pub max_poll_response: usize,
    /// Most bytes of one connection's messages waiting for the host; past it the engine stops
    /// reading that connection (TCP backpressure) until the host catches up.
    pub max_inbound_buffer: usize,
    /// Most bytes of all connections' messages waiting for the host; past it the engine stops
    /// reading every connection that has messages waiting.
    pub max_inbound_total: usize,
    /// Most rooms one socket may be in (its own sid room aside); a join past it is refused
    /// and reported to the host ([`crate::SocketIoInbound::RoomRefused`]).
    pub max_rooms_per_socket: usize,
    /// Join a cluster of servers over Redis (see [`crate::cluster`]); `None`: this server alone.
    pub cluster: Option<crate::cluster::RedisClusterConfig>,
    /// Forward requests outside the endpoints and static files to the host (its ASGI app)
    /// instead of answering 404 (see `bridge::HttpInbound`).
    pub forward_http: bool,
    /// Serve HTTPS/WSS with these files (`None`: plain HTTP).
    pub tls: Option<ServerTls>,
    /// One of several worker processes on one port (see `server::handoff`); `None`: alone.
    pub worker: Option<WorkerConfig>,
    /// Connection state recovery (`None`: off).
    pub recovery: Option<crate::socketio::recovery::RecoveryConfig>,
    /// The Socket.IO parser every client must use (JSON, or msgpack).
    pub parser: crate::socketio::parser::Parser,
    /// permessage-deflate on WebSockets (Node's `perMessageDeflate`): offered clients get it,
    /// and messages of at least this many bytes are compressed. `None` (the default, as in
    /// Node): not negotiated.
    pub websocket_compression: Option<usize>,
    /// gzip/deflate of polling responses of at least this many bytes, as the request's
    /// `Accept-Encoding` allows (Node's `httpCompression`). `None`: never compressed.
    pub http_compression: Option<usize>,
}

/// This process's place among the workers sharing one port (`ferrosio.run(workers=N)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// This worker's number, `0..count`; the sids of its sessions carry it.
    pub index: u8,
    /// How many workers share the port (at most [`crate::sid::MAX_OWNERS`]).
    pub count: u8,
    /// The directory of the workers' handoff sockets (`<index>.sock`).
    pub dir: PathBuf,
}

impl ServerConfig {
    /// The bounds on binary packets in reassembly.
    pub fn attachment_limits(&self) -> AttachmentLimits {
        AttachmentLimits {
            max_attachments: self.max_attachments,
            max_bytes: self.max_attachment_bytes.unwrap_or(self.max_payload),
            timeout: self.attachment_timeout,
        }
    }
}

/// An endpoint path as the router compares it: a slash at both ends (`engine.io` becomes
/// `/engine.io/`, `/` stays `/`).
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            path: "/socket.io/".into(),
            engineio_path: None,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: Duration::from_secs(10),
            allow_websocket: true,
            allow_polling: true,
            allow_upgrades: true,
            allow_eio3: false,
            cors: CorsPolicy::SameOrigin,
            cors_credentials: true,
            static_files: Vec::new(),
            authorize_requests: false,
            max_attachments: AttachmentLimits::DEFAULT_MAX_ATTACHMENTS,
            max_attachment_bytes: None,
            attachment_timeout: AttachmentLimits::DEFAULT_TIMEOUT,
            max_send_buffer: 16_000_000,
            max_poll_response: 1_000_000,
            max_inbound_buffer: 64_000,
            max_inbound_total: 16_000_000,
            max_rooms_per_socket: crate::socketio::rooms::DEFAULT_MAX_ROOMS_PER_SOCKET,
            cluster: None,
            forward_http: false,
            tls: None,
            worker: None,
            recovery: None,
            parser: Default::default(),
            websocket_compression: None,
            http_compression: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_a_slash_at_both_ends() {
        assert_eq!(normalize_path("engine.io"), "/engine.io/");
        assert_eq!(normalize_path("/socket.io"), "/socket.io/");
        assert_eq!(normalize_path("/a/b/"), "/a/b/");
        assert_eq!(normalize_path(""), "/");
    }
}
