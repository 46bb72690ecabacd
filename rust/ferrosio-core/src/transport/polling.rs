//! The HTTP long-polling transport: a GET takes everything queued (waiting until something
//! is), a POST carries `\x1e`-separated packets in.

use std::sync::Arc;

use bytes::Bytes;

use crate::engineio::dispatch::{dispatch, Outcome};
use crate::engineio::packet::{encode_payload, EnginePacket, Frame};
use crate::engineio::session::{DisconnectReason, EngineSession};
use crate::engineio::EngineHandler;
use crate::error::EngineError;

/// Waits until frames are queued or the session closes; returns the response body, of at
/// most about `max_bytes` (at least one packet; the rest waits for the next GET), and whether
/// it may be compressed (not when all its packets were emitted with `compress=False`; as in
/// Node, one compressible packet makes the whole response compressible).
///
/// A closed session answers with what was still queued, so nothing sent before a close is
/// lost, followed by a close packet `1` when the server closed it, or a noop `6` when the
/// client did (as the official server does).
pub async fn get(session: &EngineSession, max_bytes: usize) -> (Bytes, bool) {
    loop {
        let (mut frames, closed) = session.take_up_to(max_bytes);
        if let Some(reason) = closed {
            frames.push(if reason == DisconnectReason::ClientDisconnect {
                Frame::NOOP
            } else {
                Frame::CLOSE
            });
            return (encode_payload(&frames), true);
        }
        if !frames.is_empty() {
            let compressible = frames.iter().any(Frame::compressible);
            return (encode_payload(&frames), compressible);
        }
        session.wait().await;
    }
}

/// Applies the packets of one POST body. An `Err` means the body was malformed (the caller
/// answers 400 and closes the session); a close packet or a message the layer above refuses
/// closes the session here, and the packets after it are dropped.
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
        if let Outcome::Close(reason) = dispatch(session, &**handler, packet)? {
            session.close(reason);
            return Ok(());
        }
    }
    Ok(())
}
