//! The packet pipeline (SPEC §3–5), sans I/O.
//!
//! [`egress`] takes a packet a local workload sent, [`ingress`] one that
//! arrived from the underlay; both work on a [`Packet`], a view into a buffer
//! the caller owns with free headroom in front of the packet, and return a
//! [`Verdict`] that says where the bytes go next or why they were dropped.
//! Encapsulation writes the outer headers into the headroom, so the payload is
//! never copied; decapsulation moves the start of the view past them. Nothing
//! here allocates, locks, makes a system call, or panics on any input: the
//! I/O layer moves bytes, this module decides.

mod egress;
mod encap;
pub mod flows;
mod frag;
pub mod gro;
mod icmp;
mod ingress;
pub mod l2;

use std::net::Ipv4Addr;

use crate::table::EndpointId;
use crate::wire::MacAddr;

pub use egress::{egress, egress_gso};
pub use encap::finish_udp_checksum;
pub use frag::FragJob;
pub use ingress::{ingress, ingress_direct, ingress_frame, ingress_vxlan_payload, vxlan_datagrams};
pub use l2::{Framed, FromTun, Gso};

/// Headroom a packet buffer needs in front of an inner packet: the largest
/// encapsulation (VXLAN: IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14 = 50) plus
/// an outer Ethernet header (14) for I/O layers that send whole frames.
pub const HEADROOM: usize = 64;

/// A packet: the bytes `buf[start..end]` of a buffer the caller owns, with
/// `buf[..start]` free for headers to be written in front.
#[derive(Debug)]
pub struct Packet<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
}

impl<'a> Packet<'a> {
    /// A packet of `len` bytes at offset `start` of `buf`; both are clamped
    /// to the buffer, so any arguments give a valid view.
    pub fn new(buf: &'a mut [u8], start: usize, len: usize) -> Self {
        let start = start.min(buf.len());
        let end = start.saturating_add(len).min(buf.len());
        Packet { buf, start, end }
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Length of the packet.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Free bytes in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// Offset of the packet in the buffer (its `start`).
    #[inline]
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Grows the packet `n` bytes to the front and returns those bytes, or
    /// `None` when the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = self.start.checked_sub(n)?;
        self.start = start;
        Some(&mut self.buf[start..start + n])
    }

    /// Drops `n` bytes from the front; false (and no change) if too short.
    #[inline]
    pub fn advance(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }

    /// Shortens the packet to `len` bytes (no effect if already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.end = self.start + len.min(self.len());
    }

    /// Resets the view to `len` bytes at `start` (clamped, as in [`Packet::new`]).
    #[inline]
    pub fn reset(&mut self, start: usize, len: usize) {
        self.start = start.min(self.buf.len());
        self.end = self.start.saturating_add(len).min(self.buf.len());
    }
}

/// Where an outgoing packet goes on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// IP-in-IP to `node`; the packet starts with the outer IPv4 header.
    Ipip { node: Ipv4Addr },
    /// VXLAN to `node`; the packet starts with the outer IPv4 header, and
    /// the UDP source port is `src_port` (an I/O layer sending through a
    /// UDP socket skips the first 28 bytes).
    Vxlan {
        node: Ipv4Addr,
        mac: MacAddr,
        src_port: u16,
    },
    /// Unencapsulated to the next-hop node `gw`; the packet is the inner
    /// IPv4 packet, to be framed for the underlay by the I/O layer.
    Direct { gw: Ipv4Addr },
}

/// What to do with a packet after the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the packet (an IPv4 packet) to this endpoint's TUN device.
    Deliver(EndpointId),
    /// Send the packet on the underlay.
    Send(Target),
    /// The packet was dropped for `reason`, and the buffer now holds an ICMP
    /// error for its sender: write it to endpoint `to`.
    Icmp { to: EndpointId, reason: DropReason },
    /// The packet (TTL already decremented) is larger than the mode's MTU
    /// and may be fragmented: emit each fragment with [`FragJob::emit`].
    Fragment(FragJob),
    /// The packet was dropped.
    Drop(DropReason),
}

impl Verdict {
    /// The drop reason, for a verdict that drops the packet.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            Verdict::Drop(r) | Verdict::Icmp { reason: r, .. } => Some(*r),
            _ => None,
        }
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why a packet was dropped: a closed set, each one a counter and a
        /// metric label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The reason's name, as logs and metrics print it.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One line saying what the reason means.
            pub fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $doc,)* }
            }

            /// The reason with this name.
            pub fn from_name(name: &str) -> Option<DropReason> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

