//! The I/O backend seam: what the daemon's workers ask of the kernel, as
//! traits, so that a new way of moving packets (a TAP device with tunnel
//! GSO, a packet ring, io_uring) is a new file here, not a rewrite of the
//! worker, and so that the worker can be tested with [`crate::mock`]
//! backends that need no root.
//!
//! - [`RxBatch`]: a batch of datagrams or frames from the underlay
//!   (`recvmmsg`), with their source, outer TOS and `UDP_GRO` size.
//! - [`TxBatch`]: a batch of packets or frames to the underlay (`sendmmsg`).
//! - [`PacketQueue`]: one queue of an endpoint's device (a TUN queue).
//!
//! Every method takes the caller's buffers; none allocates. Capabilities
//! (`UDP_GRO`, `PACKET_VNET_HDR`, TUN offloads) are probed once when the
//! socket or device is made, and reported by [`RxBatch::gro`],
//! [`RxBatch::vnet`], [`TxBatch::vnet`] and [`PacketQueue::offload`].

use std::io::{self, IoSlice};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use crate::tun::Location;

/// The most packets one batched call moves.
pub const BATCH: usize = 64;

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// Source address.
    pub src: Ipv4Addr,
    /// The TOS byte of the outer IPv4 header, where the socket reports it.
    pub tos: u8,
    /// With `UDP_GRO`: the size of each datagram the kernel coalesced into
    /// this buffer (the last may be shorter); 0 for a single datagram.
    pub segment: usize,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            len: 0,
            src: Ipv4Addr::UNSPECIFIED,
            tos: 0,
            segment: 0,
        }
    }
}

/// What a batched send did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Packets the kernel accepted.
    pub sent: usize,
    /// Packets not sent because the socket buffer was full.
    pub full: usize,
    /// Packets the kernel refused (no route, too big, …).
    pub failed: usize,
    /// The last refusal's error, for a rate-limited log line.
    pub last_error: Option<i32>,
    /// System calls made.
    pub syscalls: usize,
}

/// A receiving socket of the underlay, non-blocking.
pub trait RxBatch: AsRawFd + Send {
    /// Receives up to [`BATCH`] datagrams, one into each of `bufs`; fills
    /// `out` and returns how many arrived (`WouldBlock` when none waits).
    fn recv_batch(
        &mut self,
        bufs: &mut dyn Iterator<Item = &mut [u8]>,
        out: &mut [Received],
    ) -> io::Result<usize>;

    /// True when the kernel coalesces datagrams for this socket (`UDP_GRO`).
    fn gro(&self) -> bool {
        false
    }

    /// True when every frame comes after a `virtio_net_hdr`.
    fn vnet(&self) -> bool {
        false
    }

    /// Keeps only IPv4 frames to these prefixes (a packet socket's filter).
    fn filter_ipv4_destinations(&self, _nets: &[(Ipv4Addr, u8)]) -> io::Result<()> {
        Ok(())
    }
}

/// A sending socket of the underlay, non-blocking.
pub trait TxBatch: Send {
    /// Sends each `(packet, destination)`, up to [`BATCH`] per system call.
    fn send_batch(&mut self, packets: &mut dyn Iterator<Item = (&[u8], Ipv4Addr)>) -> SendReport;

    /// True when every frame must start with a `virtio_net_hdr`.
    fn vnet(&self) -> bool {
        false
    }
}

/// One queue of an endpoint's device, non-blocking.
pub trait PacketQueue: AsRawFd + Send + Sync + std::fmt::Debug {
    /// Reads one packet; `WouldBlock` when there is none.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one packet.
    fn send(&self, packet: &[u8]) -> io::Result<usize>;
    /// Writes one packet gathered from `parts` (a single `writev`).
    fn send_vectored(&self, parts: &[IoSlice<'_>]) -> io::Result<usize>;
    /// True when every read and write starts with a `virtio_net_hdr`.
    fn offload(&self) -> bool;
    /// Sets or clears the device's persistence (see `tun`).
    fn set_persist(&self, on: bool) -> io::Result<()>;
    /// Where the device is now: its name and network namespace.
    fn location(&self) -> io::Result<Location>;
}
