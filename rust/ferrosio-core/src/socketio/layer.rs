//! The Socket.IO server layer: namespaces, sockets, and their connection to Engine.IO sessions.
//! Room state and fan-out belong to each namespace's [`Adapter`].
//!
//! It sits on Engine.IO sessions (as their [`EngineHandler`]) and on the host's command queue.
//! Everything here runs on the engine thread; the registry lock is never contended by the host,
//! which only ever sends commands.

// Sids and room names are hashed on every emit: foldhash, seeded per process, not SipHash.
use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::adapter::{Adapter, BroadcastOptions, LocalAdapter, LocalSockets};
use super::assembler::{Assembler, AttachmentLimits};
use super::msgpack;
use super::one_or_many::OneOrMany;
use super::packet::{PacketType, SocketPacket};
use super::parser::Parser;
use super::recovery::{is_recoverable, Audience, PacketLog, RecoveryConfig, Restored, Sessions};
use super::v4;
use crate::bridge::{InboundQueue, SocketIoCommand, SocketIoInbound, Target};
use crate::config::ServerConfig;
use crate::engineio::inbound::InboundBudget;
use crate::engineio::packet::Frame;
use crate::engineio::session::EngineSession;
use crate::engineio::{DisconnectReason, EngineHandler};
use crate::error::ProtocolError;
use crate::sid::new_sid;

/// Most namespaces one connection may be in at once (a CONNECT beyond it gets a
/// CONNECT_ERROR): with `namespaces="*"` every name a client sends would otherwise add a
/// socket. The official server has no such bound; no real app comes near it.
pub const MAX_NAMESPACES_PER_CONNECTION: usize = 256;
const TOO_MANY_NAMESPACES: &[u8] = br#"{"message":"Too many namespaces on this connection"}"#;

/// Socket.IO state of one Engine.IO session.
struct Connection {
    /// Namespace -> socket sid. Few namespaces per connection (mostly one): a list beats a map.
    sockets: OneOrMany<(Arc<str>, Arc<str>)>,
    assembler: Assembler,
}

impl Connection {
    fn socket_in(&self, nsp: &str) -> Option<&(Arc<str>, Arc<str>)> {
        self.sockets.iter().find(|(n, _)| &**n == nsp)
    }
}

struct SocketEntry {
    session: Arc<EngineSession>,
    /// Until the host accepts the CONNECT: what is held back meanwhile. Boxed: an accepted
    /// socket (most of them, for most of their life) keeps one pointer, not the list.
    pending: Option<Box<Held>>,
}

/// Frames held back until the host accepts the CONNECT, so the CONNECT reply goes first.
#[derive(Default)]
struct Held {
    frames: Vec<Frame>,
    /// Bytes of `frames`, bounded by the session's `max_buffer`.
    bytes: usize,
}

impl SocketEntry {
    fn deliver(&mut self, frames: &[Frame], volatile: bool) {
        match &mut self.pending {
            // Nothing can reach the client before its CONNECT reply: a volatile packet is lost.
            Some(_) if volatile => {}
            Some(held) => {
                let bytes: usize = frames.iter().map(Frame::len).sum();
                if held.bytes + bytes > self.session.max_buffer() {
                    **held = Held::default();
                    self.session.close(DisconnectReason::BufferFull);
                } else {
                    held.frames.extend_from_slice(frames);
                    held.bytes += bytes;
                }
            }
            None => {
                self.session.send_volatile(frames, volatile);
            }
        }
    }
}

/// The sockets of one namespace on this server, as its adapter reaches them, and whether the
/// broadcast being delivered is volatile (set around one `Adapter::broadcast` call).
#[derive(Default)]
struct SocketTable(HashMap<Arc<str>, SocketEntry>, bool);

impl LocalSockets for SocketTable {
    fn contains(&self, sid: &str) -> bool {
        self.0.contains_key(sid)
    }

