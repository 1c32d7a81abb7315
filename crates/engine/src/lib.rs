//! podwire's engine: a userspace pod-network dataplane for Calico clusters,
//! without the I/O. No libc, no sockets, no threads: what it computes can be
//! unit-tested byte for byte, fuzzed and benchmarked.
//!
//! Data flows one way through the layers, each knowing only the one below:
//!
//! ```text
//! config (Calico YAML) ──compile──▶ table (snapshot) ──read by──▶ pipeline (pure) ◀──bytes── io
//! ```
//!
//! - [`config`]: Calico resources, parsed and validated with precise errors.
//! - [`table`]: routes, neighbours, FDB, peers and endpoints of one node,
//!   compiled into an immutable snapshot.
//! - [`pipeline`]: egress and ingress as pure functions over caller-owned
//!   buffers, returning a verdict.
//! - [`wire`]: the header views and checksums (the `podwire-wire` crate).
//!
//! The kernel's side (TUN devices, sockets, netlink) is the `podwire-io`
//! crate; the daemon that joins the two is `podwire-daemon`.

#![forbid(unsafe_code)]

pub mod config;
pub mod pipeline;
pub mod table;

/// The wire formats (the `podwire-wire` crate).
pub use podwire_wire as wire;
