//! Workload endpoints: multi-queue TUN devices.
//!
//! Each endpoint is a layer-3 TUN device (`IFF_TUN | IFF_NO_PI`) created with
//! `IFF_MULTI_QUEUE`, one queue per worker, so that workers never share a file
//! descriptor. The device is not persistent: when the daemon closes its
//! queues (endpoint removed, daemon stopped), the kernel deletes it, in
//! whatever network namespace it has been moved to. Whoever sets up the pod
//! may move the device into the pod's namespace and configure it there; the
//! queues keep working through their descriptors. Creation goes through
//! tun-rs, which wraps the `TUNSETIFF` and `SIOCSIFMTU` ioctls.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

pub use tun_rs::VIRTIO_NET_HDR_LEN;
use tun_rs::{DeviceBuilder, SyncDevice};

/// One queue of a TUN device, non-blocking.
pub struct TunQueue {
    dev: SyncDevice,
    offload: bool,
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("fd", &self.dev.as_raw_fd())
            .finish()
    }
}

impl TunQueue {
    /// Reads one packet; `WouldBlock` when there is none.
    #[inline]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf)
    }

    /// Writes one packet.
    #[inline]
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.dev.send(packet)
    }

    /// Reads one packet — with offloads, possibly a TCP super-packet of up
    /// to 64 KB that the pod's kernel did not segment — and writes its
    /// segments into `bufs` at `offset`, with complete checksums; `sizes`
    /// gets their lengths. Returns how many. (tun-rs's port of
    /// wireguard-go's `handleVirtioRead`.)
    pub fn recv_segments(
        &self,
        original: &mut [u8],
        bufs: &mut [Box<[u8]>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.dev.recv_multiple(original, bufs, sizes, offset)
    }

    /// True when the device has offloads: every write then starts with a
    /// `virtio_net_hdr` (see `wire::tcp_gro`).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Writes one packet gathered from `parts` (a single `writev`).
    #[inline]
    pub fn send_vectored(&self, parts: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
        self.dev.send_vectored(parts)
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

/// Creates TUN device `name` with `mtu`, brings it up, and opens `queues`
/// non-blocking queues on it. With `offload`, the device gets
/// `IFF_VNET_HDR` and `TUNSETOFFLOAD` (checksum, TSO4/6, USO where the
/// kernel has it): the pod's kernel hands over unsegmented super-packets
/// with partial checksums, and takes coalesced ones.
pub fn create(name: &str, mtu: u16, queues: usize, offload: bool) -> io::Result<Vec<TunQueue>> {
    let first = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .multi_queue(true)
        .packet_information(false)
        .offload(offload)
        .enable(true)
        .build_sync()?;
    let mut out = Vec::with_capacity(queues.max(1));
    for _ in 1..queues.max(1) {
        let q = first.try_clone()?;
        q.set_nonblocking(true)?;
        out.push(TunQueue { dev: q, offload });
    }
    first.set_nonblocking(true)?;
    out.insert(
        0,
        TunQueue {
            dev: first,
            offload,
        },
    );
    Ok(out)
}
