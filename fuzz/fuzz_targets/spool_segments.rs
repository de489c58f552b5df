//! `sensor::fuzzing::spool_segments` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::spool_segments(data));
