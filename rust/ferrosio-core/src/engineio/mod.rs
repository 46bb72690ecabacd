//! Engine.IO v4: packets, polling payloads, sessions, heartbeats, what an inbound packet
//! means for its session ([`dispatch`]) whatever transport carried it, the close reasons, and
//! the bare Engine.IO endpoint ([`endpoint`]); v3's differences, for older clients, in [`v3`].
pub mod dispatch;
pub mod endpoint;
pub mod heartbeat;
pub mod inbound;
pub mod packet;
pub mod reason;
pub mod session;
pub mod trim;
pub mod v3;

pub use reason::DisconnectReason;
pub use session::EngineSession;

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
    fn on_close(&self, session: &Arc<EngineSession>, reason: DisconnectReason);
    /// The session's heartbeat timer fired (once per ping interval): a chance to enforce
    /// deadlines without a timer of one's own. An `Err` closes the session as a protocol error.
    fn on_tick(&self, _session: &Arc<EngineSession>) -> Result<(), ProtocolError> {
        Ok(())
    }
    /// The bound on what this layer's host has not drained yet; transports stop reading a
    /// connection past it. None: no bound.
    fn inbound_budget(&self) -> Option<&inbound::InboundBudget> {
        None
    }
}
