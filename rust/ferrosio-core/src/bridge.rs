//! The two queues between the engine thread and the host (Python) thread.
//!
//! Inbound: the engine pushes [`Inbound`] records and wakes the host through a socket pair only
//! when the queue goes from idle to armed, so a burst of events costs one wake-up; the host
//! drains the whole batch at once. Outbound: the host sends [`Command`]s on one FIFO channel, so
//! the order of its calls (join, then emit to that room) is the order the engine applies them.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::engineio::inbound::InboundBudget;
use crate::engineio::packet::Frame;
use crate::engineio::session::Handshake;
use crate::engineio::DisconnectReason;
use crate::socketio::adapter::BroadcastOptions;

/// A record for the host, in arrival order, by audience.
#[derive(Debug)]
pub enum Inbound {
    SocketIo(SocketIoInbound),
    EngineIo(EngineIoInbound),
    Control(ControlInbound),
    /// Requests forwarded to the host's HTTP application (see [`HttpInbound`]).
    Http(HttpInbound),
}

/// What happened on the Socket.IO endpoint.
#[derive(Debug)]
pub enum SocketIoInbound {
    /// A client asked to join a namespace; the host answers with Accept or Reject.
    Connect {
        sid: Arc<str>,
        nsp: Arc<str>,
        eio_sid: Arc<str>,
        auth: Bytes,
        handshake: Handshake,
        /// The socket is a lost one recovered (same sid, rooms, missed packets replayed).
        recovered: bool,
    },
    Event {
        sid: Arc<str>,
        nsp: Arc<str>,
        ack_id: Option<u64>,
        data: Bytes,
        attachments: Vec<Bytes>,
    },
    Ack {
        sid: Arc<str>,
        nsp: Arc<str>,
        ack_id: u64,
        data: Bytes,
        attachments: Vec<Bytes>,
    },
    Disconnect {
        sid: Arc<str>,
        nsp: Arc<str>,
        reason: DisconnectReason,
    },
    /// How many clients a [`SocketIoCommand::EmitWithAck`] reached: the number of acks the
    /// host may expect for `ack_id`. Pushed while the command is applied, so it comes before
    /// any of those acks (the host still tolerates the other order).
    BroadcastReach {
        nsp: Arc<str>,
        ack_id: u64,
        clients: usize,
    },
    /// The socket was lost abnormally and its state is kept for connection state recovery:
    /// pushed right before its `Disconnect`, so the host keeps what it has of it too.
    Kept { sid: Arc<str>, nsp: Arc<str> },
    /// The socket is in `max_rooms_per_socket` rooms already: its join of `room` was refused.
    /// Sent for the first few refusals after each room command; `total` counts them all (in
    /// the namespace, since it was made).
    RoomRefused {
        sid: Arc<str>,
        nsp: Arc<str>,
        room: Arc<str>,
        total: u64,
    },
}

/// What happened on the bare Engine.IO endpoint.
#[derive(Debug)]
pub enum EngineIoInbound {
    Open {
        sid: Arc<str>,
        handshake: Handshake,
    },
    /// A message (`binary`: it came as a binary packet).
    Message {
        sid: Arc<str>,
        data: Bytes,
        binary: bool,
    },
    Close {
        sid: Arc<str>,
        reason: DisconnectReason,
    },
}

/// Questions about the server itself.
#[derive(Debug)]
pub enum ControlInbound {
    /// The host must decide on a request before anything else happens to it: whether its
    /// origin is allowed (`origin` is set) and/or whether the request may open a session
    /// (`check_request`). Answered with [`ControlCommand::Authorize`].
    Authorize {
        id: u64,
        origin: Option<String>,
        check_request: bool,
        handshake: Handshake,
    },
    /// The cluster link lost Redis (`connected` false, `detail` says why) or got it back.
    /// Sent once per change, not per attempt.
    Cluster { connected: bool, detail: String },
    /// A request from another node that the host answers (fetch sockets, all rooms,
    /// server-side emit, broadcast with acks...), or with `response` an answer to a request
    /// of this node: the adapter's message as JSON with `{"_placeholder":true,"num":n}` for
    /// each of `attachments`.
    ClusterMessage {
        nsp: String,
        response: bool,
        json: Vec<u8>,
        attachments: Vec<Bytes>,
    },
    /// The host's request `token` was published: `servers` nodes listen to the requests of
    /// its namespace (this one included); None: it could not be published (Redis lost).
    ClusterSent { token: u64, servers: Option<u64> },
    /// The answer to a request the host handed over (`server::external`): an HTTP request,
    /// or a WebSocket request (101: accepted).
    Response {
        id: u64,
        status: u16,
        headers: Vec<(String, Bytes)>,
        body: Bytes,
    },
    /// The host's WebSocket `id` has frames to take, or must close (`server::external`).
    Ready { id: u64 },
}

