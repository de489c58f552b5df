//! `sensor::fuzzing::http_request` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::http_request(data));
