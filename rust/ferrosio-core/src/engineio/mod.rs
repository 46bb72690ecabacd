//! Engine.IO v4: packets, polling payloads, sessions, heartbeats, and what an inbound packet
//! means for its session ([`dispatch`]), whatever transport carried it.
pub mod dispatch;
pub mod heartbeat;
pub mod packet;
pub mod session;

pub use packet::{EnginePacket, Frame};
pub use session::{CloseReason, EngineSession, TransportKind};

use std::sync::Arc;

use bytes::Bytes;

use crate::error::ProtocolError;

/// What the layer above Engine.IO (Socket.IO) is told about a session.
///
/// Called synchronously on the engine thread; implementations must not block.
pub trait EngineHandler: Send + Sync + 'static {
    fn on_open(&self, session: &Arc<EngineSession>);
    /// A text message (without the `4`). An `Err` closes the session as a protocol error.
    fn on_message(&self, session: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError>;
    /// A binary message. An `Err` closes the session as a protocol error.
    fn on_binary(&self, session: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError>;
    /// The session is gone; called exactly once.
    fn on_close(&self, session: &Arc<EngineSession>, reason: CloseReason);
}
