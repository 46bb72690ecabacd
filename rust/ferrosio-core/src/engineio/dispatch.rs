//! The protocol's part of one inbound Engine.IO packet, the same for every transport and for
//! both ends of a connection: a ping is answered with a pong carrying its payload, a pong feeds
//! the heartbeat, a message goes to the layer above, a close ends the connection, an open packet
//! is refused. What differs between the server and the client is a [`PacketReceiver`]; the
//! transport only acts on the [`Outcome`].

use std::sync::Arc;

use bytes::Bytes;

use super::packet::{EnginePacket, Frame};
use super::session::{DisconnectReason, EngineSession};
use super::EngineHandler;
use crate::error::EngineError;

/// One end of an Engine.IO connection, as the packets it receives see it.
pub trait PacketReceiver {
    /// Why the layer above refused a message.
    type Refusal;
    /// Queues a frame for the peer (the pong that answers a ping).
    fn reply(&mut self, frame: Frame);
    /// A ping arrived, before it is answered: the client's clock for the server's heartbeat.
    fn on_ping(&mut self) -> Result<(), Self::Refusal> {
        Ok(())
    }
    /// A pong arrived: the server's heartbeat is answered.
    fn on_pong(&mut self) {}
    fn on_message(&mut self, text: Bytes) -> Result<(), Self::Refusal>;
    fn on_binary(&mut self, data: Bytes) -> Result<(), Self::Refusal>;
}

/// What the transport does after one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<R> {
    /// Go on with the next packet.
    Continue,
    /// The peer sent a close packet (`1`).
    PeerClosed,
    /// The receiver refused the packet.
    Refused(R),
}

/// Applies one decoded inbound packet to `receiver`. An `Err` is an open packet, which no peer
/// may send after the handshake: malformed input.
pub fn receive<R: PacketReceiver>(
    receiver: &mut R,
    packet: EnginePacket,
) -> Result<Step<R::Refusal>, EngineError> {
    let handled = match packet {
        EnginePacket::Message(text) => receiver.on_message(text),
        EnginePacket::Binary(data) => receiver.on_binary(data),
        EnginePacket::Ping(payload) => receiver.on_ping().map(|()| {
            receiver.reply(Frame::pong(&payload));
        }),
        EnginePacket::Pong(_) => {
            receiver.on_pong();
            Ok(())
        }
        EnginePacket::Close => return Ok(Step::PeerClosed),
        EnginePacket::Noop | EnginePacket::Upgrade => Ok(()),
        EnginePacket::Open(_) => return Err(EngineError::UnexpectedOpen),
    };
    Ok(match handled {
        Ok(()) => Step::Continue,
        Err(refusal) => Step::Refused(refusal),
    })
}

/// What a server transport does after one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with the next packet.
    Continue,
    /// End the session for this reason: the client closed it (`1`), or the layer above
    /// refused a message (a transport error).
    Close(DisconnectReason),
}

/// The server's end: a session and the layer above it.
struct ServerEnd<'a> {
    session: &'a Arc<EngineSession>,
    handler: &'a dyn EngineHandler,
}

impl PacketReceiver for ServerEnd<'_> {
    type Refusal = crate::error::ProtocolError;

    fn reply(&mut self, frame: Frame) {
        self.session.send(frame);
    }

    fn on_ping(&mut self) -> Result<(), Self::Refusal> {
        // v3: the client's ping is its heartbeat (the server's pong answers it), and the
        // clock of the layer's own deadlines (an unfinished binary packet), which the
        // server's ping runs in v4.
        if self.session.protocol.is_v3()
            && !self.session.over_limit()
            && self.session.client_pinged()
        {
            self.handler.on_tick(self.session)?;
        }
        Ok(())
    }

    fn on_pong(&mut self) {
        // A client that answers pings but does not read what it is sent is not alive.
        // v3: the server never pings, so a pong answers nothing.
        if !self.session.over_limit() && !self.session.protocol.is_v3() {
            self.session.pong_received();
        }
    }

    fn on_message(&mut self, text: Bytes) -> Result<(), Self::Refusal> {
        self.handler.on_message(self.session, text)
    }

    fn on_binary(&mut self, data: Bytes) -> Result<(), Self::Refusal> {
        self.handler.on_binary(self.session, data)
    }
}

