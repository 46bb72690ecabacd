//! Engine.IO polling payloads (`\x1e`-separated records, `b<base64>` binary); decoded payloads
//! must survive an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrosio_core::fuzzing::decode_engine_payload(data));
