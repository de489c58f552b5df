//! `sensor::fuzzing::tds_message` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::tds_message(data));
