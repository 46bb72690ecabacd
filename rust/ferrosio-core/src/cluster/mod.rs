//! Several servers as one, over Redis pub/sub, wire-compatible with Node's
//! `@socket.io/redis-adapter` 8.x (and its emitter): a ferrosio node and a Node socket.io node
//! on the same Redis and key are one cluster.
//!
//! - [`RedisAdapter`]: a namespace's [`Adapter`]. Rooms live in a [`LocalAdapter`]; a broadcast
//!   is delivered here at once and handed to the link to publish (never waiting on Redis on
//!   the engine thread).
//! - `link`: the one tokio task per server owning the Redis connections (publish and
//!   subscribe), reconnecting and resubscribing by itself; what it receives from the other
//!   nodes comes back to the layer as ordinary commands with the `local` flag set.
//! - [`wire`]: the MessagePack messages.
//! - [`Publisher`]: a blocking publisher for processes that only send (the emitter).

mod link;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::{mpsc, Notify};

pub(crate) use link::spawn_link;

use crate::engineio::packet::Frame;
use crate::socketio::adapter::{
    Adapter, AdapterError, BroadcastOptions, LocalAdapter, LocalSockets,
};
use crate::socketio::rooms::RoomIndex;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the connection to redis was lost")]
    ConnectionLost,
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("this server is not in a cluster")]
    NotInCluster,
}

/// How a server joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisClusterConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// The channel prefix (Node's `key` option, `socket.io` by default).
    pub key: String,
    /// Most broadcasts waiting to be published. Beyond it (Redis slower than the
    /// broadcasts, or unreachable) a broadcast still reaches this server's clients but not
    /// the other nodes', and is counted in [`ClusterStats::dropped`].
    pub queue_bound: usize,
    /// Longest pause between two reconnection attempts.
    pub max_reconnect_delay: Duration,
}

impl RedisClusterConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisClusterConfig {
            url: url.into(),
            key: "socket.io".into(),
            queue_bound: 4096,
            max_reconnect_delay: Duration::from_secs(2),
        }
    }
}

/// Counters of the link, readable from any thread.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Whether the link is connected and subscribed.
    pub connected: AtomicBool,
    /// Broadcasts published to the other nodes.
    pub published: AtomicU64,
    /// Broadcasts from other nodes delivered to this server's clients.
    pub received: AtomicU64,
    /// Broadcasts that did not reach the other nodes: the queue was full, or Redis was
    /// unreachable (those published during an outage are dropped, not replayed later).
    pub dropped: AtomicU64,
    /// Messages from Redis that could not be decoded (ignored).
    pub malformed: AtomicU64,
    /// Times the link lost Redis (or could not reach it at startup).
    pub outages: AtomicU64,
}

impl ClusterStats {
    pub fn snapshot(&self) -> ClusterStatsSnapshot {
        ClusterStatsSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStatsSnapshot {
    pub connected: bool,
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub outages: u64,
}

/// What an adapter hands to the link.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Broadcast {
        nsp: Arc<str>,
        frames: Vec<Frame>,
        opts: BroadcastOptions,
    },
    Bulk {
        nsp: Arc<str>,
        action: wire::BulkAction,
        opts: BroadcastOptions,
    },
    /// A request of the host that expects answers: published on the namespace's request
    /// channel after counting its listeners (`PUBSUB NUMSUB`), reported to the host as
    /// [`ControlInbound::ClusterSent`](crate::bridge::ControlInbound::ClusterSent).
    Request {
        nsp: Arc<str>,
        payload: Vec<u8>,
        token: u64,
    },
    /// A message of the host published as is: an answer to another node, or a request
    /// nobody answers (a server-side emit without ack).
    Message { channel: String, payload: Vec<u8> },
}

/// Where a message of the host goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChannel {
    /// The namespace's request channel (every node).
    Request,
    /// The namespace's response channel (every node; the asker picks its own answers).
    Response,
    /// The response channel of the node with this uid only.
    ResponseTo(String),
}

