//! podwire-lab: Calico clusters in network namespaces on one machine.
//!
//! - the lab (`podwire lab`, SPEC §7): three nodes on one underlay, each
//!   running its own podwire, for each mode: tables, pings, a transfer
//!   beside the kernel's VXLAN, a pcap of the underlay;
//! - the bench (`podwire bench`): throughput of podwire's paths against the
//!   kernel's on the same topology;
//! - [`netns`]: the namespace harness both are built on, which the
//!   integration tests use too, and [`kernel`]: nodes whose kernel carries
//!   the pod traffic, as Calico sets them up without podwire.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cni_bench;
pub mod etcd;
mod keep;
pub mod kernel;
mod lab;
pub mod netns;
mod pcap;
pub mod scale;
mod services;
mod topology;

pub use lab::*;
