//! Arbitrary bytes from a local workload of k8s-node1 into its egress: see
//! `podwire_fuzz::targets::egress` for the input layout and fuzz/README.md
//! for what is asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| podwire_fuzz::targets::egress(data));