/// The adapters' side of the link: its queue, the namespaces to subscribe to, the counters.
pub struct ClusterLink {
    /// This server's id on the bus (its own messages come back and are skipped by it).
    uid: String,
    key: String,
    queue: mpsc::Sender<Outgoing>,
    namespaces: Mutex<Vec<Arc<str>>>,
    /// `namespaces.len()`, read by the link without the lock.
    namespace_count: AtomicUsize,
    /// Wakes the link when a namespace is added.
    namespaces_changed: Notify,
    pub stats: ClusterStats,
}

impl ClusterLink {
    fn publish(&self, nsp: &Arc<str>, frames: &[Frame], opts: &BroadcastOptions) {
        self.enqueue(Outgoing::Broadcast {
            nsp: nsp.clone(),
            frames: frames.to_vec(),
            opts: opts.clone(),
        });
    }

    fn request(&self, nsp: &Arc<str>, action: wire::BulkAction, opts: &BroadcastOptions) {
        self.enqueue(Outgoing::Bulk {
            nsp: nsp.clone(),
            action,
            opts: opts.clone(),
        });
    }

    fn enqueue(&self, item: Outgoing) {
        if self.queue.try_send(item).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// This node's id on the bus (the `uid` of its requests).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Queues a request of the host (`json` with placeholders for `attachments`, see
    /// [`wire::encode_value`]); its publication is reported with `token`. False (nothing
    /// queued, counted as dropped) when the queue is full.
    pub fn send_request(
        &self,
        nsp: &str,
        json: &[u8],
        attachments: &[bytes::Bytes],
        token: u64,
    ) -> Result<bool, wire::WireError> {
        let payload = wire::encode_value(json, attachments)?;
        // The answers come on the namespace's response channels: this node must listen to
        // them (the link subscribes before it publishes the request).
        self.add_namespace(&Arc::from(nsp));
        Ok(self.try_enqueue(Outgoing::Request {
            nsp: Arc::from(nsp),
            payload,
            token,
        }))
    }

    /// Queues a message of the host for `channel` of `nsp`; false when the queue is full.
    pub fn send_message(
        &self,
        nsp: &str,
        channel: &ClusterChannel,
        json: &[u8],
        attachments: &[bytes::Bytes],
    ) -> Result<bool, wire::WireError> {
        let payload = wire::encode_value(json, attachments)?;
        let channel = match channel {
            ClusterChannel::Request => wire::request_channel(&self.key, nsp),
            ClusterChannel::Response => wire::response_channel(&self.key, nsp, None),
            ClusterChannel::ResponseTo(uid) => wire::response_channel(&self.key, nsp, Some(uid)),
        };
        Ok(self.try_enqueue(Outgoing::Message { channel, payload }))
    }

    fn try_enqueue(&self, item: Outgoing) -> bool {
        let queued = self.queue.try_send(item).is_ok();
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    fn add_namespace(&self, nsp: &Arc<str>) {
        let mut namespaces = self.namespaces.lock();
        if namespaces.iter().any(|n| n == nsp) {
            return; // subscribed already (a namespace created again, or asked about first)
        }
        namespaces.push(nsp.clone());
        self.namespace_count
            .store(namespaces.len(), Ordering::Release);
        drop(namespaces);
        self.namespaces_changed.notify_one();
    }
}

/// A namespace's adapter in a cluster: local rooms, broadcasts forwarded to the other nodes.
pub struct RedisAdapter {
    nsp: Arc<str>,
    local: LocalAdapter,
    link: Arc<ClusterLink>,
}

impl RedisAdapter {
    pub fn new(nsp: &str, link: Arc<ClusterLink>) -> Self {
        let nsp: Arc<str> = Arc::from(nsp);
        link.add_namespace(&nsp);
        RedisAdapter {
            nsp,
            local: LocalAdapter::new(),
            link,
        }
    }
}

impl Adapter for RedisAdapter {
    fn add_all(&mut self, sid: &Arc<str>, rooms: &[&str]) {
        self.local.add_all(sid, rooms);
    }

    fn del(&mut self, sid: &str, room: &str) {
        self.local.del(sid, room);
    }

    fn del_all(&mut self, sid: &str) {
        self.local.del_all(sid);
    }

    fn close_room(&mut self, room: &str) {
        self.local.close_room(room);
    }

    fn broadcast(
        &mut self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    ) {
        if !opts.flags.local {
            self.link.publish(&self.nsp, frames, opts);
        }
        self.local.broadcast(frames, opts, sockets);
    }

    fn broadcast_with_ack(
        &mut self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    ) -> usize {
        // Acks from other nodes' clients are not collected yet: this node's clients only.
        self.local.broadcast_with_ack(frames, opts, sockets)
    }

    fn socket_rooms(&self, sid: &str) -> Vec<Arc<str>> {
        self.local.socket_rooms(sid)
    }

    fn fetch_sockets(&self, opts: &BroadcastOptions, sockets: &dyn LocalSockets) -> Vec<Arc<str>> {
        self.local.fetch_sockets(opts, sockets)
    }

    fn add_sockets(&mut self, opts: &BroadcastOptions, rooms: &[&str], sockets: &dyn LocalSockets) {
        if !opts.flags.local {
            let rooms = rooms.iter().map(|r| r.to_string()).collect();
            self.link
                .request(&self.nsp, wire::BulkAction::Join(rooms), opts);
        }
        self.local.add_sockets(opts, rooms, sockets);
    }

    fn del_sockets(&mut self, opts: &BroadcastOptions, rooms: &[&str], sockets: &dyn LocalSockets) {
        if !opts.flags.local {
            let rooms = rooms.iter().map(|r| r.to_string()).collect();
            self.link
                .request(&self.nsp, wire::BulkAction::Leave(rooms), opts);
        }
        self.local.del_sockets(opts, rooms, sockets);
    }

    fn disconnect_sockets(
        &mut self,
        opts: &BroadcastOptions,
        sockets: &dyn LocalSockets,
    ) -> Vec<Arc<str>> {
        if !opts.flags.local {
            // The trait has no `close`: other nodes disconnect from the namespace only.
            self.link.request(
                &self.nsp,
                wire::BulkAction::Disconnect { close: false },
                opts,
            );
        }
        self.local.disconnect_sockets(opts, sockets)
    }

    fn server_side_emit(&mut self, _frames: &[Frame]) -> Result<(), AdapterError> {
        Err(AdapterError::Unsupported(
            "serverSideEmit over Redis (not implemented yet)",
        ))
    }

    fn rooms(&self) -> &RoomIndex {
        self.local.rooms()
    }

    fn rooms_mut(&mut self) -> &mut RoomIndex {
        self.local.rooms_mut()
    }
}

/// A blocking publisher of broadcasts for a process that runs no server (Node's
/// `@socket.io/redis-emitter`): one Redis connection, opened on first use and reopened once
/// after an error.
pub struct Publisher {
    client: redis::Client,
    key: String,
    connection: Option<redis::Connection>,
}

/// The uid Node's emitter publishes under.
pub const EMITTER_UID: &str = "emitter";

impl Publisher {
    pub fn new(url: &str, key: &str) -> Result<Self, ClusterError> {
        Ok(Publisher {
            client: redis::Client::open(url)?,
            key: key.to_owned(),
            connection: None,
        })
    }

    /// Publishes `frames` (one EVENT packet and its attachments) to the selected sockets of
    /// `nsp` on every node; returns how many nodes' subscriptions received it.
    pub fn broadcast(
        &mut self,
        nsp: &str,
        frames: &[Frame],
        opts: &BroadcastOptions,
    ) -> Result<u64, ClusterError> {
        let payload = wire::encode_broadcast(EMITTER_UID, nsp, frames, opts)?;
        let channel = wire::broadcast_channel(&self.key, nsp, opts);
        match self.publish_once(&channel, &payload) {
            Ok(n) => Ok(n),
            Err(_) => {
                // A connection broken since the last use (e.g. Redis restarted): one retry.
                self.connection = None;
                self.publish_once(&channel, &payload)
            }
        }
    }

    fn publish_once(&mut self, channel: &str, payload: &[u8]) -> Result<u64, ClusterError> {
        let conn = match &mut self.connection {
            Some(c) => c,
            None => {
                // Bounded: a caller never hangs on a Redis that stopped answering.
                let timeout = Duration::from_secs(5);
                let c = self.client.get_connection_with_timeout(timeout)?;
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                self.connection.insert(c)
            }
        };
        let receivers: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query(conn)?;
        Ok(receivers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::adapter::{BroadcastFlags, LocalSockets};
    use bytes::Bytes;
    use foldhash::HashSet;

    struct NoSockets;

    impl LocalSockets for NoSockets {
        fn contains(&self, _sid: &str) -> bool {
            false
        }
        fn deliver(&mut self, _sid: &str, _frames: &[Frame]) -> bool {
            false
        }
        fn deliver_all(&mut self, _except: &HashSet<&str>, _frames: &[Frame]) -> usize {
            0
        }
        fn sids(&self) -> Vec<Arc<str>> {
            Vec::new()
        }
    }

    /// A link whose task is not running: what the adapters queue stays queued.
    fn idle_link(bound: usize) -> (Arc<ClusterLink>, mpsc::Receiver<Outgoing>) {
        let (queue, rx) = mpsc::channel(bound);
        let link = Arc::new(ClusterLink {
            uid: "test".into(),
            key: "socket.io".into(),
            queue,
            namespaces: Mutex::default(),
            namespace_count: AtomicUsize::new(0),
            namespaces_changed: Notify::new(),
            stats: ClusterStats::default(),
        });
        (link, rx)
    }

    fn frames() -> Vec<Frame> {
        vec![Frame::Text(Bytes::from_static(b"42[\"x\"]"))]
    }

    #[test]
    fn a_full_queue_drops_and_counts_but_local_broadcasts_never_queue() {
        let (link, mut rx) = idle_link(2);
        let mut adapter = RedisAdapter::new("/", link.clone());
        assert_eq!(
            link.namespaces.lock().len(),
            1,
            "the namespace is subscribed"
        );
        let everyone = BroadcastOptions::default();
        for _ in 0..5 {
            adapter.broadcast(&frames(), &everyone, &mut NoSockets);
        }
        let local = BroadcastOptions {
            flags: BroadcastFlags {
                local: true,
                ..BroadcastFlags::default()
            },
            ..BroadcastOptions::default()
        };
        adapter.broadcast(&frames(), &local, &mut NoSockets);
        let stats = link.stats.snapshot();
        assert_eq!(stats.dropped, 3, "the bound is 2: three of five dropped");
        let mut queued = 0;
        while let Ok(item) = rx.try_recv() {
            let Outgoing::Broadcast { nsp, opts, .. } = item else {
                panic!("a broadcast")
            };
            assert!(!opts.flags.local);
            assert_eq!(&*nsp, "/");
            queued += 1;
        }
        assert_eq!(queued, 2);
    }

    #[test]
    fn requests_subscribe_their_namespace_once_and_a_full_queue_refuses_them() {
        let (link, mut rx) = idle_link(1);
        let _adapter = RedisAdapter::new("/", link.clone());
        let json = br#"{"uid":"test","requestId":"q","type":5}"#;
        assert!(link.send_request("/", json, &[], 1).unwrap());
        assert!(
            !link.send_request("/chat", json, &[], 2).unwrap(),
            "the bound is 1: refused, not queued"
        );
        assert_eq!(link.stats.snapshot().dropped, 1);
        assert_eq!(
            link.namespaces.lock().as_slice(),
            [Arc::<str>::from("/"), Arc::<str>::from("/chat")],
            "asking about a namespace subscribes it, once"
        );
        assert_eq!(link.namespace_count.load(Ordering::Acquire), 2);
        let Ok(Outgoing::Request { token, nsp, .. }) = rx.try_recv() else {
            panic!("a request")
        };
        assert_eq!((token, &*nsp), (1, "/"));
        assert!(
            link.send_request("/", b"[1]", &[], 3).is_err(),
            "not an object"
        );
        assert!(link
            .send_message("/", &ClusterChannel::Response, br#"{"requestId":"q"}"#, &[])
            .unwrap());
        let Ok(Outgoing::Message { channel, .. }) = rx.try_recv() else {
            panic!("a message")
        };
        assert_eq!(channel, "socket.io-response#/#");
    }
}
