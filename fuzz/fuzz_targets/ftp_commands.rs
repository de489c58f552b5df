//! `sensor::fuzzing::ftp_commands` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::ftp_commands(data));
