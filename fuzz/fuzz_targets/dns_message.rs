//! `sensor::fuzzing::dns_message` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::dns_message(data));
