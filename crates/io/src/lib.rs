//! podwire-io: everything that talks to the kernel. This is the only crate
//! with `unsafe`; each block carries a `// SAFETY:` comment.
//!
//! - [`batch`]: the I/O backend seam, as traits: [`RxBatch`], [`TxBatch`]
//!   and [`PacketQueue`], with [`mock`] backends for tests without root.
//! - One file per socket kind: [`ip_raw`] (IPIP out and in, and VXLAN's
//!   fallback), [`udp`] (VXLAN in, and out with `UDP_SEGMENT`), [`packet`]
//!   (direct mode's frames), [`tun`] (endpoint devices), [`tap`] (the
//!   tunnel TAP: VXLAN super-packets whole into the kernel).
//! - [`sys`]: what they share: `sendmmsg`/`recvmmsg` arrays, control
//!   messages, socket options, the BPF filter.
//! - [`netlink`] (neighbours, links) and [`netdev`] (device queries).

pub mod batch;
pub mod ip_raw;
pub mod mock;
pub mod netdev;
pub mod netlink;
pub mod packet;
pub mod sys;
pub mod tap;
pub mod tun;
pub mod udp;

pub use batch::{BATCH, PacketQueue, Received, RxBatch, SendReport, TxBatch};
