//! Arbitrary bytes written to the control socket: see
//! `podwire_fuzz::targets::control` for the input layout and what is
//! asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| podwire_fuzz::targets::control(data));
