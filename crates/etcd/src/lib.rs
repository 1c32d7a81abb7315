//! podwire-etcd: Calico's etcdv3 datastore (SPEC §9), as podwire reads it.
//!
//! - [`layout`]: the keys libcalico-go's etcdv3 backend writes, both ways,
//!   and Calico's WorkloadEndpoint names, so that other nodes' endpoints are
//!   recognised by their key and dropped before any value is parsed.
//! - [`decode`]: a key and its value to a document the engine's parser
//!   reads, and a whole read to a snapshot; a value that does not decode is
//!   left out with its key and the reason, never fatal.
//! - [`store`]: the values a node holds, updated by whole reads and watch
//!   events, assembled into snapshots that leave out conflicting values.
//! - [`settings`]: the flags and calicoctl's environment variables.
//! - `client`, `source`, `transfer` (feature `client`): the etcd client,
//!   the snapshot-and-watch `ConfigSource` (its client and async runtime on
//!   their own thread, never in the dataplane's), and `podwire datastore
//!   import` / `export`.

#![forbid(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
pub mod decode;
pub mod ipam;
#[cfg(feature = "client")]
pub mod ipam_client;
pub mod layout;
pub mod settings;
#[cfg(feature = "client")]
pub mod source;
#[cfg(feature = "client")]
pub mod startup;
pub mod store;
#[cfg(feature = "client")]
pub mod transfer;
