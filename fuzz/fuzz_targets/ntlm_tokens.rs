//! `sensor::fuzzing::ntlm_tokens` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::ntlm_tokens(data));
