//! The WebSocket transport: one task per connection reads frames and writes the session's
//! outbox from one loop, polled by hand (see [`run`]). The heartbeat runs beside it (see
//! [`crate::engineio::heartbeat`]) and talks through the outbox.
//!
//! Memory and syscalls are what this module is about. Reads go into one scratch buffer per
//! thread, so an idle connection holds no read buffer (only an incomplete frame is copied out).
//! Everything queued in one wake-up leaves in one `write`; what the socket does not take waits
//! in a backlog that is freed as soon as it drains.
//!
//! TLS (`wss://`) keeps all of that: the connection is still the bare `TcpStream` (readiness,
//! `try_write`, the read scratch), with the rustls session beside it ([`Tls`]). What is read
//! is decrypted before the frame reader sees it; what is written is encrypted on its way into
//! the socket or the backlog (which then holds ciphertext). A plain connection pays one
//! `is_none` test per read and per write for this.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::ops::ControlFlow;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use std::io::{Read, Write};

use parking_lot::Mutex;
use rustls::ServerConnection;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;

use super::deflate;
use super::wsframe::{
    write_close, write_deflated_frame, write_frame, write_frame_prefixed, WsFrameError, WsMessage,
    WsReader, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT,
};
use crate::engineio::dispatch::{dispatch, Outcome};
use crate::engineio::packet::{EnginePacket, Frame};
use crate::engineio::session::{DisconnectReason, EngineSession};
use crate::engineio::trim;
use crate::engineio::v3::{self, Protocol};
use crate::engineio::EngineHandler;

/// One read takes at most this much; a full read leaves the socket readable and is repeated.
const READ_SCRATCH_LEN: usize = 64 * 1024;
/// The write scratch keeps this much capacity between flushes; a larger one is given back.
const WRITE_SCRATCH_KEEP: usize = 256 * 1024;
/// How long a closing connection may take to write its last frames.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// What a client that broke the framing may still send after our close frame before we stop
/// reading and drop the connection (typically the rest of a too-large frame).
const CLOSE_DISCARD_MAX: usize = 16 * 1024 * 1024;

thread_local! {
    static READ_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; READ_SCRATCH_LEN].into_boxed_slice());
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// TLS only: plaintext of one read (at most READ_SCRATCH_LEN + 16 KiB), and ciphertext of one
    /// write (capacity kept up to WRITE_SCRATCH_KEEP, as WRITE_SCRATCH).
    static TLS_PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static TLS_SEALED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The rustls session of a `wss://` connection (`None`: plain). Behind a mutex only so that the
/// connection's task stays `Send`; one task uses it, so it is never contended.
pub type Tls = Option<Box<Mutex<ServerConnection>>>;

/// A server-side WebSocket over an upgraded TCP connection.
pub struct WsConn {
    stream: TcpStream,
    tls: Tls,
    reader: WsReader,
    /// Messages read but not handled yet: those that came with the upgrade request, or after
    /// the probe's `5` in the same read.
    queued: VecDeque<WsMessage>,
    /// Encoded frames the socket has not taken yet; unallocated when caught up.
    backlog: Vec<u8>,
    max_payload: usize,
    /// permessage-deflate: messages of at least this many bytes are compressed (`usize::MAX`:
    /// not negotiated, nothing is).
    deflate_min: usize,
    /// A bad frame among the early bytes: the connection closes with its code once run.
    broken: Option<WsFrameError>,
}

