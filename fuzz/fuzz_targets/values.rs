#![no_main]
//! Fuzz target: see `remotefn::fuzzing::values`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| remotefn::fuzzing::values(data));
