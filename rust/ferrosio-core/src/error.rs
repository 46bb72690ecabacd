//! Typed errors, one enum per layer.

use thiserror::Error;

/// A malformed Engine.IO packet or polling payload.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum EngineError {
    #[error("empty engine.io packet")]
    Empty,
    #[error("unknown engine.io packet type {0:?}")]
    UnknownType(char),
    #[error("a client may not send an open packet")]
    UnexpectedOpen,
    #[error("invalid base64 in binary packet")]
    Base64,
    #[error("engine.io text packet is not valid UTF-8")]
    Utf8,
    #[error("malformed engine.io v3 payload: a packet length is missing, invalid or wrong")]
    V3Length,
    #[error("engine.io v3 binary packet is not a message")]
    V3BinaryType,
}

/// A malformed Socket.IO packet.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum ProtocolError {
    #[error("empty socket.io packet")]
    Empty,
    #[error("unknown socket.io packet type {0:?}")]
    UnknownType(char),
    #[error("invalid attachment count")]
    BadAttachments,
    #[error("too many binary attachments ({0})")]
    TooManyAttachments(u64),
    #[error("binary attachments of one packet exceed {0} bytes")]
    PacketTooLarge(usize),
    #[error("binary attachments did not arrive in time")]
    AttachmentTimeout,
    #[error("invalid ack id")]
    BadAckId,
    #[error("invalid payload: {0}")]
    BadPayload(&'static str),
    #[error("unexpected binary message: no binary packet awaits attachments (does the peer use the msgpack parser?)")]
    UnexpectedAttachment,
    #[error("text packet while binary attachments were expected")]
    MissingAttachments,
    #[error("namespace is not valid UTF-8")]
    BadNamespace,
    #[error("a client may not send CONNECT_ERROR")]
    UnexpectedConnectError,
    #[error("unknown session")]
    UnknownSession,
    #[error("malformed msgpack packet: {0}")]
    BadMsgPack(String),
    #[error("text message on a connection using the msgpack parser (does the peer use the default parser?)")]
    TextWithMsgPack,
    #[error("{0}")]
    Engine(#[from] EngineError),
}

/// Errors of the server engine as a whole (binding, listener, commands).
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] crate::server::tls::ServerTlsError),
    #[error("server is not running")]
    NotRunning,
    /// A TLS connection cannot be handed to another worker process (its session state is in
    /// this one): TLS is for a single process, or terminated in front of the workers.
    #[error("TLS is not supported with several workers on one port: terminate TLS in a proxy in front of them")]
    TlsWithWorkers,
    /// A request handed over by the host that HTTP cannot carry (a bad method, path or header).
    #[error("malformed request from the host")]
    BadRequest,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}
