//! UDP sockets for VXLAN.
//!
//! - [`VxlanReceiver`]: bound to the node IP and the VXLAN port with
//!   `SO_REUSEPORT` (one per worker; the kernel spreads flows over them),
//!   `IP_RECVTOS` (the outer TOS, for RFC 6040) and, where the kernel has
//!   it, `UDP_GRO` (coalesced datagrams with their size).
//! - [`SegmentSender`]: VXLAN payloads from sockets bound to per-flow source
//!   ports, many datagrams per call with `UDP_SEGMENT`: the kernel builds
//!   the outer IPv4 and UDP headers (checksum offloaded) and segments late,
//!   or not at all across veth. If the kernel refuses `UDP_SEGMENT` itself,
//!   segmentation is turned off for good and every datagram goes as its own
//!   message (quinn-udp's habit); the caller sees [`SegmentSender::max_segments`].

use std::collections::HashMap;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::batch::{BATCH, Received, RxBatch};
use crate::sys::cmsg::{UDP_GRO, write_tos_segment};
use crate::sys::mmsg::{self, Msgs, Sent};
use crate::sys::sockopt::{buffer_size, set_int, sockaddr_v4};

/// The most datagrams one `UDP_SEGMENT` send may carry.
pub const MAX_SEGMENTS: usize = 64;
/// Most runs (messages) one `send_runs` call takes.
pub const MAX_RUNS: usize = 32;
/// Most datagrams one `send_runs` call takes, over all its runs.
pub const MAX_RUN_SEGMENTS: usize = 512;
/// Sockets kept for source ports; past this many, they are all closed and
/// made again as flows come.
const MAX_PORT_SOCKETS: usize = 4096;

/// Receives VXLAN datagrams (the payload: the kernel checked the outer
/// IPv4 and UDP headers), with the outer TOS.
#[derive(Debug)]
pub struct VxlanReceiver {
    sock: Socket,
    gro: bool,
    msgs: Msgs,
}

impl VxlanReceiver {
    /// A socket bound to `addr`, non-blocking, with `UDP_GRO` when `gro`
    /// (and the kernel has it).
    pub fn new(addr: SocketAddrV4, gro: bool) -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_port(true)?;
        sock.set_recv_tos_v4(true)?;
        sock.bind(&SockAddr::from(addr))?;
        // Coalesced receive where the kernel has it (5.0+); without it every
        // datagram comes on its own, which still works.
        let gro = gro && set_int(&sock, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        sock.set_nonblocking(true)?;
        buffer_size(&sock, libc::SO_RCVBUFFORCE, 4 << 20);
        Ok(VxlanReceiver {
            sock,
            gro,
            msgs: Msgs::new(BATCH, BATCH),
        })
    }
}

impl VxlanReceiver {
    /// Keeps every datagram from the socket (it stays bound, so the kernel
    /// sends no port unreachable): for when a packet socket takes VXLAN.
    pub fn drop_all(&self) -> io::Result<()> {
        self.sock
            .attach_filter(&crate::sys::bpf::to_filters(&crate::sys::bpf::DROP_ALL))
    }
}

impl RxBatch for VxlanReceiver {
    fn recv_batch(
        &mut self,
        bufs: &mut dyn Iterator<Item = &mut [u8]>,
        out: &mut [Received],
    ) -> io::Result<usize> {
        mmsg::recv_all(self.sock.as_raw_fd(), &mut self.msgs, bufs, out, true)
    }

    fn gro(&self) -> bool {
        self.gro
    }
}

impl AsRawFd for VxlanReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Sends VXLAN payloads through per-source-port UDP sockets.
pub struct SegmentSender {
    local: Ipv4Addr,
    sockets: HashMap<u16, Socket>,
    msgs: Msgs,
    /// False once the kernel refused `UDP_SEGMENT`: one datagram a message.
    segmentation: bool,
}

impl std::fmt::Debug for SegmentSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentSender")
            .field("local", &self.local)
            .field("sockets", &self.sockets.len())
            .field("segmentation", &self.segmentation)
            .finish()
    }
}

impl SegmentSender {
    /// A sender with source address `local`.
    pub fn new(local: Ipv4Addr) -> Self {
        SegmentSender {
            local,
            sockets: HashMap::new(),
            msgs: Msgs::new(MAX_RUNS, MAX_RUN_SEGMENTS),
            segmentation: true,
        }
    }