    fn deliver(&mut self, sid: &str, frames: &[Frame]) -> bool {
        match self.0.get_mut(sid) {
            Some(entry) => {
                entry.deliver(frames, self.1);
                true
            }
            None => false,
        }
    }

    fn deliver_all(&mut self, except: &HashSet<&str>, frames: &[Frame]) -> usize {
        let mut count = 0;
        for (sid, entry) in self.0.iter_mut() {
            if except.is_empty() || !except.contains(&**sid) {
                entry.deliver(frames, self.1);
                count += 1;
            }
        }
        count
    }

    fn sids(&self) -> Vec<Arc<str>> {
        self.0.keys().cloned().collect()
    }
}

struct Namespace {
    sockets: SocketTable,
    adapter: Box<dyn Adapter>,
    /// Connection state recovery's log (None when it is off: no work per packet then).
    recovery: Option<Box<PacketLog>>,
}

impl Namespace {
    fn new(adapter: Box<dyn Adapter>, recovery: bool) -> Self {
        Namespace {
            sockets: SocketTable::default(),
            adapter,
            recovery: recovery.then(Box::default),
        }
    }

    fn remove_socket(&mut self, sid: &str) -> Option<SocketEntry> {
        let entry = self.sockets.0.remove(sid)?;
        self.adapter.del_all(sid);
        if let Some(log) = &mut self.recovery {
            log.forget(sid);
        }
        Some(entry)
    }
}

/// Makes the adapter of a new namespace (given its name).
pub type AdapterFactory = Box<dyn Fn(&str) -> Box<dyn Adapter> + Send + Sync>;

#[derive(Default)]
struct Registry {
    connections: HashMap<Arc<str>, Connection>,
    namespaces: HashMap<Arc<str>, Namespace>,
    /// Sessions of lost sockets kept for recovery (empty when it is off).
    sessions: Sessions,
}

/// The Socket.IO server layer.
pub struct SocketIoLayer {
    registry: Mutex<Registry>,
    inbound: Arc<InboundQueue>,
    connect_timeout: Duration,
    limits: AttachmentLimits,
    new_adapter: AdapterFactory,
    /// The adapters forward broadcasts to other servers (a cluster): a broadcast to a
    /// namespace with no socket here still goes out.
    new_adapter_forwards: bool,
    /// Connection state recovery, when on.
    recovery: Option<RecoveryConfig>,
    /// The packets the engine writes itself (CONNECT replies, DISCONNECT, CONNECT_ERROR) and
    /// how inbound messages are read.
    parser: Parser,
}

impl SocketIoLayer {
    /// A layer whose namespaces keep their rooms in a [`LocalAdapter`].
    pub fn new(inbound: Arc<InboundQueue>, config: &ServerConfig) -> Arc<Self> {
        Self::with_adapter(inbound, config, Box::new(|_| Box::new(LocalAdapter::new())))
    }

    pub fn with_adapter(
        inbound: Arc<InboundQueue>,
        config: &ServerConfig,
        new_adapter: AdapterFactory,
    ) -> Arc<Self> {
        Self::build(inbound, config, new_adapter, false)
    }

    /// A layer whose adapters forward broadcasts to other servers (see `new_adapter_forwards`).
    pub fn with_cluster_adapter(
        inbound: Arc<InboundQueue>,
        config: &ServerConfig,
        new_adapter: AdapterFactory,
    ) -> Arc<Self> {
        Self::build(inbound, config, new_adapter, true)
    }

    fn build(
        inbound: Arc<InboundQueue>,
        config: &ServerConfig,
        new_adapter: AdapterFactory,
        new_adapter_forwards: bool,
    ) -> Arc<Self> {
        // Every namespace's rooms get the bound, whichever adapter keeps them.
        let max_rooms = config.max_rooms_per_socket;
        let new_adapter: AdapterFactory = Box::new(move |nsp| {
            let mut adapter = new_adapter(nsp);
            adapter.rooms_mut().set_max_per_socket(max_rooms);
            adapter
        });
        Arc::new(SocketIoLayer {
            registry: Mutex::default(),
            inbound,
            connect_timeout: config.connect_timeout,
            limits: config.attachment_limits(),
            new_adapter,
            new_adapter_forwards,
            recovery: config.recovery.clone(),
            parser: config.parser,
        })
    }

