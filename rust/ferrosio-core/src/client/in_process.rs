//! The in-process transport: the client engine's WebSocket, without a socket, to a server of
//! the same process (`server::in_process`).
//!
//! The connection loop (`conn`) sees a [`WsLink`], a stream and sink of WebSocket messages
//! that is either a real WebSocket over TCP/TLS or a [`LocalWs`]. A `LocalWs` hands each
//! message straight to the server's session on this thread (the server's decoder and
//! dispatch run here, as they run on the ASGI server's thread for an ASGI host's WebSocket),
//! and waits on the session's outbox itself for what the server sends. No HTTP, no framing,
//! no thread hop per message either way; everything else (the handshake's decisions, heartbeats, Socket.IO,
//! reconnection, the host's policy) is the same code as over TCP.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::http::request_path;
use super::tls::ClientStream;
use super::ConnectTarget;
use crate::engineio::packet::Frame;
use crate::engineio::session::{DisconnectReason, EngineSession};
use crate::server::{ExternalRequest, InProcessServer};
use crate::transport::external::{ExternalMessage, ExternalWs, Reply};

/// The peer and local address an in-process connection shows the server (its environ's
/// `REMOTE_ADDR`/`REMOTE_PORT`, `SERVER_NAME`/`SERVER_PORT`): loopback, port 0, which no
/// TCP connection has.
pub const IN_PROCESS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
/// The `Host` header of an in-process connection, unless the caller's headers set one.
pub const IN_PROCESS_HOST: &str = "inprocess";

/// A WebSocket as the connection loop sees it.
pub enum WsLink {
    Net(Box<WebSocketStream<ClientStream>>),
    Local(Box<LocalWs>),
}

/// The client's end of an in-process WebSocket.
pub struct LocalWs {
    conn: Arc<ExternalWs>,
    /// Messages taken from the session (or answered by the transport), not yet read. Filled
    /// only when empty, by one take of the session's outbox: bounded by the session's send
    /// buffer (`max_send_buffer`, past which the server closes the session).
    pending: VecDeque<Message>,
    /// The session is over: nothing more after `pending`.
    ended: bool,
    /// ... and ended as a dropped TCP connection would: an error after `pending`.
    reset: bool,
    /// Resolves when the session queues frames (or closes): the reader waits on the session's
    /// outbox directly, so a batch from the server reaches this thread with no hop through
    /// the server's engine thread. Made again after each wake-up (one allocation per batch).
    outbox_wait: Option<Pin<Box<dyn Future<Output = ()>>>>,
    session: Option<Arc<EngineSession>>,
}

impl LocalWs {
    fn new(conn: Arc<ExternalWs>) -> Self {
        LocalWs {
            conn,
            pending: VecDeque::new(),
            ended: false,
            reset: false,
            outbox_wait: None,
            session: None,
        }
    }

    /// Polls the wait on the session's outbox; true if it fired (look again).
    fn outbox_ready(&mut self, cx: &mut Context<'_>) -> bool {
        if self.session.is_none() {
            self.session = self.conn.session();
        }
        let Some(session) = &self.session else {
            return false;
        };
        let wait = self.outbox_wait.get_or_insert_with(|| {
            let session = session.clone();
            Box::pin(async move { session.wait().await })
        });
        if wait.as_mut().poll(cx).is_ready() {
            self.outbox_wait = None;
            return true;
        }
        false
    }

