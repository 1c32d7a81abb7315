//! Underlay sockets with batched I/O (`recvmmsg`, `sendmmsg`).
//!
//! - [`RawSender`]: `socket(AF_INET, SOCK_RAW, IPPROTO_RAW)`, which implies
//!   `IP_HDRINCL`: podwire sends the outer IPv4 header it built — IPIP as
//!   well as VXLAN, whose per-flow UDP source port a UDP socket could not
//!   give (see the README). The kernel fills in nothing but what it must
//!   (it recomputes the IPv4 header checksum).
//! - [`Receiver::ipip`]: `socket(AF_INET, SOCK_RAW, IPPROTO_IPIP)` receives every
//!   IP-in-IP packet for this host with its outer header; keeping it open
//!   also stops the kernel, which has no IPIP module, from answering peers
//!   with ICMP protocol unreachable.
//! - [`Receiver::udp`]: a UDP socket bound to the node IP and the VXLAN port
//!   with `SO_REUSEPORT` (one per worker; the kernel spreads flows over them)
//!   and `IP_RECVTOS`, which gives the outer TOS for RFC 6040.
//!
//! The caller owns every buffer. The kernel structures (`mmsghdr`, `iovec`,
//! `sockaddr_in`, control buffers) live in preallocated vectors and are
//! pointed at the caller's slices only for the duration of one call.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The most packets one batched call moves.
pub const BATCH: usize = 64;

/// `UDP_SEGMENT` (linux/udp.h): send a buffer as datagrams of a given size.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams with their size.
const UDP_GRO: libc::c_int = 104;
/// The most datagrams one `UDP_SEGMENT` send may carry.
pub const MAX_SEGMENTS: usize = 64;

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

fn sockaddr_v4(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and pointers, for which
    // all-zero bytes (null pointers, zero lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Sends IPv4 packets whose header podwire wrote ([`RawSender::new`]), or
/// whole Ethernet frames on one device ([`RawSender::packet`]).
#[derive(Debug)]
pub struct RawSender {
    sock: Socket,
    /// IP sockets address each packet; a bound packet socket does not.
    addressed: bool,
    /// A packet socket with `PACKET_VNET_HDR`: every frame sent starts with
    /// a `virtio_net_hdr` (`wire::vnet`).
    vnet: bool,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
}

// SAFETY: the raw pointers inside the preallocated kernel structures are
// only set, and only dereferenced by the kernel, during one `send_batch`
// call that borrows the data; between calls they are dangling but unused.
unsafe impl Send for RawSender {}

impl RawSender {
    /// Opens the socket, non-blocking, with a large send buffer.
    pub fn new() -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        Self::with(sock, true)
    }

    /// An `AF_PACKET` socket bound to interface `ifindex`, for frames;
    /// with `vnet`, asks for `PACKET_VNET_HDR` (see [`RawSender::vnet`]),
    /// so that a TCP super-packet goes to the device whole, for the kernel
    /// (or the NIC) to segment.
    pub fn packet(ifindex: u32, vnet: bool) -> io::Result<Self> {
        let sock = packet_socket(ifindex, false)?;
        let vnet = vnet && set_int(&sock, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1).is_ok();
        let mut tx = Self::with(sock, false)?;
        tx.vnet = vnet;
        Ok(tx)
    }

    /// True when every frame must start with a `virtio_net_hdr`.
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    fn with(sock: Socket, addressed: bool) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        buffer_size(&sock, libc::SO_SNDBUFFORCE, 4 << 20);
        Ok(RawSender {
            sock,
            addressed,
            vnet: false,
            hdrs: (0..BATCH).map(|_| zeroed_mmsghdr()).collect(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            addrs: vec![sockaddr_v4(Ipv4Addr::UNSPECIFIED, 0); BATCH],
        })
    }

    /// Sends each `(packet, destination)`, up to [`BATCH`] per system call.
    pub fn send_batch<'a>(
        &mut self,
        packets: impl IntoIterator<Item = (&'a [u8], Ipv4Addr)>,
    ) -> SendReport {
        let mut report = SendReport::default();
        let mut packets = packets.into_iter().peekable();
        while packets.peek().is_some() {
            let mut n = 0;
            for (data, dst) in packets.by_ref().take(BATCH) {
                self.iovs[n] = libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                };
                self.addrs[n] = sockaddr_v4(dst, 0);
                n += 1;
            }
            for i in 0..n {
                let h = &mut self.hdrs[i].msg_hdr;
                if self.addressed {
                    h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                    h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                } else {
                    h.msg_name = std::ptr::null_mut();
                    h.msg_namelen = 0;
                }
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            let mut done = 0;
            while done < n {
                report.syscalls += 1;
                // SAFETY: hdrs[done..n] point at iovecs and addresses in this
                // struct, and the iovecs at packet slices borrowed for this
                // whole call; the kernel reads at most n - done headers.
                let r = unsafe {
                    libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        self.hdrs[done..].as_mut_ptr(),
                        (n - done) as libc::c_uint,
                        0,
                    )
                };
                if r > 0 {
                    done += r as usize;
                    report.sent += r as usize;
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                        report.full += n - done;
                        done = n;
                    }
                    code => {
                        // The first remaining packet was refused: skip it.
                        report.failed += 1;
                        report.last_error = code;
                        done += 1;
                    }
                }
            }
        }
        report
    }
}

