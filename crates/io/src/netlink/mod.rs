//! The kernel's IPv4 neighbour (ARP) table and its links, over rtnetlink.
//!
//! [`NeighWatch`] keeps two `NETLINK_ROUTE` sockets in the current network
//! namespace (the one of the thread that opens it):
//!
//! - an event socket, non-blocking, subscribed to `RTNLGRP_NEIGH`: its fd
//!   ([`AsRawFd`], [`AsFd`]) goes into mio or poll, and
//!   [`NeighWatch::recv_events`] reads what is pending;
//! - a request socket, blocking with a time limit, for dumps
//!   ([`NeighWatch::dump`]), resolution requests ([`NeighWatch::resolve`])
//!   and link queries ([`NeighWatch::link`]). It joins no group, so every
//!   message on it answers a request of ours (matched by sequence number),
//!   and no ACK or error is ever taken for an event, nor an event for a reply.
//!
//! Messages are encoded and decoded with `netlink-packet-route` (whose
//! `netlink-packet-core` frames them); the sockets are `netlink-sys`. What
//! the kernel sends that is malformed, of another family or interface, or of
//! a type not asked for, is skipped; nothing here panics on kernel input.
//!
//! Resolving a next hop is `RTM_NEWNEIGH` with `NTF_USE`, as
//! `ip neigh replace ADDR dev DEV use` does: the kernel's `neigh_add` needs
//! `NDA_DST` and `ndm_ifindex`, creates a missing entry only with
//! `NLM_F_CREATE`, ignores the state in the request, and calls
//! `neigh_event_send`, which is what a packet to the address would trigger:
//! ARP for an entry that is new, `FAILED` or `STALE`, nothing for a
//! `REACHABLE` one. See [`NeighWatch::resolve`].

mod msg;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use podwire_wire::MacAddr;

use msg::Message;

/// How long a request waits for the kernel's answer. The kernel answers
/// neighbour and link requests while handling the send, so this only guards
/// against the impossible.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// A receive buffer larger than any datagram the kernel sends: dump
/// batches are at most 32 KiB, events a few hundred bytes.
const RECV_BUF: usize = 64 << 10;
/// The event socket's kernel buffer, so that a burst of changes (a link
/// going down flushes its entries, one event each) is not dropped.
const EVENT_SOCKET_BUF: usize = 1 << 20;
/// Attempts at a dump the kernel reports as interrupted (`NLM_F_DUMP_INTR`).
const DUMP_ATTEMPTS: usize = 4;

/// A neighbour entry's state (`NUD_*`, linux/neighbour.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighState {
    /// `NUD_NONE`: just created, nothing known yet.
    None,
    /// `NUD_INCOMPLETE`: being resolved, no answer yet.
    Incomplete,
    /// `NUD_REACHABLE`: confirmed recently.
    Reachable,
    /// `NUD_STALE`: known, but not confirmed for a while.
    Stale,
    /// `NUD_DELAY`: stale and in use; a probe will follow.
    Delay,
    /// `NUD_PROBE`: stale and being re-confirmed.
    Probe,
    /// `NUD_FAILED`: resolution failed.
    Failed,
    /// `NUD_NOARP`: needs no resolution.
    Noarp,
    /// `NUD_PERMANENT`: set by hand.
    Permanent,
    /// Any other value.
    Other(u16),
}

impl NeighState {
    /// The state of an `ndm_state` value.
    pub fn from_nud(nud: u16) -> Self {
        match nud {
            0 => NeighState::None,
            libc::NUD_INCOMPLETE => NeighState::Incomplete,
            libc::NUD_REACHABLE => NeighState::Reachable,
            libc::NUD_STALE => NeighState::Stale,
            libc::NUD_DELAY => NeighState::Delay,
            libc::NUD_PROBE => NeighState::Probe,
            libc::NUD_FAILED => NeighState::Failed,
            libc::NUD_NOARP => NeighState::Noarp,
            libc::NUD_PERMANENT => NeighState::Permanent,
            other => NeighState::Other(other),
        }
    }

    /// True when the entry's MAC may be used to send: the kernel's
    /// `NUD_VALID` (`REACHABLE`, `STALE`, `DELAY`, `PROBE`, `PERMANENT`,
    /// `NOARP`); not `INCOMPLETE`, `FAILED` or `NONE`.
    pub fn usable(self) -> bool {
        const VALID: u16 = libc::NUD_PERMANENT
            | libc::NUD_NOARP
            | libc::NUD_REACHABLE
            | libc::NUD_PROBE
            | libc::NUD_STALE
            | libc::NUD_DELAY;
        match self {
            NeighState::Reachable
            | NeighState::Stale
            | NeighState::Delay
            | NeighState::Probe
            | NeighState::Permanent
            | NeighState::Noarp => true,
            NeighState::None | NeighState::Incomplete | NeighState::Failed => false,
            NeighState::Other(nud) => nud & VALID != 0,
        }
    }
}