    fn send(&mut self, msg: Message) -> Result<(), WsError> {
        if self.ended {
            return Err(WsError::AlreadyClosed);
        }
        let reply = match msg {
            Message::Text(t) => self.conn.receive(ExternalMessage::Text(Bytes::from(t))),
            Message::Binary(b) => self.conn.receive(ExternalMessage::Binary(b)),
            Message::Close(_) => {
                self.conn.close(DisconnectReason::TransportClose);
                Reply::Nothing
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Reply::Nothing,
        };
        match reply {
            Reply::Nothing => {}
            Reply::Send(text) => {
                self.pending
                    .push_back(Message::Text(Utf8Bytes::from_static(text)));
                self.conn.wake_local();
            }
            Reply::Close(code) => {
                // As a server's close frame would: read after what is pending.
                self.pending.push_back(Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: Utf8Bytes::from_static(""),
                })));
                self.conn.wake_local();
            }
        }
        Ok(())
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(msg)));
            }
            if self.ended {
                if std::mem::take(&mut self.reset) {
                    return Poll::Ready(Some(Err(WsError::Protocol(
                        ProtocolError::ResetWithoutClosingHandshake,
                    ))));
                }
                return Poll::Ready(None);
            }
            // Registered before looking, so frames queued after the look wake us: the
            // outbox's wait keeps a permit for a notification nobody waited for.
            self.conn.register_local(cx.waker());
            let fired = self.outbox_ready(cx);
            let (mut frames, closed) = match &self.session {
                Some(session) => session.take(),
                None => {
                    let (frames, closed) = self.conn.take();
                    (frames, closed.then_some(DisconnectReason::TransportClose))
                }
            };
            // What the client sees of the end, as over TCP (`transport::websocket`): a client
            // past its send buffer is dropped without a close frame (an error on its side); a
            // session the client closed owes it nothing; any other end flushes what was queued,
            // then closes.
            match closed {
                Some(DisconnectReason::BufferFull) => {
                    frames.clear();
                    self.reset = true;
                }
                Some(DisconnectReason::TransportClose) => frames.clear(),
                _ => {}
            }
            for frame in frames {
                let msg = match frame {
                    // A noop only releases a polling GET; it means nothing on a WebSocket.
                    Frame::Text(b) if b.as_ref() == b"6" => continue,
                    Frame::Text(b) | Frame::PlainText(b) => match Utf8Bytes::try_from(b) {
                        Ok(t) => Message::Text(t),
                        Err(_) => {
                            return Poll::Ready(Some(Err(WsError::Utf8(
                                "a text frame is not UTF-8".into(),
                            ))))
                        }
                    },
                    Frame::Binary(b) | Frame::PlainBinary(b) => Message::Binary(b),
                };
                self.pending.push_back(msg);
            }
            if closed.is_some() {
                self.ended = true;
            }
            if self.pending.is_empty() && !self.ended && !fired {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for LocalWs {
    /// The client engine let go of the connection (closed, replaced, shut down, or gave up
    /// during the handshake): the server sees the transport close, as when a socket closes.
    fn drop(&mut self) {
        self.conn.close(DisconnectReason::TransportClose);
    }
}

/// Opens an in-process WebSocket to `server` with `target`'s path, query and headers.
pub async fn connect(server: &InProcessServer, target: &ConnectTarget) -> Result<WsLink, String> {
    let conn = server.connection();
    // Held from here: dropped (the handshake timed out, the host gave up), it closes `conn`.
    let link = LocalWs::new(conn.clone());
    let path = request_path(target, "websocket", None);
    let (path, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
    let mut headers = target.headers.clone();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        headers.push(("host".into(), IN_PROCESS_HOST.into()));
    }
    let req = ExternalRequest {
        method: "GET".into(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Bytes::new(),
        remote: IN_PROCESS_ADDR,
        local: IN_PROCESS_ADDR,
    };
    server.open(conn, req).await?;
    Ok(WsLink::Local(Box::new(link)))
}

impl Stream for WsLink {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            WsLink::Net(ws) => Pin::new(ws.as_mut()).poll_next(cx),
            WsLink::Local(ws) => ws.poll_read(cx),
        }
    }
}

impl Sink<Message> for WsLink {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            WsLink::Net(ws) => Pin::new(ws.as_mut()).poll_ready(cx),
            WsLink::Local(_) => Poll::Ready(Ok(())),
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        match self.get_mut() {
            WsLink::Net(ws) => Pin::new(ws.as_mut()).start_send(item),
            WsLink::Local(ws) => ws.send(item),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            WsLink::Net(ws) => Pin::new(ws.as_mut()).poll_flush(cx),
            WsLink::Local(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            WsLink::Net(ws) => Pin::new(ws.as_mut()).poll_close(cx),
            WsLink::Local(ws) => {
                ws.conn.close(DisconnectReason::TransportClose);
                Poll::Ready(Ok(()))
            }
        }
    }
}
