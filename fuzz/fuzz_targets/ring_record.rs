//! `sensor::fuzzing::ring_record` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::ring_record(data));