/// Preallocated `recvmmsg` state.
#[derive(Debug)]
struct RecvState {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    /// Control buffers, 8-byte aligned.
    cmsgs: Vec<[u64; 8]>,
}

impl RecvState {
    fn new() -> Self {
        RecvState {
            hdrs: (0..BATCH).map(|_| zeroed_mmsghdr()).collect(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            addrs: vec![sockaddr_v4(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            cmsgs: vec![[0u64; 8]; BATCH],
        }
    }

    /// Receives into `bufs` (at most [`BATCH`]); fills `out` and returns how
    /// many datagrams arrived. `WouldBlock` when none is waiting.
    fn recv<'a>(
        &mut self,
        fd: RawFd,
        bufs: impl IntoIterator<Item = &'a mut [u8]>,
        out: &mut [Received],
        want_tos: bool,
    ) -> io::Result<usize> {
        let mut n = 0;
        for buf in bufs.into_iter().take(BATCH.min(out.len())) {
            self.iovs[n] = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        for i in 0..n {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            if want_tos {
                h.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = size_of::<[u64; 8]>() as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        let r = loop {
            // SAFETY: hdrs[..n] point at iovecs over buffers borrowed for this
            // call, and at address and control buffers owned by self, with
            // their true lengths; the kernel writes at most n messages.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        for (i, slot) in out.iter_mut().enumerate().take(r) {
            let h = &self.hdrs[i];
            let a = &self.addrs[i];
            let (tos, segment) = if want_tos { self.control_of(i) } else { (0, 0) };
            *slot = Received {
                len: h.msg_len as usize,
                src: Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                tos,
                segment,
            };
        }
        Ok(r)
    }

    /// The IP_TOS and UDP_GRO control messages of message `i` (0 if absent).
    fn control_of(&self, i: usize) -> (u8, usize) {
        let h = &self.hdrs[i].msg_hdr;
        let (mut tos, mut segment) = (0, 0);
        // SAFETY: msg_control/msg_controllen describe our own control buffer
        // as the kernel filled it; CMSG_FIRSTHDR/NXTHDR stay within it, and
        // each data read is of the size the kernel writes for that type (a
        // byte for IP_TOS, an int for UDP_GRO), read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
                if level == libc::IPPROTO_IP && kind == libc::IP_TOS {
                    tos = *libc::CMSG_DATA(c);
                } else if level == libc::SOL_UDP && kind == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                    segment = usize::try_from(v).unwrap_or(0);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        (tos, segment)
    }
}

// SAFETY: as for RawSender: the pointers are only live during one call.
unsafe impl Send for RecvState {}

/// A receiving socket: raw IP-in-IP (outer header included) or UDP for
/// VXLAN (payload only, with the outer TOS).
#[derive(Debug)]
pub struct Receiver {
    sock: Socket,
    state: RecvState,
    want_tos: bool,
    gro: bool,
    vnet: bool,
}

impl Receiver {
    /// A raw socket for IP protocol 4, non-blocking.
    pub fn ipip() -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_IPIP)),
        )?;
        Self::with(sock, false)
    }

    /// A UDP socket bound to `addr` with `SO_REUSEPORT` and `IP_RECVTOS`,
    /// non-blocking.
    pub fn udp(addr: SocketAddrV4) -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_port(true)?;
        sock.set_recv_tos_v4(true)?;
        sock.bind(&SockAddr::from(addr))?;
        // Coalesced receive where the kernel has it (5.0+); without it every
        // datagram comes on its own, which still works.
        let gro = set_int(&sock, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        let mut rx = Self::with(sock, true)?;
        rx.gro = gro;
        Ok(rx)
    }

    /// An `AF_PACKET` socket on interface `ifindex` that receives the IPv4
    /// frames for this host whose destination is in `nets` (see
    /// [`Receiver::filter_ipv4_destinations`]), not the ones it sends, as
    /// whole frames. The filter is in place before the socket is bound, so
    /// no other frame is ever queued on it.
    ///
    /// With `vnet`, asks for `PACKET_VNET_HDR` (see [`Receiver::vnet`]):
    /// every frame then comes after a `virtio_net_hdr`, and a TCP
    /// super-packet the sender's kernel did not segment comes whole.
    pub fn packet(ifindex: u32, nets: &[(Ipv4Addr, u8)], vnet: bool) -> io::Result<Self> {
        let sock = packet_socket(ifindex, true)?;
        let vnet = vnet && set_int(&sock, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1).is_ok();
        let on: libc::c_int = 1;
        // SAFETY: a valid socket, a c_int option value with its true size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &on as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rx = Self::with(sock, false)?;
        rx.vnet = vnet;
        rx.filter_ipv4_destinations(nets)?;
        bind_packet(&rx.sock, ifindex, libc::ETH_P_IP as u16)?;
        Ok(rx)
    }

    /// Keeps only IPv4 frames whose destination falls in one of `nets`
    /// (address, prefix length), with a classic BPF filter run by the
    /// kernel; everything else never reaches podwire. Too many prefixes for
    /// one program (over 80) keep every IPv4 frame.
    pub fn filter_ipv4_destinations(&self, nets: &[(Ipv4Addr, u8)]) -> io::Result<()> {
        use socket2::SockFilter;
        const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
        const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
        const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
        const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        if nets.len() > 80 {
            // Jump offsets are 8 bits: too many nets for one program.
            return self.sock.detach_filter().or(Ok(()));
        }
        // Frames to this host's MAC only (a bridge floods frames for other
        // hosts until it learns where they are), IPv4 only, then for each
        // net: ld dst; and mask; jeq net → accept.
        const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;
        let skip = (nets.len() * 3) as u8;
        let mut prog = vec![
            SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
            SockFilter::new(JEQ_K, 0, skip + 2, libc::PACKET_HOST as u32),
            SockFilter::new(LD_H_ABS, 0, 0, 12),
            // Not IPv4: jump over the 3 instructions per net to the drop.
            SockFilter::new(JEQ_K, 0, skip, 0x0800),
        ];
        for (i, (net, len)) in nets.iter().enumerate() {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from((*len).min(32)))
            };
            let left = nets.len() - i - 1;
            prog.push(SockFilter::new(LD_W_ABS, 0, 0, 14 + 16));
            prog.push(SockFilter::new(AND_K, 0, 0, mask));
            // Match: jump over the remaining tests and the drop to accept.
            prog.push(SockFilter::new(
                JEQ_K,
                (left * 3 + 1) as u8,
                0,
                u32::from(*net) & mask,
            ));
        }
        prog.push(SockFilter::new(RET_K, 0, 0, 0));
        prog.push(SockFilter::new(RET_K, 0, 0, 0x0004_0000));
        self.sock.attach_filter(&prog)
    }

    fn with(sock: Socket, want_tos: bool) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        buffer_size(&sock, libc::SO_RCVBUFFORCE, 4 << 20);
        Ok(Receiver {
            sock,
            state: RecvState::new(),
            want_tos,
            gro: false,
            vnet: false,
        })
    }

    /// True when the kernel coalesces datagrams for this socket (`UDP_GRO`).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// True when every frame comes after a `virtio_net_hdr`.
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// Receives up to [`BATCH`] datagrams into `bufs`.
    pub fn recv_batch<'a>(
        &mut self,
        bufs: impl IntoIterator<Item = &'a mut [u8]>,
        out: &mut [Received],
    ) -> io::Result<usize> {
        self.state
            .recv(self.sock.as_raw_fd(), bufs, out, self.want_tos)
    }
}

