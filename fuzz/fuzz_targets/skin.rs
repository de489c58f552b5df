//! `sensor::fuzzing::skin` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::skin(data));
