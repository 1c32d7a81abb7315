//! The system-call helpers the socket kinds share: preallocated message
//! arrays for `sendmmsg`/`recvmmsg` ([`mmsg`]), control messages ([`cmsg`]),
//! socket options and addresses ([`sockopt`]), and the classic BPF filter of
//! direct mode's packet socket ([`bpf`]). Each `unsafe` block here carries a
//! `// SAFETY:` comment; the socket files above build on these.

pub mod affinity;
pub mod bpf;
pub mod clock;
pub mod cmsg;
pub mod ebpf;
pub mod mmsg;
pub mod sockopt;
