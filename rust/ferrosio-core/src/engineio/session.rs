//! One Engine.IO session: its outbox and its close state, independent of the transport.
//!
//! Whatever transport currently carries the session (a WebSocket task, or a long-polling GET)
//! drains the outbox whole: that is what batches many queued packets into one write syscall or
//! one polling response.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::packet::Frame;

pub use super::reason::DisconnectReason;

/// What the HTTP request that opened the session looked like (the WSGI-style `environ`).
///
/// Kept for the session's whole life, so it is one allocation, not two per header:
/// `method\npath\nquery\nname:value\n...` (parsed header values hold no newline).
#[derive(Debug, Clone)]
pub struct Handshake {
    text: Box<str>,
    pub remote_addr: SocketAddr,
    pub local_addr: SocketAddr,
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
        let mut text = format!("{method}\n{path}\n{query}");
        for (name, value) in headers {
            text.push('\n');
            text.push_str(name);
            text.push(':');
            // Defensive: a newline would split the record (hyper never lets one through).
            text.extend(value.chars().map(|c| if c == '\n' { ' ' } else { c }));
        }
        Handshake {
            text: text.into_boxed_str(),
            remote_addr,
            local_addr,
        }
    }

    fn line(&self, i: usize) -> &str {
        self.text.split('\n').nth(i).unwrap_or("")
    }

    pub fn method(&self) -> &str {
        self.line(0)
    }

    pub fn path(&self) -> &str {
        self.line(1)
    }

    pub fn query(&self) -> &str {
        self.line(2)
    }

    /// `(name, value)` pairs in request order; names are lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .split('\n')
            .skip(3)
            .filter_map(|line| line.split_once(':'))
    }
}

#[derive(Default)]
struct Outbox {
    frames: Vec<Frame>,
    closed: Option<DisconnectReason>,
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
    pub handshake: Arc<Handshake>,
    outbox: Mutex<Outbox>,
    notify: Notify,
    closed_notify: Notify,
    pong: Notify,
    transport: AtomicU8,
    /// At most one polling GET and one POST in flight.
    get_in_flight: AtomicBool,
    post_in_flight: AtomicBool,
    /// When the pong for the last ping is due, while one is awaited.
    pong_deadline: Mutex<Option<tokio::time::Instant>>,
}

impl EngineSession {
    pub fn new(sid: Arc<str>, handshake: Arc<Handshake>, transport: TransportKind) -> Arc<Self> {
        Arc::new(EngineSession {
            sid,
            handshake,
            outbox: Mutex::default(),
            notify: Notify::new(),
            closed_notify: Notify::new(),
            pong: Notify::new(),
            transport: AtomicU8::new(transport as u8),
            get_in_flight: AtomicBool::new(false),
            post_in_flight: AtomicBool::new(false),
            pong_deadline: Mutex::new(None),
        })
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

    /// A pong arrived (on any transport).
    pub fn pong_received(&self) {
        *self.pong_deadline.lock() = None;
        self.pong.notify_one();
    }

    /// Records that a ping went out and its pong is due by `deadline`.
    pub fn ping_sent(&self, deadline: tokio::time::Instant) {
        *self.pong_deadline.lock() = Some(deadline);
    }

    /// True if a pong is overdue. Requests check this, so a session whose deadline passed is
    /// treated as timed out even if its heartbeat task has not run yet.
    pub fn pong_overdue(&self) -> bool {
        self.pong_deadline
            .lock()
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Resolves at the next pong (one that arrived before the wait counts).
    pub async fn wait_pong(&self) {
        self.pong.notified().await;
    }

    /// Resolves once the session is closed.
    pub async fn wait_closed(&self) {
        let notified = self.closed_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.closed().is_some() {
            return;
        }
        notified.await;
    }

    /// Queues one frame; returns false (and drops it) once the session is closed.
    pub fn send(&self, frame: Frame) -> bool {
        {
            let mut out = self.outbox.lock();
            if out.closed.is_some() {
                return false;
            }
            out.frames.push(frame);
        }
        self.notify.notify_one();
        true
    }

    /// Queues several frames that must stay adjacent (a binary packet and its attachments).
    pub fn send_all(&self, frames: &[Frame]) -> bool {
        {
            let mut out = self.outbox.lock();
            if out.closed.is_some() {
                return false;
            }
            out.frames.extend_from_slice(frames);
        }
        self.notify.notify_one();
        true
    }

    /// Takes everything queued, plus the close reason if the session was closed.
    ///
    /// Frames queued before a close are still returned, so the transport can flush them before
    /// it goes: a server-side close loses nothing that was sent before it.
    pub fn take(&self) -> (Vec<Frame>, Option<DisconnectReason>) {
        let mut out = self.outbox.lock();
        (std::mem::take(&mut out.frames), out.closed)
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
        self.closed_notify.notify_waiters();
        first
    }

    pub fn closed(&self) -> Option<DisconnectReason> {
        self.outbox.lock().closed
    }

    /// Resolves when something was queued or the session was closed since the last wait.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn session() -> Arc<EngineSession> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "", [], addr, addr);
        EngineSession::new("s".into(), Arc::new(hs), TransportKind::WebSocket)
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
}
