//! Arbitrary text as a configuration file: see
//! `podwire_fuzz::targets::config` and fuzz/README.md for what is asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| podwire_fuzz::targets::config(data));