impl WsConn {
    /// Wraps `stream` after the 101 response; `early` is what the client sent after its
    /// request, already read by the HTTP layer.
    /// With `tls`, `early` is plaintext, and what the session still holds (decrypted bytes
    /// not read yet, records to send) is taken over. `deflate_threshold`: permessage-deflate
    /// was negotiated, and messages of at least that many bytes are compressed.
    pub fn new(
        stream: TcpStream,
        tls: Tls,
        early: &[u8],
        max_payload: usize,
        deflate_threshold: Option<usize>,
    ) -> Self {
        let mut early = std::borrow::Cow::Borrowed(early);
        if let Some(t) = &tls {
            let mut t = t.lock();
            // Unbounded in rustls: the backlog is where this module bounds what is pending.
            t.set_buffer_limit(None);
            let mut more = Vec::new();
            let _ = t.reader().read_to_end(&mut more);
            if !more.is_empty() {
                early.to_mut().extend_from_slice(&more);
            }
        }
        let early: &[u8] = &early;
        let mut conn = WsConn {
            stream,
            tls,
            reader: match deflate_threshold {
                Some(_) => WsReader::deflate(),
                None => WsReader::default(),
            },
            queued: VecDeque::new(),
            backlog: Vec::new(),
            max_payload,
            deflate_min: deflate_threshold.unwrap_or(usize::MAX),
            broken: None,
        };
        if !early.is_empty() {
            let queued = &mut conn.queued;
            let fed = conn.reader.feed(early, max_payload, &mut |m| {
                queued.push_back(m);
                ControlFlow::Continue(())
            });
            conn.broken = fed.err();
        }
        if conn.tls.is_some() {
            // A failed write shows again (and ends the connection) at the next one.
            let _ = send(&conn.stream, &conn.tls, &mut conn.backlog, &[]);
        }
        conn
    }

    /// Sends a close frame and ends the connection (a second WebSocket for an upgraded session).
    pub async fn refuse(mut self) {
        let _ = send_close(&self.stream, &self.tls, &mut self.backlog, None);
        linger(&self.stream, &mut self.backlog).await;
    }
}

enum Step {
    Continue,
    Close(DisconnectReason),
    /// The client broke the WebSocket protocol: close with this error's code.
    Fail(WsFrameError),
}

enum ReadFailure {
    Closed,
    Frame(WsFrameError),
}

/// Waits until the socket is readable, reads once into the thread's scratch buffer and feeds
/// the bytes to `reader`, which hands each complete message to `on_message`.
async fn read_once<F>(
    rd: &mut ReadHalf<'_>,
    tls: &Tls,
    reader: &mut WsReader,
    max_payload: usize,
    limit: usize,
    mut on_message: F,
) -> Result<(ControlFlow<()>, usize), ReadFailure>
where
    F: FnMut(WsMessage) -> ControlFlow<()>,
{
    poll_fn(|cx| poll_read_once(cx, rd, tls, reader, max_payload, limit, &mut on_message)).await
}

/// The wait for the host to drain, while a connection is held (see [`run`]).
type DrainWait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
/// That wait and the generation of the host's queue it waits for; boxed whole, as it is rare
/// and the slot for it is in every connection's task.
type Held<'a> = Option<Box<(u64, DrainWait<'a>)>>;

type ReadOutcome = Result<(ControlFlow<()>, usize), ReadFailure>;

/// [`read_once`] as a poll: Pending until the socket is readable (nothing kept meanwhile).
fn poll_read_once<F>(
    cx: &mut std::task::Context<'_>,
    rd: &mut ReadHalf<'_>,
    tls: &Tls,
    reader: &mut WsReader,
    max_payload: usize,
    limit: usize,
    on_message: &mut F,
) -> Poll<ReadOutcome>
where
    F: FnMut(WsMessage) -> ControlFlow<()>,
{
    {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(&mut scratch[..limit.min(READ_SCRATCH_LEN)]);
            // AsyncRead (not try_read): tokio treats a short read as "drained", which saves the
            // extra read that would only return EAGAIN.
            match Pin::new(&mut *rd).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => Poll::Ready(Err(ReadFailure::Closed)),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    Poll::Ready(Err(ReadFailure::Closed))
                }
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    Poll::Ready(
                        match tls {
                            None => reader
                                .feed(buf.filled(), max_payload, on_message)
                                .map_err(ReadFailure::Frame),
                            Some(tls) => open(tls, buf.filled(), reader, max_payload, on_message),
                        }
                        .map(|flow| (flow, n)),
                    )
                }
            }
        })
    }
}

