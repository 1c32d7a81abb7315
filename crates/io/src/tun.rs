//! Workload endpoints: multi-queue TUN devices.
//!
//! Each endpoint is a layer-3 TUN device (`IFF_TUN | IFF_NO_PI`) created with
//! `IFF_MULTI_QUEUE`, one queue per worker, so that workers never share a file
//! descriptor. Whoever sets up the pod may move the device into the pod's
//! namespace, rename and configure it there; the queues keep working through
//! their descriptors. Creation goes through tun-rs, which wraps the
//! `TUNSETIFF` and `SIOCSIFMTU` ioctls.
//!
//! The daemon makes its devices persistent (`TUNSETPERSIST`) so that they,
//! and the pod's addresses and routes on them, survive a crash; it clears
//! the flag before it closes the queues of an endpoint that goes away, and
//! the kernel then deletes the device, in whatever namespace it is. A
//! restarted daemon finds a device where the last one saw it
//! ([`TunQueue::location`]: name and namespace, read from the descriptor)
//! and attaches new queues to it from inside that namespace
//! ([`attach_in`]).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

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

/// The identity of a network namespace: the device and inode of its nsfs
/// file, the same through every path that names it (`/proc/PID/ns/net`,
/// `/run/netns/NAME`, a descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl std::fmt::Display for NetnsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

impl From<std::fs::Metadata> for NetnsId {
    fn from(m: std::fs::Metadata) -> NetnsId {
        use std::os::unix::fs::MetadataExt;
        NetnsId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Where a device is now: its current name, in which namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub name: String,
    pub netns: NetnsId,
}

impl TunQueue {
    /// Sets or clears the device's persistence (`TUNSETPERSIST`): a
    /// persistent device stays when its last queue is closed.
    pub fn set_persist(&self, on: bool) -> io::Result<()> {
        // SAFETY: the descriptor is a live TUN queue owned by `self`;
        // TUNSETPERSIST takes its argument by value and touches no memory.
        let r = unsafe {
            libc::ioctl(
                self.as_raw_fd(),
                libc::TUNSETPERSIST as _,
                libc::c_ulong::from(on),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The device's current name (`TUNGETIFF`) and network namespace
    /// (`TUNGETDEVNETNS`), wherever it has been moved and renamed.
    pub fn location(&self) -> io::Result<Location> {
        let name = self.dev.name()?;
        // SAFETY: the descriptor is a live TUN queue; TUNGETDEVNETNS takes
        // no argument and returns a new descriptor (or -1).
        let fd = unsafe { libc::ioctl(self.as_raw_fd(), libc::TUNGETDEVNETNS as _) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by
        // nobody else; the File closes it.
        let ns = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Location {
            name,
            netns: ns.metadata()?.into(),
        })
    }
}

/// The network namespace of the calling thread.
pub fn current_netns() -> io::Result<NetnsId> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.into())
}

/// A path that opens namespace `id`, if any still does: the names `ip
/// netns` keeps, then the namespaces of every process.
pub fn find_netns(id: NetnsId) -> Option<std::path::PathBuf> {
    let named = ["/run/netns", "/var/run/netns"]
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.path());
    let processes = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path().join("ns/net"));
    named
        .chain(processes)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| NetnsId::from(m) == id))
}

/// Attaches `queues` new queues to the existing TUN device `name` in the
/// namespace at `netns` (`None`: the caller's own). `Ok(None)` when there
/// is no device of that name there. Entering another namespace (`setns`)
/// happens on a short-lived thread of its own and needs `CAP_SYS_ADMIN`;
/// the queues then work from any thread.
pub fn attach_in(
    netns: Option<&std::path::Path>,
    name: &str,
    mtu: u16,
    queues: usize,
    offload: bool,
) -> io::Result<Option<Vec<TunQueue>>> {
    let attach = || -> io::Result<Option<Vec<TunQueue>>> {
        let cname = std::ffi::CString::new(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the call.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Ok(None);
        }
        open(name, mtu, queues, offload, false).map(Some)
    };
    match netns {
        None => attach(),
        Some(path) => in_netns(path, attach),
    }
}