    /// Sessions kept for recovery, and the packets and bytes in every namespace's log.
    pub fn recovery_stats(&self) -> (usize, usize, usize) {
        let reg = self.registry.lock();
        let (packets, bytes) = reg
            .namespaces
            .values()
            .filter_map(|ns| ns.recovery.as_ref().map(|log| log.len()))
            .fold((0, 0), |(p, b), (lp, lb)| (p + lp, b + lb));
        (reg.sessions.kept(), packets, bytes)
    }

    /// The session a CONNECT's `auth` (`{"pid": ..., "offset": ...}`, as Node's client sends
    /// it) asks to recover, if it is still kept and every packet it missed still logged.
    fn restore(&self, reg: &mut Registry, nsp: &str, auth: &[u8]) -> Option<Restored> {
        let cfg = self.recovery.as_ref()?;
        if auth.is_empty() {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Claim<'a> {
            #[serde(borrow)]
            pid: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            offset: Option<std::borrow::Cow<'a, str>>,
        }
        let claim: Claim = serde_json::from_slice(auth).ok()?;
        let (pid, offset) = (claim.pid?, claim.offset?);
        let log = reg.namespaces.get(nsp)?.recovery.as_deref()?;
        reg.sessions
            .restore(&pid, &offset, nsp, log, Instant::now(), cfg)
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// True once the session has joined at least one namespace (or is gone).
    pub fn has_sockets(&self, eio_sid: &str) -> bool {
        self.registry
            .lock()
            .connections
            .get(eio_sid)
            .is_none_or(|c| !c.sockets.is_empty())
    }

    fn push(&self, item: SocketIoInbound) {
        self.inbound.push(item.into());
    }

    /// Tells the host of the joins the room bound refused
    /// (see [`crate::socketio::rooms::RoomIndex::take_refused`]).
    fn report_refused_joins(&self, nsp: &str, ns: &mut Namespace) {
        let (refused, total) = ns.adapter.rooms_mut().take_refused();
        if refused.is_empty() {
            return;
        }
        let nsp: Arc<str> = Arc::from(nsp);
        for (sid, room) in refused {
            self.push(SocketIoInbound::RoomRefused {
                sid,
                nsp: nsp.clone(),
                room,
                total,
            });
        }
    }

    /// A complete packet (attachments included) from a session.
    fn on_packet(
        &self,
        reg: &mut Registry,
        session: &Arc<EngineSession>,
        packet: SocketPacket,
        attachments: Vec<Bytes>,
    ) -> Result<(), ProtocolError> {
        let nsp_str = std::str::from_utf8(&packet.nsp).map_err(|_| ProtocolError::BadNamespace)?;
        let conn = reg
            .connections
            .get_mut(&session.sid)
            .ok_or(ProtocolError::UnknownSession)?;
        match packet.kind {
            PacketType::Connect => self.connect(reg, session, nsp_str, packet.data),
            PacketType::Disconnect => {
                let Some(pos) = conn.sockets.iter().position(|(n, _)| &**n == nsp_str) else {
                    return Ok(());
                };
                let (nsp, sid) = conn.sockets.swap_remove(pos);
                if let Some(ns) = reg.namespaces.get_mut(&nsp) {
                    ns.remove_socket(&sid);
                }
                self.push(SocketIoInbound::Disconnect {
                    sid,
                    nsp,
                    reason: DisconnectReason::ClientDisconnect,
                });
            }
            PacketType::Event
            | PacketType::Ack
            | PacketType::BinaryEvent
            | PacketType::BinaryAck => {
                // Routed once complete, so the attachments of a packet for a namespace the
                // client is not in are consumed with it, not taken for stray ones.
                let Some((nsp, sid)) = conn.socket_in(nsp_str).cloned() else {
                    return Ok(()); // not connected to that namespace: dropped, as the official server does
                };
                let data = packet.data;
                let bytes = data.len() + attachments.iter().map(Bytes::len).sum::<usize>();
                self.inbound.budget().charge(&session.inbound, bytes);
                self.push(match (packet.kind, packet.ack_id) {
                    (PacketType::Ack | PacketType::BinaryAck, Some(ack_id)) => {
                        SocketIoInbound::Ack {
                            sid,
                            nsp,
                            ack_id,
                            data,
                            attachments,
                        }
                    }
                    (_, ack_id) => SocketIoInbound::Event {
                        sid,
                        nsp,
                        ack_id,
                        data,
                        attachments,
                    },
                });
            }
            PacketType::ConnectError => return Err(ProtocolError::UnexpectedConnectError),
        }
        Ok(())
    }

    /// A CONNECT to `nsp_str` from the client of `session` (a v4 client's implicit one to `/`
    /// included): a socket pending the host's decision.
    /// The CONNECT_ERROR (v5, in the server's parser) or ERROR (v4) packet refusing `nsp` to
    /// the client of `session`; `data` is the v5 payload (`{"message":...}`).
    fn connect_error(&self, session: &EngineSession, nsp: &str, data: &[u8]) -> Frame {
        if session.protocol.is_v3() {
            Frame::Text(v4::connect_error(nsp, data))
        } else {
            self.parser.connect_error(nsp, data)
        }
    }

    fn connect(
        &self,
        reg: &mut Registry,
        session: &Arc<EngineSession>,
        nsp_str: &str,
        auth: Bytes,
    ) {
        let Some(conn) = reg.connections.get_mut(&session.sid) else {
            return;
        };
        if conn.socket_in(nsp_str).is_some() {
            return; // already connected there: ignore the repeat
        }
        if conn.sockets.len() >= MAX_NAMESPACES_PER_CONNECTION {
            // Refused like an unknown namespace; the connection and its sockets stay.
            session.send(self.connect_error(session, nsp_str, TOO_MANY_NAMESPACES));
            return;
        }
        // Recovery is a Socket.IO v5 feature: a v3 session never carries a pid.
        let restored = match self.recovery {
            Some(_) if !session.protocol.is_v3() => self.restore(reg, nsp_str, &auth),
            _ => None,
        };
        // `reg` was borrowed to restore: look the connection up again.
        let Some(conn) = reg.connections.get_mut(&session.sid) else {
            return;
        };
        let sid = match &restored {
            Some(r) => r.sid.clone(),
            None if session.protocol.is_v3() => v4::socket_id(nsp_str, &session.sid),
            None => new_sid(),
        };
        let nsp = match reg.namespaces.get_key_value(nsp_str) {
            Some((k, _)) => k.clone(),
            None => Arc::from(nsp_str),
        };
        conn.sockets.push((nsp.clone(), sid.clone()));
        let recovery = self.recovery.is_some();
        let ns = reg
            .namespaces
            .entry(nsp.clone())
            .or_insert_with(|| Namespace::new((self.new_adapter)(&nsp), recovery));
        let recovered = restored.is_some();
        let (frames, bytes) = match restored {
            Some(r) => {
                // Its rooms back, and what it missed sent right after the CONNECT reply,
                // before anything emitted from now on (Node sends them before the reply; the
                // official client takes both orders).
                let rooms: Vec<&str> = r.rooms.iter().map(|r| &**r).collect();
                ns.adapter.add_all(&sid, &rooms);
                if let Some(log) = &mut ns.recovery {
                    log.register(&sid, r.pid);
                }
                (r.missed, r.missed_bytes)
            }
            None => {
                if let Some(log) = &mut ns.recovery {
                    log.register(&sid, new_sid());
                }
                (Vec::new(), 0)
            }
        };
        ns.sockets.0.insert(
            sid.clone(),
            SocketEntry {
                session: session.clone(),
                pending: Some(Box::new(Held { frames, bytes })),
            },
        );
        self.push(SocketIoInbound::Connect {
            sid,
            nsp,
            eio_sid: session.sid.clone(),
            auth,
            handshake: session.handshake.clone(),
            recovered,
        });
    }

    /// The namespace a bulk command acts on. One no socket here ever joined is made when the
    /// command is to `forward` and the adapters forward to other servers (a cluster), which
    /// may have sockets there; otherwise there is nothing to act on.
    fn namespace_for<'r>(
        &self,
        reg: &'r mut Registry,
        nsp: &str,
        forward: bool,
    ) -> Option<&'r mut Namespace> {
        if !reg.namespaces.contains_key(nsp) {
            if !(forward && self.new_adapter_forwards) {
                return None;
            }
            let nsp: Arc<str> = Arc::from(nsp);
            reg.namespaces.insert(
                nsp.clone(),
                Namespace::new((self.new_adapter)(&nsp), self.recovery.is_some()),
            );
        }
        reg.namespaces.get_mut(nsp)
    }

    /// Disconnects one socket from its namespace by the server's decision; `close`: its whole
    /// connection too.
    fn disconnect_socket(&self, reg: &mut Registry, nsp: &str, sid: &str, close: bool) {
        let Some(key) = reg.namespaces.get_key_value(nsp).map(|(k, _)| k.clone()) else {
            return;
        };
        let Some(entry) = reg
            .namespaces
            .get_mut(&key)
            .and_then(|ns| ns.remove_socket(sid))
        else {
            return;
        };
        let sid: Arc<str> = match reg.connections.get_mut(&entry.session.sid) {
            Some(conn) => match conn.sockets.iter().position(|(_, s)| &**s == sid) {
                Some(pos) => conn.sockets.swap_remove(pos).1,
                None => sid.into(),
            },
            None => sid.into(),
        };
        if entry.pending.is_none() {
            entry.session.send(self.parser.disconnect(&key));
        }
        self.push(SocketIoInbound::Disconnect {
            sid,
            nsp: key,
            reason: DisconnectReason::ServerDisconnect,
        });
        if close {
            entry.session.close(DisconnectReason::ServerDisconnect);
        }
    }

    /// Applies one host command.
    pub fn execute(&self, cmd: SocketIoCommand) {
        let mut reg = self.registry.lock();
        let reg = &mut *reg;
        match cmd {
            SocketIoCommand::Emit {
                nsp,
                target,
                frames,
            } => {
                let ns = match reg.namespaces.get_mut(nsp.as_str()) {
                    Some(ns) => ns,
                    // No socket here ever joined it, but other servers of a cluster may have
                    // some: the namespace's adapter is made to forward the broadcast.
                    None if self.new_adapter_forwards
                        && !matches!(&target, Target::Broadcast(o) if o.flags.local) =>
                    {
                        let nsp: Arc<str> = Arc::from(nsp.as_str());
                        reg.namespaces.entry(nsp.clone()).or_insert_with(|| {
                            Namespace::new((self.new_adapter)(&nsp), self.recovery.is_some())
                        })
                    }
                    None => return,
                };
                if ns.recovery.is_some() {
                    self.emit_logged(ns, target, frames);
                    return;
                }
                match target {
                    Target::Socket(sid) => {
                        if !ns.sockets.deliver(&sid, &frames) {
                            // Not here: the adapter may know it (another server, or a room).
                            let opts = BroadcastOptions::to_rooms(vec![sid]);
                            ns.adapter.broadcast(&frames, &opts, &mut ns.sockets);
                        }
                    }
                    Target::Broadcast(opts) => {
                        ns.sockets.1 = opts.flags.volatile;
                        ns.adapter.broadcast(&frames, &opts, &mut ns.sockets);
                        ns.sockets.1 = false;
                    }
                }
            }
            SocketIoCommand::EmitWithAck {
                nsp,
                opts,
                frames,
                ack_id,
            } => {
                // A namespace nobody joined yet reached nobody: 0, still answered.
                let clients = match reg.namespaces.get_mut(nsp.as_str()) {
                    Some(ns) => ns
                        .adapter
                        .broadcast_with_ack(&frames, &opts, &mut ns.sockets),
                    None => 0,
                };
                self.push(SocketIoInbound::BroadcastReach {
                    nsp: Arc::from(nsp),
                    ack_id,
                    clients,
                });
            }
            SocketIoCommand::Accept { nsp, sid } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                if let Some(entry) = ns.sockets.0.get_mut(sid.as_str()) {
                    let held = entry.pending.take().map_or_else(Vec::new, |h| h.frames);
                    let mut frames = Vec::with_capacity(held.len() + 1);
                    frames.push(if entry.session.protocol.is_v3() {
                        Frame::Text(v4::connect_reply(&nsp))
                    } else {
                        let pid = ns.recovery.as_ref().and_then(|l| l.pid_of(&sid));
                        self.parser.connect_reply(&nsp, &sid, pid.map(|p| &**p))
                    });
                    frames.extend(held);
                    entry.session.send_all(&frames);
                }
            }
            SocketIoCommand::Reject { nsp, sid, data } => {
                let Some(entry) = reg
                    .namespaces
                    .get_mut(nsp.as_str())
                    .and_then(|ns| ns.remove_socket(&sid))
                else {
                    return;
                };
                if let Some(conn) = reg.connections.get_mut(&entry.session.sid) {
                    conn.sockets.retain(|(_, s)| &**s != sid.as_str());
                }
                entry
                    .session
                    .send(self.connect_error(&entry.session, &nsp, &data));
            }
            SocketIoCommand::Join { nsp, sid, room } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                if let Some((sid, _)) = ns.sockets.0.get_key_value(sid.as_str()) {
                    let sid = sid.clone();
                    ns.adapter.add_all(&sid, &[&room]);
                    self.report_refused_joins(&nsp, ns);
                }
            }
            SocketIoCommand::Leave { nsp, sid, room } => {
                if let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) {
                    ns.adapter.del(&sid, &room);
                }
            }
            SocketIoCommand::CloseRoom { nsp, room } => {
                if let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) {
                    ns.adapter.close_room(&room);
                }
            }
            SocketIoCommand::SocketsJoin { nsp, opts, rooms } => {
                if let Some(ns) = self.namespace_for(reg, &nsp, !opts.flags.local) {
                    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
                    ns.adapter.add_sockets(&opts, &rooms, &ns.sockets);
                    self.report_refused_joins(&nsp, ns);
                }
            }
            SocketIoCommand::SocketsLeave { nsp, opts, rooms } => {
                if let Some(ns) = self.namespace_for(reg, &nsp, !opts.flags.local) {
                    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
                    ns.adapter.del_sockets(&opts, &rooms, &ns.sockets);
                }
            }
            SocketIoCommand::DisconnectSockets { nsp, opts, close } => {
                let Some(ns) = self.namespace_for(reg, &nsp, !opts.flags.local) else {
                    return;
                };
                let sids = ns.adapter.disconnect_sockets(&opts, &ns.sockets);
                for sid in sids {
                    self.disconnect_socket(reg, &nsp, &sid, close);
                }
            }
            SocketIoCommand::Disconnect { nsp, sid } => {
                self.disconnect_socket(reg, &nsp, &sid, false);
            }
            SocketIoCommand::Abort { nsp, sid } => {
                // The transport ends the connection (a close frame on a WebSocket) and the
                // layer reports every socket of it gone with "transport error".
                if let Some(entry) = reg
                    .namespaces
                    .get(nsp.as_str())
                    .and_then(|ns| ns.sockets.0.get(sid.as_str()))
                {
                    entry.session.close(DisconnectReason::TransportError);
                }
            }
            SocketIoCommand::Rooms { nsp, sid, reply } => {
                let rooms = match reg.namespaces.get(nsp.as_str()) {
                    Some(ns) if ns.sockets.contains(&sid) => {
                        let joined = ns.adapter.socket_rooms(&sid);
                        let mut rooms = Vec::with_capacity(joined.len() + 1);
                        rooms.extend(
                            joined
                                .iter()
                                .filter(|r| ***r != *sid)
                                .map(|r| r.to_string()),
                        );
                        rooms.insert(0, sid);
                        rooms
                    }
                    _ => Vec::new(),
                };
                // The asker may have given up (its channel is gone): nothing to do then.
                let _ = reply.try_send(rooms);
            }
            SocketIoCommand::FetchSockets { nsp, opts, reply } => {
                let found = match reg.namespaces.get(nsp.as_str()) {
                    Some(ns) => ns
                        .adapter
                        .fetch_sockets(&opts, &ns.sockets)
                        .into_iter()
                        .map(|sid| {
                            let mut rooms = vec![sid.to_string()];
                            rooms.extend(
                                ns.adapter
                                    .socket_rooms(&sid)
                                    .iter()
                                    .filter(|r| ***r != *sid)
                                    .map(|r| r.to_string()),
                            );
                            (sid.to_string(), rooms)
                        })
                        .collect(),
                    None => Vec::new(),
                };
                let _ = reply.try_send(found);
            }
            SocketIoCommand::AllRooms { nsp, reply } => {
                let rooms = match reg.namespaces.get(nsp.as_str()) {
                    Some(ns) => {
                        let mut rooms: Vec<String> = ns
                            .adapter
                            .rooms()
                            .iter()
                            .map(|(r, _)| r.to_string())
                            .collect();
                        // Node's rooms include each socket's own room.
                        rooms.extend(ns.sockets.sids().iter().map(|s| s.to_string()));
                        rooms.sort_unstable();
                        rooms.dedup();
                        rooms
                    }
                    None => Vec::new(),
                };
                let _ = reply.try_send(rooms);
            }
        }
    }
}

