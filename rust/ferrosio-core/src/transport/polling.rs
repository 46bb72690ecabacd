//! The HTTP long-polling transport: a GET takes everything queued (waiting until something
//! is), a POST carries `\x1e`-separated packets in.

use std::sync::Arc;

use bytes::Bytes;

use crate::engineio::packet::{encode_payload, EnginePacket, Frame};
use crate::engineio::session::{DisconnectReason, EngineSession};
use crate::engineio::EngineHandler;
use crate::error::EngineError;

/// Waits until frames are queued or the session closes; returns the response body.
///
/// A closed session answers with what was still queued, so nothing sent before a close is
/// lost, followed by a close packet `1` when the server closed it, or a noop `6` when the
/// client did (as the official server does).
pub async fn get(session: &EngineSession) -> Bytes {
    loop {
        let (mut frames, closed) = session.take();
        if let Some(reason) = closed {
            frames.push(if reason == DisconnectReason::ClientDisconnect {
                Frame::NOOP
            } else {
                Frame::CLOSE
            });
            return encode_payload(&frames);
        }
        if !frames.is_empty() {
            return encode_payload(&frames);
        }
        session.wait().await;
    }
}

/// Applies the packets of one POST body. An `Err` means the body was malformed (the caller
/// answers 400 and closes the session); Socket.IO-level errors close the session themselves.
pub fn post(
    session: &Arc<EngineSession>,
    handler: &Arc<dyn EngineHandler>,
    body: &Bytes,
) -> Result<(), EngineError> {
    if std::str::from_utf8(body).is_err() {
        return Err(EngineError::Utf8);
    }
    let packets = EnginePacket::decode_payload(body)?;
    for packet in packets {
        let result = match packet {
            EnginePacket::Message(text) => handler.on_message(session, text),
            EnginePacket::Binary(data) => handler.on_binary(session, data),
            EnginePacket::Pong(_) => {
                session.pong_received();
                Ok(())
            }
            EnginePacket::Ping(payload) => {
                let mut pong = Vec::with_capacity(1 + payload.len());
                pong.push(b'3');
                pong.extend_from_slice(&payload);
                session.send(Frame::Text(pong.into()));
                Ok(())
            }
            EnginePacket::Close => {
                session.close(DisconnectReason::ClientDisconnect);
                return Ok(());
            }
            EnginePacket::Noop | EnginePacket::Upgrade => Ok(()),
            EnginePacket::Open(_) => return Err(EngineError::UnknownType('0')),
        };
        if result.is_err() {
            session.close(DisconnectReason::TransportError);
            return Ok(());
        }
    }
    Ok(())
}
