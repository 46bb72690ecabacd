//! The HTTP front door: raw bytes on one connection to a fresh engine (in memory, no port),
//! with a polling session open whose sid replaces `$SID` in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferrosio_core::fuzzing::serve_http_bytes(data);
});
