//! The task owning a server's Redis connections.
//!
//! One session = one multiplexed connection for PUBLISH and one pub/sub connection,
//! subscribed to `<key>#<nsp>#*` for every namespace this server has. A session ends at the
//! first error; the task then reports the outage to the host once, drops what was queued
//! for publication (counted), waits with a growing delay and starts a new session, which
//! subscribes again to every namespace. Its return to service is reported too.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::wire::{
    broadcast_channel, bulk_from_value, decode_broadcast, decode_value, encode_broadcast,
    encode_bulk, request_channel, request_uid, response_channel, BulkAction,
};
use super::{ClusterError, ClusterLink, ClusterStats, Outgoing, RedisClusterConfig};
use crate::bridge::{Command, ControlInbound, Inbound, InboundQueue, SocketIoCommand, Target};

/// Longest wait for Redis to accept a connection or answer a command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Most queued broadcasts sent to Redis as one pipeline.
const PIPELINE_MAX: usize = 256;

/// Largest request or response from another node handed to the host (a fetch-sockets
/// answer listing many sockets is the big one); a larger one is ignored and counted as
/// malformed, so the asker's request ends with a timeout.
pub const MAX_HOST_MESSAGE: usize = 16 * 1024 * 1024;

/// A request or response of at most [`MAX_HOST_MESSAGE`] bytes, decoded (None: too large or
/// malformed).
fn bounded_decode(payload: &[u8]) -> Option<(serde_json::Value, Vec<bytes::Bytes>)> {
    if payload.len() > MAX_HOST_MESSAGE {
        return None;
    }
    decode_value(payload).ok()
}

/// Creates the link and spawns its task on `runtime` (the engine thread's).
pub(crate) fn spawn_link(
    config: &RedisClusterConfig,
    runtime: &tokio::runtime::Runtime,
    commands: mpsc::WeakUnboundedSender<Command>,
    inbound: Arc<InboundQueue>,
) -> Result<Arc<ClusterLink>, ClusterError> {
    let client = redis::Client::open(config.url.as_str())?;
    let (tx, rx) = mpsc::channel(config.queue_bound.max(1));
    let uid: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(6)
        .collect();
    let link = Arc::new(ClusterLink {
        uid,
        key: config.key.clone(),
        queue: tx,
        namespaces: Default::default(),
        namespace_count: Default::default(),
        namespaces_changed: Default::default(),
        stats: ClusterStats::default(),
    });
    let task = LinkTask {
        link: link.clone(),
        client,
        rx,
        commands,
        inbound,
        max_delay: config.max_reconnect_delay,
    };
    runtime.spawn(task.run());
    Ok(link)
}

struct LinkTask {
    link: Arc<ClusterLink>,
    client: redis::Client,
    rx: mpsc::Receiver<Outgoing>,
    commands: mpsc::WeakUnboundedSender<Command>,
    inbound: Arc<InboundQueue>,
    max_delay: Duration,
}

