//! The bare Engine.IO endpoint: messages in and out for the host without Socket.IO on top
//! (python-engineio's server model). It shares the listener with the Socket.IO endpoint.

use foldhash::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::inbound::InboundBudget;
use super::session::EngineSession;
use super::{DisconnectReason, EngineHandler};
use crate::bridge::{EngineIoCommand, EngineIoInbound, InboundQueue};
use crate::error::ProtocolError;

pub struct EngineIoEndpoint {
    sessions: Mutex<HashMap<Arc<str>, Arc<EngineSession>>>,
    inbound: Arc<InboundQueue>,
}

impl EngineIoEndpoint {
    pub fn new(inbound: Arc<InboundQueue>) -> Arc<Self> {
        Arc::new(EngineIoEndpoint {
            sessions: Mutex::default(),
            inbound,
        })
    }

    /// Applies one host command; unknown sids are ignored (the client is gone).
    pub fn execute(&self, cmd: EngineIoCommand) {
        match cmd {
            EngineIoCommand::Send { sid, frames } => {
                if let Some(s) = self.sessions.lock().get(sid.as_str()) {
                    s.send_all(&frames);
                }
            }
            EngineIoCommand::Close { sid } => {
                if let Some(s) = self.sessions.lock().get(sid.as_str()) {
                    s.close(DisconnectReason::ServerDisconnect);
                }
            }
        }
    }

    fn push(&self, item: EngineIoInbound) {
        self.inbound.push(item.into());
    }
}

impl EngineHandler for EngineIoEndpoint {
    fn on_open(&self, session: &Arc<EngineSession>) {
        self.sessions
            .lock()
            .insert(session.sid.clone(), session.clone());
        self.push(EngineIoInbound::Open {
            sid: session.sid.clone(),
            handshake: session.handshake.clone(),
        });
    }

    fn inbound_budget(&self) -> Option<&InboundBudget> {
        Some(self.inbound.budget())
    }

    fn on_message(&self, session: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError> {
        self.inbound.budget().charge(&session.inbound, text.len());
        self.push(EngineIoInbound::Message {
            sid: session.sid.clone(),
            data: text,
            binary: false,
        });
        Ok(())
    }

    fn on_binary(&self, session: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError> {
        self.inbound.budget().charge(&session.inbound, data.len());
        self.push(EngineIoInbound::Message {
            sid: session.sid.clone(),
            data,
            binary: true,
        });
        Ok(())
    }

    fn on_close(&self, session: &Arc<EngineSession>, reason: DisconnectReason) {
        if self.sessions.lock().remove(&session.sid).is_some() {
            self.push(EngineIoInbound::Close {
                sid: session.sid.clone(),
                reason,
            });
        }
    }
}
