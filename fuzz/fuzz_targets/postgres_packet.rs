//! `sensor::fuzzing::postgres_packet` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::postgres_packet(data));
