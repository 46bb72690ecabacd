//! The Socket.IO server layer: namespaces, sockets, rooms and fan-out.
//!
//! It sits on Engine.IO sessions (as their [`EngineHandler`]) and on the host's command queue.
//! Everything here runs on the engine thread; the registry lock is never contended by the host,
//! which only ever sends commands.

// Sids and room names are hashed on every emit: foldhash, seeded per process, not SipHash.
use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::packet::{
    encode_connect_error, encode_connect_reply, encode_disconnect, PacketType, SocketPacket,
};
use crate::bridge::{Command, DisconnectReason, Inbound, InboundQueue, Target};
use crate::engineio::packet::Frame;
use crate::engineio::session::{CloseReason, EngineSession};
use crate::engineio::EngineHandler;
use crate::error::ProtocolError;
use crate::rooms::RoomIndex;
use crate::sid::new_sid;

/// A binary packet waiting for its attachments.
struct PartialPacket {
    sid: Arc<str>,
    nsp: Arc<str>,
    kind: PacketType,
    ack_id: Option<u64>,
    data: Bytes,
    expected: usize,
    attachments: Vec<Bytes>,
}

/// Socket.IO state of one Engine.IO session.
struct Connection {
    session: Arc<EngineSession>,
    /// Namespace -> socket sid. Few namespaces per connection: a Vec beats a map.
    sockets: Vec<(Arc<str>, Arc<str>)>,
    partial: Option<PartialPacket>,
}

impl Connection {
    fn socket_in(&self, nsp: &str) -> Option<&Arc<str>> {
        self.sockets
            .iter()
            .find(|(n, _)| &**n == nsp)
            .map(|(_, s)| s)
    }
}

struct SocketEntry {
    session: Arc<EngineSession>,
    /// Frames held back until the host accepts the CONNECT, so the CONNECT reply goes first.
    pending: Option<Vec<Frame>>,
    rooms: Vec<Arc<str>>,
}

impl SocketEntry {
    fn deliver(&mut self, frames: &[Frame]) {
        match &mut self.pending {
            Some(held) => held.extend_from_slice(frames),
            None => {
                self.session.send_all(frames);
            }
        }
    }
}

#[derive(Default)]
struct Namespace {
    sockets: HashMap<Arc<str>, SocketEntry>,
    rooms: RoomIndex,
}

impl Namespace {
    fn remove_socket(&mut self, sid: &str) -> Option<SocketEntry> {
        let entry = self.sockets.remove(sid)?;
        for room in &entry.rooms {
            self.rooms.leave(room, sid);
        }
        Some(entry)
    }

    /// Adds the sockets a name stands for: the socket with that sid, else the room's members.
    fn collect<'a>(&'a self, name: &str, out: &mut HashSet<&'a Arc<str>>) {
        if let Some((sid, _)) = self.sockets.get_key_value(name) {
            out.insert(sid);
        } else if let Some(members) = self.rooms.members(name) {
            out.extend(members.iter());
        }
    }
}

#[derive(Default)]
struct Registry {
    connections: HashMap<Arc<str>, Connection>,
    namespaces: HashMap<Arc<str>, Namespace>,
}

impl Registry {
    fn namespace(&mut self, nsp: &str) -> &mut Namespace {
        if !self.namespaces.contains_key(nsp) {
            self.namespaces.insert(nsp.into(), Namespace::default());
        }
        self.namespaces.get_mut(nsp).expect("inserted above")
    }

    fn nsp_key(&self, nsp: &str) -> Option<Arc<str>> {
        self.namespaces.get_key_value(nsp).map(|(k, _)| k.clone())
    }
}

/// The Socket.IO server layer.
pub struct SocketIoLayer {
    registry: Mutex<Registry>,
    inbound: Arc<InboundQueue>,
    connect_timeout: Duration,
}

