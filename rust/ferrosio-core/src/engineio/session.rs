//! One Engine.IO session: its outbox and its close state, independent of the transport.
//!
//! Whatever transport currently carries the session (a WebSocket task, or a long-polling GET)
//! drains the outbox whole: that is what batches many queued packets into one write syscall or
//! one polling response.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::heartbeat::{Beat, Heartbeats};
use super::inbound::InboundMeter;
use super::packet::Frame;
use super::v3::Protocol;

pub use super::reason::DisconnectReason;

/// What the HTTP request that opened the session looked like (the WSGI-style `environ`).
///
/// Kept for the session's whole life, so it is one allocation, not two per header, and the
/// addresses are in it too (two `SocketAddr`s would be as large as the rest of the record):
/// `remote\nlocal\nmethod\npath\nquery\nname:value\n...` (parsed header values hold no
/// newline). Cloned by a reference count.
#[derive(Debug, Clone)]
pub struct Handshake {
    text: Arc<str>,
}

impl Handshake {
    pub fn new<'a>(
        method: &str,
        path: &str,
        query: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        remote_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> Self {
        let mut text = format!("{remote_addr}\n{local_addr}\n{method}\n{path}\n{query}");
        for (name, value) in headers {
            // The WebSocket handshake's nonce: used once for the 101 answer, of no use after
            // it, and ~45 bytes a connection would keep for its whole life.
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                continue;
            }
            text.push('\n');
            text.push_str(name);
            text.push(':');
            // Defensive: a newline would split the record (hyper never lets one through).
            text.extend(value.chars().map(|c| if c == '\n' { ' ' } else { c }));
        }
        Handshake { text: text.into() }
    }

    fn line(&self, i: usize) -> &str {
        self.text.split('\n').nth(i).unwrap_or("")
    }

    fn addr(&self, i: usize) -> SocketAddr {
        // Written by `new` from a SocketAddr: it parses back.
        self.line(i)
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.addr(0)
    }

    /// The server's address the request came in on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr(1)
    }

    pub fn method(&self) -> &str {
        self.line(2)
    }

    pub fn path(&self) -> &str {
        self.line(3)
    }

    pub fn query(&self) -> &str {
        self.line(4)
    }

    /// `(name, value)` pairs in request order; names are lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .split('\n')
            .skip(5)
            .filter_map(|line| line.split_once(':'))
    }
}

#[derive(Default)]
struct Outbox {
    frames: Vec<Frame>,
    /// Payload bytes of `frames`: one add per frame.
    bytes: usize,
    closed: Option<DisconnectReason>,
}

/// What [`EngineSession::send_volatile`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// Volatile, and the client could not take it now: dropped, the session goes on.
    Dropped,
    /// The session is closed (before, or now because the packet would not fit).
    Closed,
}

/// Which transport carries a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TransportKind {
    Polling = 0,
    /// A WebSocket is being probed; polling carries the session until the client sends `5`.
    Upgrading = 1,
    WebSocket = 2,
}

/// A live Engine.IO session, shared by the transport task and the Socket.IO layer.
pub struct EngineSession {
    pub sid: Arc<str>,
    pub handshake: Handshake,
    outbox: Mutex<Outbox>,
    notify: Notify,
    transport: AtomicU8,
    /// At most one polling GET and one POST in flight.
    get_in_flight: AtomicBool,
    post_in_flight: AtomicBool,
    /// Its deadlines (ping, pong, connect check), kept by the server's [`Heartbeats`], and
    /// those heartbeats.
    pub(super) beat: Mutex<Beat>,
    /// Most bytes that may wait for this client: the outbox plus the transport's backlog.
    max_buffer: usize,
    /// Bytes the transport took from the outbox but the socket has not (the WebSocket backlog).
    backlog: AtomicUsize,
    /// This client's messages waiting for the host (see [`super::inbound`]).
    pub inbound: InboundMeter,
    /// The Engine.IO revision the client speaks, fixed at the handshake.
    pub protocol: Protocol,
}

