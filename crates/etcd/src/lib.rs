//! podwire-etcd: Calico's etcdv3 datastore (SPEC §9), as podwire reads it.
//!
//! - [`layout`]: the keys libcalico-go's etcdv3 backend writes, both ways,
//!   and Calico's WorkloadEndpoint names, so that other nodes' endpoints are
//!   recognised by their key and dropped before any value is parsed.
//! - [`decode`]: a key and its value to a document the engine's parser
//!   reads, and a whole read to a snapshot; a value that does not decode is
//!   left out with its key and the reason, never fatal.
//!
//! The snapshot-and-watch `ConfigSource` (its client and async runtime on
//! their own thread, never in the dataplane's) builds on this.

#![forbid(unsafe_code)]

pub mod decode;
pub mod layout;
