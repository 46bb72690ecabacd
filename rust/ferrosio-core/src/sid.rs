//! Session and socket ids: 15 random bytes from the OS, base64url (20 characters), as
//! unguessable as the ids of the official server (they are bearer tokens for polling).
//!
//! In a process that is one of several workers on one port (see `server::handoff`), the first
//! character of every id names its worker: the top 6 bits of the first byte are the worker's
//! number (114 random bits remain).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use base64::Engine as _;

const SID_BYTES: usize = 15;
/// The OS RNG is asked for this many bytes at once: a `getrandom` syscall per 256 ids rather
/// than two per connection (engine sid and socket sid). Bytes are used once, in order.
const POOL: usize = SID_BYTES * 256;

struct RandomPool {
    bytes: Box<[u8; POOL]>,
    used: usize,
}

thread_local! {
    static RANDOM: RefCell<RandomPool> = RefCell::new(RandomPool {
        bytes: Box::new([0; POOL]),
        used: POOL,
    });
}

fn random_bytes() -> [u8; SID_BYTES] {
    RANDOM.with_borrow_mut(|pool| {
        if pool.used == POOL {
            if getrandom::fill(&mut pool.bytes[..]).is_err() {
                // The OS RNG does not fail on Linux once booted; never panic across the FFI.
                pool.bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
            }
            pool.used = 0;
        }
        let mut raw = [0u8; SID_BYTES];
        raw.copy_from_slice(&pool.bytes[pool.used..pool.used + SID_BYTES]);
        // Handed out bytes are not kept around.
        pool.bytes[pool.used..pool.used + SID_BYTES].fill(0);
        pool.used += SID_BYTES;
        raw
    })
}

/// How many workers the first character of an id can name.
pub const MAX_OWNERS: u8 = 64;
/// No owner: a process serving alone leaves its ids wholly random.
const NO_OWNER: u8 = u8::MAX;
static OWNER: AtomicU8 = AtomicU8::new(NO_OWNER);

/// From now on, every id this process makes names worker `index` (below [`MAX_OWNERS`]).
pub fn set_owner(index: u8) {
    debug_assert!(index < MAX_OWNERS);
    OWNER.store(index % MAX_OWNERS, Ordering::Relaxed);
}

/// The worker an id names, if it names one of `count` workers.
pub fn owner_of(sid: &[u8], count: u8) -> Option<u8> {
    let index = match *sid.first()? {
        c @ b'A'..=b'Z' => c - b'A',
        c @ b'a'..=b'z' => c - b'a' + 26,
        c @ b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    (index < count).then_some(index)
}

fn tagged(mut raw: [u8; SID_BYTES], owner: u8) -> [u8; SID_BYTES] {
    if owner != NO_OWNER {
        raw[0] = (raw[0] & 0b11) | (owner << 2);
    }
    raw
}

pub fn new_sid() -> Arc<str> {
    let raw = tagged(random_bytes(), OWNER.load(Ordering::Relaxed));
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(raw)
        .into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sids_are_20_url_safe_chars_and_distinct() {
        let a = super::new_sid();
        let b = super::new_sid();
        assert_eq!(a.len(), 20);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn a_tagged_id_names_its_worker() {
        use base64::Engine as _;
        for owner in 0..super::MAX_OWNERS {
            let raw = super::tagged(super::random_bytes(), owner);
            let sid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            assert_eq!(super::owner_of(sid.as_bytes(), 64), Some(owner));
            assert_eq!(super::owner_of(sid.as_bytes(), owner + 1), Some(owner));
            assert_eq!(
                super::owner_of(sid.as_bytes(), owner),
                None,
                "beyond the count"
            );
        }
        assert_eq!(super::owner_of(b"", 4), None);
        assert_eq!(super::owner_of(b"%41", 4), None);
        let untagged = super::tagged([0xff; super::SID_BYTES], super::NO_OWNER);
        assert_eq!(untagged, [0xff; super::SID_BYTES]);
    }

    #[test]
    fn ids_stay_distinct_across_pool_refills() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| super::new_sid()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
