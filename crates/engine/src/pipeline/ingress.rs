//! Packets from the underlay (SPEC §4): IPIP and VXLAN decapsulation with
//! every check the SPEC lists, in its order, and direct-mode forwarding.
//! What survives is forwarded to a local endpoint as the kernel forwards
//! from a tunnel device to a pod: RFC 6040 ECN, then TTL decremented.

use super::egress::through_kernel;
use super::{DropReason, Packet, Verdict};
use crate::table::{Hop, Tables};
use crate::wire::checksum::Sum;
use crate::wire::ipv4::{self, ecn};
use crate::wire::vxlan::{self, ETH_LEN, ETH_MIN_FRAME, ETHERTYPE_IPV4, UDP_LEN, VXLAN_LEN};

/// How the inner packet was framed, which decides what may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Inside IPIP: the inner packet fills the outer payload exactly.
    Exact,
    /// Inside an Ethernet frame: a minimum-size frame may carry padding.
    Ethernet,
}

/// Runs the ingress pipeline on `pkt`, a whole IPv4 packet from the
/// underlay (as a raw socket delivers it).
pub fn ingress(t: &Tables, pkt: &mut Packet) -> Verdict {
    ingress_frame(t, pkt, false)
}

/// The same for the IPv4 packet of a frame a packet socket took in;
/// `partial`: the frame's virtio header says its checksums are partial
/// (a super-frame this host made and never cut up, whose bytes were never
/// on a wire), so the outer UDP checksum, whose sum covers an inner
/// checksum not yet filled in, is not verified; every other check is.
pub fn ingress_frame(t: &Tables, pkt: &mut Packet, partial: bool) -> Verdict {
    let h = match ipv4::parse(pkt.data()) {
        Ok(h) => h,
        Err(e) => return Verdict::Drop(e.into()),
    };
    pkt.truncate(h.total_len);
    if h.dst != u32::from(t.local().ip) {
        return Verdict::Drop(DropReason::NotForNode);
    }
    match h.proto {
        ipv4::proto::IPIP => {
            if h.is_fragment() {
                return Verdict::Drop(DropReason::FragmentedOuter);
            }
            if !t.is_peer(h.src) {
                return Verdict::Drop(DropReason::UnknownPeer);
            }
            pkt.advance(h.header_len);
            forward_inner(t, pkt, h.ecn(), Framing::Exact)
        }
        ipv4::proto::UDP => {
            if let Err(reason) = outer_udp(t, pkt, &h, !partial) {
                return Verdict::Drop(reason);
            }
            pkt.advance(h.header_len + UDP_LEN);
            vxlan_payload(t, pkt, h.ecn())
        }
        _ => Verdict::Drop(DropReason::NotForNode),
    }
}

/// The outer UDP header of a VXLAN packet: to the VXLAN port, not a
/// fragment, its length the packet's, from a known peer, and (`verify`)
/// its checksum, unless zero, good.
fn outer_udp(t: &Tables, pkt: &Packet, h: &ipv4::Header, verify: bool) -> Result<(), DropReason> {
    let hl = h.header_len;
    let Some(udp) = pkt
        .data()
        .get(hl..hl + UDP_LEN)
        .and_then(|u| u.first_chunk::<UDP_LEN>())
    else {
        return Err(DropReason::Malformed);
    };
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    if dport != t.vxlan().port {
        return Err(DropReason::NotForNode);
    }
    if h.is_fragment() {
        return Err(DropReason::FragmentedOuter);
    }
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]);
    if usize::from(udp_len) != h.total_len - hl {
        return Err(DropReason::Malformed);
    }
    if !t.is_peer(h.src) {
        return Err(DropReason::UnknownPeer);
    }
    let csum = u16::from_be_bytes([udp[6], udp[7]]);
    if verify && csum != 0 {
        let sum = Sum::new()
            .add_u32(h.src)
            .add_u32(h.dst)
            .add_u16(u16::from(ipv4::proto::UDP))
            .add_u16(udp_len)
            .add_bytes(pkt.data().get(hl..).unwrap_or_default());
        if sum.fold() != 0xffff {
            return Err(DropReason::BadChecksum);
        }
    }
    Ok(())
}

