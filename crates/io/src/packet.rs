//! `AF_PACKET` sockets on the underlay device, for direct mode's frames.
//!
//! - [`PacketSender`]: whole Ethernet frames out of one device; with
//!   `PACKET_VNET_HDR`, each after a `virtio_net_hdr`, so that a TCP
//!   super-packet goes to the device whole, for the kernel (or the NIC) to
//!   segment.
//! - [`PacketReceiver`]: the IPv4 frames for this host whose destination is
//!   a local prefix (a classic BPF filter, [`crate::sys::bpf`]), not the
//!   ones it sends; with `PACKET_VNET_HDR`, a TCP super-packet the sender's
//!   kernel did not segment comes whole. [`PacketReceiver::vxlan`]: the
//!   same for VXLAN, the frames to the node's VXLAN port: a same-host
//!   VXLAN super-frame comes whole, and a segment whose inner checksum was
//!   left for a NIC says where it is (a UDP socket hands over neither).
//!   [`PacketReceiver::ipip`]: the same for IPIP, the frames of protocol 4
//!   to the node (a raw socket gets neither).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::batch::{BATCH, Received, RxBatch, SendReport, TxBatch};
use crate::sys::mmsg::{self, Msgs};
use crate::sys::sockopt::{bind_packet, buffer_size, set_int};

/// An `AF_PACKET` raw socket. Created with protocol 0, it receives nothing
/// until bound for a protocol.
fn packet_socket() -> io::Result<Socket> {
    Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
}

/// Asks for `PACKET_VNET_HDR` when `want`; true when the kernel took it.
fn vnet_hdr(sock: &Socket, want: bool) -> bool {
    want && set_int(sock, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1).is_ok()
}

/// Sends whole frames on one device.
#[derive(Debug)]
pub struct PacketSender {
    sock: Socket,
    vnet: bool,
    msgs: Msgs,
}

impl PacketSender {
    /// A socket bound to interface `ifindex` that sends frames (and
    /// receives none); with `vnet`, asks for `PACKET_VNET_HDR`.
    pub fn new(ifindex: u32, vnet: bool) -> io::Result<Self> {
        let sock = packet_socket()?;
        bind_packet(&sock, ifindex, 0)?;
        let vnet = vnet_hdr(&sock, vnet);
        sock.set_nonblocking(true)?;
        buffer_size(&sock, libc::SO_SNDBUFFORCE, 4 << 20);
        Ok(PacketSender {
            sock,
            vnet,
            msgs: Msgs::new(BATCH, BATCH),
        })
    }
}

impl TxBatch for PacketSender {
    fn send_batch(&mut self, packets: &mut dyn Iterator<Item = (&[u8], Ipv4Addr)>) -> SendReport {
        mmsg::send_all(self.sock.as_raw_fd(), &mut self.msgs, packets, false)
    }

    fn vnet(&self) -> bool {
        self.vnet
    }
}

/// Receives the IPv4 frames for local prefixes on one device.
#[derive(Debug)]
pub struct PacketReceiver {
    sock: Socket,
    vnet: bool,
    msgs: Msgs,
}

impl PacketReceiver {
    /// A socket on interface `ifindex` for the IPv4 frames to this host
    /// whose destination is in `nets`; the filter is in place before the
    /// socket is bound, so no other frame is ever queued on it. With
    /// `vnet`, asks for `PACKET_VNET_HDR`.
    pub fn new(ifindex: u32, nets: &[(Ipv4Addr, u8)], vnet: bool) -> io::Result<Self> {
        let rx = Self::filtered(vnet, |rx| rx.filter_ipv4_destinations(nets))?;
        bind_packet(&rx.sock, ifindex, libc::ETH_P_IP as u16)?;
        Ok(rx)
    }

    /// A socket on interface `ifindex` for the VXLAN frames to `ip` and
    /// `port` (IPv4 UDP), filtered before it is bound; with `vnet`, asks
    /// for `PACKET_VNET_HDR`.
    pub fn vxlan(ifindex: u32, ip: Ipv4Addr, port: u16, vnet: bool) -> io::Result<Self> {
        let prog = crate::sys::bpf::to_filters(&crate::sys::bpf::vxlan_frames(ip, port));
        let rx = Self::filtered(vnet, |rx| rx.sock.attach_filter(&prog))?;
        bind_packet(&rx.sock, ifindex, libc::ETH_P_IP as u16)?;
        Ok(rx)
    }

    /// A socket on interface `ifindex` for the IPIP frames to `ip`
    /// (IPv4 protocol 4), filtered before it is bound; with `vnet`, asks
    /// for `PACKET_VNET_HDR`.
    pub fn ipip(ifindex: u32, ip: Ipv4Addr, vnet: bool) -> io::Result<Self> {
        let prog = crate::sys::bpf::to_filters(&crate::sys::bpf::ipip_frames(ip));
        let rx = Self::filtered(vnet, |rx| rx.sock.attach_filter(&prog))?;
        bind_packet(&rx.sock, ifindex, libc::ETH_P_IP as u16)?;
        Ok(rx)
    }

    /// An unbound socket with `filter` applied.
    fn filtered(vnet: bool, filter: impl FnOnce(&Self) -> io::Result<()>) -> io::Result<Self> {
        let sock = packet_socket()?;
        let vnet = vnet_hdr(&sock, vnet);
        set_int(&sock, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        sock.set_nonblocking(true)?;
        buffer_size(&sock, libc::SO_RCVBUFFORCE, 4 << 20);
        let rx = PacketReceiver {
            sock,
            vnet,
            msgs: Msgs::new(BATCH, BATCH),
        };
        filter(&rx)?;
        Ok(rx)
    }
}

impl RxBatch for PacketReceiver {
    fn recv_batch(
        &mut self,
        bufs: &mut dyn Iterator<Item = &mut [u8]>,
        out: &mut [Received],
    ) -> io::Result<usize> {
        mmsg::recv_all(self.sock.as_raw_fd(), &mut self.msgs, bufs, out, false)
    }

    fn vnet(&self) -> bool {
        self.vnet
    }

    /// Keeps only IPv4 frames whose destination falls in one of `nets`;
    /// too many prefixes for one program keep every IPv4 frame.
    fn filter_ipv4_destinations(&self, nets: &[(Ipv4Addr, u8)]) -> io::Result<()> {
        match crate::sys::bpf::ipv4_destinations(nets) {
            Some(prog) => self.sock.attach_filter(&crate::sys::bpf::to_filters(&prog)),
            None => self.sock.detach_filter().or(Ok(())),
        }
    }
}

impl AsRawFd for PacketReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
