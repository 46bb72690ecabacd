//! Session and socket ids: 15 random bytes from the OS, base64url (20 characters), as
//! unguessable as the ids of the official server (they are bearer tokens for polling).

use std::cell::RefCell;
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

pub fn new_sid() -> Arc<str> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(random_bytes())
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
    fn ids_stay_distinct_across_pool_refills() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| super::new_sid()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
