//! The adapter seam: where a namespace keeps its room state and fans packets out, shaped after
//! Node socket.io's `Adapter`. [`LocalAdapter`] serves one process; an adapter for several
//! servers (e.g. over Redis) implements the same trait, forwarding what is not `local` to its
//! peers and delegating the local part to a `LocalAdapter`.
//!
//! An adapter speaks in sids, room names, pre-encoded frames and [`BroadcastOptions`]; it
//! reaches this server's sockets only through [`LocalSockets`], never a transport.

use foldhash::HashSet;
use std::sync::Arc;

use thiserror::Error;

use super::rooms::RoomIndex;
use crate::engineio::packet::Frame;

/// Modifiers of a broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Only this server's sockets: a multi-server adapter does not forward it.
    pub local: bool,
    /// Dropped for a client that cannot take it now (Node's `volatile`), instead of queued.
    pub volatile: bool,
}

/// Which sockets a broadcast (or a bulk operation) selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Members of any of these rooms; every socket of the namespace when empty. A name that is
    /// a socket's sid stands for that socket (its implicit own room), as in python-socketio.
    pub rooms: Vec<String>,
    /// Minus the sockets these names stand for (rooms or sids).
    pub except: Vec<String>,
    pub flags: BroadcastFlags,
}

impl BroadcastOptions {
    /// The members of `rooms`.
    pub fn to_rooms(rooms: Vec<String>) -> Self {
        BroadcastOptions {
            rooms,
            ..Self::default()
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum AdapterError {
    #[error("this adapter does not support {0}")]
    Unsupported(&'static str),
}

/// This server's sockets of one namespace, as an adapter reaches them.
pub trait LocalSockets {
    fn contains(&self, sid: &str) -> bool;
    /// Delivers frames to one socket; false if there is no such socket.
    fn deliver(&mut self, sid: &str, frames: &[Frame]) -> bool;
    /// Delivers to every socket whose sid is not in `except`, in place; returns how many.
    fn deliver_all(&mut self, except: &HashSet<&str>, frames: &[Frame]) -> usize;
    /// Every socket's sid.
    fn sids(&self) -> Vec<Arc<str>>;
}

/// Room state and fan-out of one namespace.
pub trait Adapter: Send {
    /// Adds a socket to rooms.
    fn add_all(&mut self, sid: &Arc<str>, rooms: &[&str]);
    /// Removes a socket from one room.
    fn del(&mut self, sid: &str, room: &str);
    /// Removes a socket from every room (it left the namespace).
    fn del_all(&mut self, sid: &str);
    /// Empties a room.
    fn close_room(&mut self, room: &str);
    /// Delivers `frames` (one packet and its attachments) to the selected sockets.
    fn broadcast(
        &mut self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    );
    /// As `broadcast`, for a packet that asks for acks: returns how many clients got it (the
    /// number of acks to wait for).
    fn broadcast_with_ack(
        &mut self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    ) -> usize;
    /// The rooms a socket joined (its implicit own room not included).
    fn socket_rooms(&self, sid: &str) -> Vec<Arc<str>>;
    /// The sids of the selected sockets.
    fn fetch_sockets(&self, opts: &BroadcastOptions, sockets: &dyn LocalSockets) -> Vec<Arc<str>>;
    /// Makes the selected sockets join `rooms`.
    fn add_sockets(&mut self, opts: &BroadcastOptions, rooms: &[&str], sockets: &dyn LocalSockets);
    /// Makes the selected sockets leave `rooms`.
    fn del_sockets(&mut self, opts: &BroadcastOptions, rooms: &[&str], sockets: &dyn LocalSockets);
    /// The selected sockets, to be disconnected by the caller (which also calls `del_all`).
    fn disconnect_sockets(
        &mut self,
        opts: &BroadcastOptions,
        sockets: &dyn LocalSockets,
    ) -> Vec<Arc<str>>;
    /// Sends a packet to the other servers of the cluster (not to clients).
    fn server_side_emit(&mut self, frames: &[Frame]) -> Result<(), AdapterError>;
    /// Every room of this server and its members (Node's `adapter.rooms`).
    fn rooms(&self) -> &RoomIndex;
    /// The same, to set its bound and take its refused joins.
    fn rooms_mut(&mut self) -> &mut RoomIndex;
}

/// The in-process adapter: a [`RoomIndex`].
#[derive(Default)]
pub struct LocalAdapter {
    index: RoomIndex,
}

impl LocalAdapter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the sids a name stands for: the socket with that sid, else the room's members.
    fn collect<'a>(
        &'a self,
        name: &'a str,
        sockets: &dyn LocalSockets,
        out: &mut HashSet<&'a str>,
    ) {
        if sockets.contains(name) {
            out.insert(name);
        } else if let Some(members) = self.index.members(name) {
            out.extend(members.iter().map(|s| &**s));
        }
    }

    /// Calls `each` once per selected sid (never with a sid that is not a local socket).
    fn select<'a>(
        &'a self,
        opts: &'a BroadcastOptions,
        sockets: &dyn LocalSockets,
        mut each: impl FnMut(&str),
    ) {
        let mut excluded = HashSet::default();
        for name in &opts.except {
            self.collect(name, sockets, &mut excluded);
        }
        if opts.rooms.is_empty() {
            for sid in sockets.sids() {
                if !excluded.contains(&*sid) {
                    each(&sid);
                }
            }
            return;
        }
        let mut selected = HashSet::default();
        for name in &opts.rooms {
            self.collect(name, sockets, &mut selected);
        }
        for sid in selected {
            if !excluded.contains(sid) && sockets.contains(sid) {
                each(sid);
            }
        }
    }

    fn fan_out(
        &self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    ) -> usize {
        let mut excluded: HashSet<&str> = HashSet::default();
        for name in &opts.except {
            self.collect(name, &*sockets, &mut excluded);
        }
        if opts.rooms.is_empty() {
            // Everyone in the namespace: delivered in place, no list of sids to build.
            return sockets.deliver_all(&excluded, frames);
        }
        let mut delivered = 0;
        if let [name] = opts.rooms.as_slice() {
            // One name: its members are already distinct, no set to build.
            if sockets.contains(name) {
                return usize::from(
                    !excluded.contains(name.as_str()) && sockets.deliver(name, frames),
                );
            }
            if let Some(members) = self.index.members(name) {
                for sid in members {
                    if !excluded.contains(&**sid) && sockets.deliver(sid, frames) {
                        delivered += 1;
                    }
                }
            }
            return delivered;
        }
        let mut selected: HashSet<&str> = HashSet::default();
        for name in &opts.rooms {
            self.collect(name, &*sockets, &mut selected);
        }
        for sid in selected {
            if !excluded.contains(sid) && sockets.deliver(sid, frames) {
                delivered += 1;
            }
        }
        delivered
    }
}

impl Adapter for LocalAdapter {
    fn add_all(&mut self, sid: &Arc<str>, rooms: &[&str]) {
        for room in rooms {
            self.index.join(room, sid);
        }
    }