fn set_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid socket, and an int option value with its true size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends VXLAN payloads from UDP sockets bound to per-flow source ports,
/// many datagrams per call with `UDP_SEGMENT`: the kernel builds the outer
/// IPv4 and UDP headers (checksum offloaded) and segments late, or not at
/// all across veth. One socket per source port in use, made on first use.
pub struct SegmentSender {
    local: Ipv4Addr,
    sockets: std::collections::HashMap<u16, Socket>,
    iovs: Vec<libc::iovec>,
    controls: Vec<[u64; 8]>,
    msgs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for SegmentSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentSender")
            .field("local", &self.local)
            .field("sockets", &self.sockets.len())
            .finish()
    }
}

/// Most runs (messages) one `send_runs` call takes.
pub const MAX_RUNS: usize = 32;
/// Most datagrams one `send_runs` call takes, over all its runs.
pub const MAX_RUN_SEGMENTS: usize = 512;

// SAFETY: the iovec, control and message pointers are only set, and only
// read by the kernel, during one `send_runs` call that borrows the data.
unsafe impl Send for SegmentSender {}

/// Sockets kept for source ports; past this many, they are all closed and
/// made again as flows come.
const MAX_PORT_SOCKETS: usize = 4096;

impl SegmentSender {
    /// A sender with source address `local`.
    pub fn new(local: Ipv4Addr) -> Self {
        SegmentSender {
            local,
            sockets: std::collections::HashMap::new(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                MAX_RUN_SEGMENTS
            ],
            controls: vec![[0; 8]; MAX_RUNS],
            // SAFETY: mmsghdr is plain data; all-zero is a valid value.
            msgs: vec![unsafe { std::mem::zeroed() }; MAX_RUNS],
        }
    }