/// Decrypts `sealed` and feeds the plaintext to `reader`. The peer's close_notify (or a TLS
/// error) ends the connection, after the messages that came before it.
fn open<F>(
    tls: &Mutex<ServerConnection>,
    mut sealed: &[u8],
    reader: &mut WsReader,
    max_payload: usize,
    on_message: &mut F,
) -> Result<ControlFlow<()>, ReadFailure>
where
    F: FnMut(WsMessage) -> ControlFlow<()>,
{
    TLS_PLAIN.with_borrow_mut(|plain| {
        plain.clear();
        let mut peer_closed = false;
        {
            let mut conn = tls.lock();
            while !sealed.is_empty() && !peer_closed {
                // Ok(0) with bytes left cannot happen (records are processed as they come);
                // were it to, this must not spin.
                if !matches!(conn.read_tls(&mut sealed), Ok(n) if n > 0) {
                    return Err(ReadFailure::Closed);
                }
                let state = conn
                    .process_new_packets()
                    .map_err(|_| ReadFailure::Closed)?;
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let start = plain.len();
                    plain.resize(start + n, 0);
                    if conn.reader().read_exact(&mut plain[start..]).is_err() {
                        return Err(ReadFailure::Closed);
                    }
                }
                peer_closed = state.peer_has_closed();
            }
        }
        // Bounded by one read: at most READ_SCRATCH_LEN of ciphertext plus the rest of one
        // record (16 KiB) begun in the previous read, so this stays that size per thread.
        let fed = reader
            .feed(plain, max_payload, on_message)
            .map_err(ReadFailure::Frame);
        match fed {
            Ok(ControlFlow::Continue(())) if peer_closed => Err(ReadFailure::Closed),
            other => other,
        }
    })
}

/// Writes `bytes` (encrypted first on a TLS connection) now or behind the backlog; with TLS,
/// also whatever records the session has to send (an empty `bytes` sends only those).
fn send(sock: &TcpStream, tls: &Tls, backlog: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let Some(tls) = tls else {
        return write_or_queue(sock, backlog, bytes);
    };
    TLS_SEALED.with_borrow_mut(|out| {
        out.clear();
        {
            let mut conn = tls.lock();
            if !bytes.is_empty() {
                conn.writer().write_all(bytes)?;
            }
            while conn.wants_write() {
                conn.write_tls(out)?;
            }
        }
        let written = if out.is_empty() {
            Ok(())
        } else {
            write_or_queue(sock, backlog, out)
        };
        if out.capacity() > WRITE_SCRATCH_KEEP {
            *out = Vec::new();
        }
        written
    })
}

