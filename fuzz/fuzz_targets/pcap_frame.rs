//! `sensor::fuzzing::pcap_frame` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::pcap_frame(data));
