//! Why a connection or a socket ended: the one table of python-socketio's reason strings,
//! shared by the engine sessions, the host channel and the client.

/// Why a session (server or client side) or a socket in a namespace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DisconnectReason {
    /// The peer closed: an Engine.IO close packet `1`, a Socket.IO DISCONNECT, or the client's
    /// own `close()`.
    ClientDisconnect,
    /// This server closed it (a `disconnect` call, shutdown, the connect timeout).
    ServerDisconnect,
    /// No pong (server) or no ping (client) in time.
    PingTimeout,
    /// The transport went away (TCP closed, WebSocket closed, a close from the server).
    TransportClose,
    /// The transport failed or the peer broke the protocol.
    TransportError,
    /// Client only: the Engine.IO handshake itself failed.
    ConnectError,
    /// Server only: more was queued for the client than its buffer bound
    /// (`max_buffer_bytes`) while it did not read: a slow or stalled consumer.
    BufferFull,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "client disconnect",
            DisconnectReason::ServerDisconnect => "server disconnect",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::ConnectError => "connect error",
            DisconnectReason::BufferFull => "send buffer full",
        }
    }
}
