//! `sensor::fuzzing::snmp_datagram` on raw bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor::fuzzing::snmp_datagram(data));