    /// Sockets open for source ports.
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// The most datagrams one run may carry: [`MAX_SEGMENTS`], or 1 once
    /// the kernel refused `UDP_SEGMENT`.
    pub fn max_segments(&self) -> usize {
        if self.segmentation { MAX_SEGMENTS } else { 1 }
    }

    fn socket(&mut self, port: u16) -> io::Result<RawFd> {
        if let Some(s) = self.sockets.get(&port) {
            return Ok(s.as_raw_fd());
        }
        if self.sockets.len() >= MAX_PORT_SOCKETS {
            self.sockets.clear();
        }
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_nonblocking(true)?;
        buffer_size(&sock, libc::SO_SNDBUFFORCE, 4 << 20);
        // As Linux's VXLAN device sends: DF clear, TTL 64.
        set_int(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )?;
        sock.set_ttl_v4(64)?;
        // Every worker has its own sockets, and a flow may move from one
        // worker to another (the TUN device steers it to the queue that
        // last wrote to it): each must be able to bind the same port.
        // Nothing is read from them: the smallest receive buffer.
        sock.set_reuse_port(true)?;
        let _ = sock.set_recv_buffer_size(0);
        sock.bind(&SockAddr::from(SocketAddrV4::new(self.local, port)))?;
        let fd = sock.as_raw_fd();
        self.sockets.insert(port, sock);
        Ok(fd)
    }

    /// Sends runs of datagrams from `src_port` to `dst` in one
    /// `sendmmsg`: `runs[i] = (count, tos)` takes the next `count` of
    /// `payloads` (each one datagram; all the size of the run's first but
    /// the last, at most [`SegmentSender::max_segments`]) as one message
    /// with `UDP_SEGMENT`, outer TOS `tos`. At most [`MAX_RUNS`] runs and
    /// [`MAX_RUN_SEGMENTS`] payloads in all. Returns how many runs went
    /// out, and the error that stopped the rest (none when all went).
    pub fn send_runs(
        &mut self,
        src_port: u16,
        dst: SocketAddrV4,
        runs: &[(usize, u8)],
        payloads: &[&[u8]],
    ) -> (usize, Option<io::Error>) {
        let nruns = runs.len().min(MAX_RUNS);
        let fd = match self.socket(src_port) {
            Ok(fd) => fd,
            Err(e) => return (0, Some(e)),
        };
        let max = self.max_segments();
        let mut next = 0;
        let mut built = 0;
        let mut segmented = false;
        for (k, &(count, tos)) in runs[..nruns].iter().enumerate() {
            let count = count.min(max);
            if count == 0 || next + count > payloads.len().min(MAX_RUN_SEGMENTS) {
                break;
            }
            let segment = payloads[next].len();
            for (i, p) in payloads[next..next + count].iter().enumerate() {
                self.msgs.set_iov(next + i, p);
            }
            self.msgs.addrs[k] = sockaddr_v4(*dst.ip(), dst.port());
            self.msgs.controls[k] = [0; 8];
            self.msgs
                .set_msg(k, next, count, true, size_of::<crate::sys::mmsg::Control>());
            // Control: IP_TOS and, for several datagrams, UDP_SEGMENT.
            let size = (count > 1).then_some(segment as u16);
            segmented |= size.is_some();
            write_tos_segment(&mut self.msgs.hdrs[k].msg_hdr, tos, size);
            next += count;
            built += 1;
        }
        let mut sent = 0;
        while sent < built {
            match self.msgs.send(fd, sent, built) {
                Sent::Some(k) => sent += k,
                Sent::Interrupted => {}
                Sent::Failed(code) => {
                    // The kernel does not do UDP segmentation (no GSO for
                    // UDP, or not on this route): stop asking for it.
                    if segmented
                        && matches!(code, libc::EINVAL | libc::EOPNOTSUPP | libc::EIO)
                        && self.segmentation
                    {
                        self.segmentation = false;
                        tracing::warn!(
                            "the kernel refused UDP_SEGMENT ({}); VXLAN goes one datagram per message from now on",
                            io::Error::from_raw_os_error(code)
                        );
                    }
                    return (sent, Some(io::Error::from_raw_os_error(code)));
                }
            }
        }
        (sent, None)
    }
}
