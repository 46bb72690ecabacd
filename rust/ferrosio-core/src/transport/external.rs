//! An externally-fed WebSocket: the host's web server (an ASGI server, or an in-process test
//! client) owns the socket and its framing; this transport only sees whole messages.
//!
//! Inbound, the host hands each message to [`ExternalWs::receive`], which runs on the host's
//! thread: the upgrade probe, then [`dispatch`] as on every other transport, with no thread hop.
//! Outbound, the session's outbox is drained by the host with [`ExternalWs::take`] when told
//! (see `server::external`): one notice per batch, however many frames it holds, and none
//! while a notice is unanswered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::engineio::dispatch::{dispatch, Outcome};
use crate::engineio::packet::{EnginePacket, Frame};
use crate::engineio::session::{DisconnectReason, EngineSession};
use crate::engineio::v3::{self, Protocol};
use crate::engineio::EngineHandler;

/// WebSocket close code for a message over `max_payload` (RFC 6455: message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// One message from the host's WebSocket.
#[derive(Debug, Clone)]
pub enum ExternalMessage {
    Text(Bytes),
    Binary(Bytes),
}

/// What the host does after handing over a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing now (whatever the session has to send comes through `take`).
    Nothing,
    /// Send this text frame now: the probe's answer, outside the session's outbox.
    Send(&'static str),
    /// Close the WebSocket with this code; the session is closed already.
    Close(u16),
}

/// Where the connection is in its life.
enum State {
    /// The front door has not decided yet (the host waits for its answer before receiving).
    Pending,
    /// Probing to upgrade this polling session: `2probe`, then `5`.
    Probing(Arc<EngineSession>),
    /// Carrying this session.
    Open(Arc<EngineSession>),
    /// Refused, failed its probe, or its session ended.
    Closed,
}

/// An externally-fed WebSocket connection.
pub struct ExternalWs {
    /// The host's name for the connection.
    id: u64,
    state: Mutex<State>,
    handler: Mutex<Option<Arc<dyn EngineHandler>>>,
    max_payload: usize,
    /// A ready notice is out and not answered by `take` yet: no second one.
    notified: AtomicBool,
    /// The client sent `2probe` (the probe is answered; `5` is awaited).
    probed: AtomicBool,
    /// An in-process client's reader (`client::in_process`): woken directly when frames are
    /// queued, instead of a ready notice on the host's inbound queue. `None` for a host's
    /// connection (ASGI).
    local: Option<AtomicWaker>,
}

impl ExternalWs {
    pub fn new(id: u64, max_payload: usize) -> Arc<Self> {
        Arc::new(ExternalWs {
            id,
            state: Mutex::new(State::Pending),
            handler: Mutex::new(None),
            max_payload,
            notified: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            local: None,
        })
    }

    /// A connection for an in-process client: its reader registers a waker
    /// ([`ExternalWs::register_local`]) rather than waiting for ready notices.
    pub fn new_local(max_payload: usize) -> Arc<Self> {
        Arc::new(ExternalWs {
            id: 0,
            state: Mutex::new(State::Pending),
            handler: Mutex::new(None),
            max_payload,
            notified: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            local: Some(AtomicWaker::new()),
        })
    }

    /// Wakes the in-process reader, if this is an in-process connection (false otherwise).
    pub fn wake_local(&self) -> bool {
        match &self.local {
            Some(waker) => {
                waker.wake();
                true
            }
            None => false,
        }
    }