/// Runs `f` on a short-lived thread that entered the network namespace at
/// `path` (`setns`, which needs `CAP_SYS_ADMIN`).
fn in_netns<T: Send>(
    path: &std::path::Path,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let ns = std::fs::File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `ns` is an open namespace file; setns changes only
            // the network namespace of this thread, which ends here.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Creates TUN device `name` as [`create`] does, inside the network
/// namespace at `netns` (a pod's, as a CNI runtime names it); the queues
/// then work from any thread. Fails when a device of that name is there.
pub fn create_in(
    netns: &std::path::Path,
    name: &str,
    mtu: u16,
    queues: usize,
    offload: bool,
) -> io::Result<Vec<TunQueue>> {
    in_netns(netns, || {
        let cname = std::ffi::CString::new(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the call.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("a device {name} exists in that namespace"),
            ));
        }
        create(name, mtu, queues, offload)
    })
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

/// Packets a pod may queue on its device before podwire reads them.
pub const TX_QUEUE_LEN: u32 = 4096;

/// Creates TUN device `name` with `mtu`, brings it up, and opens `queues`
/// non-blocking queues on it. With `offload`, the device gets
/// `IFF_VNET_HDR` and `TUNSETOFFLOAD` (checksum, TSO4/6, USO where the
/// kernel has it): the pod's kernel hands over unsegmented super-packets
/// with partial checksums, and takes coalesced ones.
pub fn create(name: &str, mtu: u16, queues: usize, offload: bool) -> io::Result<Vec<TunQueue>> {
    let cname =
        std::ffi::CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the call.
    let exists = unsafe { libc::if_nametoindex(cname.as_ptr()) } != 0;
    open(name, mtu, queues, offload, !exists)
}

/// Opens `queues` queues on device `name`: a new one (`fresh`: made down,
/// given its queue length and no qdisc, then brought up), or one that
/// exists (left up: taking it down would drop the pod's routes).
fn open(
    name: &str,
    mtu: u16,
    queues: usize,
    offload: bool,
    fresh: bool,
) -> io::Result<Vec<TunQueue>> {
    let first = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .multi_queue(true)
        .packet_information(false)
        .offload(offload)
        .enable(!fresh)
        .build_sync()?;
    // A pod's bursts wait in the device's rings (one per queue, of the
    // device's transmit queue length) while a worker is busy elsewhere: a
    // longer ring than the default 500 packets rides out a few milliseconds
    // more of it (the kernel drops what does not fit).
    if let Err(e) = first.set_tx_queue_len(TX_QUEUE_LEN) {
        tracing::warn!(
            interface = name,
            "cannot set the transmit queue length: {e}"
        );
    }
    // No qdisc, as a veth has none, set while the device is down: a
    // multi-queue TUN has 256 transmit queues, and the default root (mq)
    // gives each a pfifo_fast of three rings of the queue length — 25 MB of
    // kernel memory per device at 4096, allocated when it comes up and on
    // every length change, which made a CNI ADD slower the more pods the
    // node had. The TUN driver never stops its queues, so a qdisc would
    // hold nothing back anyway: packets reach the device's rings as before.
    if fresh {
        let noqueue = first.if_index().and_then(crate::netlink::set_root_noqueue);
        if let Err(e) = noqueue {
            tracing::warn!(interface = name, "cannot remove the device's qdisc: {e}");
        }
        first.enabled(true)?;
    }
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

/// Cuts the TCP super-packet `pkt`, read from a TUN device after the
/// virtio header `hdr` (its bytes), into segments with complete checksums
/// (tun-rs's port of wireguard-go's): segment `k` is written at `offset` in
/// `out[k]`, its length into `sizes[k]`. Returns how many there are.
pub fn split_super_packet(
    hdr: &[u8],
    pkt: &mut [u8],
    out: &mut [Box<[u8]>],
    sizes: &mut [usize],
    offset: usize,
) -> io::Result<usize> {
    let h = tun_rs::VirtioNetHdr::decode(hdr)?;
    let v6 = pkt.first().is_some_and(|b| b >> 4 == 6);
    tun_rs::gso_split(pkt, h, out, sizes, offset, v6)
}

impl crate::batch::PacketQueue for TunQueue {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        TunQueue::recv(self, buf)
    }
    fn send(&self, packet: &[u8]) -> io::Result<usize> {
        TunQueue::send(self, packet)
    }
    fn send_vectored(&self, parts: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
        TunQueue::send_vectored(self, parts)
    }
    fn offload(&self) -> bool {
        TunQueue::offload(self)
    }
    fn set_persist(&self, on: bool) -> io::Result<()> {
        TunQueue::set_persist(self, on)
    }
    fn location(&self) -> io::Result<Location> {
        TunQueue::location(self)
    }
}
