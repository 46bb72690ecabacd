//! A bare Engine.IO endpoint for the host: messages in and out without Socket.IO on top
//! (python-engineio's server model). It shares the listener with the Socket.IO endpoint.

use foldhash::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::bridge::{Inbound, InboundQueue};
use crate::engineio::packet::Frame;
use crate::engineio::session::{CloseReason, EngineSession};
use crate::engineio::EngineHandler;
use crate::error::ProtocolError;

pub struct RawEngineLayer {
    sessions: Mutex<HashMap<Arc<str>, Arc<EngineSession>>>,
    inbound: Arc<InboundQueue>,
}

impl RawEngineLayer {
    pub fn new(inbound: Arc<InboundQueue>) -> Arc<Self> {
        Arc::new(RawEngineLayer {
            sessions: Mutex::default(),
            inbound,
        })
    }

    /// Queues frames for a session; unknown sids are ignored (the client is gone).
    pub fn send(&self, sid: &str, frames: &[Frame]) {
        if let Some(s) = self.sessions.lock().get(sid) {
            s.send_all(frames);
        }
    }

    pub fn close(&self, sid: &str) {
        if let Some(s) = self.sessions.lock().get(sid) {
            s.close(CloseReason::ServerClose);
        }
    }
}

impl EngineHandler for RawEngineLayer {
    fn on_open(&self, session: &Arc<EngineSession>) {
        self.sessions
            .lock()
            .insert(session.sid.clone(), session.clone());
        self.inbound.push(Inbound::EngineOpen {
            sid: session.sid.clone(),
            handshake: session.handshake.clone(),
        });
    }

    fn on_message(&self, session: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError> {
        self.inbound.push(Inbound::EngineMessage {
            sid: session.sid.clone(),
            data: text,
            binary: false,
        });
        Ok(())
    }

    fn on_binary(&self, session: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError> {
        self.inbound.push(Inbound::EngineMessage {
            sid: session.sid.clone(),
            data,
            binary: true,
        });
        Ok(())
    }

    fn on_close(&self, session: &Arc<EngineSession>, reason: CloseReason) {
        if self.sessions.lock().remove(&session.sid).is_some() {
            self.inbound.push(Inbound::EngineClose {
                sid: session.sid.clone(),
                reason: reason.as_str(),
            });
        }
    }
}