impl SocketIoLayer {
    /// An emit in a namespace that logs for recovery: a packet Node logs is stamped with its
    /// offset, delivered, then logged with who it was for.
    fn emit_logged(&self, ns: &mut Namespace, target: Target, mut frames: Vec<Frame>) {
        let (Some(cfg), Some(log)) = (&self.recovery, ns.recovery.as_deref_mut()) else {
            return;
        };
        let volatile = matches!(&target, Target::Broadcast(o) if o.flags.volatile);
        let stamped = if volatile {
            None
        } else {
            log.stamp(&mut frames)
        };
        let audience = match target {
            // A name that is no socket here is a room (or another server's socket).
            Target::Socket(sid) => match ns.sockets.0.get_key_value(sid.as_str()) {
                Some((local, _)) => {
                    let local = local.clone();
                    ns.sockets.deliver(&sid, &frames);
                    Audience::Socket(local)
                }
                None => {
                    let opts = BroadcastOptions::to_rooms(vec![sid]);
                    ns.adapter.broadcast(&frames, &opts, &mut ns.sockets);
                    Audience::Broadcast(opts)
                }
            },
            Target::Broadcast(opts) => {
                ns.sockets.1 = opts.flags.volatile;
                ns.adapter.broadcast(&frames, &opts, &mut ns.sockets);
                ns.sockets.1 = false;
                Audience::Broadcast(opts)
            }
        };
        if let (Some(text), Some(log)) = (stamped, ns.recovery.as_deref_mut()) {
            let attachments = frames.split_off(1);
            log.record(text, attachments, audience, Instant::now(), cfg);
        }
    }

