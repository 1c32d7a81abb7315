//! An etcd key and value of Calico's datastore: see
//! `podwire_fuzz::targets::etcd` and fuzz/README.md for what is asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| podwire_fuzz::targets::etcd(data));
