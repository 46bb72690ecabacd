//! Room membership of one namespace, the one place it is kept: room name -> member sids, and
//! the reverse, sid -> the rooms it joined (a socket's own sid room is implicit, not stored).

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use super::one_or_many::OneOrMany;

#[derive(Default)]
pub struct RoomIndex {
    rooms: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// Only sockets in at least one room have an entry; few rooms per socket, mostly one.
    sids: HashMap<Arc<str>, OneOrMany<Arc<str>>>,
}

impl RoomIndex {
    /// Adds `sid` to `room`; false if it was already there.
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