drop_reasons! {
    Malformed => "malformed", "Not a well-formed IPv4 packet: too short, IHL < 5, a total length inconsistent with the bytes read, options that are not a well-formed list, a fragment past byte 65535; or a virtio header or frame that does not hold together.";
    NotIpv4 => "not-ipv4", "IPv6 or another protocol, or an inner EtherType other than IPv4: podwire forwards IPv4 only for now.";
    BadChecksum => "bad-checksum", "An IPv4 header checksum, or a non-zero VXLAN UDP checksum, does not verify.";
    SpoofedSource => "spoofed-source", "A workload sent a packet whose source is not one of its own addresses (Calico's RPF check).";
    EncapFromWorkload => "encap-from-workload", "A workload sent IP-in-IP, or UDP to the VXLAN port, itself.";
    TtlExceeded => "ttl-exceeded", "TTL 1 or less on arrival; a workload's packet gets ICMP time exceeded back.";
    Blackhole => "blackhole", "The destination is in a local block but no local workload has it (silent, as the kernel's blackhole route).";
    NoRoute => "no-route", "No route for the destination: inside a pool but on no route; outside every pool without the host path (`--host-interface`); or, from the host interface, anything that is not a pod's.";
    NoNeighbour => "no-neighbour", "The route's next hop has no neighbour entry: a VXLAN gateway without an ARP entry, or a direct-mode next hop whose MAC the underlay's neighbour table does not have (yet).";
    NoFdb => "no-fdb", "A VXLAN gateway's MAC has no FDB entry.";
    TooBig => "too-big", "Larger than the mode's MTU with DF set (the sender gets ICMP fragmentation needed back).";
    UnknownPeer => "unknown-peer", "Encapsulated traffic from an address that is not a node of the cluster.";
    NotForNode => "not-for-node", "Underlay traffic that is not IPIP or VXLAN to this node's IP and VXLAN port.";
    BadVni => "bad-vni", "VXLAN with a VNI other than the configured one.";
    BadVxlanFlags => "bad-vxlan-flags", "VXLAN flags other than 0x08, or a reserved bit set.";
    WrongVtepMac => "wrong-vtep-mac", "The VXLAN inner destination MAC is not the local VTEP MAC.";
    NotLocal => "not-local", "A decapsulated or routed packet whose destination is not a local workload.";
    EcnCeOnNotEct => "ecn-ce-on-not-ect", "The outer header is marked CE around a not-ECN-capable inner packet (RFC 6040 says drop).";
    FragmentedOuter => "fragmented-outer", "An outer IPIP or VXLAN packet that is itself a fragment (podwire does not reassemble).";
    UnsupportedGso => "unsupported-gso", "A super-packet from the kernel of a kind podwire cannot pass on whole (only TCP/IPv4 super-packets can be).";
    NoUnderlay => "no-underlay", "A direct-mode packet, but the underlay device or its packet socket could not be opened at start (the log says why).";
    NoHeadroom => "no-headroom", "No room in front of the packet for the headers to write (a buffer-layout limit; never expected).";
    TxFull => "tx-full", "The transmit queue or socket buffer was full (the kernel said EAGAIN or ENOBUFS).";
    TxError => "tx-error", "The kernel refused to send or write the packet for another reason (logged at a limited rate with the error).";
}

impl From<crate::wire::ipv4::Error> for DropReason {
    fn from(e: crate::wire::ipv4::Error) -> DropReason {
        use crate::wire::ipv4::Error;
        match e {
            Error::NotIpv4 => DropReason::NotIpv4,
            Error::Malformed => DropReason::Malformed,
            Error::BadChecksum => DropReason::BadChecksum,
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A counter per drop reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters([0; DropReason::COUNT])
    }
}

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// Counts the drop a verdict carries, if any.
    #[inline]
    pub fn record(&mut self, verdict: &Verdict) {
        if let Some(r) = verdict.drop_reason() {
            self.count(r);
        }
    }

    /// The count of one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Every reason with its count.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// How the outer UDP checksum of VXLAN is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpChecksum {
    /// Computed in software over the whole datagram, for I/O paths that send
    /// the packet as it is (a raw socket).
    #[default]
    Full,
    /// Left to the kernel or the NIC: the field holds the folded
    /// pseudo-header sum, as Linux expects for `CHECKSUM_PARTIAL` (a
    /// `virtio_net_hdr` with `NEEDS_CSUM`, checksum start at the UDP header,
    /// offset 6). A UDP socket writes its own header and ignores it.
    Offload,
}

/// Per-worker mutable state of the pipeline.
#[derive(Debug, Clone)]
pub struct State {
    ip_id: u16,
    udp_checksum: UdpChecksum,
}

impl State {
    /// State whose IP identification counter starts at `seed`, computing
    /// VXLAN's UDP checksum in software.
    pub fn new(seed: u16) -> Self {
        State {
            ip_id: seed,
            udp_checksum: UdpChecksum::Full,
        }
    }

    /// Chooses how VXLAN's UDP checksum is produced.
    pub fn with_udp_checksum(mut self, mode: UdpChecksum) -> Self {
        self.udp_checksum = mode;
        self
    }

    /// How VXLAN's UDP checksum is produced.
    pub fn udp_checksum(&self) -> UdpChecksum {
        self.udp_checksum
    }

    /// The next IP identification for a header podwire writes.
    #[inline]
    pub(crate) fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }
}

#[cfg(test)]
mod l2_tests;
#[cfg(test)]
mod tests;
