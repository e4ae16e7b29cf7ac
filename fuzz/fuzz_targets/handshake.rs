#![no_main]
//! Fuzz target: see `remotefn::fuzzing::handshake`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| remotefn::fuzzing::handshake(data));
