//! What surrounds an IPv4 packet on its way in and out: the Ethernet header
//! of direct mode's frames on the underlay, and the `virtio_net_hdr` that
//! TUN devices and packet sockets put in front of a packet when offloads are
//! on (a partial checksum to complete, or a TCP super-packet to keep whole).
//!
//! The worker calls these around [`egress`](super::egress) and the ingress
//! functions, so that it only moves bytes: every framing decision, and
//! every drop it implies, is made (and tested, and fuzzed) here.

use std::net::Ipv4Addr;

use super::{DropReason, Packet};
use crate::table::{Hop, Tables};
use crate::wire::checksum::Sum;
use crate::wire::ipv4::{self, HEADER_LEN};
use crate::wire::vnet::{self, VnetHdr};
use crate::wire::vxlan::{ETH_LEN, ETHERTYPE_IPV4, OVERHEAD};
use crate::wire::{MacAddr, vnet::TNL_LEN};

/// A TCP/IPv4 super-packet that goes whole: its segment size (payload bytes
/// per segment) and whether its segments carry ECN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    pub size: u16,
    pub ecn: bool,
}

impl Gso {
    /// The super-packet a virtio header describes, if it is TCP/IPv4.
    pub fn of(h: &VnetHdr) -> Option<Gso> {
        h.is_tcp4_gso().then_some(Gso {
            size: h.gso_size,
            ecn: h.gso_type & vnet::GSO_ECN != 0,
        })
    }
}

/// Where the I/O can take a TCP super-packet whole: a direct-mode next hop
/// (the packet socket takes virtio headers), a VXLAN peer (the tunnel TAP
/// takes the tunnel header), an IPIP peer (the IPIP tunnel TUN re-tags
/// it). A local pod always can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Whole {
    pub direct: bool,
    pub vxlan: bool,
    pub ipip: bool,
}

/// What a read from a TUN device with offloads holds, and how to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromTun {
    /// One packet (its partial checksum, if any, now complete): egress it.
    Packet,
    /// A TCP super-packet that may go whole: egress it with
    /// [`egress_gso`](super::egress_gso) and `segment`, the size of each of
    /// its segments on the wire.
    Whole { gso: Gso, segment: usize },
    /// A super-packet to cut into segments before egress.
    Split,
}

/// Decides what to do with `pkt`, read from a TUN device after `hdr`.
/// A super-packet goes whole when it is TCP/IPv4 to a local endpoint; to
/// a direct-mode next hop when `whole.direct` and its segments fit the
/// direct MTU; to a VXLAN peer when `whole.vxlan`, its segments fit the
/// VXLAN MTU, it carries no ECN (the tunnel header has no room for it) and
/// the outer packet stays within IPv4's 65,535 bytes; to an IPIP peer when
/// `whole.ipip`, its segments fit the IPIP MTU and the outer packet stays
/// within 65,535 bytes. Any other one is cut.
pub fn from_tun(
    t: &Tables,
    hdr: &VnetHdr,
    pkt: &mut Packet,
    whole: Whole,
) -> Result<FromTun, DropReason> {
    if hdr.gso_type == vnet::GSO_NONE {
        if hdr.needs_csum() {
            let (start, offset) = (hdr.csum_start.into(), hdr.csum_offset.into());
            if !vnet::complete_checksum(pkt.data_mut(), start, offset) {
                return Err(DropReason::Malformed);
            }
        }
        return Ok(FromTun::Packet);
    }
    let whole = Gso::of(hdr).and_then(|gso| {
        let data = pkt.data();
        let segment = vnet::tcp4_header_len(data)? + usize::from(gso.size);
        let dst = u32::from_be_bytes(*data.get(16..20)?.first_chunk()?);
        let ok = match t.lookup_from_workload(dst) {
            // A pod's TUN and the host interface both take it whole.
            Some(Hop::Endpoint(_) | Hop::Host) => true,
            Some(Hop::Direct { .. }) => whole.direct && segment <= usize::from(t.mtu().direct),
            Some(Hop::Vxlan { .. }) => {
                whole.vxlan
                    && !gso.ecn
                    && segment <= usize::from(t.mtu().vxlan)
                    && data.len() + OVERHEAD <= usize::from(u16::MAX)
            }
            Some(Hop::Ipip { .. }) => {
                whole.ipip
                    && segment <= usize::from(t.mtu().ipip)
                    && data.len() + HEADER_LEN <= usize::from(u16::MAX)
            }
            _ => false,
        };
        ok.then_some(FromTun::Whole { gso, segment })
    });
    Ok(whole.unwrap_or(FromTun::Split))
}