impl SocketIoLayer {
    pub fn new(inbound: Arc<InboundQueue>, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(SocketIoLayer {
            registry: Mutex::default(),
            inbound,
            connect_timeout,
        })
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

    fn on_packet(
        &self,
        session: &Arc<EngineSession>,
        packet: SocketPacket,
    ) -> Result<(), ProtocolError> {
        let nsp_str = std::str::from_utf8(&packet.nsp).map_err(|_| ProtocolError::BadNamespace)?;
        let mut reg = self.registry.lock();
        let reg = &mut *reg;
        let conn = reg
            .connections
            .get_mut(&session.sid)
            .ok_or(ProtocolError::UnknownSession)?;
        if conn.partial.is_some() {
            return Err(ProtocolError::MissingAttachments); // a text packet in the middle of a binary packet's attachments
        }
        match packet.kind {
            PacketType::Connect => {
                if conn.socket_in(nsp_str).is_some() {
                    return Ok(()); // already connected there: ignore the repeat
                }
                let sid = new_sid();
                let nsp = match reg.namespaces.get_key_value(nsp_str) {
                    Some((k, _)) => k.clone(),
                    None => Arc::from(nsp_str),
                };
                conn.sockets.push((nsp.clone(), sid.clone()));
                let ns = reg.namespaces.entry(nsp.clone()).or_default();
                ns.sockets.insert(
                    sid.clone(),
                    SocketEntry {
                        session: session.clone(),
                        pending: Some(Vec::new()),
                        rooms: Vec::new(),
                    },
                );
                self.inbound.push(Inbound::Connect {
                    sid,
                    nsp,
                    eio_sid: session.sid.clone(),
                    auth: packet.data,
                    handshake: session.handshake.clone(),
                });
            }
            PacketType::Disconnect => {
                let Some(pos) = conn.sockets.iter().position(|(n, _)| &**n == nsp_str) else {
                    return Ok(());
                };
                let (nsp, sid) = conn.sockets.swap_remove(pos);
                if let Some(ns) = reg.namespaces.get_mut(&nsp) {
                    ns.remove_socket(&sid);
                }
                self.inbound.push(Inbound::Disconnect {
                    sid,
                    nsp,
                    reason: DisconnectReason::ClientDisconnect,
                });
            }
            PacketType::Event
            | PacketType::Ack
            | PacketType::BinaryEvent
            | PacketType::BinaryAck => {
                let Some((nsp, sid)) = conn.sockets.iter().find(|(n, _)| &**n == nsp_str).cloned()
                else {
                    return Ok(()); // not connected to that namespace: dropped, as the official server does
                };
                if packet.attachments > 0 {
                    conn.partial = Some(PartialPacket {
                        sid,
                        nsp,
                        kind: packet.kind,
                        ack_id: packet.ack_id,
                        data: packet.data,
                        expected: packet.attachments as usize,
                        attachments: Vec::with_capacity(packet.attachments as usize),
                    });
                } else {
                    self.inbound.push(make_inbound(
                        packet.kind,
                        sid,
                        nsp,
                        packet.ack_id,
                        packet.data,
                        Vec::new(),
                    ));
                }
            }
            PacketType::ConnectError => return Err(ProtocolError::UnexpectedConnectError),
        }
        Ok(())
    }

    /// Applies one host command.
    pub fn execute(&self, cmd: Command) {
        let mut reg = self.registry.lock();
        match cmd {
            Command::Emit {
                nsp,
                target,
                frames,
            } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                match target {
                    Target::Socket(sid) => {
                        if let Some(entry) = ns.sockets.get_mut(sid.as_str()) {
                            entry.deliver(&frames);
                        }
                    }
                    Target::Rooms { rooms, except } => emit_to_rooms(ns, &rooms, &except, &frames),
                }
            }
            Command::Accept { nsp, sid } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                if let Some(entry) = ns.sockets.get_mut(sid.as_str()) {
                    let held = entry.pending.take().unwrap_or_default();
                    let mut frames = Vec::with_capacity(held.len() + 1);
                    frames.push(Frame::Text(encode_connect_reply(&nsp, &sid)));
                    frames.extend(held);
                    entry.session.send_all(&frames);
                }
            }
            Command::Reject { nsp, sid, data } => {
                let Some(key) = reg.nsp_key(&nsp) else { return };
                let Some(entry) = reg.namespace(&key).remove_socket(&sid) else {
                    return;
                };
                if let Some(conn) = reg.connections.get_mut(&entry.session.sid) {
                    conn.sockets.retain(|(_, s)| &**s != sid.as_str());
                }
                entry
                    .session
                    .send(Frame::Text(encode_connect_error(&nsp, &data)));
            }
            Command::Join { nsp, sid, room } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                let Some((sid, entry)) = ns.sockets.get_key_value(sid.as_str()) else {
                    return;
                };
                if entry.rooms.iter().any(|r| **r == *room) {
                    return;
                }
                let sid = sid.clone();
                let name = ns.rooms.join(&room, &sid);
                if let Some(entry) = ns.sockets.get_mut(&sid) {
                    entry.rooms.push(name);
                }
            }
            Command::Leave { nsp, sid, room } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                if let Some(entry) = ns.sockets.get_mut(sid.as_str()) {
                    entry.rooms.retain(|r| **r != *room);
                    ns.rooms.leave(&room, &sid);
                }
            }
            Command::CloseRoom { nsp, room } => {
                let Some(ns) = reg.namespaces.get_mut(nsp.as_str()) else {
                    return;
                };
                for sid in ns.rooms.remove(&room).unwrap_or_default() {
                    if let Some(entry) = ns.sockets.get_mut(&sid) {
                        entry.rooms.retain(|r| **r != *room);
                    }
                }
            }
            Command::Disconnect { nsp, sid } => {
                let Some(key) = reg.nsp_key(&nsp) else { return };
                let Some(entry) = reg.namespace(&key).remove_socket(&sid) else {
                    return;
                };
                let sid: Arc<str> = match reg.connections.get_mut(&entry.session.sid) {
                    Some(conn) => match conn.sockets.iter().position(|(_, s)| &**s == sid.as_str())
                    {
                        Some(pos) => conn.sockets.swap_remove(pos).1,
                        None => sid.into(),
                    },
                    None => sid.into(),
                };
                if entry.pending.is_none() {
                    entry.session.send(Frame::Text(encode_disconnect(&key)));
                }
                self.inbound.push(Inbound::Disconnect {
                    sid,
                    nsp: key,
                    reason: DisconnectReason::ServerDisconnect,
                });
            }
            Command::Shutdown { .. }
            | Command::Batch(_)
            | Command::Authorize { .. }
            | Command::EngineSend { .. }
            | Command::EngineClose { .. } => {}
        }
    }

    /// Every live session (for shutdown).
    pub fn sessions(&self) -> Vec<Arc<EngineSession>> {
        self.registry
            .lock()
            .connections
            .values()
            .map(|c| c.session.clone())
            .collect()
    }
}

