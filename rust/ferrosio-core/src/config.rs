//! Server settings, with python-socketio's defaults.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Engine.IO path, with leading and trailing slash (`/socket.io/`).
    pub path: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `max_http_buffer_size`: the largest message (WebSocket) or POST body (polling), in bytes.
    pub max_payload: usize,
    /// How long a connection may stay without joining any namespace.
    pub connect_timeout: Duration,
    pub allow_websocket: bool,
    pub allow_polling: bool,
    pub allow_upgrades: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            allow_websocket: true,
            allow_polling: true,
            allow_upgrades: true,
        }
    }
}
