//! Session and socket ids: 15 random bytes from the OS, base64url (20 characters), as
//! unguessable as the ids of the official server (they are bearer tokens for polling).

use std::sync::Arc;

use base64::Engine as _;

pub fn new_sid() -> Arc<str> {
    let mut raw = [0u8; 15];
    if getrandom::fill(&mut raw).is_err() {
        // The OS RNG does not fail on Linux once booted; never panic across the FFI, though.
        for b in &mut raw {
            *b = fastrand::u8(..);
        }
    }
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
}