impl From<ControlInbound> for Inbound {
    fn from(item: ControlInbound) -> Self {
        Inbound::Control(item)
    }
}

impl From<SocketIoInbound> for Inbound {
    fn from(item: SocketIoInbound) -> Self {
        Inbound::SocketIo(item)
    }
}

impl From<EngineIoInbound> for Inbound {
    fn from(item: EngineIoInbound) -> Self {
        Inbound::EngineIo(item)
    }
}

/// Who an emit goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// One socket, by sid.
    Socket(String),
    /// Sockets chosen by rooms (see [`BroadcastOptions`]).
    Broadcast(BroadcastOptions),
}

/// A request from the host, applied in order on the engine thread, by audience.
#[derive(Debug)]
pub enum Command {
    SocketIo(SocketIoCommand),
    EngineIo(EngineIoCommand),
    Control(ControlCommand),
    /// Answers to forwarded HTTP requests (see [`HttpCommand`]).
    Http(HttpCommand),
    /// Several commands sent as one message (one wake-up of the engine thread), applied in order.
    Batch(Vec<Command>),
}

/// A request for the Socket.IO layer; `nsp` names the namespace.
#[derive(Debug)]
pub enum SocketIoCommand {
    /// Deliver pre-encoded frames (one packet plus its attachments) to a target.
    Emit {
        nsp: String,
        target: Target,
        frames: Vec<Frame>,
    },
    /// A broadcast asking every recipient for an ack (one `ack_id` for all, as Node's
    /// `BroadcastOperator.emit`): delivered like `Emit`, then answered with
    /// [`SocketIoInbound::BroadcastReach`] (no reply channel: the host never blocks on it).
    EmitWithAck {
        nsp: String,
        opts: BroadcastOptions,
        frames: Vec<Frame>,
        ack_id: u64,
    },
    Accept {
        nsp: String,
        sid: String,
    },
    Reject {
        nsp: String,
        sid: String,
        data: Bytes,
    },
    Join {
        nsp: String,
        sid: String,
        room: String,
    },
    Leave {
        nsp: String,
        sid: String,
        room: String,
    },
    CloseRoom {
        nsp: String,
        room: String,
    },
    Disconnect {
        nsp: String,
        sid: String,
    },
    /// The host could not use what this socket's client sent (an event it cannot decode):
    /// close the client's whole connection as a protocol error, as for a malformed packet.
    Abort {
        nsp: String,
        sid: String,
    },
    /// Makes the sockets `opts` selects join `rooms` (Node's `socketsJoin`): in a cluster on
    /// every server, unless `opts.flags.local`.
    SocketsJoin {
        nsp: String,
        opts: BroadcastOptions,
        rooms: Vec<String>,
    },
    /// Makes the selected sockets leave `rooms` (Node's `socketsLeave`).
    SocketsLeave {
        nsp: String,
        opts: BroadcastOptions,
        rooms: Vec<String>,
    },
    /// Disconnects the selected sockets from the namespace (Node's `disconnectSockets`);
    /// `close`: their whole connection too.
    DisconnectSockets {
        nsp: String,
        opts: BroadcastOptions,
        close: bool,
    },
    /// The sockets `opts` selects, each with its rooms (its own sid first), answered on
    /// `reply` (Node's `fetchSockets` on this server).
    FetchSockets {
        nsp: String,
        opts: BroadcastOptions,
        reply: std::sync::mpsc::SyncSender<Vec<(String, Vec<String>)>>,
    },
    /// Every room of the namespace on this server, sid rooms included (Node's
    /// `adapter.rooms`), answered on `reply`.
    AllRooms {
        nsp: String,
        reply: std::sync::mpsc::SyncSender<Vec<String>>,
    },
    /// The rooms of a socket (its own sid first), answered on `reply`. Applied in order with
    /// the other commands, so the answer reflects every join and leave sent before it.
    Rooms {
        nsp: String,
        sid: String,
        reply: std::sync::mpsc::SyncSender<Vec<String>>,
    },
}

