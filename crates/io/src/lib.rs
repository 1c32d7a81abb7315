//! podwire-io: everything that talks to the kernel. This is the only crate
//! with `unsafe`; each block carries a `// SAFETY:` comment.

pub mod netdev;
pub mod netlink;
pub mod socket;
pub mod tun;
