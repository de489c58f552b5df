//! `sensor::fuzzing::telnet_options` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::telnet_options(data));
