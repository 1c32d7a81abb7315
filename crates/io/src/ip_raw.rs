//! IP raw sockets.
//!
//! - [`IpRawSender`]: `socket(AF_INET, SOCK_RAW, IPPROTO_RAW)`, which implies
//!   `IP_HDRINCL`: podwire sends the outer IPv4 header it built — IPIP, and
//!   VXLAN when the UDP path is off or refused a run. The kernel fills in
//!   nothing but what it must (it recomputes the IPv4 header checksum).
//! - [`IpipReceiver`]: `socket(AF_INET, SOCK_RAW, IPPROTO_IPIP)` receives
//!   every IP-in-IP packet for this host with its outer header; keeping it
//!   open also stops the kernel, which has no IPIP module, from answering
//!   peers with ICMP protocol unreachable.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::batch::{BATCH, Received, RxBatch, SendReport, TxBatch};
use crate::sys::mmsg::{self, Msgs};
use crate::sys::sockopt::buffer_size;

/// A raw IPv4 socket for `protocol`, non-blocking, its send or receive
/// buffer (`buffer`: `SO_SNDBUFFORCE` or `SO_RCVBUFFORCE`) large.
fn raw_socket(protocol: libc::c_int, buffer: libc::c_int) -> io::Result<Socket> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(protocol)))?;
    sock.set_nonblocking(true)?;
    buffer_size(&sock, buffer, 4 << 20);
    Ok(sock)
}

/// Sends IPv4 packets whose header podwire wrote.
#[derive(Debug)]
pub struct IpRawSender {
    sock: Socket,
    msgs: Msgs,
}

impl IpRawSender {
    /// Opens the socket, non-blocking, with a large send buffer.
    pub fn new() -> io::Result<Self> {
        Ok(IpRawSender {
            sock: raw_socket(libc::IPPROTO_RAW, libc::SO_SNDBUFFORCE)?,
            msgs: Msgs::new(BATCH, BATCH),
        })
    }
}

impl TxBatch for IpRawSender {
    fn send_batch(&mut self, packets: &mut dyn Iterator<Item = (&[u8], Ipv4Addr)>) -> SendReport {
        mmsg::send_all(self.sock.as_raw_fd(), &mut self.msgs, packets, true)
    }
}

/// Receives IP-in-IP packets for this host, outer header included.
#[derive(Debug)]
pub struct IpipReceiver {
    sock: Socket,
    msgs: Msgs,
}

impl IpipReceiver {
    /// A raw socket for IP protocol 4, non-blocking, with a large buffer.
    pub fn new() -> io::Result<Self> {
        Ok(IpipReceiver {
            sock: raw_socket(libc::IPPROTO_IPIP, libc::SO_RCVBUFFORCE)?,
            msgs: Msgs::new(BATCH, BATCH),
        })
    }
}

impl IpipReceiver {
    /// Keeps every packet from the socket (it stays open, so the kernel
    /// sends no protocol unreachable): for when a packet socket takes IPIP.
    pub fn drop_all(&self) -> io::Result<()> {
        self.sock
            .attach_filter(&crate::sys::bpf::to_filters(&crate::sys::bpf::DROP_ALL))
    }
}

impl RxBatch for IpipReceiver {
    fn recv_batch(
        &mut self,
        bufs: &mut dyn Iterator<Item = &mut [u8]>,
        out: &mut [Received],
    ) -> io::Result<usize> {
        mmsg::recv_all(self.sock.as_raw_fd(), &mut self.msgs, bufs, out, false)
    }
}

impl AsRawFd for IpipReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
