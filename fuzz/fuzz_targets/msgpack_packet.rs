//! msgpack-parser packet decoding; decoded packets must survive an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrosio_core::fuzzing::decode_msgpack_packet(data));
