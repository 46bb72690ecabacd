//! Engine.IO v3 polling payloads (`<length>:<packet>` text with UTF-16 lengths, the binary
//! payload); decoded payloads must survive an encode/decode round trip, as text and binary.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrosio_core::fuzzing::decode_engine_v3_payload(data));
