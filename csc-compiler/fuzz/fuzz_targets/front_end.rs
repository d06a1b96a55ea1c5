//! The front end on arbitrary bytes: the properties of `csc_compiler::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| csc_compiler::fuzzing::check(data));
