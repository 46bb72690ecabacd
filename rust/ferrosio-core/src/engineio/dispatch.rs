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

    fn on_pong(&mut self) {
        // A client that answers pings but does not read what it is sent is not alive.
        if !self.session.over_limit() {
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
    use crate::engineio::session::{Handshake, TransportKind};
    use crate::error::ProtocolError;

    /// Records what reaches the layer above; refuses the text message `bad`.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<EnginePacket>>,
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
    }

    fn session() -> Arc<EngineSession> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/", "", [], addr, addr);
        EngineSession::new("s".into(), Arc::new(hs), TransportKind::WebSocket)
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