/// The outer headers of a frame holding several VXLAN datagrams as one
/// (a `UDP_SEGMENT` send from this host that crossed a veth uncut), checked
/// as [`ingress`] checks one datagram's but for the UDP checksum (partial:
/// never on a wire); `pkt` is moved to the datagrams' payloads, to be cut
/// at the segment size and given to [`ingress_vxlan_payload`] with the
/// source and outer ECN returned.
pub fn vxlan_datagrams(
    t: &Tables,
    pkt: &mut Packet,
) -> Result<(std::net::Ipv4Addr, u8), DropReason> {
    let h = ipv4::parse(pkt.data()).map_err(DropReason::from)?;
    pkt.truncate(h.total_len);
    if h.dst != u32::from(t.local().ip) || h.proto != ipv4::proto::UDP {
        return Err(DropReason::NotForNode);
    }
    outer_udp(t, pkt, &h, false)?;
    pkt.advance(h.header_len + UDP_LEN);
    Ok((h.src.into(), h.ecn()))
}

/// Runs the VXLAN part of the ingress pipeline on a UDP payload that a UDP
/// socket received from `src` (the kernel has checked the IP and UDP
/// headers); `outer_ecn` is the outer header's ECN field.
pub fn ingress_vxlan_payload(
    t: &Tables,
    src: std::net::Ipv4Addr,
    outer_ecn: u8,
    pkt: &mut Packet,
) -> Verdict {
    if !t.is_peer(u32::from(src)) {
        return Verdict::Drop(DropReason::UnknownPeer);
    }
    vxlan_payload(t, pkt, outer_ecn & ecn::MASK)
}

fn vxlan_payload(t: &Tables, pkt: &mut Packet, outer_ecn: u8) -> Verdict {
    let Some(vx) = pkt.data().first_chunk::<VXLAN_LEN>() else {
        return Verdict::Drop(DropReason::Malformed);
    };
    match vxlan::check(vx, t.vxlan().vni) {
        Ok(()) => {}
        Err(vxlan::HeaderError::Flags) => return Verdict::Drop(DropReason::BadVxlanFlags),
        Err(vxlan::HeaderError::Vni) => return Verdict::Drop(DropReason::BadVni),
    }
    let Some(eth) = pkt
        .data()
        .get(VXLAN_LEN..VXLAN_LEN + ETH_LEN)
        .and_then(|e| e.first_chunk::<ETH_LEN>())
    else {
        return Verdict::Drop(DropReason::Malformed);
    };
    if eth[..6] != t.local().vtep_mac.0 {
        return Verdict::Drop(DropReason::WrongVtepMac);
    }
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV4 {
        return Verdict::Drop(DropReason::NotIpv4);
    }
    pkt.advance(VXLAN_LEN + ETH_LEN);
    forward_inner(t, pkt, outer_ecn, Framing::Ethernet)
}

/// Runs the direct-mode ingress on an IPv4 packet taken from an Ethernet
/// frame on the underlay.
pub fn ingress_direct(t: &Tables, pkt: &mut Packet) -> Verdict {
    forward_inner(t, pkt, ecn::NOT_ECT, Framing::Ethernet)
}

/// Validates the inner packet and forwards it to a local endpoint.
fn forward_inner(t: &Tables, pkt: &mut Packet, outer_ecn: u8, framing: Framing) -> Verdict {
    let h = match ipv4::parse(pkt.data()) {
        Ok(h) => h,
        Err(e) => return Verdict::Drop(e.into()),
    };
    if h.total_len != pkt.len() {
        let padded = framing == Framing::Ethernet && pkt.len() + ETH_LEN == ETH_MIN_FRAME;
        if !padded {
            return Verdict::Drop(DropReason::Malformed);
        }
        pkt.truncate(h.total_len);
    }
    let set_ce = outer_ecn == ecn::CE;
    if set_ce && h.ecn() == ecn::NOT_ECT {
        return Verdict::Drop(DropReason::EcnCeOnNotEct);
    }
    let to = match t.lookup(h.dst) {
        Some(Hop::Endpoint(to)) => to,
        // The node's own tunnel address: the kernel's, which takes it as
        // its own (no forwarding, no TTL decrement), as from `tunl0` or
        // `vxlan.calico`. Nothing else from the underlay reaches the host
        // interface.
        Some(Hop::Host) => match t.host() {
            Some(host) => return Verdict::Deliver(host),
            None => return Verdict::Drop(DropReason::NotLocal),
        },
        _ => return Verdict::Drop(DropReason::NotLocal),
    };
    // A reply of a flow the kernel NATed goes back through the kernel,
    // which decrements its TTL as it forwards it.
    let via_kernel = through_kernel(t, false, &h, pkt.data());
    if via_kernel.is_none() && h.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExceeded);
    }
    if let Some(hdr) = pkt.data_mut().first_chunk_mut() {
        if set_ce {
            ipv4::set_ce(hdr);
        }
        if via_kernel.is_none() {
            ipv4::decrement_ttl(hdr);
        }
    }
    via_kernel.unwrap_or(Verdict::Deliver(to))
}
