//! Room membership of one namespace, the one place it is kept: room name -> member sids, and
//! the reverse, sid -> the rooms it joined (a socket's own sid room is implicit, not stored).

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use super::one_or_many::OneOrMany;

/// Rooms one socket may be in when nothing else was set (`max_rooms_per_socket`).
pub const DEFAULT_MAX_ROOMS_PER_SOCKET: usize = 10_000;
/// Refused joins remembered between two [`RoomIndex::take_refused`] (the first ones); the rest
/// are only counted.
const REFUSED_KEPT: usize = 64;

/// A join the bound refused: (sid, room).
pub type RefusedJoin = (Arc<str>, Arc<str>);

pub struct RoomIndex {
    rooms: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// Only sockets in at least one room have an entry; few rooms per socket, mostly one.
    sids: HashMap<Arc<str>, OneOrMany<Arc<str>>>,
    /// Most rooms one socket may be in: a join past it is refused (and reported), so an
    /// application that joins rooms named by its clients cannot be made to grow without end.
    max_per_socket: usize,
    /// Joins refused since the last [`RoomIndex::take_refused`]: (sid, room), the first
    /// [`REFUSED_KEPT`] of them.
    refused: Vec<RefusedJoin>,
    /// All joins refused.
    refused_total: u64,
}

impl Default for RoomIndex {
    fn default() -> Self {
        RoomIndex {
            rooms: HashMap::default(),
            sids: HashMap::default(),
            max_per_socket: DEFAULT_MAX_ROOMS_PER_SOCKET,
            refused: Vec::new(),
            refused_total: 0,
        }
    }
}

impl RoomIndex {
    /// Sets the most rooms one socket may be in (joins already made stay).
    pub fn set_max_per_socket(&mut self, max: usize) {
        self.max_per_socket = max;
    }

    /// The joins refused since the last call (the first few: (sid, room)), and how many
    /// were refused in all since the index was made.
    pub fn take_refused(&mut self) -> (Vec<RefusedJoin>, u64) {
        (std::mem::take(&mut self.refused), self.refused_total)
    }

    /// Adds `sid` to `room`; false if it was already there, or if `sid` is in as many rooms
    /// as allowed (the join is then refused and kept for [`RoomIndex::take_refused`]).
    pub fn join(&mut self, room: &str, sid: &Arc<str>) -> bool {
        let name = match self.rooms.get_key_value(room) {
            Some((name, members)) => {
                if members.contains(sid) {
                    return false;
                }
                name.clone()
            }
            None => Arc::from(room),
        };
        if self.rooms_of(sid).len() >= self.max_per_socket {
            self.refused_total += 1;
            if self.refused.len() < REFUSED_KEPT {
                self.refused.push((sid.clone(), name));
            }
            return false;
        }
        self.rooms
            .entry(name.clone())
            .or_default()
            .insert(sid.clone());
        self.sids.entry(sid.clone()).or_default().push(name);
        true
    }

    /// Removes `sid` from `room`, dropping the room when it empties.
    pub fn leave(&mut self, room: &str, sid: &str) {
        let Some(members) = self.rooms.get_mut(room) else {
            return;
        };
        if !members.remove(sid) {
            return;
        }
        if members.is_empty() {
            self.rooms.remove(room);
        }
        if let Some(joined) = self.sids.get_mut(sid) {
            joined.retain(|r| &**r != room);
            if joined.is_empty() {
                self.sids.remove(sid);
            }
        }
    }

    /// Removes `sid` from every room it joined.
    pub fn leave_all(&mut self, sid: &str) {
        let Some(joined) = self.sids.remove(sid) else {
            return;
        };
        for room in joined {
            if let Some(members) = self.rooms.get_mut(&room) {
                members.remove(sid);
                if members.is_empty() {
                    self.rooms.remove(&room);
                }
            }
        }
    }

    pub fn members(&self, room: &str) -> Option<&HashSet<Arc<str>>> {
        self.rooms.get(room)
    }

    /// The rooms `sid` joined, in joining order.
    pub fn rooms_of(&self, sid: &str) -> &[Arc<str>] {
        self.sids.get(sid).map_or(&[], OneOrMany::as_slice)
    }

    /// Removes a room whole; returns its former members.
    pub fn remove(&mut self, room: &str) -> Option<HashSet<Arc<str>>> {
        let members = self.rooms.remove(room)?;
        for sid in &members {
            if let Some(joined) = self.sids.get_mut(sid) {
                joined.retain(|r| &**r != room);
                if joined.is_empty() {
                    self.sids.remove(sid);
                }
            }
        }
        Some(members)
    }

    /// Every room and its members (Node's `adapter.rooms`).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &HashSet<Arc<str>>)> {
        self.rooms.iter()
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_and_drop_empty_rooms() {
        let mut idx = RoomIndex::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(idx.join("r", &a));
        assert!(!idx.join("r", &a), "joining twice is a no-op");
        assert!(idx.join("r", &b));
        assert_eq!(idx.members("r").unwrap().len(), 2);
        assert_eq!(idx.rooms_of("a").len(), 1);
        idx.leave("r", "a");
        assert_eq!(idx.members("r").unwrap().len(), 1);
        assert!(idx.rooms_of("a").is_empty());
        idx.leave("r", "b");
        assert!(idx.members("r").is_none());
        assert!(idx.is_empty());
    }

    #[test]
    fn joins_past_the_bound_are_refused_and_reported() {
        let mut idx = RoomIndex::default();
        idx.set_max_per_socket(2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(idx.join("r1", &a));
        assert!(idx.join("r2", &a));
        assert!(!idx.join("r3", &a), "a third room is refused");
        assert!(!idx.join("r1", &a), "a room it is in is no refusal");
        assert!(idx.join("r3", &b), "the bound is per socket");
        assert_eq!(idx.rooms_of("a").len(), 2);
        assert!(idx.members("r3").unwrap().len() == 1);
        let (refused, total) = idx.take_refused();
        assert_eq!(total, 1);
        assert_eq!(refused.len(), 1);
        assert_eq!((&*refused[0].0, &*refused[0].1), ("a", "r3"));
        assert!(idx.take_refused().0.is_empty(), "taken once");
        idx.leave("r1", "a");
        assert!(idx.join("r3", &a), "leaving a room makes room");
        for i in 0..100 {
            assert!(!idx.join(&format!("x{i}"), &a));
        }
        let (refused, total) = idx.take_refused();
        assert_eq!((refused.len(), total), (REFUSED_KEPT, 101));
        assert!(idx.members("x0").is_none(), "a refused join makes no room");
    }

    #[test]
    fn the_reverse_index_follows_leave_all_and_remove() {
        let mut idx = RoomIndex::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        idx.join("r1", &a);
        idx.join("r2", &a);
        idx.join("r2", &b);
        let names: Vec<&str> = idx.rooms_of("a").iter().map(|r| &**r).collect();
        assert_eq!(names, ["r1", "r2"]);
        let gone = idx.remove("r2").unwrap();
        assert_eq!(gone.len(), 2);
        assert!(idx.rooms_of("b").is_empty());
        assert_eq!(idx.rooms_of("a").len(), 1);
        idx.leave_all("a");
        assert!(idx.is_empty());
        assert!(idx.rooms_of("a").is_empty());
    }
}