impl EngineSession {
    /// A session with no outbound bound (tests).
    #[cfg(test)]
    pub fn new(sid: Arc<str>, handshake: Handshake, transport: TransportKind) -> Arc<Self> {
        Self::bounded(sid, handshake, transport, usize::MAX)
    }

    /// A v4 session that may hold at most `max_buffer` bytes for its client (tests).
    #[cfg(test)]
    pub fn bounded(
        sid: Arc<str>,
        handshake: Handshake,
        transport: TransportKind,
        max_buffer: usize,
    ) -> Arc<Self> {
        Self::bounded_with_protocol(sid, handshake, transport, max_buffer, Protocol::V4)
    }

    /// A session of a client of this Engine.IO revision, that may hold at most `max_buffer`
    /// bytes for it (see [`EngineSession::send_volatile`] for what happens past it).
    pub fn bounded_with_protocol(
        sid: Arc<str>,
        handshake: Handshake,
        transport: TransportKind,
        max_buffer: usize,
        protocol: Protocol,
    ) -> Arc<Self> {
        Arc::new(EngineSession {
            sid,
            handshake,
            outbox: Mutex::default(),
            notify: Notify::new(),
            transport: AtomicU8::new(transport as u8),
            get_in_flight: AtomicBool::new(false),
            post_in_flight: AtomicBool::new(false),
            beat: Mutex::default(),
            max_buffer,
            backlog: AtomicUsize::new(0),
            inbound: InboundMeter::default(),
            protocol,
        })
    }

    /// The most bytes that may wait for this client.
    pub fn max_buffer(&self) -> usize {
        self.max_buffer
    }

    /// The transport reports what its socket has not taken yet (one store per flush).
    pub fn set_backlog(&self, bytes: usize) {
        self.backlog.store(bytes, Ordering::Relaxed);
    }

    /// Bytes waiting for this client: queued plus the transport's backlog.
    pub fn buffered(&self) -> usize {
        self.outbox.lock().bytes + self.backlog.load(Ordering::Relaxed)
    }

    /// True while more than `max_buffer` bytes wait for the client (a pong then does not
    /// count: a client that answers pings but reads nothing else is not alive).
    pub fn over_limit(&self) -> bool {
        self.buffered() > self.max_buffer
    }