/// Puts the virtio header of super-packet `pkt` (`gso`) in front of it, for
/// a TUN write that hands it whole to the pod's kernel.
pub fn to_tun_whole(pkt: &mut Packet, gso: Gso) -> Result<(), DropReason> {
    let hdr = VnetHdr::tcp4_gso(pkt.data(), 0, gso.size, gso.ecn).ok_or(DropReason::Malformed)?;
    prepend_vnet(pkt, &hdr)
}

/// Writes `hdr` into the headroom in front of `pkt`.
fn prepend_vnet(pkt: &mut Packet, hdr: &VnetHdr) -> Result<(), DropReason> {
    let slot = pkt
        .prepend(vnet::LEN)
        .and_then(|b| b.first_chunk_mut::<{ vnet::LEN }>())
        .ok_or(DropReason::NoHeadroom)?;
    hdr.write(slot);
    Ok(())
}

/// Frames `pkt`, an inner IPv4 packet that egress sends to direct-mode
/// next hop `gw`, for the underlay: Ethernet from the underlay's MAC to
/// `gw`'s (from the tables' next hops) — and in front of that, when the
/// packet socket takes them (`vnet`), a virtio header: for a super-packet
/// (`gso`), its segment size and the place of its partial checksum; for
/// anything else, zeros.
pub fn frame_direct(
    t: &Tables,
    pkt: &mut Packet,
    gw: Ipv4Addr,
    gso: Option<Gso>,
    vnet: bool,
) -> Result<(), DropReason> {
    let src = t.next_hops().src().ok_or(DropReason::NoUnderlay)?;
    let dst = t.next_hops().mac(gw).ok_or(DropReason::NoNeighbour)?;
    let hdr = match (gso, vnet) {
        (Some(g), true) => Some(
            VnetHdr::tcp4_gso(pkt.data(), ETH_LEN as u16, g.size, g.ecn)
                .ok_or(DropReason::Malformed)?,
        ),
        (None, true) => Some(VnetHdr::default()),
        (Some(_), false) => return Err(DropReason::UnsupportedGso),
        (None, false) => None,
    };
    let eth = pkt.prepend(ETH_LEN).ok_or(DropReason::NoHeadroom)?;
    eth[..6].copy_from_slice(&dst.0);
    eth[6..12].copy_from_slice(&src.0);
    eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    match hdr {
        Some(hdr) => prepend_vnet(pkt, &hdr),
        None => Ok(()),
    }
}

/// Frames `pkt`, a VXLAN packet as egress encapsulated it, for the tunnel
/// TAP whose MAC is `tap`: the Ethernet header to the TAP, and the tunnel
/// virtio header it is written after (returned): for a TCP super-packet
/// (`gso`), the tunnel GSO header; for one packet, only the outer UDP
/// checksum to complete. The outer TTL is one more than VXLAN's, as the
/// kernel forwards the packet from the TAP to the underlay and takes one
/// off; the outer UDP checksum holds the pseudo-header sum, which the
/// kernel (or the NIC) completes on every segment.
pub fn frame_tunnel(
    pkt: &mut Packet,
    tap: MacAddr,
    gso: Option<Gso>,
) -> Result<[u8; TNL_LEN], DropReason> {
    let data = pkt.data_mut();
    let h: &mut [u8; HEADER_LEN] = data.first_chunk_mut().ok_or(DropReason::Malformed)?;
    if h[0] != 0x45 || h[ipv4::field::PROTO] != ipv4::proto::UDP {
        return Err(DropReason::Malformed);
    }
    h[ipv4::field::TTL] = super::encap::VXLAN_TTL + 1;
    ipv4::refresh_checksum(h);
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    let udp = data
        .get_mut(HEADER_LEN..HEADER_LEN + 8)
        .ok_or(DropReason::Malformed)?;
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]);
    let pseudo = Sum::new()
        .add_u32(src)
        .add_u32(dst)
        .add_u16(u16::from(ipv4::proto::UDP))
        .add_u16(udp_len)
        .fold();
    udp[6..8].copy_from_slice(&pseudo.to_be_bytes());
    let eth = pkt.prepend(ETH_LEN).ok_or(DropReason::NoHeadroom)?;
    eth[..6].copy_from_slice(&tap.0);
    eth[6..12].copy_from_slice(&tap.0);
    eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let Some(gso) = gso else {
        // NEEDS_CSUM, hdr_len through the outer UDP header (42),
        // csum_start at it (34), csum_offset 6.
        let mut h = [0u8; TNL_LEN];
        h[0] = vnet::F_NEEDS_CSUM;
        h[2] = (ETH_LEN + HEADER_LEN + 8) as u8;
        h[6] = (ETH_LEN + HEADER_LEN) as u8;
        h[8] = 6;
        return Ok(h);
    };
    crate::wire::vnet::vxlan_tcp4_gso(pkt.data(), gso.size).ok_or(DropReason::Malformed)
}