/// One IPv4 neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    /// The link-layer address, when the kernel gave a 6-byte one (it gives
    /// one only for a usable state).
    pub mac: Option<MacAddr>,
    pub state: NeighState,
}

impl Neighbour {
    /// The MAC to send to, if the entry is usable and has one.
    pub fn usable_mac(&self) -> Option<MacAddr> {
        self.mac.filter(|_| self.state.usable())
    }
}

/// A change in the neighbour table of the watched interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighEvent {
    /// `RTM_NEWNEIGH`: the entry was created or changed.
    Update(Neighbour),
    /// `RTM_DELNEIGH`: the entry is gone.
    Delete(Neighbour),
    /// The kernel dropped events (`ENOBUFS`, or a datagram too large): the
    /// table known from events is stale. [`NeighWatch::dump`] again and
    /// replace it; the other events of the same call are older than that
    /// dump.
    Overrun,
}

/// A network device, from `RTM_GETLINK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    /// The device address, when it has a 6-byte one (not a TUN device).
    pub mac: Option<MacAddr>,
    pub mtu: u32,
}

/// Neighbour events of one interface, and requests to the kernel.
#[derive(Debug)]
pub struct NeighWatch {
    ifindex: u32,
    events: Socket,
    requests: Requests,
    buf: Vec<u8>,
}

impl NeighWatch {
    /// Subscribes to the neighbour events of interface `ifindex` (in this
    /// thread's network namespace) and opens a socket for requests.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let mut events = Socket::new(NETLINK_ROUTE)?;
        events.bind_auto()?;
        events.add_membership(libc::RTNLGRP_NEIGH)?;
        events.set_non_blocking(true)?;
        receive_buffer(&events, EVENT_SOCKET_BUF);
        Ok(NeighWatch {
            ifindex,
            events,
            requests: Requests::open()?,
            buf: vec![0; RECV_BUF],
        })
    }

    /// The interface whose events [`NeighWatch::recv_events`] reports.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads every pending event (until the socket would block, as mio's
    /// edge-triggered readiness needs), appending those of the watched
    /// interface's IPv4 neighbours to `out`; returns how many it appended
    /// (0 when nothing was pending).
    pub fn recv_events(&mut self, out: &mut Vec<NeighEvent>) -> io::Result<usize> {
        let start = out.len();
        loop {
            match self.events.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                // MSG_TRUNC makes recv return the datagram's true length:
                // one longer than the buffer lost its tail.
                Ok(n) if n > self.buf.len() => overrun(out, start),
                Ok(n) => msg::events(&self.buf[..n], self.ifindex, out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overrun(out, start),
                Err(e) => return Err(e),
            }
        }
        Ok(out.len() - start)
    }

    /// The IPv4 neighbours of interface `ifindex`, from an `RTM_GETNEIGH`
    /// dump (proxy entries excluded).
    pub fn dump(&mut self, ifindex: u32) -> io::Result<Vec<Neighbour>> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self
                .requests
                .send(|seq| msg::dump_neighbours(seq, ifindex))?;
            let mut found = Vec::new();
            let mut interrupted = false;
            self.requests.replies(seq, |reply| match reply {
                Reply::Done => true,
                Reply::Ack => false,
                Reply::Message(m) => {
                    interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                    if m.ty == libc::RTM_NEWNEIGH {
                        found.extend(msg::neighbour(m.payload, ifindex));
                    }
                    false
                }
            })?;
            if !interrupted {
                return Ok(found);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the neighbour table kept changing during the dump",
        ))
    }

    /// Asks the kernel to resolve `ip` on interface `ifindex`
    /// (`RTM_NEWNEIGH` with `NTF_USE`, acknowledged). The entry is created
    /// if absent; ARP starts at once for a new or `FAILED` entry, after
    /// `delay_first_probe_time` (5 s) for a `STALE` one; `REACHABLE`,
    /// `DELAY`, `PROBE`, `INCOMPLETE` and `NOARP` entries are left as they
    /// are. The answer arrives as events (and in later dumps): `REACHABLE`
    /// with the MAC, or `FAILED` after the kernel's probes (3 s by default).
    ///
    /// A `PERMANENT` entry is not left alone: current kernels (seen on
    /// 6.18) drop its `PERMANENT` state and re-resolve it, and it ends
    /// `FAILED`, its MAC lost, when the host does not answer. Call this
    /// only for addresses without a usable entry.
    ///
    /// Errors are the kernel's answer: `ENODEV` for an unknown interface,
    /// `EPERM` without `CAP_NET_ADMIN`.
    pub fn resolve(&mut self, ifindex: u32, ip: Ipv4Addr) -> io::Result<()> {
        let seq = self.requests.send(|seq| msg::resolve(seq, ifindex, ip))?;
        self.requests
            .replies(seq, |reply| matches!(reply, Reply::Ack))
    }

    /// Interface `name`'s index, MAC and MTU, from `RTM_GETLINK`.
    pub fn link(&mut self, name: &str) -> io::Result<Link> {
        self.requests.link(name)
    }
}

