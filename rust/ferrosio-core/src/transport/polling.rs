//! The HTTP long-polling transport: a GET takes everything queued (waiting until something
//! is), a POST carries `\x1e`-separated packets in.

use std::sync::Arc;

use bytes::Bytes;

use crate::engineio::dispatch::{dispatch, Outcome};
use crate::engineio::packet::{encode_payload, EnginePacket, Frame};
use crate::engineio::session::{DisconnectReason, EngineSession};
use crate::engineio::v3;
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
    let frames = next_response(session, max_bytes).await;
    (encode_payload(&frames), compressible(&frames))
}

/// [`get`] for an Engine.IO v3 session: its payload framing (see [`v3::encode_payload`]);
/// the first flag says whether the body is binary (`application/octet-stream`), the second
/// whether it may be compressed (as for [`get`]).
pub async fn get_v3(
    session: &EngineSession,
    max_bytes: usize,
    base64: bool,
) -> (Bytes, bool, bool) {
    let frames = next_response(session, max_bytes).await;
    let (body, binary) = v3::encode_payload(&frames, base64);
    (body, binary, compressible(&frames))
}

/// Whether a response of these frames may be compressed: one compressible packet is enough.
fn compressible(frames: &[Frame]) -> bool {
    frames.iter().any(Frame::compressible)
}

/// The frames of the next response: waits until some are queued or the session closes.
async fn next_response(session: &EngineSession, max_bytes: usize) -> Vec<Frame> {
    loop {
        let (mut frames, closed) = session.take_up_to(max_bytes);
        if let Some(reason) = closed {
            frames.push(if reason == DisconnectReason::ClientDisconnect {
                Frame::NOOP
            } else {
                Frame::CLOSE
            });
            return frames;
        }
        if !frames.is_empty() {
            return frames;
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
    apply(session, handler, EnginePacket::decode_payload(body)?)
}

/// [`post`] for an Engine.IO v3 session: a text payload, or a binary one (`binary`: the
/// request's content type was `application/octet-stream`).
pub fn post_v3(
    session: &Arc<EngineSession>,
    handler: &Arc<dyn EngineHandler>,
    body: &Bytes,
    binary: bool,
) -> Result<(), EngineError> {
    let packets = if binary {
        v3::decode_binary_payload(body)?
    } else {
        v3::decode_text_payload(body)?
    };
    apply(session, handler, packets)
}

/// Dispatches decoded packets in order; a close stops there.
fn apply(
    session: &Arc<EngineSession>,
    handler: &Arc<dyn EngineHandler>,
    packets: Vec<EnginePacket>,
) -> Result<(), EngineError> {
    for packet in packets {
        if let Outcome::Close(reason) = dispatch(session, &**handler, packet)? {
            session.close(reason);
            return Ok(());
        }
    }
    Ok(())
}