/// Frames `pkt`, an IPIP packet as egress encapsulated it, for the IPIP
/// tunnel TUN, and returns the virtio header it is written after: for a
/// TCP super-packet (`gso`), TCPv4 GSO at the inner TCP header (the TUN's
/// program re-tags it as IPIP); for one packet, none. The outer TTL is one
/// more than egress gave it, as the kernel forwards the packet from the
/// TUN to the underlay and takes one off.
pub fn frame_ipip_tun(pkt: &mut Packet, gso: Option<Gso>) -> Result<VnetHdr, DropReason> {
    let data = pkt.data_mut();
    let (h, inner) = data
        .split_at_mut_checked(HEADER_LEN)
        .ok_or(DropReason::Malformed)?;
    let h: &mut [u8; HEADER_LEN] = h.first_chunk_mut().ok_or(DropReason::Malformed)?;
    if h[0] != 0x45 || h[ipv4::field::PROTO] != ipv4::proto::IPIP {
        return Err(DropReason::Malformed);
    }
    h[ipv4::field::TTL] = h[ipv4::field::TTL].saturating_add(1);
    ipv4::refresh_checksum(h);
    match gso {
        Some(g) => {
            VnetHdr::tcp4_gso(inner, HEADER_LEN as u16, g.size, g.ecn).ok_or(DropReason::Malformed)
        }
        None => Ok(VnetHdr::default()),
    }
}

/// Whether `outer`, a VXLAN or IPIP packet as egress encapsulated it,
/// carries a TCP segment with data: such a packet of a flow whose
/// super-packets go through the tunnel TAP (or TUN) goes that way too, so
/// that the flow's segments stay in order (the tunnel device and the
/// sockets reach the underlay by different queues).
pub fn carries_tcp_data(outer: &[u8]) -> bool {
    let at = match outer.get(ipv4::field::PROTO) {
        Some(&ipv4::proto::IPIP) => HEADER_LEN,
        _ => OVERHEAD,
    };
    let Some(inner) = outer.get(at..) else {
        return false;
    };
    let total = inner
        .get(2..4)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    vnet::tcp4_header_len(inner).is_some_and(|hl| total > hl)
}

/// What a VXLAN frame from a packet socket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// One VXLAN packet (a partial checksum in it now complete).
    Packet,
    /// A VXLAN packet around a TCP super-packet, its checksums partial:
    /// the inner packet goes whole.
    Whole(Gso),
    /// Several VXLAN datagrams of this many bytes each (the last may be
    /// shorter) behind one set of outer headers (`UDP_SEGMENT` uncut).
    Datagrams(u16),
}

/// Moves `pkt` from the start of a VXLAN frame read from a packet socket
/// (after its virtio header when `vnet`) to its outer IPv4 packet, as
/// [`unframe_direct`] does, and says what the frame holds.
pub fn unframe_vxlan(pkt: &mut Packet, vnet: bool) -> Result<Framed, DropReason> {
    if vnet {
        let hdr = VnetHdr::parse(pkt.data()).ok_or(DropReason::Malformed)?;
        if hdr.gso_type & !vnet::GSO_ECN == vnet::GSO_UDP_L4 {
            if hdr.gso_size == 0 || !pkt.advance(vnet::LEN + ETH_LEN) {
                return Err(DropReason::Malformed);
            }
            return Ok(Framed::Datagrams(hdr.gso_size));
        }
    }
    Ok(match unframe_direct(pkt, vnet)? {
        Some(g) => Framed::Whole(g),
        None => Framed::Packet,
    })
}

/// Moves `pkt` from the start of a frame read from a packet socket (after
/// its virtio header when `vnet`) to its IPv4 packet. A partial checksum of
/// a single packet is completed here; a TCP super-packet stays whole, its
/// checksum partial, and comes back as `Some` to be written whole; another
/// kind of super-packet cannot be delivered (`unsupported-gso`).
pub fn unframe_direct(pkt: &mut Packet, vnet: bool) -> Result<Option<Gso>, DropReason> {
    let mut gso = None;
    if vnet {
        let hdr = VnetHdr::parse(pkt.data()).ok_or(DropReason::Malformed)?;
        if hdr.gso_type != vnet::GSO_NONE {
            gso = Some(Gso::of(&hdr).ok_or(DropReason::UnsupportedGso)?);
        } else if hdr.needs_csum() {
            let frame = pkt.data_mut().get_mut(vnet::LEN..).unwrap_or_default();
            let (start, offset) = (hdr.csum_start.into(), hdr.csum_offset.into());
            if !vnet::complete_checksum(frame, start, offset) {
                return Err(DropReason::Malformed);
            }
        }
        if !pkt.advance(vnet::LEN) {
            return Err(DropReason::Malformed);
        }
    }
    if !pkt.advance(ETH_LEN) {
        return Err(DropReason::Malformed);
    }
    Ok(gso)
}