    fn del(&mut self, sid: &str, room: &str) {
        self.index.leave(room, sid);
    }

    fn del_all(&mut self, sid: &str) {
        self.index.leave_all(sid);
    }

    fn close_room(&mut self, room: &str) {
        self.index.remove(room);
    }

    fn broadcast(
        &mut self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    ) {
        self.fan_out(frames, opts, sockets);
    }

    fn broadcast_with_ack(
        &mut self,
        frames: &[Frame],
        opts: &BroadcastOptions,
        sockets: &mut dyn LocalSockets,
    ) -> usize {
        self.fan_out(frames, opts, sockets)
    }

    fn socket_rooms(&self, sid: &str) -> Vec<Arc<str>> {
        self.index.rooms_of(sid).to_vec()
    }

    fn fetch_sockets(&self, opts: &BroadcastOptions, sockets: &dyn LocalSockets) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        self.select(opts, sockets, |sid| out.push(Arc::from(sid)));
        out
    }

    fn add_sockets(&mut self, opts: &BroadcastOptions, rooms: &[&str], sockets: &dyn LocalSockets) {
        for sid in self.fetch_sockets(opts, sockets) {
            self.add_all(&sid, rooms);
        }
    }

    fn del_sockets(&mut self, opts: &BroadcastOptions, rooms: &[&str], sockets: &dyn LocalSockets) {
        for sid in self.fetch_sockets(opts, sockets) {
            for room in rooms {
                self.index.leave(room, &sid);
            }
        }
    }

    fn disconnect_sockets(
        &mut self,
        opts: &BroadcastOptions,
        sockets: &dyn LocalSockets,
    ) -> Vec<Arc<str>> {
        self.fetch_sockets(opts, sockets)
    }

    fn server_side_emit(&mut self, _frames: &[Frame]) -> Result<(), AdapterError> {
        Err(AdapterError::Unsupported(
            "serverSideEmit (there is no other server)",
        ))
    }

    fn rooms(&self) -> &RoomIndex {
        &self.index
    }

    fn rooms_mut(&mut self) -> &mut RoomIndex {
        &mut self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use foldhash::HashMap;

    /// Sockets that record what they were sent.
    #[derive(Default)]
    struct Recorder {
        got: HashMap<Arc<str>, usize>,
    }

    impl Recorder {
        fn with(sids: &[&str]) -> Self {
            Recorder {
                got: sids.iter().map(|s| (Arc::from(*s), 0)).collect(),
            }
        }

        fn receivers(&self) -> Vec<&str> {
            let mut v: Vec<&str> = self
                .got
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(s, _)| &**s)
                .collect();
            v.sort_unstable();
            v
        }
    }

