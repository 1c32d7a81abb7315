//! Arbitrary bytes from the underlay into k8s-node1's ingress: see
//! `podwire_fuzz::targets::ingress` for the input layout and fuzz/README.md
//! for what is asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| podwire_fuzz::targets::ingress(data));
