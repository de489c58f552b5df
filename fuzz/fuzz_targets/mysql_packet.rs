//! `sensor::fuzzing::mysql_packet` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::mysql_packet(data));
