//! ferrosio-core: an Engine.IO v4 / Socket.IO v5 server engine on tokio.
//!
//! Layers, each knowing only the ones below it: [`engineio`] (packets, sessions),
//! [`socketio`] (codec, namespaces, rooms), [`transport`] (WebSocket, polling), and [`server`]
//! (the HTTP front door and the engine thread). [`bridge`] is the host-facing queue pair.
//! Nothing here knows about Python.

pub mod bridge;
pub mod client;
pub mod config;
pub mod engineio;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod raw_engine;
pub mod rooms;
pub mod server;
pub mod sid;
pub mod socketio;
pub mod transport;

pub use bridge::{Command, DisconnectReason, Inbound, Target};
pub use config::ServerConfig;
pub use error::{EngineError, ProtocolError, ServerError};
pub use server::ServerHandle;