impl AsRawFd for NeighWatch {
    /// The event socket's fd, to poll for readability.
    fn as_raw_fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }
}

impl AsFd for NeighWatch {
    /// The event socket's fd, to poll for readability.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }
}

/// Interface `name`'s index, MAC and MTU in this thread's network namespace,
/// from `RTM_GETLINK` on a socket opened for the purpose.
pub fn link(name: &str) -> io::Result<Link> {
    Requests::open()?.link(name)
}

/// Makes `noqueue` the root qdisc of interface `ifindex` in this thread's
/// network namespace (as veth devices have by default): packets go
/// straight to the driver, with no per-transmit-queue qdisc in between.
pub fn set_root_noqueue(ifindex: u32) -> io::Result<()> {
    let mut r = Requests::open()?;
    let seq = r.send(|seq| msg::root_noqueue(seq, ifindex))?;
    r.replies(seq, |reply| matches!(reply, Reply::Ack))
}

/// Notes lost events once per `recv_events` call.
fn overrun(out: &mut Vec<NeighEvent>, start: usize) {
    if !out[start..].contains(&NeighEvent::Overrun) {
        out.push(NeighEvent::Overrun);
    }
}

/// What one message answering a request was.
enum Reply<'a> {
    /// `NLMSG_ERROR` with code 0.
    Ack,
    /// `NLMSG_DONE` without an error: the end of a dump.
    Done,
    /// Any other message.
    Message(Message<'a>),
}

/// A blocking `NETLINK_ROUTE` socket that joins no group: everything it
/// receives answers a request sent on it.
#[derive(Debug)]
struct Requests {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Requests {
    fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        socket2::SockRef::from(&sock).set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Requests {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends the request `build` makes for the next sequence number, which
    /// it returns.
    fn send(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let request = build(self.seq);
        let sent = self.sock.send_to(&request, &SocketAddr::new(0, 0), 0)?;
        if sent != request.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "netlink request sent in part",
            ));
        }
        Ok(self.seq)
    }

    /// Reads the answers to request `seq`, handing each to `on` until it
    /// returns true. A kernel error ends the wait with that error; messages
    /// of other sequence numbers (answers to requests given up on) are
    /// skipped.
    fn replies(&mut self, seq: u32, mut on: impl FnMut(Reply<'_>) -> bool) -> io::Result<()> {
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink reply larger than the receive buffer",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the kernel to a netlink request",
                    ));
                }
                Err(e) => return Err(e),
            };
            for m in msg::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                let reply = match m.ty {
                    NLMSG_NOOP | NLMSG_OVERRUN => continue,
                    NLMSG_ERROR => match msg::error_code(m.payload)? {
                        0 => Reply::Ack,
                        code => return Err(io::Error::from_raw_os_error(code)),
                    },
                    NLMSG_DONE => match msg::done_code(m.payload) {
                        0 => Reply::Done,
                        code => return Err(io::Error::from_raw_os_error(code)),
                    },
                    _ => Reply::Message(m),
                };
                if on(reply) {
                    return Ok(());
                }
            }
        }
    }

    fn link(&mut self, name: &str) -> io::Result<Link> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an interface name",
            ));
        }
        let seq = self.send(|seq| msg::get_link(seq, name))?;
        let mut found = None;
        self.replies(seq, |reply| {
            if let Reply::Message(m) = reply {
                if m.ty == libc::RTM_NEWLINK {
                    found = msg::link(m.payload);
                    return true;
                }
            }
            false
        })?;
        found.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "malformed RTM_NEWLINK answer")
        })
    }
}

/// Sets the socket's receive buffer to `bytes`, past `net.core.rmem_max`
/// with `SO_RCVBUFFORCE` where `CAP_NET_ADMIN` allows, else as far as the
/// plain option goes.
fn receive_buffer(sock: &Socket, bytes: usize) {
    let value = bytes as libc::c_int;
    // SAFETY: a valid socket fd, and an int option value with its true size.
    let forced = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket2::SockRef::from(sock).set_recv_buffer_size(bytes);
    }
}