    impl LocalSockets for Recorder {
        fn contains(&self, sid: &str) -> bool {
            self.got.contains_key(sid)
        }
        fn deliver(&mut self, sid: &str, _frames: &[Frame]) -> bool {
            self.got.get_mut(sid).map(|n| *n += 1).is_some()
        }
        fn deliver_all(&mut self, except: &HashSet<&str>, _frames: &[Frame]) -> usize {
            let mut count = 0;
            for (sid, n) in &mut self.got {
                if !except.contains(&**sid) {
                    *n += 1;
                    count += 1;
                }
            }
            count
        }
        fn sids(&self) -> Vec<Arc<str>> {
            self.got.keys().cloned().collect()
        }
    }

    fn frames() -> Vec<Frame> {
        vec![Frame::Text(Bytes::from_static(b"42[\"x\"]"))]
    }

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            except: except.iter().map(|s| s.to_string()).collect(),
            flags: BroadcastFlags::default(),
        }
    }

    /// a in r1, b in r1 and r2, c in nothing.
    fn setup() -> (LocalAdapter, Recorder) {
        let mut ad = LocalAdapter::new();
        ad.add_all(&Arc::from("a"), &["r1"]);
        ad.add_all(&Arc::from("b"), &["r1", "r2"]);
        (ad, Recorder::with(&["a", "b", "c"]))
    }

    #[test]
    fn broadcast_selects_rooms_minus_except() {
        let (mut ad, mut s) = setup();
        ad.broadcast(&frames(), &opts(&["r1"], &["r2"]), &mut s);
        assert_eq!(s.receivers(), ["a"]);
        let (mut ad, mut s) = setup();
        ad.broadcast(&frames(), &opts(&[], &["r1"]), &mut s);
        assert_eq!(s.receivers(), ["c"], "the whole namespace minus r1");
        let (mut ad, mut s) = setup();
        ad.broadcast(&frames(), &opts(&["r1", "r2", "c"], &["a"]), &mut s);
        assert_eq!(s.receivers(), ["b", "c"], "a sid stands for its socket");
        assert_eq!(s.got["b"], 1, "once, though in two of the rooms");
    }

    #[test]
    fn broadcast_with_ack_counts_the_clients() {
        let (mut ad, mut s) = setup();
        assert_eq!(
            ad.broadcast_with_ack(&frames(), &opts(&["r1"], &[]), &mut s),
            2
        );
        assert_eq!(
            ad.broadcast_with_ack(&frames(), &opts(&[], &["b"]), &mut s),
            2
        );
        assert_eq!(
            ad.broadcast_with_ack(&frames(), &opts(&["nobody"], &[]), &mut s),
            0
        );
    }

    #[test]
    fn del_del_all_and_socket_rooms() {
        let (mut ad, _) = setup();
        let names = |ad: &LocalAdapter, sid| -> Vec<String> {
            ad.socket_rooms(sid).iter().map(|r| r.to_string()).collect()
        };
        assert_eq!(names(&ad, "b"), ["r1", "r2"]);
        ad.del("b", "r1");
        assert_eq!(names(&ad, "b"), ["r2"]);
        ad.del_all("b");
        assert!(names(&ad, "b").is_empty());
        assert!(
            ad.rooms().members("r2").is_none(),
            "an emptied room is gone"
        );
        ad.close_room("r1");
        assert!(ad.rooms().is_empty());
        assert!(names(&ad, "a").is_empty());
    }

    #[test]
    fn bulk_operations_by_filter() {
        let (mut ad, s) = setup();
        let mut fetched = ad.fetch_sockets(&opts(&["r1"], &["b"]), &s);
        fetched.sort_unstable();
        assert_eq!(fetched, [Arc::from("a")]);
        ad.add_sockets(&opts(&[], &[]), &["all"], &s);
        assert_eq!(ad.rooms().members("all").unwrap().len(), 3);
        ad.del_sockets(&opts(&["r2"], &[]), &["all", "r1"], &s);
        assert_eq!(ad.socket_rooms("b").len(), 1, "b kept r2 only");
        let mut gone = ad.disconnect_sockets(&opts(&["all"], &["c"]), &s);
        gone.sort_unstable();
        assert_eq!(gone, [Arc::from("a")]);
        assert_eq!(
            ad.server_side_emit(&frames()),
            Err(AdapterError::Unsupported(
                "serverSideEmit (there is no other server)"
            ))
        );
    }
}
