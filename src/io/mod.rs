//! Everything that talks to the kernel. This is the only module allowed
//! `unsafe`; each block carries a `// SAFETY:` comment.

#![allow(unsafe_code)]

pub mod netdev;
pub mod socket;
pub mod tun;
