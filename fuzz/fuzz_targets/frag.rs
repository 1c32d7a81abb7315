//! Structured: a valid IPv4 packet larger than the MTU with DF clear, which
//! egress must fragment: see `podwire_fuzz::targets::frag` and
//! fuzz/README.md for what is asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podwire_fuzz::targets::FragInput;

fuzz_target!(|input: FragInput| podwire_fuzz::targets::frag(input));