    /// Sockets open for source ports.
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    fn socket(&mut self, port: u16) -> io::Result<&Socket> {
        if !self.sockets.contains_key(&port) {
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
            self.sockets.insert(port, sock);
        }
        self.sockets
            .get(&port)
            .ok_or_else(|| io::Error::other("socket vanished"))
    }

    /// Sends runs of datagrams from `src_port` to `dst` in one
    /// `sendmmsg`: `runs[i] = (count, tos)` takes the next `count` of
    /// `payloads` (each one datagram; all the size of the run's first but
    /// the last, at most [`MAX_SEGMENTS`]) as one message with
    /// `UDP_SEGMENT`, outer TOS `tos`. At most [`MAX_RUNS`] runs and
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
            Ok(s) => s.as_raw_fd(),
            Err(e) => return (0, Some(e)),
        };
        let mut addr = sockaddr_v4(*dst.ip(), dst.port());
        let mut next = 0;
        let mut built = 0;
        for (k, &(count, tos)) in runs[..nruns].iter().enumerate() {
            let count = count.min(MAX_SEGMENTS);
            if count == 0 || next + count > payloads.len().min(MAX_RUN_SEGMENTS) {
                break;
            }
            let segment = payloads[next].len();
            for (iov, p) in self.iovs[next..next + count]
                .iter_mut()
                .zip(&payloads[next..next + count])
            {
                *iov = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
            }
            // Control: IP_TOS (an int) and, for several datagrams,
            // UDP_SEGMENT (a u16).
            // SAFETY: CMSG_SPACE is a pure size computation.
            let space = unsafe {
                libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize
                    + if count > 1 {
                        libc::CMSG_SPACE(size_of::<u16>() as u32) as usize
                    } else {
                        0
                    }
            };
            let control = &mut self.controls[k];
            *control = [0; 8];
            let msg = &mut self.msgs[k].msg_hdr;
            msg.msg_name = &mut addr as *mut libc::sockaddr_in as *mut libc::c_void;
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = self.iovs[next..].as_mut_ptr();
            msg.msg_iovlen = count as _;
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space as _;
            msg.msg_flags = 0;
            // SAFETY: the control buffer (64 bytes, 8-aligned) holds both
            // messages (at most 40 bytes); CMSG_FIRSTHDR/NXTHDR walk inside
            // it, and each value is written unaligned with its declared size.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(msg);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_TOS;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
                std::ptr::write_unaligned(
                    libc::CMSG_DATA(c) as *mut libc::c_int,
                    libc::c_int::from(tos),
                );
                if count > 1 {
                    let c = libc::CMSG_NXTHDR(msg, c);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment as u16);
                }
            }
            next += count;
            built += 1;
        }
        let mut sent = 0;
        while sent < built {
            // SAFETY: every header in msgs[sent..built] points at `addr`, its
            // iovecs and its control buffer, all alive for this call; the
            // iovecs at slices borrowed from `payloads`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs[sent..].as_mut_ptr(),
                    (built - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return (sent, Some(e));
            }
        }
        (sent, None)
    }
}

/// Sets a socket buffer to `bytes` past `net.core.rmem_max`/`wmem_max`
/// (`SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`, which `CAP_NET_ADMIN` allows; a
/// 64 KB super-packet takes a third of the default 208 KB), or as close as
/// the limits let the plain option go.
fn buffer_size(sock: &Socket, force: libc::c_int, bytes: usize) {
    if set_int(sock, libc::SOL_SOCKET, force, bytes as libc::c_int).is_ok() {
        return;
    }
    let _ = if force == libc::SO_RCVBUFFORCE {
        sock.set_recv_buffer_size(bytes)
    } else {
        sock.set_send_buffer_size(bytes)
    };
}

/// An `AF_PACKET` raw socket on interface `ifindex`. Created with protocol
/// 0, it receives nothing; `receive_ipv4` binds it for IPv4 frames, which
/// a receiver does only once its filter is in place.
fn packet_socket(ifindex: u32, receive_ipv4: bool) -> io::Result<Socket> {
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
    if !receive_ipv4 {
        bind_packet(&sock, ifindex, 0)?;
    }
    Ok(sock)
}

fn bind_packet(sock: &Socket, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: the address is a fully initialised sockaddr_ll with its size.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsRawFd for Receiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