/// Applies one decoded inbound packet to a server session. An `Err` is a packet only a server
/// may send (`open`): the transport treats it as malformed input.
pub fn dispatch(
    session: &Arc<EngineSession>,
    handler: &dyn EngineHandler,
    packet: EnginePacket,
) -> Result<Outcome, EngineError> {
    Ok(
        match receive(&mut ServerEnd { session, handler }, packet)? {
            Step::Continue => Outcome::Continue,
            Step::PeerClosed => Outcome::Close(DisconnectReason::ClientDisconnect),
            Step::Refused(_) => Outcome::Close(DisconnectReason::TransportError),
        },
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use parking_lot::Mutex;

    use super::*;
    use crate::engineio::heartbeat::Heartbeats;
    use crate::engineio::session::{Handshake, TransportKind};
    use crate::engineio::v3::Protocol;
    use crate::error::ProtocolError;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Records what reaches the layer above; refuses the text message `bad`, and its tick
    /// while `refuse_tick`.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<EnginePacket>>,
        refuse_tick: AtomicBool,
    }

    impl EngineHandler for Recorder {
        fn on_open(&self, _: &Arc<EngineSession>) {}
        fn on_message(&self, _: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError> {
            if text.as_ref() == b"bad" {
                return Err(ProtocolError::Empty);
            }
            self.seen.lock().push(EnginePacket::Message(text));
            Ok(())
        }
        fn on_binary(&self, _: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError> {
            self.seen.lock().push(EnginePacket::Binary(data));
            Ok(())
        }
        fn on_close(&self, _: &Arc<EngineSession>, _: DisconnectReason) {}
        fn on_tick(&self, _: &Arc<EngineSession>) -> Result<(), ProtocolError> {
            if self.refuse_tick.load(Ordering::Relaxed) {
                return Err(ProtocolError::Empty);
            }
            Ok(())
        }
    }

    fn session() -> Arc<EngineSession> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/", "", [], addr, addr);
        EngineSession::new("s".into(), hs, TransportKind::WebSocket)
    }

    fn packet(text: &'static str) -> EnginePacket {
        EnginePacket::decode_text(Bytes::from_static(text.as_bytes())).unwrap()
    }

    #[test]
    fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
        let (s, h) = (session(), Recorder::default());
        assert_eq!(dispatch(&s, &h, packet("2probe")), Ok(Outcome::Continue));
        assert_eq!(dispatch(&s, &h, packet("2")), Ok(Outcome::Continue));
        assert_eq!(
            s.take().0,
            vec![Frame::pong(b"probe"), Frame::Text(Bytes::from_static(b"3"))]
        );
        assert!(h.seen.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_reaches_the_heartbeat() {
        let (s, h) = (session(), Recorder::default());
        s.ping_sent(tokio::time::Instant::now());
        assert!(s.pong_overdue());
        assert_eq!(dispatch(&s, &h, packet("3")), Ok(Outcome::Continue));
        assert!(!s.pong_overdue());
    }

    #[tokio::test(start_paused = true)]
    async fn a_v3_clients_ping_moves_its_deadline_and_runs_the_layers_tick() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/", "", [], addr, addr);
        let s = EngineSession::bounded_with_protocol(
            "s".into(),
            hs,
            TransportKind::WebSocket,
            usize::MAX,
            Protocol::V3 { base64: false },
        );
        let beats = Heartbeats::new(Duration::from_millis(300), Duration::from_millis(200));
        beats.watch(&s, None); // the client's first ping due at 500 ms
        let h = Recorder::default();
        tokio::time::advance(Duration::from_millis(450)).await;
        assert_eq!(dispatch(&s, &h, packet("3")), Ok(Outcome::Continue));
        assert_eq!(dispatch(&s, &h, packet("2")), Ok(Outcome::Continue));
        assert_eq!(s.take().0, vec![Frame::Text(Bytes::from_static(b"3"))]);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!s.pong_overdue(), "due at 950 ms now, not 500");
        // A tick is due again an interval after the last (at 750 ms); the layer refuses it.
        h.refuse_tick.store(true, Ordering::Relaxed);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(
            dispatch(&s, &h, packet("2")),
            Ok(Outcome::Close(DisconnectReason::TransportError))
        );
    }

    #[test]
    fn messages_go_to_the_handler() {
        let (s, h) = (session(), Recorder::default());
        assert_eq!(dispatch(&s, &h, packet("4hello")), Ok(Outcome::Continue));
        assert_eq!(dispatch(&s, &h, packet("bAQI=")), Ok(Outcome::Continue));
        let raw = EnginePacket::Binary(Bytes::from_static(&[9]));
        assert_eq!(dispatch(&s, &h, raw.clone()), Ok(Outcome::Continue));
        assert_eq!(
            *h.seen.lock(),
            vec![
                EnginePacket::Message(Bytes::from_static(b"hello")),
                EnginePacket::Binary(Bytes::from_static(&[1, 2])),
                raw,
            ]
        );
        assert!(s.take().0.is_empty(), "nothing is sent back");
    }

    #[test]
    fn a_refused_message_is_a_transport_error() {
        let (s, h) = (session(), Recorder::default());
        assert_eq!(
            dispatch(&s, &h, packet("4bad")),
            Ok(Outcome::Close(DisconnectReason::TransportError))
        );
    }

    #[test]
    fn close_ends_the_session_as_the_client_asked() {
        let (s, h) = (session(), Recorder::default());
        assert_eq!(
            dispatch(&s, &h, packet("1")),
            Ok(Outcome::Close(DisconnectReason::ClientDisconnect))
        );
        // The transport closes the session: dispatch only says so.
        assert_eq!(s.closed(), None);
    }

    #[test]
    fn noop_and_upgrade_are_ignored_and_open_is_refused() {
        let (s, h) = (session(), Recorder::default());
        assert_eq!(dispatch(&s, &h, packet("6")), Ok(Outcome::Continue));
        assert_eq!(dispatch(&s, &h, packet("5")), Ok(Outcome::Continue));
        assert_eq!(
            dispatch(&s, &h, packet("0{}")),
            Err(EngineError::UnexpectedOpen)
        );
        assert!(s.take().0.is_empty());
        assert!(h.seen.lock().is_empty());
    }
}