    /// True for an in-process client's connection.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The in-process reader waits for frames: woken by the next [`ExternalWs::wake_local`].
    pub fn register_local(&self, waker: &Waker) {
        if let Some(local) = &self.local {
            local.register(waker);
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Carries the new `session` from now on; false if the host closed the connection
    /// before the front door decided (the caller then ends the session).
    pub fn open(&self, session: Arc<EngineSession>, handler: Arc<dyn EngineHandler>) -> bool {
        let mut state = self.state.lock();
        if !matches!(*state, State::Pending) {
            return false;
        }
        *self.handler.lock() = Some(handler);
        *state = State::Open(session);
        true
    }

    /// Starts probing to upgrade `session`; false if the host closed the connection before
    /// the front door decided (the caller then aborts the upgrade).
    pub fn probe(&self, session: Arc<EngineSession>, handler: Arc<dyn EngineHandler>) -> bool {
        let mut state = self.state.lock();
        if !matches!(*state, State::Pending) {
            return false;
        }
        *self.handler.lock() = Some(handler);
        *state = State::Probing(session);
        true
    }

    /// The session it carries, once open.
    pub fn session(&self) -> Option<Arc<EngineSession>> {
        match &*self.state.lock() {
            State::Open(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// True while the upgrade probe has not finished.
    pub fn probing(&self) -> bool {
        matches!(&*self.state.lock(), State::Probing(_))
    }

    /// While the client, told `3probe`, pauses polling: releases a polling GET it may have
    /// sent before `3probe` arrived (the client polls again until it sees `3probe`), as the
    /// official server does every 100 ms. Only a waiting GET gets a noop, so none pile up.
    pub fn nudge_polling(&self) {
        if !self.probed.load(Ordering::Acquire) {
            return;
        }
        if let State::Probing(session) = &*self.state.lock() {
            if session.get_in_flight() {
                session.send(Frame::NOOP);
            }
        }
    }

    /// Ends the connection on this side: a probe is abandoned (its session stays on polling),
    /// an open session is closed with `reason`.
    pub fn close(&self, reason: DisconnectReason) {
        let old = std::mem::replace(&mut *self.state.lock(), State::Closed);
        match old {
            State::Probing(s) => s.abort_upgrade(),
            State::Open(s) => {
                s.close(reason);
            }
            State::Pending | State::Closed => {}
        }
    }

    /// Claims the right to send a ready notice; false if one is out already.
    pub fn claim_notice(&self) -> bool {
        !self.notified.swap(true, Ordering::AcqRel)
    }

    /// Everything the session has queued, and whether the WebSocket must close after it.
    /// Answers the last notice: the next batch gets a new one.
    pub fn take(&self) -> (Vec<Frame>, bool) {
        self.notified.store(false, Ordering::Release);
        let session = match &*self.state.lock() {
            State::Open(s) => s.clone(),
            State::Closed => return (Vec::new(), true),
            State::Pending | State::Probing(_) => return (Vec::new(), false),
        };
        let (mut frames, closed) = session.take();
        // A noop only releases a polling GET; it means nothing on a WebSocket.
        frames.retain(|f| !matches!(f, Frame::Text(b) if b.as_ref() == b"6"));
        if let Protocol::V3 { base64 } = session.protocol {
            frames = frames
                .into_iter()
                .map(|f| v3::websocket_frame(f, base64))
                .collect();
        }
        if let Some(reason) = closed {
            if !matches!(
                reason,
                DisconnectReason::ServerDisconnect | DisconnectReason::PingTimeout
            ) {
                // The client closed or broke it: nothing more is owed to it.
                frames.clear();
            }
            return (frames, true);
        }
        (frames, false)
    }

    /// One message from the client. Runs on the host's thread.
    pub fn receive(&self, msg: ExternalMessage) -> Reply {
        let len = match &msg {
            ExternalMessage::Text(b) | ExternalMessage::Binary(b) => b.len(),
        };
        if len > self.max_payload {
            self.close(DisconnectReason::TransportError);
            return Reply::Close(CLOSE_TOO_BIG);
        }
        let state = self.state.lock();
        match &*state {
            State::Open(session) => {
                let session = session.clone();
                drop(state);
                let Some(handler) = self.handler.lock().clone() else {
                    return Reply::Close(1011);
                };
                let packet = match msg {
                    ExternalMessage::Text(text) if session.protocol.is_v3() => {
                        v3::decode_text(text)
                    }
                    ExternalMessage::Binary(data) if session.protocol.is_v3() => {
                        v3::decode_binary_frame(data)
                    }
                    ExternalMessage::Text(text) => EnginePacket::decode_text(text),
                    ExternalMessage::Binary(data) => Ok(EnginePacket::Binary(data)),
                };
                match packet.and_then(|p| dispatch(&session, &*handler, p)) {
                    Ok(Outcome::Continue) => {}
                    Ok(Outcome::Close(reason)) => {
                        session.close(reason);
                    }
                    Err(_) => {
                        session.close(DisconnectReason::TransportError);
                    }
                }
                // A close reaches the host through `take`, after what was queued before it.
                Reply::Nothing
            }
            State::Probing(session) => {
                let session = session.clone();
                drop(state);
                match msg {
                    ExternalMessage::Text(t) if t.as_ref() == b"2probe" => {
                        // Releases the pending polling GET so the client can pause polling
                        // (a GET that comes later gets its noop from `nudge_polling`).
                        self.probed.store(true, Ordering::Release);
                        if session.get_in_flight() {
                            session.send(Frame::NOOP);
                        }
                        Reply::Send("3probe")
                    }
                    ExternalMessage::Text(t) if t.as_ref() == b"5" => {
                        session.finish_upgrade();
                        *self.state.lock() = State::Open(session);
                        Reply::Nothing
                    }
                    _ => {
                        self.close(DisconnectReason::TransportError);
                        Reply::Close(1002)
                    }
                }
            }
            State::Pending | State::Closed => Reply::Close(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::session::{Handshake, TransportKind};
    use crate::error::ProtocolError;
    use std::net::SocketAddr;

    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<Bytes>>,
    }

    impl EngineHandler for Recorder {
        fn on_open(&self, _: &Arc<EngineSession>) {}
        fn on_message(&self, _: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError> {
            self.seen.lock().push(text);
            Ok(())
        }
        fn on_binary(&self, _: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError> {
            self.seen.lock().push(data);
            Ok(())
        }
        fn on_close(&self, _: &Arc<EngineSession>, _: DisconnectReason) {}
    }

    fn session(kind: TransportKind) -> Arc<EngineSession> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "", [], addr, addr);
        EngineSession::new("s".into(), hs, kind)
    }

    fn text(s: &'static str) -> ExternalMessage {
        ExternalMessage::Text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn messages_reach_the_layer_and_pings_are_answered_through_take() {
        let rec = Arc::new(Recorder::default());
        let ws = ExternalWs::new(1, 100);
        let s = session(TransportKind::WebSocket);
        ws.open(s.clone(), rec.clone());
        assert_eq!(ws.receive(text("4hello")), Reply::Nothing);
        assert_eq!(ws.receive(text("2")), Reply::Nothing);
        assert_eq!(rec.seen.lock().as_slice(), [Bytes::from_static(b"hello")]);
        assert!(ws.claim_notice());
        assert!(!ws.claim_notice(), "one notice until taken");
        let (frames, closed) = ws.take();
        assert_eq!(frames, vec![Frame::pong(b"")]);
        assert!(!closed);
        assert!(ws.claim_notice());
    }

    #[test]
    fn a_connection_closed_before_the_decision_takes_no_session() {
        let ws = ExternalWs::new(1, 100);
        ws.close(DisconnectReason::TransportClose);
        assert!(!ws.open(
            session(TransportKind::WebSocket),
            Arc::new(Recorder::default())
        ));
        assert!(!ws.probe(
            session(TransportKind::Polling),
            Arc::new(Recorder::default())
        ));
        assert_eq!(ws.take(), (vec![], true));
    }

    #[test]
    fn a_message_over_max_payload_closes_with_1009() {
        let ws = ExternalWs::new(1, 3);
        let s = session(TransportKind::WebSocket);
        ws.open(s.clone(), Arc::new(Recorder::default()));
        assert_eq!(ws.receive(text("41234")), Reply::Close(CLOSE_TOO_BIG));
        assert_eq!(s.closed(), Some(DisconnectReason::TransportError));
    }

    #[test]
    fn the_probe_upgrades_and_anything_else_aborts_it() {
        let s = session(TransportKind::Polling);
        assert!(s.begin_upgrade());
        let ws = ExternalWs::new(1, 100);
        ws.probe(s.clone(), Arc::new(Recorder::default()));
        assert!(s.claim_get(), "a polling GET waits");
        assert_eq!(ws.receive(text("2probe")), Reply::Send("3probe"));
        assert_eq!(s.take().0, vec![Frame::NOOP], "the pending GET is released");
        s.release_get();
        ws.nudge_polling();
        assert_eq!(s.take().0, vec![], "no GET waits: no noop");
        assert!(s.claim_get());
        ws.nudge_polling();
        assert_eq!(
            s.take().0,
            vec![Frame::NOOP],
            "a GET that came later is released too"
        );
        s.release_get();
        assert_eq!(ws.receive(text("5")), Reply::Nothing);
        assert_eq!(s.transport(), TransportKind::WebSocket);
        assert!(ws.session().is_some());

        let s = session(TransportKind::Polling);
        assert!(s.begin_upgrade());
        let ws = ExternalWs::new(1, 100);
        ws.probe(s.clone(), Arc::new(Recorder::default()));
        assert_eq!(ws.receive(text("4early")), Reply::Close(1002));
        assert_eq!(s.transport(), TransportKind::Polling);
        assert_eq!(s.closed(), None, "the polling session goes on");
    }

    #[test]
    fn a_client_close_flushes_nothing_a_server_close_flushes_all() {
        let ws = ExternalWs::new(1, 100);
        let s = session(TransportKind::WebSocket);
        ws.open(s.clone(), Arc::new(Recorder::default()));
        s.send(Frame::Text(Bytes::from_static(b"4a")));
        s.close(DisconnectReason::ServerDisconnect);
        assert_eq!(
            ws.take(),
            (vec![Frame::Text(Bytes::from_static(b"4a"))], true)
        );

        let ws = ExternalWs::new(1, 100);
        let s = session(TransportKind::WebSocket);
        ws.open(s.clone(), Arc::new(Recorder::default()));
        s.send(Frame::Text(Bytes::from_static(b"4a")));
        assert_eq!(ws.receive(text("1")), Reply::Nothing);
        assert_eq!(ws.take(), (vec![], true));
    }
}
