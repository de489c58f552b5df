//! `sensor::fuzzing::vnc_handshake` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::vnc_handshake(data));
