#![no_main]
//! Fuzz target: see `remotefn::fuzzing::frames`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| remotefn::fuzzing::frames(data));
