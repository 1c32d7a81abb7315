//! podwire: a userspace pod-network dataplane for Calico clusters.
//!
//! Data flows one way through four layers, each knowing only the one below:
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
//! - [`io`]: everything that talks to the kernel; the only home of `unsafe`.
//! - [`daemon`]: workers, control socket, metrics and signals of `podwire run`.

#![deny(unsafe_code)]

pub mod bench;
pub mod config;
pub mod daemon;
pub mod io;
pub mod lab;
pub mod pipeline;
pub mod table;
pub mod wire;