impl LinkTask {
    async fn run(mut self) {
        let mut delay = Duration::from_millis(50);
        let mut down = false;
        loop {
            let result = self.session(&mut down).await;
            self.link.stats.connected.store(false, Ordering::Relaxed);
            let Err(error) = result else {
                return; // the server is gone
            };
            if !down {
                down = true;
                self.link.stats.outages.fetch_add(1, Ordering::Relaxed);
                self.report(false, error.to_string());
            }
            // What waits for a dead connection is not replayed: counted as dropped.
            let mut dropped = 0;
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    item = self.rx.recv() => match item {
                        Some(Outgoing::Request { token, .. }) => {
                            dropped += 1;
                            self.sent(token, None); // the asker fails now, not at its deadline
                        }
                        Some(_) => dropped += 1,
                        None => return,
                    },
                }
            }
            self.link
                .stats
                .dropped
                .fetch_add(dropped, Ordering::Relaxed);
            delay = (delay * 2).min(self.max_delay);
            if self.commands.upgrade().is_none() {
                return;
            }
        }
    }

    fn report(&self, connected: bool, detail: String) {
        self.inbound.push(Inbound::Control(ControlInbound::Cluster {
            connected,
            detail,
        }));
    }

    /// One connected period; returns Ok only when the server is gone.
    async fn session(&mut self, down: &mut bool) -> Result<(), ClusterError> {
        // Bounded: a Redis that stops answering (frozen, a black-holed address) ends the
        // session like a dead one instead of stalling the link.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let mut publisher = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| ClusterError::ConnectionLost)??;
        let (mut sink, mut stream) = pubsub.split();
        let key = self.link.key.clone();
        let mut subscribed = 0;
        subscribed = self.subscribe_new(&mut sink, &key, subscribed).await?;
        self.link.stats.connected.store(true, Ordering::Relaxed);
        if *down {
            *down = false;
            self.report(true, String::new());
        }
        let mut batch = Vec::with_capacity(PIPELINE_MAX);
        let request_prefix = format!("{key}-request#");
        let response_prefix = format!("{key}-response#");
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, PIPELINE_MAX) => {
                    if n == 0 {
                        return Ok(());
                    }
                    if self.link.namespace_count.load(Ordering::Acquire) > subscribed {
                        // A request for a namespace not listened to yet: its answers must
                        // not come before the subscription.
                        subscribed = self.subscribe_new(&mut sink, &key, subscribed).await?;
                    }
                    self.publish(&mut publisher, &key, &mut batch).await?;
                }
                () = self.link.namespaces_changed.notified() => {
                    subscribed = self.subscribe_new(&mut sink, &key, subscribed).await?;
                }
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(ClusterError::ConnectionLost);
                    };
                    let channel = msg.get_channel_name();
                    let delivered = if channel.starts_with(&request_prefix) {
                        self.deliver_request(channel, msg.get_payload_bytes())
                    } else if channel.starts_with(&response_prefix) {
                        self.deliver_response(channel, msg.get_payload_bytes())
                    } else {
                        self.deliver(msg.get_payload_bytes())
                    };
                    if !delivered {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Subscribes to the namespaces added since the first `done` ones.
    async fn subscribe_new(
        &self,
        sink: &mut redis::aio::PubSubSink,
        key: &str,
        done: usize,
    ) -> Result<usize, ClusterError> {
        let pending: Vec<Arc<str>> = self.link.namespaces.lock()[done..].to_vec();
        for nsp in &pending {
            sink.psubscribe(format!("{key}#{nsp}#*")).await?;
            // Plain subscriptions, as Node's: `PUBSUB NUMSUB` on the request channel counts
            // this node among those that answer requests.
            sink.subscribe(request_channel(key, nsp)).await?;
            sink.subscribe(response_channel(key, nsp, None)).await?;
            sink.subscribe(response_channel(key, nsp, Some(&self.link.uid)))
                .await?;
        }
        Ok(done + pending.len())
    }

    async fn publish(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        key: &str,
        batch: &mut Vec<Outgoing>,
    ) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        let mut count = 0;
        // The host's requests in this pipeline, in order: each one's NUMSUB is an answer.
        let mut tokens = Vec::new();
        for item in batch.drain(..) {
            match item {
                Outgoing::Broadcast { nsp, frames, opts } => {
                    match encode_broadcast(&self.link.uid, &nsp, &frames, &opts) {
                        Ok(payload) => {
                            pipe.cmd("PUBLISH")
                                .arg(broadcast_channel(key, &nsp, &opts))
                                .arg(payload)
                                .ignore();
                            count += 1;
                        }
                        // Not an event packet (nothing to forward): the clients here got it.
                        Err(_) => continue,
                    }
                }
                Outgoing::Bulk { nsp, action, opts } => {
                    pipe.cmd("PUBLISH")
                        .arg(request_channel(key, &nsp))
                        .arg(encode_bulk(&self.link.uid, &action, &opts))
                        .ignore();
                    count += 1;
                }
                Outgoing::Request {
                    nsp,
                    payload,
                    token,
                } => {
                    let channel = request_channel(key, &nsp);
                    pipe.cmd("PUBSUB").arg("NUMSUB").arg(&channel);
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                    tokens.push(token);
                    count += 1;
                }
                Outgoing::Message { channel, payload } => {
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                    count += 1;
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        let result = if tokens.is_empty() {
            pipe.query_async::<()>(conn).await.map(|()| Vec::new())
        } else {
            // `PUBSUB NUMSUB ch` answers `[ch, n]`.
            pipe.query_async::<Vec<(String, u64)>>(conn).await
        };
        let counts = match result {
            Ok(counts) => counts,
            Err(e) => {
                self.link.stats.dropped.fetch_add(count, Ordering::Relaxed);
                for token in tokens {
                    self.sent(token, None);
                }
                return Err(e.into());
            }
        };
        for (i, token) in tokens.into_iter().enumerate() {
            self.sent(token, counts.get(i).map(|(_, n)| *n));
        }
        self.link
            .stats
            .published
            .fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    fn sent(&self, token: u64, servers: Option<u64>) {
        self.inbound
            .push(Inbound::Control(ControlInbound::ClusterSent {
                token,
                servers,
            }));
    }

    /// The namespace named by `<prefix><nsp>#` or `<prefix><nsp>#<uid>#`.
    fn channel_nsp(&self, channel: &str, kind: &str) -> String {
        let rest = channel
            .strip_prefix(self.link.key.as_str())
            .and_then(|rest| rest.strip_prefix(kind))
            .unwrap_or("/#");
        // A namespace name never contains `#` (Node's adapter relies on it too).
        rest.split('#').next().unwrap_or("/").to_owned()
    }

    /// A request from another node (or an emitter): bulk requests go to the layer, the
    /// others to the host; false when the server is gone.
    fn deliver_request(&self, channel: &str, payload: &[u8]) -> bool {
        let Some(commands) = self.commands.upgrade() else {
            return false;
        };
        let nsp = self.channel_nsp(channel, "-request#");
        let (value, attachments) = match bounded_decode(payload) {
            Some(decoded) => decoded,
            None => {
                self.link.stats.malformed.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        };
        if request_uid(&value) == Some(self.link.uid.as_str()) {
            return true; // our own request
        }
        self.link.stats.received.fetch_add(1, Ordering::Relaxed);
        match bulk_from_value(&value) {
            Some(bulk) => {
                let opts = bulk.opts;
                let cmd = match bulk.action {
                    BulkAction::Join(rooms) => SocketIoCommand::SocketsJoin { nsp, opts, rooms },
                    BulkAction::Leave(rooms) => SocketIoCommand::SocketsLeave { nsp, opts, rooms },
                    BulkAction::Disconnect { close } => {
                        SocketIoCommand::DisconnectSockets { nsp, opts, close }
                    }
                };
                let _ = commands.send(Command::SocketIo(cmd));
            }
            None => self.to_host(nsp, false, &value, attachments),
        }
        true
    }

    /// An answer to a request (ours, or another node's on the shared channel: the host
    /// keeps those it asked for).
    fn deliver_response(&self, channel: &str, payload: &[u8]) -> bool {
        if self.commands.upgrade().is_none() {
            return false;
        }
        let nsp = self.channel_nsp(channel, "-response#");
        match bounded_decode(payload) {
            Some((value, attachments)) => {
                self.to_host(nsp, true, &value, attachments);
            }
            None => {
                self.link.stats.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    fn to_host(
        &self,
        nsp: String,
        response: bool,
        value: &serde_json::Value,
        attachments: Vec<bytes::Bytes>,
    ) {
        let Ok(json) = serde_json::to_vec(value) else {
            return;
        };
        self.inbound
            .push(Inbound::Control(ControlInbound::ClusterMessage {
                nsp,
                response,
                json,
                attachments,
            }));
    }

    /// A broadcast from another node, delivered to this node's clients; false when the
    /// server is gone.
    fn deliver(&self, payload: &[u8]) -> bool {
        let Some(commands) = self.commands.upgrade() else {
            return false;
        };
        match decode_broadcast(payload) {
            Ok(remote) if remote.uid == self.link.uid => {} // our own, already delivered here
            Ok(remote) => {
                self.link.stats.received.fetch_add(1, Ordering::Relaxed);
                let _ = commands.send(Command::SocketIo(SocketIoCommand::Emit {
                    nsp: remote.nsp,
                    target: Target::Broadcast(remote.opts),
                    frames: remote.frames,
                }));
            }
            Err(_) => {
                self.link.stats.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_for_the_host_are_bounded() {
        let mut big = br#"{"requestId":"q","pad":""#.to_vec();
        big.resize(MAX_HOST_MESSAGE, b'x');
        big.extend_from_slice(br#""}"#);
        assert!(big.len() > MAX_HOST_MESSAGE);
        assert!(bounded_decode(&big).is_none(), "over the bound: refused");
        let small = br#"{"requestId":"q","rooms":["a"]}"#;
        let (value, attachments) = bounded_decode(small).unwrap();
        assert_eq!(value["rooms"][0], "a");
        assert!(attachments.is_empty());
        assert!(bounded_decode(b"{nope").is_none(), "malformed JSON");
        assert!(
            bounded_decode(b"\x92\x01").is_none(),
            "truncated MessagePack"
        );
    }
}
