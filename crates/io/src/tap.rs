//! The tunnel TAP: a multi-queue TAP device in the node's namespace
//! through which whole VXLAN super-packets enter the node's kernel, to be
//! routed to the underlay and cut into segments there ("GSO over a UDP
//! tunnel", Linux 6.17).
//!
//! Each write is one Ethernet frame (to the TAP's own MAC) holding a VXLAN
//! packet around a pod's TCP super-packet, after the 24-byte tunnel
//! virtio header ([`podwire_wire::vnet::TNL_LEN`]), which a header size of
//! 24 (`TUNSETVNETHDRSZ`) makes the TUN driver parse. The kernel takes the
//! frame in as if it had arrived on the TAP, forwards it (the TAP has
//! `forwarding` and `accept_local` on: the source is the node's own
//! address; `rp_filter` off, as it must be on the whole node too: a device
//! without an address fails even the loose check), and the underlay's
//! device, or the kernel for it, cuts it into the segments its own VXLAN
//! device would send.
//!
//! Nothing is read from the TAP: it has no address and IPv6 is off on it,
//! so the kernel sends nothing out of it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use podwire_wire::MacAddr;
use podwire_wire::vnet::{self, TNL_LEN};

/// One queue of the tunnel TAP, non-blocking.
#[derive(Debug)]
pub struct TapQueue {
    file: File,
}

impl TapQueue {
    /// Writes one frame gathered from `parts` (its tunnel header first).
    #[inline]
    pub fn send_vectored(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.file).write_vectored(parts)
    }
}

impl AsRawFd for TapQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// The tunnel TAP: its queues (one per worker) and its MAC, the
/// destination of every frame written to it.
#[derive(Debug)]
pub struct TunnelTap {
    pub name: String,
    pub mac: MacAddr,
    pub queues: Vec<TapQueue>,
}

/// Why the tunnel TAP cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot create the tunnel TAP {name}: {source}")]
    Create { name: String, source: io::Error },
    #[error("cannot configure the tunnel TAP {name} ({what}): {source}")]
    Configure {
        name: String,
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "net.ipv4.conf.all.rp_filter is {0}: the kernel would drop what the tunnel TAP brings in (its source is this node's own address, and the TAP has none), so it needs 0"
    )]
    RpFilter(String),
    #[error(
        "cannot load or attach the IPIP re-tag program (it needs CAP_BPF and Linux 6.6 or later): {0}"
    )]
    Bpf(io::Error),
    #[error(
        "this kernel does not take VXLAN super-packets through a TAP (a tunnel header write was refused: {0}; Linux 6.17 or later is needed)"
    )]
    Unsupported(io::Error),
}

/// Opens one queue of TAP `name` (creating the device with the first),
/// or of an L3 TUN when `tun`; the tunnel header size is set on the TAP
/// only (the TUN takes the plain 10-byte virtio header).
fn open_queue(name: &str, tun: bool) -> io::Result<TapQueue> {
    let path = CString::new("/dev/net/tun").map_err(io::Error::other)?;
    // SAFETY: `path` is a valid NUL-terminated string; the returned
    // descriptor is checked and owned by the `File` below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: an all-zero `ifreq` is a valid value of the C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} is empty or too long"),
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let kind = if tun { libc::IFF_TUN } else { libc::IFF_TAP };
    req.ifr_ifru.ifru_flags =
        (kind | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE) as i16;
    // SAFETY: TUNSETIFF reads (and writes back the name into) `req`, a
    // valid `ifreq` that outlives the call; `fd` is an open tun descriptor.
    if unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if tun {
        return Ok(TapQueue { file });
    }
    let size: libc::c_int = TNL_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which
    // points at `size`, alive for the call.
    if unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &size as *const libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TapQueue { file })
}

/// Writes `value` into `/proc/sys/net/<path>`.
fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/net/{path}"), value)
}

/// Sets the interface's `IFF_UP` flag (`SIOCSIFFLAGS`).
fn set_up(name: &str) -> io::Result<()> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: an all-zero `ifreq` is a valid value of the C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write `req`, a valid
    // `ifreq` with a NUL-terminated name (the name was checked to be
    // shorter than the field when the device was made), alive for both.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as i16;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A frame the probe writes: a VXLAN super-packet as the workers write
