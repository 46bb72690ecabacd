//! The protocol's part of one inbound Engine.IO packet, the same on every transport: a ping is
//! answered, a pong feeds the heartbeat, a message goes to the layer above. The transport only
//! acts on the [`Outcome`] (keep reading, or end the session).

use std::sync::Arc;

use super::packet::{EnginePacket, Frame};
use super::session::{DisconnectReason, EngineSession};
use super::EngineHandler;
use crate::error::EngineError;

/// What the transport does after one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with the next packet.
    Continue,
    /// End the session for this reason: the client closed it (`1`), or the layer above
    /// refused a message (a transport error).
    Close(DisconnectReason),
}

/// Applies one decoded inbound packet to `session`. An `Err` is a packet only a server may
/// send (`open`): the transport treats it as malformed input.
pub fn dispatch(
    session: &Arc<EngineSession>,
    handler: &dyn EngineHandler,
    packet: EnginePacket,
) -> Result<Outcome, EngineError> {
    let handled = match packet {
        EnginePacket::Message(text) => handler.on_message(session, text),
        EnginePacket::Binary(data) => handler.on_binary(session, data),
        EnginePacket::Ping(payload) => {
            session.send(Frame::pong(&payload));
            Ok(())
        }
        EnginePacket::Pong(_) => {
            // A client that answers pings but does not read what it is sent is not alive.
            if !session.over_limit() {
                session.pong_received();
            }
            Ok(())
        }
        EnginePacket::Close => return Ok(Outcome::Close(DisconnectReason::ClientDisconnect)),
        EnginePacket::Noop | EnginePacket::Upgrade => Ok(()),
        EnginePacket::Open(_) => return Err(EngineError::UnexpectedOpen),
    };
    Ok(match handled {
        Ok(()) => Outcome::Continue,
        Err(_) => Outcome::Close(DisconnectReason::TransportError),
    })
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
        s.wait_pong().await; // the pong was signalled, so this does not hang
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