/// A request for the bare Engine.IO endpoint.
#[derive(Debug)]
pub enum EngineIoCommand {
    Send { sid: String, frames: Vec<Frame> },
    Close { sid: String },
}

/// A request about the server itself.
#[derive(Debug)]
pub enum ControlCommand {
    /// The host's answer to [`ControlInbound::Authorize`].
    Authorize {
        id: u64,
        origin_ok: bool,
        request_ok: bool,
    },
    /// Start a graceful shutdown; the engine thread exits when done.
    Shutdown { timeout_ms: u64 },
}

impl From<SocketIoCommand> for Command {
    fn from(cmd: SocketIoCommand) -> Self {
        Command::SocketIo(cmd)
    }
}

impl From<EngineIoCommand> for Command {
    fn from(cmd: EngineIoCommand) -> Self {
        Command::EngineIo(cmd)
    }
}

impl From<ControlCommand> for Command {
    fn from(cmd: ControlCommand) -> Self {
        Command::Control(cmd)
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarded HTTP: one port shared with the host's own HTTP application (an ASGI app). A request
// outside the Socket.IO/Engine.IO endpoints (and static files) goes to the host whole (its body
// read up to `max_payload`, else 413); the host answers with a head, then body chunks. Flow
// control is by credit: the host keeps at most `HTTP_BODY_CREDIT` chunks unwritten, waiting for
// `Written` records; a host exceeding it has its response aborted (the queue stays bounded).

/// Body chunks of one forwarded response the host may have sent but not yet seen written.
pub const HTTP_BODY_CREDIT: usize = 8;

/// What happened to a forwarded HTTP request; `id` names the request.
#[derive(Debug)]
pub enum HttpInbound {
    /// A request for the host's application, body included.
    Request {
        id: u64,
        head: Handshake,
        /// `"1.0"` or `"1.1"`.
        http_version: &'static str,
        body: Bytes,
    },
    /// One body chunk of the response was handed to the connection: one credit back.
    Written { id: u64 },
    /// The client went away (or the response was aborted) before the response ended.
    Closed { id: u64 },
}

/// The host's answer to [`HttpInbound::Request`].
#[derive(Debug)]
pub enum HttpCommand {
    /// The status line and headers; sent once, before any body.
    Start {
        id: u64,
        status: u16,
        headers: Vec<(Bytes, Bytes)>,
    },
    /// A body chunk; `more: false` ends the response.
    Body { id: u64, data: Bytes, more: bool },
    /// The application failed: 500 if nothing was sent yet, else the connection is cut.
    Abort { id: u64 },
}

impl From<HttpCommand> for Command {
    fn from(cmd: HttpCommand) -> Self {
        Command::Http(cmd)
    }
}

/// The engine thread behind a server or client handle: whether it still runs, and joining it
/// once (later calls return at once).
pub(crate) struct EngineThread(Mutex<Option<std::thread::JoinHandle<()>>>);

impl EngineThread {
    pub(crate) fn new(handle: std::thread::JoinHandle<()>) -> Self {
        EngineThread(Mutex::new(Some(handle)))
    }

    pub(crate) fn is_running(&self) -> bool {
        self.0.lock().as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until the thread has ended.
    pub(crate) fn join(&self) {
        if let Some(t) = self.0.lock().take() {
            let _ = t.join();
        }
    }
}

/// A batch queue to the host plus its wake-up socket; generic so the server and the client
/// engines share it.
pub struct WakeQueue<T> {
    items: Mutex<Vec<T>>,
    /// Items the host has converted, handed back to be dropped on the producer's thread.
    spent: Mutex<Vec<T>>,
    armed: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// What pushers may queue before the host drains (reset by each drain).
    budget: InboundBudget,
}

/// At most this many spent items wait for the producer; beyond, the host drops them itself.
const SPENT_MAX: usize = 16 * 1024;

/// The server's inbound queue.
pub type InboundQueue = WakeQueue<Inbound>;

impl<T> WakeQueue<T> {
    pub fn new() -> std::io::Result<Arc<Self>> {
        Self::with_budget(InboundBudget::unbounded())
    }

    /// A queue whose producers respect `budget` (see [`InboundBudget`]).
    pub fn with_budget(budget: InboundBudget) -> std::io::Result<Arc<Self>> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Arc::new(WakeQueue {
            items: Mutex::new(Vec::with_capacity(256)),
            spent: Mutex::new(Vec::new()),
            armed: AtomicBool::new(false),
            wake_tx,
            wake_rx,
            budget,
        }))
    }

    pub fn budget(&self) -> &InboundBudget {
        &self.budget
    }

    /// The fd the host watches for readability (e.g. `loop.add_reader`).
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.wake_rx.as_raw_fd()
    }