fn make_inbound(
    kind: PacketType,
    sid: Arc<str>,
    nsp: Arc<str>,
    ack_id: Option<u64>,
    data: Bytes,
    attachments: Vec<Bytes>,
) -> Inbound {
    match (kind, ack_id) {
        (PacketType::Ack | PacketType::BinaryAck, Some(ack_id)) => Inbound::Ack {
            sid,
            nsp,
            ack_id,
            data,
            attachments,
        },
        _ => Inbound::Event {
            sid,
            nsp,
            ack_id,
            data,
            attachments,
        },
    }
}

/// Encode-once fan-out: every recipient gets clones of the same `Bytes`.
fn emit_to_rooms(ns: &mut Namespace, rooms: &[String], except: &[String], frames: &[Frame]) {
    let mut excluded: HashSet<&Arc<str>> = HashSet::default();
    for name in except {
        ns.collect(name, &mut excluded);
    }
    let excluded: HashSet<Arc<str>> = excluded.into_iter().cloned().collect();
    if rooms.is_empty() {
        // Everyone in the namespace: deliver in place, no list of sids to build and look up.
        for (sid, entry) in ns.sockets.iter_mut() {
            if excluded.is_empty() || !excluded.contains(sid) {
                entry.deliver(frames);
            }
        }
        return;
    }
    let recipients: Vec<Arc<str>> = {
        let mut set: HashSet<&Arc<str>> = HashSet::default();
        for name in rooms {
            ns.collect(name, &mut set);
        }
        set.into_iter()
            .filter(|s| !excluded.contains(*s))
            .cloned()
            .collect()
    };
    for sid in recipients {
        if let Some(entry) = ns.sockets.get_mut(&sid) {
            entry.deliver(frames);
        }
    }
}

impl EngineHandler for SocketIoLayer {
    fn on_open(&self, session: &Arc<EngineSession>) {
        self.registry.lock().connections.insert(
            session.sid.clone(),
            Connection {
                session: session.clone(),
                sockets: Vec::new(),
                partial: None,
            },
        );
    }

    fn on_message(&self, session: &Arc<EngineSession>, text: Bytes) -> Result<(), ProtocolError> {
        let packet = SocketPacket::decode(text)?;
        self.on_packet(session, packet)
    }

    fn on_binary(&self, session: &Arc<EngineSession>, data: Bytes) -> Result<(), ProtocolError> {
        let mut reg = self.registry.lock();
        let conn = reg
            .connections
            .get_mut(&session.sid)
            .ok_or(ProtocolError::UnknownSession)?;
        let partial = conn
            .partial
            .as_mut()
            .ok_or(ProtocolError::UnexpectedAttachment)?;
        partial.attachments.push(data);
        if partial.attachments.len() == partial.expected {
            let p = conn.partial.take().expect("checked above");
            drop(reg);
            self.inbound.push(make_inbound(
                p.kind,
                p.sid,
                p.nsp,
                p.ack_id,
                p.data,
                p.attachments,
            ));
        }
        Ok(())
    }

    fn on_close(&self, session: &Arc<EngineSession>, reason: CloseReason) {
        let reason = match reason {
            CloseReason::ClientClose => DisconnectReason::ClientDisconnect,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::ServerClose => DisconnectReason::ServerDisconnect,
        };
        let mut reg = self.registry.lock();
        let Some(conn) = reg.connections.remove(&session.sid) else {
            return;
        };
        let mut gone = Vec::with_capacity(conn.sockets.len());
        for (nsp, sid) in conn.sockets {
            if let Some(ns) = reg.namespaces.get_mut(&nsp) {
                ns.remove_socket(&sid);
            }
            gone.push(Inbound::Disconnect { sid, nsp, reason });
        }
        drop(reg);
        if !gone.is_empty() {
            self.inbound.push_many(gone);
        }
    }
}
