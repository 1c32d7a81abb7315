//! podwire-etcd: Calico's etcdv3 datastore (SPEC §9), as podwire reads it.
//!
//! - [`layout`]: the keys libcalico-go's etcdv3 backend writes, both ways,
//!   and Calico's WorkloadEndpoint names, so that other nodes' endpoints are
//!   recognised by their key and dropped before any value is parsed.
//!
//! The snapshot-and-watch `ConfigSource` (its client and async runtime on
//! their own thread, never in the dataplane's) builds on this.

#![forbid(unsafe_code)]

pub mod layout;
