//! `sensor::fuzzing::ssh_shell` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::ssh_shell(data));