    pub fn push(&self, item: T) {
        self.items.lock().push(item);
        self.wake();
        self.release_spent();
    }

    /// Appends a batch; wakes the host only if the batch was not empty.
    pub fn push_many(&self, items: impl IntoIterator<Item = T>) {
        let added = {
            let mut queue = self.items.lock();
            let before = queue.len();
            queue.extend(items);
            queue.len() > before
        };
        if added {
            self.wake();
        }
        self.release_spent();
    }

    /// Hands drained items back once the host has converted them. Their buffers were allocated
    /// on the producer's thread: freeing them there spares the host thread the allocator's
    /// cross-thread path (its arena lock), which showed in profiles of the host thread.
    pub fn recycle(&self, mut items: Vec<T>) {
        let mut spent = self.spent.lock();
        if spent.len() > SPENT_MAX {
            return; // the producer is not pushing: drop them here, stay bounded
        }
        if spent.is_empty() {
            *spent = items;
        } else {
            spent.append(&mut items);
        }
    }

    /// Drops what the host handed back (called on the producer's thread, when it pushes).
    fn release_spent(&self) {
        let Some(mut spent) = self.spent.try_lock() else {
            return;
        };
        if spent.is_empty() {
            return;
        }
        let items = std::mem::take(&mut *spent);
        drop(spent);
        drop(items);
    }

    fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending: nothing is lost.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    /// Takes every queued item. Clears the wake-up first, so an item pushed during the drain
    /// arms a new wake-up instead of being stranded.
    pub fn drain(&self) -> Vec<T> {
        let mut buf = [0u8; 64];
        loop {
            match (&self.wake_rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.armed.store(false, Ordering::Release);
        let items = std::mem::take(&mut *self.items.lock());
        self.budget.drained();
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Inbound {
        Inbound::SocketIo(SocketIoInbound::Event {
            sid: "s".into(),
            nsp: "/".into(),
            ack_id: Some(n),
            data: Bytes::new(),
            attachments: vec![],
        })
    }

    /// Consumes one wake-up byte if there is one.
    fn readable<T>(q: &WakeQueue<T>) -> bool {
        let mut b = [0u8; 1];
        matches!((&q.wake_rx).read(&mut b), Ok(1))
    }

    #[test]
    fn recycled_items_are_dropped_by_the_next_push() {
        let q = WakeQueue::<Arc<()>>::new().unwrap();
        let tracker = Arc::new(());
        q.push(tracker.clone());
        let items = q.drain();
        q.recycle(items);
        assert_eq!(
            Arc::strong_count(&tracker),
            2,
            "held until the producer runs"
        );
        q.push(Arc::new(()));
        assert_eq!(
            Arc::strong_count(&tracker),
            1,
            "dropped on the producer's side"
        );
    }

    #[test]
    fn one_wake_per_burst_and_order_kept() {
        let q = InboundQueue::new().unwrap();
        assert!(!readable(&q));
        for n in 0..100 {
            q.push(event(n));
        }
        assert!(readable(&q));
        let items = q.drain();
        assert_eq!(items.len(), 100);
        for (i, it) in items.iter().enumerate() {
            let Inbound::SocketIo(SocketIoInbound::Event { ack_id, .. }) = it else {
                panic!()
            };
            assert_eq!(*ack_id, Some(i as u64));
        }
        assert!(!readable(&q), "drain consumed the wake-up");
        q.push(event(0));
        assert!(readable(&q), "a push after a drain wakes again");
    }

    #[test]
    fn an_empty_batch_does_not_wake() {
        let q = WakeQueue::<u32>::new().unwrap();
        q.push_many(Vec::new());
        assert!(!readable(&q));
        q.push_many(vec![1, 2]);
        assert!(readable(&q));
        assert_eq!(q.drain(), vec![1, 2]);
    }
}