/// Writes `bytes` as far as the socket takes them now; the rest joins the backlog.
fn write_or_queue(sock: &TcpStream, backlog: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    if !backlog.is_empty() {
        backlog.extend_from_slice(bytes);
        return Ok(());
    }
    match sock.try_write(bytes) {
        Ok(n) => backlog.extend_from_slice(&bytes[n..]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => backlog.extend_from_slice(bytes),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Encodes one frame and writes it now, or queues it behind the backlog.
fn send_frame(
    sock: &TcpStream,
    tls: &Tls,
    backlog: &mut Vec<u8>,
    opcode: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(10 + payload.len());
    write_frame(&mut frame, opcode, payload);
    send(sock, tls, backlog, &frame)
}

/// A close frame with `code` (none: empty), written now or queued behind the backlog.
fn send_close(
    sock: &TcpStream,
    tls: &Tls,
    backlog: &mut Vec<u8>,
    code: Option<u16>,
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4);
    write_close(&mut frame, code);
    send(sock, tls, backlog, &frame)
}

/// Writes as much of the backlog as the socket takes; frees it once empty.
fn write_backlog(sock: &TcpStream, backlog: &mut Vec<u8>) -> io::Result<()> {
    while !backlog.is_empty() {
        match sock.try_write(backlog) {
            Ok(n) => {
                backlog.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    *backlog = Vec::new();
    Ok(())
}

/// Writes the whole backlog, waiting for the socket as needed.
async fn drain(sock: &TcpStream, backlog: &mut Vec<u8>) -> io::Result<()> {
    loop {
        write_backlog(sock, backlog)?;
        if backlog.is_empty() {
            return Ok(());
        }
        sock.writable().await?;
    }
}

/// Gives a closing connection up to [`CLOSE_LINGER`] to write its last frames. Boxed: the
/// state of this wait would otherwise be part of every connection's task, idle or not.
async fn linger(sock: &TcpStream, backlog: &mut Vec<u8>) {
    let _ = Box::pin(tokio::time::timeout(CLOSE_LINGER, drain(sock, backlog))).await;
}

/// Encodes everything queued on the session and writes it in one go.
/// `Ok(Some(reason))` when the session was closed.
fn flush(
    sock: &TcpStream,
    tls: &Tls,
    backlog: &mut Vec<u8>,
    session: &EngineSession,
    deflate_min: usize,
) -> io::Result<Option<DisconnectReason>> {
    let (frames, closed) = session.take();
    if frames.is_empty() {
        return Ok(closed);
    }
    WRITE_SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        if session.protocol.is_v3() {
            encode_v3(buf, &frames, session.protocol, deflate_min);
        } else {
            for frame in &frames {
                match frame {
                    // A noop only releases a polling GET; it means nothing on a WebSocket.
                    Frame::Text(b) if b.as_ref() == b"6" => {}
                    Frame::Text(b) if b.len() >= deflate_min => write_deflated(buf, OP_TEXT, b),
                    Frame::Binary(b) if b.len() >= deflate_min => write_deflated(buf, OP_BINARY, b),
                    Frame::Text(b) | Frame::PlainText(b) => write_frame(buf, OP_TEXT, b),
                    Frame::Binary(b) | Frame::PlainBinary(b) => write_frame(buf, OP_BINARY, b),
                }
            }
        }
        let written = send(sock, tls, backlog, buf);
        if buf.capacity() > WRITE_SCRATCH_KEEP {
            *buf = Vec::new();
        }
        written
    })?;
    session.set_backlog(backlog.len());
    if closed.is_none() && backlog.len() > session.max_buffer() {
        session.close(DisconnectReason::BufferFull);
        return Ok(Some(DisconnectReason::BufferFull));
    }
    Ok(closed)
}

/// [`flush`]'s frames for an Engine.IO v3 client: a binary frame carries the message type
/// byte first, or goes as the text packet `b4<base64>` to a client that asked for base64.
/// With permessage-deflate, text messages are compressed as for v4; binary ones (prefixed, or
/// made into base64 text here) go as they are: the deflated form is remembered per shared
/// message (see [`deflate`]), and these are made per connection.
fn encode_v3(buf: &mut Vec<u8>, frames: &[Frame], protocol: Protocol, deflate_min: usize) {
    for frame in frames {
        match frame {
            Frame::Text(b) if b.as_ref() == b"6" => {}
            Frame::Text(b) if b.len() >= deflate_min => write_deflated(buf, OP_TEXT, b),
            Frame::Text(b) | Frame::PlainText(b) => write_frame(buf, OP_TEXT, b),
            Frame::Binary(b) | Frame::PlainBinary(b)
                if protocol == (Protocol::V3 { base64: true }) =>
            {
                write_frame(buf, OP_TEXT, &v3::base64_text(b));
            }
            Frame::Binary(b) | Frame::PlainBinary(b) => {
                write_frame_prefixed(buf, OP_BINARY, v3::MESSAGE_TYPE, b)
            }
        }
    }
}

/// A message above the threshold: deflated (once per broadcast, see [`deflate`]), or as it is
/// when that does not make it smaller.
fn write_deflated(buf: &mut Vec<u8>, opcode: u8, message: &bytes::Bytes) {
    match deflate::deflate(message) {
        Some(deflated) => write_deflated_frame(buf, opcode, &deflated),
        None => write_frame(buf, opcode, message),
    }
}

/// What the connection's loop works with, in one record: the loop's poll captures a reference
/// to it rather than one per field (the task's size is memory per idle connection).
struct Served {
    tls: Tls,
    reader: WsReader,
    backlog: Vec<u8>,
    max_payload: usize,
    deflate_min: usize,
    /// Set once the host fell behind this connection; while the client keeps the socket full,
    /// its reads are small, so one read cannot put much more before the host than its bound.
    throttled: bool,
}

/// Runs the session over `conn` until it ends; returns why, and the session (so the caller
/// need not keep a reference of its own in the task meanwhile).
pub fn run(
    conn: WsConn,
    session: Arc<EngineSession>,
    handler: Arc<dyn EngineHandler>,
) -> impl Future<Output = (DisconnectReason, Arc<EngineSession>)> + Send {
    // Taken apart before the task's future is made: it keeps the fields it uses, not the
    // whole record beside them (an async fn keeps its arguments as well as what they are
    // moved into).
    let WsConn {
        stream,
        tls,
        reader,
        queued,
        mut backlog,
        max_payload,
        deflate_min,
        broken,
    } = conn;
    // What came with the upgrade (or a framing error in it) is handled now, before the future
    // is made: its queue and error need not be kept for the connection's lifetime.
    let mut step = match broken {
        Some(err) => Step::Fail(err),
        None => Step::Continue,
    };
    for msg in queued {
        if !matches!(step, Step::Continue) {
            break;
        }
        step = on_message(msg, &session, &*handler, &stream, &tls, &mut backlog);
    }
    let mut served = Served {
        tls,
        reader,
        backlog,
        max_payload,
        deflate_min,
        throttled: false,
    };
    let mut stream = stream;
    async move {
        {
            let st = &mut served;
            // The loop is polled by hand, not a `select!` of futures: readiness of the socket
            // is asked for without a future, so an idle connection's task holds only this wait
            // (its size is memory per idle connection).
            let mut queued_wait = pin!(session.notified());
            // Only while the host is behind on this connection (rare): boxed.
            let mut drained: Held<'_> = None;
            while matches!(step, Step::Continue) {
                // The host is behind on this connection's messages: stop reading it (TCP
                // backpressure reaches the client) until the host drains.
                let budget = handler.inbound_budget();
                let held = budget.and_then(|b| b.must_wait(&session.inbound));
                if drained.as_deref().map(|(generation, _)| *generation) != held {
                    drained = match (budget, held) {
                        (Some(b), Some(generation)) => {
                            Some(Box::new((generation, Box::pin(b.wait_drained(generation)))))
                        }
                        _ => None,
                    };
                }
                // A `move` closure of references: it captures these few, not one per field.
                let (session, handler) = (&session, &handler);
                let (queued_wait, drained, stream, st) =
                    (&mut queued_wait, &mut drained, &mut stream, &mut *st);
                step = poll_fn(move |cx| {
                    let (mut rd, wr) = stream.split();
                    let wait = (&mut *queued_wait, &mut *drained);
                    let (sock, handler) = (wr.as_ref(), &**handler);
                    poll_served(cx, st, session, handler, wait, &mut rd, sock)
                })
                .await;
            }
        }
        let (mut rd, wr) = stream.split();
        let sock: &TcpStream = wr.as_ref();
        let Served {
            tls,
            reader,
            backlog,
            max_payload,
            deflate_min,
            ..
        } = &mut served;

        let reason = match step {
            Step::Close(reason) => reason,
            Step::Fail(err) => {
                // The client sent bad frames: tell it why (1002, 1007 or 1009), nothing else,
                // and make sure the close frame reaches it: half-close, then read what it is
                // still sending (the rest of a too-large frame) until it closes. Closing with
                // unread bytes would reset the connection and lose the close frame on the
                // client's side.
                backlog.clear();
                let _ = send_close(sock, tls, backlog, Some(err.close_code()));
                session.close(DisconnectReason::TransportError);
                Box::pin(finish_close(
                    &mut rd,
                    None,
                    sock,
                    tls,
                    backlog,
                    *max_payload,
                ))
                .await;
                return (DisconnectReason::TransportError, session);
            }
            Step::Continue => DisconnectReason::TransportError,
        };
        session.close(reason);
        if reason == DisconnectReason::BufferFull {
            // The client is not reading: what it did not take is dropped, not lingered over.
            let freed = backlog.len();
            *backlog = Vec::new();
            session.set_backlog(0);
            trim::after_free(freed);
        } else if reason != DisconnectReason::TransportClose {
            // The server ends it (a disconnect, a ping timeout, a protocol error above the
            // frames, the client's Engine.IO `1`): flush what was queued before the close, then
            // a close frame, and wait for the client's (as the official server's `ws` does).
            let _ = flush(sock, tls, backlog, &session, *deflate_min);
            let _ = send_close(sock, tls, backlog, None);
            Box::pin(finish_close(
                &mut rd,
                Some(reader),
                sock,
                tls,
                backlog,
                *max_payload,
            ))
            .await;
        }
        (reason, session)
    }
}

/// One poll of the connection's loop, in this order (as a biased select): what the session
/// queued, the host's drain, the client's bytes, the socket's room for the backlog.
#[allow(clippy::too_many_arguments)]
fn poll_served<'s>(
    cx: &mut std::task::Context<'_>,
    st: &mut Served,
    session: &'s Arc<EngineSession>,
    handler: &dyn EngineHandler,
    (queued_wait, drained): (
        &mut Pin<&mut tokio::sync::futures::Notified<'s>>,
        &mut Held<'_>,
    ),
    rd: &mut ReadHalf<'_>,
    sock: &TcpStream,
) -> Poll<Step> {
    let Served {
        tls,
        reader,
        backlog,
        max_payload,
        deflate_min,
        throttled,
    } = st;
    // A throttled connection reads a share of what is left of the host's bound.
    let limit = match handler.inbound_budget() {
        Some(b) if *throttled => b.read_limit(&session.inbound),
        _ => READ_SCRATCH_LEN,
    };
    if queued_wait.as_mut().poll(cx).is_ready() {
        queued_wait.set(session.notified());
        return Poll::Ready(match flush(sock, tls, backlog, session, *deflate_min) {
            Ok(None) => Step::Continue,
            Ok(Some(reason)) => Step::Close(reason),
            Err(_) => Step::Close(DisconnectReason::TransportError),
        });
    }
    if let Some((_, wait)) = drained.as_deref_mut() {
        if wait.as_mut().poll(cx).is_ready() {
            *drained = None;
            *throttled = true;
            return Poll::Ready(Step::Continue);
        }
    } else {
        let mut stop = Step::Continue;
        let mut on_msg = |msg| match on_message(msg, session, handler, sock, tls, backlog) {
            Step::Continue => ControlFlow::Continue(()),
            other => {
                stop = other;
                ControlFlow::Break(())
            }
        };
        let read = poll_read_once(cx, rd, tls, reader, *max_payload, limit, &mut on_msg);
        if let Poll::Ready(read) = read {
            return Poll::Ready(match read {
                // TLS: the session may have records to send back (a key update, an alert).
                Ok(_) if tls.is_some() && send(sock, tls, backlog, &[]).is_err() => {
                    Step::Close(DisconnectReason::TransportError)
                }
                Ok((_, n)) => {
                    // Less than asked for: the client is not keeping the socket full.
                    *throttled &= n >= limit;
                    stop
                }
                Err(ReadFailure::Closed) => Step::Close(DisconnectReason::TransportClose),
                Err(ReadFailure::Frame(err)) => Step::Fail(err),
            });
        }
    }
    if !backlog.is_empty() {
        if let Poll::Ready(ready) = sock.poll_write_ready(cx) {
            return Poll::Ready(match ready.and_then(|()| write_backlog(sock, backlog)) {
                Ok(()) => {
                    session.set_backlog(backlog.len());
                    Step::Continue
                }
                Err(_) => Step::Close(DisconnectReason::TransportError),
            });
        }
    }
    Poll::Pending
}

/// The end of a close this side started, bounded by [`CLOSE_LINGER`]: writes the backlog
/// (which ends with the close frame), then reads until the client's close frame (`reader`
/// given: the frames are still in sync) or, after a framing error, half-closes and discards
/// what comes (at most [`CLOSE_DISCARD_MAX`] bytes) until the client closes.
async fn finish_close(
    rd: &mut ReadHalf<'_>,
    reader: Option<&mut WsReader>,
    sock: &TcpStream,
    tls: &Tls,
    backlog: &mut Vec<u8>,
    max_payload: usize,
) {
    let closing = async {
        if drain(sock, backlog).await.is_err() {
            return;
        }
        match reader {
            Some(reader) => loop {
                let mut saw_close = false;
                let read = read_once(rd, tls, reader, max_payload, READ_SCRATCH_LEN, |m| {
                    saw_close = matches!(m, WsMessage::Close(_));
                    if saw_close {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .await;
                if saw_close || read.is_err() {
                    return;
                }
            },
            None => {
                let _ = socket2::SockRef::from(sock).shutdown(std::net::Shutdown::Write);
                let mut discarded = 0usize;
                while discarded < CLOSE_DISCARD_MAX {
                    match discard_once(rd).await {
                        Some(n) => discarded += n,
                        None => return,
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, closing).await;
}

/// Reads once into the thread's scratch buffer and drops the bytes; `None` at EOF or error.
async fn discard_once(rd: &mut ReadHalf<'_>) -> Option<usize> {
    poll_fn(|cx| {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            match Pin::new(&mut *rd).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    Poll::Ready(Some(buf.filled().len()))
                }
                Poll::Ready(_) => Poll::Ready(None),
            }
        })
    })
    .await
}

/// The upgrade handshake on a new WebSocket for a polling session: `2probe` -> `3probe`, a
/// noop to release the pending GET, then the client's `5`. Returns false if the client did
/// anything else, or took longer than `timeout`. Messages after the `5` stay queued for
/// [`run`].
pub async fn probe(conn: &mut WsConn, session: &EngineSession, timeout: Duration) -> bool {
    let WsConn {
        stream,
        tls,
        reader,
        queued,
        backlog,
        max_payload,
        broken,
        ..
    } = conn;
    if broken.is_some() {
        return false;
    }
    let max_payload = *max_payload;
    let (mut rd, wr) = stream.split();
    let sock: &TcpStream = wr.as_ref();
    let handshake = async {
        loop {
            let Some(msg) = queued.pop_front() else {
                let read = read_once(&mut rd, tls, reader, max_payload, READ_SCRATCH_LEN, |m| {
                    queued.push_back(m);
                    ControlFlow::Continue(())
                })
                .await;
                if read.is_err() {
                    return false;
                }
                continue;
            };
            match msg {
                WsMessage::Text(t) if t.as_ref() == b"2probe" => {
                    if send_frame(sock, tls, backlog, OP_TEXT, b"3probe")
                        .and_then(|()| write_backlog(sock, backlog))
                        .is_err()
                    {
                        return false;
                    }
                    session.send(Frame::NOOP);
                }
                WsMessage::Text(t) if t.as_ref() == b"5" => return true,
                WsMessage::Ping(_) | WsMessage::Pong => {}
                _ => return false,
            }
        }
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .unwrap_or(false)
}

fn on_message(
    msg: WsMessage,
    session: &Arc<EngineSession>,
    handler: &dyn EngineHandler,
    sock: &TcpStream,
    tls: &Tls,
    backlog: &mut Vec<u8>,
) -> Step {
    let packet = match msg {
        WsMessage::Text(text) if session.protocol.is_v3() => v3::decode_text(text),
        WsMessage::Binary(data) if session.protocol.is_v3() => v3::decode_binary_frame(data),
        WsMessage::Text(text) => EnginePacket::decode_text(text),
        WsMessage::Binary(data) => Ok(EnginePacket::Binary(data)),
        WsMessage::Ping(payload) => {
            return match send_frame(sock, tls, backlog, OP_PONG, &payload) {
                Ok(()) => Step::Continue,
                Err(_) => Step::Close(DisconnectReason::TransportError),
            };
        }
        WsMessage::Pong => return Step::Continue,
        WsMessage::Close(body) => {
            // Answer the close handshake (echoing code and reason, checked), then go.
            let _ = send_frame(sock, tls, backlog, OP_CLOSE, &body)
                .and_then(|()| write_backlog(sock, backlog));
            return Step::Close(DisconnectReason::TransportClose);
        }
    };
    match packet.and_then(|p| dispatch(session, handler, p)) {
        Ok(Outcome::Continue) => Step::Continue,
        Ok(Outcome::Close(reason)) => Step::Close(reason),
        Err(_) => Step::Close(DisconnectReason::TransportError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::session::{Handshake, TransportKind};
    use crate::error::ProtocolError;
    use bytes::Bytes;

    struct Nothing;

    impl EngineHandler for Nothing {
        fn on_open(&self, _: &Arc<EngineSession>) {}
        fn on_message(&self, _: &Arc<EngineSession>, _: Bytes) -> Result<(), ProtocolError> {
            Ok(())
        }
        fn on_binary(&self, _: &Arc<EngineSession>, _: Bytes) -> Result<(), ProtocolError> {
            Ok(())
        }
        fn on_close(&self, _: &Arc<EngineSession>, _: DisconnectReason) {}
    }

    /// The task of an idle connection is its biggest record: tokio rounds the task cell (its
    /// header and trailer, ~104 bytes, and the future) up to a multiple of 128 bytes. The
    /// task's future is this one plus 24 bytes (`server::upgrade`), so up to 384 here the cell
    /// is 512 bytes, not 640 (memory per idle connection, benches/README.md).
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "", [], addr, addr);
        let session = EngineSession::new("s".into(), hs, TransportKind::WebSocket);
        let conn = WsConn::new(server, None, b"", 1000, None);
        let fut = run(conn, session, Arc::new(Nothing));
        let size = std::mem::size_of_val(&fut);
        println!("connection future: {size} bytes");
        assert!(size <= 384, "the connection future grew to {size} bytes");
    }
}