/// them, but to a MAC that is not the TAP's, so that the kernel, having
/// parsed its tunnel header, drops it as for another host.
fn probe_frame() -> Vec<u8> {
    const PAYLOAD: usize = 300;
    let inner_len = 40 + PAYLOAD;
    let udp_len = 8 + 8 + 14 + inner_len;
    let mut f = vec![0u8; 14 + 20 + udp_len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    // Outer IPv4: 127.0.0.1 -> 127.0.0.1, UDP, to the VXLAN port.
    let outer = &mut f[14..34];
    outer[0] = 0x45;
    outer[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    outer[8] = 64;
    outer[9] = 17;
    outer[12..16].copy_from_slice(&[127, 0, 0, 1]);
    outer[16..20].copy_from_slice(&[127, 0, 0, 1]);
    f[34..36].copy_from_slice(&4789u16.to_be_bytes());
    f[36..38].copy_from_slice(&4789u16.to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[42] = 0x08;
    f[62..64].copy_from_slice(&[0x08, 0x00]);
    // Inner IPv4 + TCP (ACK), 300 bytes of payload cut in 100-byte segments.
    let inner = &mut f[64..];
    inner[0] = 0x45;
    inner[2..4].copy_from_slice(&(inner_len as u16).to_be_bytes());
    inner[6] = 0x40;
    inner[8] = 64;
    inner[9] = 6;
    inner[12..16].copy_from_slice(&[127, 0, 0, 1]);
    inner[16..20].copy_from_slice(&[127, 0, 0, 1]);
    inner[32] = 0x50;
    inner[33] = 0x10;
    f
}

/// Makes the tunnel TAP `name` with `queues` queues, configures it, brings
/// it up, and checks with one write that the kernel takes tunnel headers.
/// The device goes when its last queue is closed.
pub fn open(name: &str, queues: usize) -> Result<TunnelTap, TapError> {
    let qs = open_forwarding(name, queues, false)?;
    let configure = |what, source| TapError::Configure {
        name: name.to_string(),
        what,
        source,
    };
    let mac = crate::netdev::mac(name).map_err(|e| configure("MAC address", e))?;
    let frame = probe_frame();
    let hdr = vnet::vxlan_tcp4_gso(&frame, 100).ok_or_else(|| {
        TapError::Unsupported(io::Error::other("the probe frame has no tunnel header"))
    })?;
    qs[0]
        .send_vectored(&[IoSlice::new(&hdr), IoSlice::new(&frame)])
        .map_err(TapError::Unsupported)?;
    Ok(TunnelTap {
        name: name.to_string(),
        mac,
        queues: qs,
    })
}

/// Makes device `name` (a TAP, or an L3 TUN when `tun`) with `queues`
/// queues, sets it up to forward what is written into it, and brings it up.
fn open_forwarding(name: &str, queues: usize, tun: bool) -> Result<Vec<TapQueue>, TapError> {
    let create = |source| TapError::Create {
        name: name.to_string(),
        source,
    };
    let configure = |what, source| TapError::Configure {
        name: name.to_string(),
        what,
        source,
    };
    let mut qs = Vec::with_capacity(queues.max(1));
    for _ in 0..queues.max(1) {
        qs.push(open_queue(name, tun).map_err(create)?);
    }
    // Before it comes up: no IPv6 (no link-local address, nothing sent out
    // of it), forwarding of what is written into it, sources that are this
    // host's own, and reverse-path filtering that allows them.
    sysctl(&format!("ipv6/conf/{name}/disable_ipv6"), "1")
        .map_err(|e| configure("disable_ipv6", e))?;
    for (key, value) in [
        ("forwarding", "1"),
        ("accept_local", "1"),
        ("rp_filter", "0"),
    ] {
        sysctl(&format!("ipv4/conf/{name}/{key}"), value).map_err(|e| configure(key, e))?;
    }
    // The kernel applies the larger of the device's and `all`'s.
    let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
        .map_err(|e| configure("rp_filter", e))?;
    if all.trim() != "0" {
        return Err(TapError::RpFilter(all.trim().to_string()));
    }
    set_up(name).map_err(|e| configure("up", e))?;
    Ok(qs)
}

/// The IPIP tunnel TUN: an L3 TUN in the node's namespace through which
/// whole IPIP super-packets (outer IPv4, protocol 4, around a pod's TCP
/// super-packet, after a TCPv4 virtio header) enter the node's kernel,
/// with the re-tag program ([`crate::sys::ebpf::ipip_retag`]) on its TCX
/// ingress hook, so that the kernel cuts them as IPIP; routed to the
/// underlay as the tunnel TAP's frames are. The program stays attached
/// (and loaded: the link holds it) while `link` is open.
#[derive(Debug)]
pub struct IpipTun {
    pub name: String,
    pub queues: Vec<TapQueue>,
    _link: OwnedFd,
}

/// Makes the IPIP tunnel TUN `name` with `queues` queues and attaches the
/// re-tag program (needs `CAP_BPF` and Linux 6.6's TCX).
pub fn open_ipip(name: &str, queues: usize) -> Result<IpipTun, TapError> {
    let qs = open_forwarding(name, queues, true)?;
    let prog = crate::sys::ebpf::load_tcx_ingress(&crate::sys::ebpf::ipip_retag(), "podwire_ipip")
        .map_err(TapError::Bpf)?;
    let ifindex = crate::netdev::ifindex(name).map_err(|e| TapError::Configure {
        name: name.to_string(),
        what: "index",
        source: e,
    })?;
    let link = crate::sys::ebpf::attach_tcx_ingress(&prog, ifindex).map_err(TapError::Bpf)?;
    Ok(IpipTun {
        name: name.to_string(),
        queues: qs,
        _link: link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_frame_carries_a_tunnel_header() {
        let f = probe_frame();
        let h = vnet::vxlan_tcp4_gso(&f, 100).unwrap();
        assert_eq!((h[1], h[20], h[22]), (0x21, 34, 64));
        assert_eq!(f.len(), 64 + 340);
        // The outer and inner lengths say what the frame holds.
        assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, f.len() - 14);
        assert_eq!(u16::from_be_bytes([f[66], f[67]]) as usize, f.len() - 64);
    }
}
