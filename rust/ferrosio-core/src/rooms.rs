//! Room membership of one namespace: room name -> member sids, and the reverse per socket.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Default)]
pub struct RoomIndex {
    rooms: HashMap<Arc<str>, HashSet<Arc<str>>>,
}

impl RoomIndex {
    /// Adds `sid` to `room`; returns the room's shared name, to keep on the socket.
    pub fn join(&mut self, room: &str, sid: &Arc<str>) -> Arc<str> {
        let name = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        self.rooms
            .entry(name.clone())
            .or_default()
            .insert(sid.clone());
        name
    }

    /// Removes `sid` from `room`, dropping the room when it empties.
    pub fn leave(&mut self, room: &str, sid: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(sid);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    pub fn members(&self, room: &str) -> Option<&HashSet<Arc<str>>> {
        self.rooms.get(room)
    }

    /// Removes a room whole; returns its former members.
    pub fn remove(&mut self, room: &str) -> Option<HashSet<Arc<str>>> {
        self.rooms.remove(room)
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
        let n1 = idx.join("r", &a);
        let n2 = idx.join("r", &b);
        assert!(Arc::ptr_eq(&n1, &n2), "one shared name per room");
        assert_eq!(idx.members("r").unwrap().len(), 2);
        idx.leave("r", "a");
        assert_eq!(idx.members("r").unwrap().len(), 1);
        idx.leave("r", "b");
        assert!(idx.members("r").is_none());
        assert!(idx.is_empty());
    }
}