    /// Keeps the session of a socket lost abnormally (Node's `persistSession`): only a socket
    /// the host had accepted, as Node keeps only connected ones. True if it was kept.
    fn persist(
        sessions: &mut Sessions,
        ns: &mut Namespace,
        nsp: &Arc<str>,
        sid: &Arc<str>,
        cfg: &RecoveryConfig,
    ) -> bool {
        let accepted = ns.sockets.0.get(sid).is_some_and(|e| e.pending.is_none());
        let Some(log) = ns.recovery.as_deref_mut() else {
            return false;
        };
        let Some(pid) = log.forget(sid) else {
            return false;
        };
        if !accepted || cfg.max_sessions == 0 {
            return false;
        }
        let rooms = ns.adapter.socket_rooms(sid);
        sessions.persist(pid, sid.clone(), nsp.clone(), rooms, Instant::now(), cfg);
        true
    }
}

impl EngineHandler for SocketIoLayer {
    fn inbound_budget(&self) -> Option<&InboundBudget> {
        Some(self.inbound.budget())
    }

    fn on_open(&self, session: &Arc<EngineSession>) {
        let mut reg = self.registry.lock();
        reg.connections.insert(
            session.sid.clone(),
            Connection {
                sockets: OneOrMany::default(),
                assembler: Assembler::default(),
            },
        );
        if session.protocol.is_v3() {
            // Socket.IO v4: every connection joins `/` without asking.
            self.connect(&mut reg, session, "/", Bytes::new());
        }
    }

