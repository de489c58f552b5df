//! `sensor::fuzzing::rsync_greeting` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::rsync_greeting(data));
