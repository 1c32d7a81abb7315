//! Fixtures and independent checkers shared by podwire's fuzz targets.
//!
//! The checkers re-derive what a verdict and its bytes must be from the SPEC,
//! the RFCs, etherparse and the Calico resources themselves — never from
//! `podwire::wire` or the compiled tables' own answers — so that a bug in the
//! library cannot vouch for itself. Each `run_*` function runs one pipeline
//! entry point on a fresh buffer with [`HEADROOM`] bytes of headroom, checks
//! every invariant (panicking, which libFuzzer reports as a crash, on any
//! violation) and returns what happened.

mod cluster;
mod egress;
mod ingress;
mod oracle;
pub mod targets;

pub use cluster::*;
pub use egress::*;
pub use ingress::*;
pub use oracle::*;

use std::sync::LazyLock;

/// The node whose dataplane the targets drive.
pub const LOCAL_NODE: &str = "k8s-node1";
/// Underlay MTU the tables are compiled for.
pub const UNDERLAY_MTU: u16 = 1500;
/// Calico's VXLAN VNI and port, which every example file uses.
pub const VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
/// SPEC §2: the VTEP MAC Felix derives for `k8s-node1`.
pub const NODE1_VTEP_MAC: [u8; 6] = [0x66, 0x8c, 0x73, 0x5a, 0x90, 0x99];
/// Bytes each mode adds in front of the inner packet.
pub const IPIP_OVERHEAD: usize = 20;
pub const VXLAN_OVERHEAD: usize = 20 + 8 + 8 + 14;
/// RFC 1812 / Linux: the largest ICMP error.
pub const MAX_ICMP_ERROR: usize = 576;

/// Set `PODWIRE_FUZZ_VERBOSE=1` to print every verdict to stderr (for
/// looking at what a corpus reaches; far too slow for fuzzing).
pub static VERBOSE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("PODWIRE_FUZZ_VERBOSE").is_some_and(|v| v != "0"));