    fn on_message(&self, session: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError> {
        if self.parser == Parser::MsgPack {
            return Err(ProtocolError::TextWithMsgPack);
        }
        let mut reg = self.registry.lock();
        let conn = reg
            .connections
            .get_mut(&session.sid)
            .ok_or(ProtocolError::UnknownSession)?;
        match conn.assembler.on_text(text, &self.limits)? {
            Some((packet, attachments)) => self.on_packet(&mut reg, session, packet, attachments),
            None => Ok(()),
        }
    }

    fn on_binary(&self, session: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError> {
        if self.parser == Parser::MsgPack {
            // A whole packet, binaries inline: nothing to reassemble.
            let (packet, attachments) = msgpack::decode(&data, self.limits.max_attachments)?;
            let mut reg = self.registry.lock();
            return self.on_packet(&mut reg, session, packet, attachments);
        }
        let mut reg = self.registry.lock();
        let conn = reg
            .connections
            .get_mut(&session.sid)
            .ok_or(ProtocolError::UnknownSession)?;
        match conn.assembler.on_binary(data, &self.limits)? {
            Some((packet, attachments)) => self.on_packet(&mut reg, session, packet, attachments),
            None => Ok(()),
        }
    }

    fn on_close(&self, session: &Arc<EngineSession>, reason: DisconnectReason) {
        let mut guard = self.registry.lock();
        let reg = &mut *guard;
        let Some(conn) = reg.connections.remove(&session.sid) else {
            return;
        };
        let mut gone = Vec::with_capacity(conn.sockets.len());
        let keep = self.recovery.as_ref().filter(|_| is_recoverable(reason));
        for (nsp, sid) in conn.sockets {
            if let Some(ns) = reg.namespaces.get_mut(&nsp) {
                if let Some(cfg) = keep {
                    if Self::persist(&mut reg.sessions, ns, &nsp, &sid, cfg) {
                        gone.push(
                            SocketIoInbound::Kept {
                                sid: sid.clone(),
                                nsp: nsp.clone(),
                            }
                            .into(),
                        );
                    }
                }
                ns.remove_socket(&sid);
            }
            gone.push(SocketIoInbound::Disconnect { sid, nsp, reason }.into());
        }
        drop(guard);
        if !gone.is_empty() {
            self.inbound.push_many(gone);
        }
    }

    fn on_tick(&self, session: &Arc<EngineSession>) -> Result<(), ProtocolError> {
        match self.registry.lock().connections.get(&session.sid) {
            Some(conn) => conn.assembler.check_deadline(Instant::now()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