    /// Whether the client can take a packet right now: nothing waits in the transport, and on
    /// polling a GET is open (Node's `transport.writable`).
    fn writable(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) == 0
            && (self.transport() == TransportKind::WebSocket
                || self.get_in_flight.load(Ordering::Acquire))
    }

    pub fn transport(&self) -> TransportKind {
        match self.transport.load(Ordering::Acquire) {
            0 => TransportKind::Polling,
            1 => TransportKind::Upgrading,
            _ => TransportKind::WebSocket,
        }
    }

    /// Polling -> Upgrading; false if the session is not on polling (already upgrading or
    /// upgraded: a second WebSocket is refused).
    pub fn begin_upgrade(&self) -> bool {
        self.transport
            .compare_exchange(
                TransportKind::Polling as u8,
                TransportKind::Upgrading as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Upgrading -> WebSocket (the client sent `5`).
    pub fn finish_upgrade(&self) {
        self.transport
            .store(TransportKind::WebSocket as u8, Ordering::Release);
    }

    /// Upgrading -> Polling (the probe WebSocket failed before `5`).
    pub fn abort_upgrade(&self) {
        let _ = self.transport.compare_exchange(
            TransportKind::Upgrading as u8,
            TransportKind::Polling as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Claims the GET slot; false if a GET is already in flight.
    pub fn claim_get(&self) -> bool {
        !self.get_in_flight.swap(true, Ordering::AcqRel)
    }

    /// True while a polling GET waits on this session.
    pub fn get_in_flight(&self) -> bool {
        self.get_in_flight.load(Ordering::Acquire)
    }

    pub fn release_get(&self) {
        self.get_in_flight.store(false, Ordering::Release);
    }

    /// Claims the POST slot; false if a POST is already in flight.
    pub fn claim_post(&self) -> bool {
        !self.post_in_flight.swap(true, Ordering::AcqRel)
    }

    pub fn release_post(&self) {
        self.post_in_flight.store(false, Ordering::Release);
    }

    /// A pong arrived (on any transport): it answers the ping awaited, if any, and the next
    /// ping goes an interval from now.
    pub fn pong_received(&self) {
        match self.heartbeats() {
            Some(heartbeats) => heartbeats.pong(self),
            None => self.beat.lock().pong_due = None,
        }
    }

    /// A v3 client's ping (v3: the client pings, the server answers): its next ping is due
    /// an interval + timeout from now. True when the layer's own deadlines are due for a
    /// check (at most once an interval; see [`Heartbeats::client_ping`]).
    pub fn client_pinged(&self) -> bool {
        self.heartbeats()
            .is_some_and(|heartbeats| heartbeats.client_ping(self))
    }

    /// Records that a ping went out and its pong is due by `deadline` (tests; the heartbeat
    /// keeps this itself).
    #[cfg(test)]
    pub fn ping_sent(&self, deadline: tokio::time::Instant) {
        self.beat.lock().pong_due = Some(deadline);
    }

    /// True if a pong is overdue. Requests check this, so a session whose deadline passed is
    /// treated as timed out even if the heartbeat task has not run yet.
    pub fn pong_overdue(&self) -> bool {
        self.beat
            .lock()
            .pong_due
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Watched by `heartbeats` from now on (once; see [`Heartbeats::watch`]).
    pub(super) fn attach_heartbeats(&self, heartbeats: Weak<Heartbeats>) {
        self.beat.lock().heartbeats.get_or_insert(heartbeats);
        if self.closed().is_some() {
            self.tell_closed();
        }
    }

    /// Tells the heartbeats (which end the session with the host) that this session closed.
    /// The heartbeats that watch this session (none: not watched, or the server is gone).
    fn heartbeats(&self) -> Option<Arc<Heartbeats>> {
        self.beat.lock().heartbeats.as_ref().and_then(Weak::upgrade)
    }

    fn tell_closed(&self) {
        if let Some(heartbeats) = self.heartbeats() {
            heartbeats.closed(self.sid.clone());
        }
    }

    /// Queues one frame; returns false (and drops it) once the session is closed, or when the
    /// frame would take the client past its buffer bound (which closes the session).
    pub fn send(&self, frame: Frame) -> bool {
        self.send_volatile(std::slice::from_ref(&frame), false) == Delivery::Queued
    }

    /// Queues several frames that must stay adjacent (a binary packet and its attachments).
    pub fn send_all(&self, frames: &[Frame]) -> bool {
        self.send_volatile(frames, false) == Delivery::Queued
    }

    /// Queues a packet (frames that must stay adjacent). A `volatile` packet is dropped when
    /// the client cannot take it now or it would not fit in the buffer bound; any other packet
    /// that would not fit closes the session with [`DisconnectReason::BufferFull`]: a client
    /// that reads slower than it is sent to cannot hold the server's memory.
    pub fn send_volatile(&self, frames: &[Frame], volatile: bool) -> Delivery {
        let dropped = {
            let mut out = self.outbox.lock();
            if out.closed.is_some() {
                return Delivery::Closed;
            }
            let mut bytes = 0;
            for frame in frames {
                bytes += frame.len();
            }
            let total = out.bytes + bytes + self.backlog.load(Ordering::Relaxed);
            if volatile && (total > self.max_buffer || !self.writable()) {
                return Delivery::Dropped;
            }
            if total <= self.max_buffer {
                out.frames.extend_from_slice(frames);
                out.bytes += bytes;
                None
            } else {
                out.closed = Some(DisconnectReason::BufferFull);
                out.bytes = 0;
                Some(std::mem::take(&mut out.frames))
            }
        };
        self.notify.notify_one();
        match dropped {
            None => Delivery::Queued,
            Some(frames) => {
                self.tell_closed();
                let freed: usize = frames.iter().map(Frame::len).sum();
                drop(frames);
                super::trim::after_free(freed);
                Delivery::Closed
            }
        }
    }

    /// Takes everything queued, plus the close reason if the session was closed.
    ///
    /// Frames queued before a close are still returned, so the transport can flush them before
    /// it goes: a server-side close loses nothing that was sent before it.
    pub fn take(&self) -> (Vec<Frame>, Option<DisconnectReason>) {
        let mut out = self.outbox.lock();
        out.bytes = 0;
        (std::mem::take(&mut out.frames), out.closed)
    }

    /// Takes queued frames up to about `max_bytes` (at least one packet), plus the close reason
    /// if the session was closed and nothing is left. A binary packet is never split from its
    /// attachments: the cut moves past the binary frames that follow it.
    pub fn take_up_to(&self, max_bytes: usize) -> (Vec<Frame>, Option<DisconnectReason>) {
        let mut out = self.outbox.lock();
        let mut taken = 0;
        let mut cut = 0;
        for frame in &out.frames {
            let binary = frame.is_binary();
            if cut > 0 && !binary && taken + frame.len() > max_bytes {
                break;
            }
            taken += frame.len();
            cut += 1;
        }
        if cut == out.frames.len() {
            out.bytes = 0;
            return (std::mem::take(&mut out.frames), out.closed);
        }
        let rest = out.frames.split_off(cut);
        out.bytes -= taken;
        (std::mem::replace(&mut out.frames, rest), None)
    }

    /// Marks the session closed (first reason wins) and wakes its transport.
    /// Returns true if this call closed it.
    pub fn close(&self, reason: DisconnectReason) -> bool {
        let first = {
            let mut out = self.outbox.lock();
            if out.closed.is_some() {
                false
            } else {
                out.closed = Some(reason);
                true
            }
        };
        self.notify.notify_one();
        if first {
            self.tell_closed();
        }
        first
    }

    pub fn closed(&self) -> Option<DisconnectReason> {
        self.outbox.lock().closed
    }

    /// Resolves when something was queued or the session was closed since the last wait.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// [`EngineSession::wait`] as a future a transport can keep pinned and poll by hand.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn session() -> Arc<EngineSession> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "", [], addr, addr);
        EngineSession::new("s".into(), hs, TransportKind::WebSocket)
    }

    #[test]
    fn the_handshake_record_gives_back_the_request_and_both_addresses() {
        let remote: SocketAddr = "[fe80::1%2]:50123".parse().unwrap();
        let local: SocketAddr = "10.0.0.7:3000".parse().unwrap();
        let headers = [
            ("host", "example.com:3000"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("x-odd", "a\nb:c"),
        ];
        let hs = Handshake::new("GET", "/socket.io/", "EIO=4&t=1", headers, remote, local);
        assert_eq!(hs.remote_addr(), remote);
        assert_eq!(hs.local_addr(), local);
        assert_eq!(
            (hs.method(), hs.path(), hs.query()),
            ("GET", "/socket.io/", "EIO=4&t=1")
        );
        let got: Vec<_> = hs.headers().collect();
        // The WebSocket nonce is not kept (used once, for the 101).
        assert_eq!(got, [("host", "example.com:3000"), ("x-odd", "a b:c")]);
    }

    #[tokio::test]
    async fn frames_queued_before_close_are_still_taken() {
        let s = session();
        assert!(s.send(Frame::Text(Bytes::from_static(b"4a"))));
        assert!(s.close(DisconnectReason::ServerDisconnect));
        assert!(!s.close(DisconnectReason::PingTimeout), "first reason wins");
        assert!(!s.send(Frame::PING), "nothing is queued after close");
        s.wait().await; // a permit is stored, so this does not hang
        let (frames, closed) = s.take();
        assert_eq!(frames, vec![Frame::Text(Bytes::from_static(b"4a"))]);
        assert_eq!(closed, Some(DisconnectReason::ServerDisconnect));
    }

    fn bounded(max: usize) -> Arc<EngineSession> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "", [], addr, addr);
        EngineSession::bounded("s".into(), hs, TransportKind::WebSocket, max)
    }

    fn text(n: usize) -> Frame {
        Frame::Text(Bytes::from(vec![b'4'; n]))
    }

    #[test]
    fn a_packet_past_the_bound_closes_the_session_and_frees_the_outbox() {
        let s = bounded(100);
        assert!(s.send(text(60)));
        assert!(s.send(text(40)), "exactly at the bound is fine");
        assert_eq!(s.buffered(), 100);
        assert_eq!(s.send_volatile(&[text(1)], false), Delivery::Closed);
        assert_eq!(s.closed(), Some(DisconnectReason::BufferFull));
        assert_eq!(s.buffered(), 0, "what the client did not read is dropped");
        assert!(s.take().0.is_empty());
    }

    #[test]
    fn taking_the_outbox_gives_its_budget_back() {
        let s = bounded(100);
        assert!(s.send(text(90)));
        s.take();
        assert!(s.send(text(90)));
        assert_eq!(s.closed(), None);
    }

    #[test]
    fn the_transport_backlog_counts_against_the_bound() {
        let s = bounded(100);
        s.set_backlog(80);
        assert!(!s.over_limit());
        assert_eq!(s.send_volatile(&[text(30)], false), Delivery::Closed);
        assert_eq!(s.closed(), Some(DisconnectReason::BufferFull));
    }

    #[test]
    fn a_volatile_packet_is_dropped_when_the_client_cannot_take_it() {
        let s = bounded(100);
        assert_eq!(s.send_volatile(&[text(10)], true), Delivery::Queued);
        s.set_backlog(5);
        assert_eq!(
            s.send_volatile(&[text(10)], true),
            Delivery::Dropped,
            "the socket has not taken everything yet"
        );
        s.set_backlog(0);
        assert_eq!(
            s.send_volatile(&[text(95)], true),
            Delivery::Dropped,
            "it would not fit"
        );
        assert_eq!(s.closed(), None, "a dropped volatile packet closes nothing");
        assert_eq!(s.take().0.len(), 1);
    }

    #[test]
    fn a_volatile_packet_on_polling_needs_an_open_get() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "", [], addr, addr);
        let s = EngineSession::bounded("s".into(), hs, TransportKind::Polling, 100);
        assert_eq!(s.send_volatile(&[text(1)], true), Delivery::Dropped);
        assert!(s.claim_get());
        assert_eq!(s.send_volatile(&[text(1)], true), Delivery::Queued);
    }

    #[test]
    fn take_up_to_cuts_between_packets_never_inside_one() {
        let s = bounded(usize::MAX);
        let bin = |n: usize| Frame::Binary(Bytes::from(vec![0; n]));
        s.send(text(40));
        s.send_all(&[text(10), bin(50), bin(50)]);
        s.send(text(40));
        let (first, closed) = s.take_up_to(45);
        assert_eq!((first.len(), closed), (1, None));
        let (second, _) = s.take_up_to(45);
        assert_eq!(
            second.len(),
            3,
            "a binary packet leaves with its attachments"
        );
        assert_eq!(s.buffered(), 40);
        let (third, _) = s.take_up_to(1);
        assert_eq!(third.len(), 1, "at least one packet per response");
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn take_up_to_reports_the_close_only_once_everything_left() {
        let s = bounded(usize::MAX);
        s.send(text(10));
        s.send(text(10));
        s.close(DisconnectReason::ServerDisconnect);
        assert_eq!(s.take_up_to(10).1, None);
        assert_eq!(s.take_up_to(10).1, Some(DisconnectReason::ServerDisconnect));
    }
}
