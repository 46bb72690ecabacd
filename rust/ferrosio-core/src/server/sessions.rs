//! The live sessions: the table by sid, which endpoint (Socket.IO or bare Engine.IO) each
//! belongs to and so which layer hears of it, and a session's start (open packet, heartbeat)
//! and end.

use std::sync::{Arc, Weak};

use super::FrontDoor;
use crate::engineio::heartbeat::{HeartbeatHost, Heartbeats};
use crate::engineio::packet::Frame;
use crate::engineio::session::{DisconnectReason, EngineSession, Handshake, TransportKind};
use crate::engineio::v3::Protocol;
use crate::engineio::EngineHandler;
use crate::sid::new_sid;

/// Live sessions by sid, with the endpoint each belongs to.
pub(super) type SessionTable = foldhash::HashMap<Arc<str>, (Arc<EngineSession>, Endpoint)>;

/// Which endpoint a session belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Endpoint {
    /// The Socket.IO endpoint (`config.path`).
    SocketIo,
    /// The bare Engine.IO endpoint (`config.engineio_path`), if the host asked for one.
    EngineIo,
}

impl FrontDoor {
    /// The endpoint at `path`; None for any other path (static files, or 404).
    pub(super) fn endpoint(&self, path: &str) -> Option<Endpoint> {
        if path == self.config.path {
            Some(Endpoint::SocketIo)
        } else if self.engineio.is_some() && self.config.engineio_path.as_deref() == Some(path) {
            Some(Endpoint::EngineIo)
        } else {
            None
        }
    }

    /// The layer that hears of the sessions of `endpoint`.
    pub(super) fn handler(&self, endpoint: Endpoint) -> Arc<dyn EngineHandler> {
        match (endpoint, &self.engineio) {
            (Endpoint::EngineIo, Some(engineio)) => engineio.clone(),
            _ => self.layer.clone(),
        }
    }

    /// The session `sid` if it belongs to `endpoint`.
    pub(super) fn session(&self, sid: &str, endpoint: Endpoint) -> Option<Arc<EngineSession>> {
        self.sessions
            .lock()
            .get(sid)
            .filter(|(_, e)| *e == endpoint)
            .map(|(s, _)| s.clone())
    }

    /// A new session of a client of this Engine.IO revision: its open packet queued, its
    /// layer told, its timers running.
    pub(super) fn open_session(
        self: &Arc<Self>,
        handshake: Handshake,
        transport: TransportKind,
        endpoint: Endpoint,
        protocol: Protocol,
    ) -> Arc<EngineSession> {
        let session = EngineSession::bounded_with_protocol(
            new_sid(),
            handshake,
            transport,
            self.config.max_send_buffer,
            protocol,
        );
        let cfg = &self.config;
        let upgrades: &[&str] =
            if transport == TransportKind::Polling && cfg.allow_upgrades && cfg.allow_websocket {
                &["websocket"]
            } else {
                &[]
            };
        session.send(Frame::open(
            &session.sid,
            upgrades,
            cfg.ping_interval.as_millis() as u64,
            cfg.ping_timeout.as_millis() as u64,
            cfg.max_payload,
        ));
        self.sessions
            .lock()
            .insert(session.sid.clone(), (session.clone(), endpoint));
        self.handler(endpoint).on_open(&session);
        // Its heartbeat (for a v3 client, the deadline of its pings), and on the Socket.IO
        // endpoint the connect timeout (socket.io's connectTimeout: close if no namespace was
        // joined), in the one heartbeat task.
        let connect_timeout =
            (endpoint == Endpoint::SocketIo).then(|| self.layer.connect_timeout());
        self.heartbeats().watch(&session, connect_timeout);
        session
    }

    /// The heartbeats of this server's sessions; the first call starts their task.
    fn heartbeats(self: &Arc<Self>) -> &Arc<Heartbeats> {
        self.heartbeats.get_or_init(|| {
            let heartbeats = Heartbeats::new(self.config.ping_interval, self.config.ping_timeout);
            let host: Weak<dyn HeartbeatHost> = Arc::downgrade(self) as Weak<FrontDoor>;
            tokio::spawn(heartbeats.clone().run(host));
            heartbeats
        })
    }

    /// Forgets a session and tells the layer above; safe to call more than once.
    pub(super) fn end_session(&self, session: &Arc<EngineSession>, reason: DisconnectReason) {
        session.close(reason);
        let removed = self.sessions.lock().remove(&session.sid);
        if let Some((_, endpoint)) = removed {
            self.handler(endpoint).on_close(session, reason);
        }
    }

    /// Closes every live session (each flushes what is queued first); they leave the table as
    /// their transports and timers end them.
    pub(super) fn close_all_sessions(&self) {
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .values()
            .map(|(s, _)| s.clone())
            .collect();
        for s in &sessions {
            s.close(DisconnectReason::ServerDisconnect);
        }
    }

    pub(super) fn has_sessions(&self) -> bool {
        !self.sessions.lock().is_empty()
    }
}

/// What the heartbeat task asks of the front door.
impl HeartbeatHost for FrontDoor {
    fn live_session(&self, sid: &str) -> Option<Arc<EngineSession>> {
        self.sessions.lock().get(sid).map(|(s, _)| s.clone())
    }

    fn joined(&self, session: &Arc<EngineSession>) -> bool {
        self.layer.has_sockets(&session.sid)
    }

    fn tick(&self, session: &Arc<EngineSession>) -> bool {
        let endpoint = self.sessions.lock().get(&session.sid).map(|(_, e)| *e);
        endpoint.is_none_or(|e| self.handler(e).on_tick(session).is_ok())
    }

    fn end(&self, session: &Arc<EngineSession>, reason: DisconnectReason) {
        self.end_session(session, reason);
    }
}
