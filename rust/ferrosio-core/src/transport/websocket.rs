//! The WebSocket transport: one task per connection reads frames and writes the session's
//! outbox from one `select!` loop (no split halves, no locks on the socket). The heartbeat
//! runs beside it (see [`crate::engineio::heartbeat`]) and talks through the outbox.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::engineio::packet::{EnginePacket, Frame};
use crate::engineio::session::{CloseReason, EngineSession};
use crate::engineio::EngineHandler;

/// tungstenite settings for a session: message and frame size capped at `max_payload` bytes.
pub fn ws_config(max_payload: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_payload))
        .max_frame_size(Some(max_payload))
        // Frames fed in one wake-up accumulate and leave with the flush, in one write. (0 would
        // write every frame eagerly: a syscall per message.)
        .write_buffer_size(WRITE_BUFFER)
        // tungstenite allocates this per connection and zero-fills it before every read:
        // 128 KiB (its default) costs a large memset per read and memory per idle socket.
        .read_buffer_size(READ_BUFFER)
}

/// Read buffer per WebSocket; larger messages still arrive, in more reads.
const READ_BUFFER: usize = 4096;
/// Bytes of fed frames that make tungstenite write before the flush (bounds one write).
const WRITE_BUFFER: usize = 64 * 1024;

enum Step {
    Continue,
    Close(CloseReason),
}

/// Runs the session over `ws` until it ends; returns why.
pub async fn run<S>(
    mut ws: WebSocketStream<S>,
    session: Arc<EngineSession>,
    handler: Arc<dyn EngineHandler>,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = loop {
        let step = tokio::select! {
            biased;
            () = session.wait() => match flush(&mut ws, &session).await {
                Ok(None) => Step::Continue,
                Ok(Some(reason)) => Step::Close(reason),
                Err(_) => Step::Close(CloseReason::TransportError),
            },
            msg = ws.next() => on_frame(&mut ws, msg, &session, &handler).await,
        };
        if let Step::Close(reason) = step {
            break reason;
        }
    };
    session.close(reason);
    if matches!(reason, CloseReason::ServerClose | CloseReason::PingTimeout) {
        // Flush what was queued before the close, then close cleanly.
        let _ = flush(&mut ws, &session).await;
        let _ = ws.close(None).await;
    }
    reason
}

/// The upgrade handshake on a new WebSocket for a polling session: `2probe` -> `3probe`, a
/// noop to release the pending GET, then the client's `5`. Returns false if the client did
/// anything else, or took longer than `timeout`.
pub async fn probe<S>(
    ws: &mut WebSocketStream<S>,
    session: &EngineSession,
    timeout: Duration,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                return false;
            };
            match text.as_str() {
                "2probe" => {
                    if ws
                        .send(Message::Text(Utf8Bytes::from_static("3probe")))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                    session.send(Frame::NOOP);
                }
                "5" => return true,
                _ => return false,
            }
        }
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .unwrap_or(false)
}

async fn on_frame<S>(
    ws: &mut WebSocketStream<S>,
    msg: Option<Result<Message, WsError>>,
    session: &Arc<EngineSession>,
    handler: &Arc<dyn EngineHandler>,
) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = match msg {
        Some(Ok(Message::Text(t))) => Bytes::from(t),
        Some(Ok(Message::Binary(b))) => {
            return match handler.on_binary(session, b) {
                Ok(()) => Step::Continue,
                Err(_) => Step::Close(CloseReason::TransportError),
            };
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Step::Continue,
        Some(Ok(Message::Close(_))) | None => return Step::Close(CloseReason::TransportClose),
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
            // Oversized: close code 1009 and nothing else.
            let frame = CloseFrame {
                code: CloseCode::Size,
                reason: Utf8Bytes::from_static(""),
            };
            let _ = ws.close(Some(frame)).await;
            return Step::Close(CloseReason::TransportError);
        }
        Some(Err(_)) => return Step::Close(CloseReason::TransportError),
    };
    match EnginePacket::decode_text(text) {
        Ok(EnginePacket::Message(body)) => match handler.on_message(session, body) {
            Ok(()) => Step::Continue,
            Err(_) => Step::Close(CloseReason::TransportError),
        },
        Ok(EnginePacket::Pong(_)) => {
            session.pong_received();
            Step::Continue
        }
        Ok(EnginePacket::Ping(payload)) => {
            let mut pong = Vec::with_capacity(1 + payload.len());
            pong.push(b'3');
            pong.extend_from_slice(&payload);
            session.send(Frame::Text(pong.into()));
            Step::Continue
        }
        Ok(EnginePacket::Close) => Step::Close(CloseReason::ClientClose),
        Ok(EnginePacket::Upgrade | EnginePacket::Noop) => Step::Continue,
        Ok(EnginePacket::Binary(data)) => match handler.on_binary(session, data) {
            Ok(()) => Step::Continue,
            Err(_) => Step::Close(CloseReason::TransportError),
        },
        Ok(EnginePacket::Open(_)) | Err(_) => Step::Close(CloseReason::TransportError),
    }
}

/// Writes everything queued with one flush. `Ok(Some(reason))` when the session was closed.
async fn flush<S>(
    ws: &mut WebSocketStream<S>,
    session: &EngineSession,
) -> Result<Option<CloseReason>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (frames, closed) = session.take();
    if !frames.is_empty() {
        for frame in frames {
            let msg = match frame {
                // A noop only releases a polling GET; it means nothing on a WebSocket.
                Frame::Text(b) if b.as_ref() == b"6" => continue,
                // SAFETY: text frames are built from `&str`s and ASCII by the encoder, or were
                // checked as UTF-8 when received; they are valid UTF-8.
                Frame::Text(b) => Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(b) }),
                Frame::Binary(b) => Message::Binary(b),
            };
            ws.feed(msg).await?;
        }
        ws.flush().await?;
    }
    Ok(closed)
}
