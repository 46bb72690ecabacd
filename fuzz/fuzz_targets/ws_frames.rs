//! The WebSocket frame reader: the same messages and error whatever the read boundaries.
//!
//! Input: two bytes of `max_payload` (big-endian), one byte whose low 3 bits count the cuts,
//! that many bytes of chunk lengths, then the bytes the client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [m0, m1, cuts, rest @ ..] = data else {
        return;
    };
    let max_payload = usize::from(u16::from_be_bytes([*m0, *m1]));
    let cuts = usize::from(cuts & 7).min(rest.len());
    let (lengths, wire) = rest.split_at(cuts);
    let splits: Vec<usize> = lengths.iter().map(|&n| usize::from(n)).collect();
    ferrosio_core::fuzzing::feed_ws_frames(wire, max_payload, &splits);
});
