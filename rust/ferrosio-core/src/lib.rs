//! ferrosio-core: an Engine.IO v4 / Socket.IO v5 engine on tokio, server and client.
//!
//! Layers, each knowing only the ones below it: `engineio` (packets, sessions, heartbeats, the
//! bare Engine.IO endpoint), `socketio` (codec, attachment reassembly, namespaces, the adapter
//! seam and its rooms), `transport` (WebSocket, polling), `server` (the HTTP front door and the
//! engine thread) and `client` (the client engine). `bridge` is the typed channel to the host.
//! Nothing here knows about Python.
//!
//! The modules are private: a host sees only what is re-exported below.

mod bridge;
mod client;
mod cluster;
mod config;
mod engineio;
mod error;
mod server;
mod sid;
mod socketio;
mod tls;
mod transport;

/// Entry points for the fuzz targets in `/fuzz` (only with the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;

/// The channel between the engine thread and the host, by audience.
pub use bridge::{
    Command, ControlCommand, ControlInbound, EngineIoCommand, EngineIoInbound, Inbound,
    SocketIoCommand, SocketIoInbound, Target,
};
/// Forwarded HTTP (one port beside the host's ASGI application).
pub use bridge::{HttpCommand, HttpInbound, HTTP_BODY_CREDIT};
pub use client::tls::TlsOptions;
pub use client::{
    ClientCommand, ClientError, ClientHandle, ClientInbound, ConnectTarget, TransportName,
};
pub use cluster::{ClusterChannel, Publisher, RedisClusterConfig};
pub use config::WorkerConfig;
pub use config::{normalize_path, CorsPolicy, ServerConfig, ServerTls, StaticRoute};
pub use engineio::packet::Frame;
pub use engineio::session::Handshake;
pub use engineio::DisconnectReason;
pub use error::{EngineError, ProtocolError, ServerError};
pub use server::tls::ServerTlsError;
pub use server::{ExternalRequest, InProcessServer, ServerHandle, WorkerStats};
pub use socketio::adapter::{
    Adapter, AdapterError, BroadcastFlags, BroadcastOptions, LocalAdapter, LocalSockets,
};
pub use socketio::assembler::AttachmentLimits;
pub use socketio::recovery::RecoveryConfig;
pub use socketio::rooms::RoomIndex;
pub use tls::PemError;
pub use transport::external::{ExternalMessage, Reply};

/// Codec entry points, for hosts that expose them (benchmarks, property tests).
pub mod codec {
    pub use crate::engineio::packet::{encode_payload, EnginePacket, RECORD_SEPARATOR};
    pub use crate::socketio::packet::{encode_message, PacketType, SocketPacket};
    pub use crate::socketio::parser::Parser;
}
