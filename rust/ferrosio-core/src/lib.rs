//! ferrosio-core: an Engine.IO v4 / Socket.IO v5 server engine on tokio.
//!
//! Layers, each knowing only the ones below it: [`engineio`] (packets, sessions, the bare
//! Engine.IO endpoint), [`socketio`] (codec, reassembly, namespaces, the adapter seam and its
//! rooms), [`transport`] (WebSocket, polling), and [`server`] (the HTTP front door and the
//! engine thread). [`bridge`] is the host-facing queue pair.
//! Nothing here knows about Python.

pub mod bridge;
pub mod client;
pub mod cluster;
pub mod config;
pub mod engineio;
pub mod error;
pub mod server;
pub mod sid;
pub mod socketio;
pub mod transport;

pub use bridge::{Command, Inbound, Target};
pub use config::ServerConfig;
pub use engineio::DisconnectReason;
pub use error::{EngineError, ProtocolError, ServerError};
pub use server::ServerHandle;
