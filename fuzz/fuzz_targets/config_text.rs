//! `sensor::fuzzing::config_text` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::config_text(data));
