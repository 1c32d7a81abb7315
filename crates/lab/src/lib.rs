//! podwire-lab: Calico clusters in network namespaces on one machine.
//!
//! - the lab (`podwire lab`, SPEC §7): three nodes on one underlay, each
//!   running its own podwire, for each mode: tables, pings, a transfer
//!   beside the kernel's VXLAN, a pcap of the underlay;
//! - the bench (`podwire bench`): throughput of podwire's paths against the
//!   kernel's on the same topology.

#![forbid(unsafe_code)]

pub mod bench;
mod lab;

pub use lab::*;
