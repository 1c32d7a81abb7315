//! Writing the outer headers in front of an inner packet.
//!
//! IP-in-IP as Linux `tunl0` sends it (RFC 2003): outer IPv4, protocol 4,
//! TTL and DF copied from the inner packet, DSCP 0, ECN per RFC 6040.
//!
//! VXLAN as Linux `vxlan.calico` sends it (RFC 7348): outer IPv4 (TTL 64,
//! DSCP 0, ECN per RFC 6040, DF clear), UDP with a per-flow source port and
//! a computed checksum, VXLAN header, inner Ethernet (remote VTEP MAC ←
//! local VTEP MAC, EtherType IPv4).

use super::{DropReason, Packet, State, Target, UdpChecksum, Verdict};
use crate::table::Tables;
use crate::wire::checksum::Sum;
use crate::wire::ipv4::{self, FLAG_DF, HEADER_LEN};
use crate::wire::vxlan::{self, ETH_LEN, ETHERTYPE_IPV4, OVERHEAD, UDP_LEN, VXLAN_LEN};

/// TTL of VXLAN's outer header: the kernel's default `ip_default_ttl`.
pub const VXLAN_TTL: u8 = 64;

/// Lowest UDP source port of VXLAN (Linux's default ephemeral range).
pub const SRC_PORT_MIN: u16 = 32768;
/// Highest UDP source port of VXLAN.
pub const SRC_PORT_MAX: u16 = 60999;

/// The fields of the inner header the outer one copies.
#[derive(Debug, Clone, Copy)]
pub struct Inner {
    pub tos: u8,
    pub ttl: u8,
    pub flags_frag: u16,
}

impl Inner {
    /// Reads them from a packet whose header was validated.
    pub fn of(data: &[u8]) -> Option<Inner> {
        let h: &[u8; HEADER_LEN] = data.first_chunk()?;
        Some(Inner {
            tos: h[ipv4::field::TOS],
            ttl: h[ipv4::field::TTL],
            flags_frag: u16::from_be_bytes([
                h[ipv4::field::FLAGS_FRAG],
                h[ipv4::field::FLAGS_FRAG + 1],
            ]),
        })
    }
}

/// Encapsulates the inner packet `pkt` for `target`.
#[inline]
pub fn encapsulate(t: &Tables, st: &mut State, pkt: &mut Packet, target: Target) -> Verdict {
    let Some(inner) = Inner::of(pkt.data()) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    match target {
        Target::Ipip { node } => {
            let Ok(total_len) = u16::try_from(pkt.len() + HEADER_LEN) else {
                return Verdict::Drop(DropReason::TooBig);
            };
            let mut h = [0u8; HEADER_LEN];
            let ident = st.next_ip_id();
            ipv4::emit(
                &mut h,
                &ipv4::Emit {
                    tos: ipv4::encap_ecn(inner.tos),
                    total_len,
                    ident,
                    flags_frag: inner.flags_frag & FLAG_DF,
                    ttl: inner.ttl,
                    proto: ipv4::proto::IPIP,
                    src: u32::from(t.local().ip),
                    dst: u32::from(node),
                },
            );
            match pkt.prepend(HEADER_LEN) {
                Some(front) => front.copy_from_slice(&h),
                None => return Verdict::Drop(DropReason::TooBig),
            }
        }
        Target::Vxlan {
            node,
            mac,
            src_port,
        } => {
            let Ok(total_len) = u16::try_from(pkt.len() + OVERHEAD) else {
                return Verdict::Drop(DropReason::TooBig);
            };
            let udp_len = total_len - HEADER_LEN as u16;
            let src = u32::from(t.local().ip);
            let dst = u32::from(node);
            let mut h = [0u8; OVERHEAD];
            // UDP (checksum filled below), VXLAN, inner Ethernet.
            const UDP: usize = HEADER_LEN;
            const VX: usize = UDP + UDP_LEN;
            const ETH: usize = VX + VXLAN_LEN;
            h[UDP..UDP + 2].copy_from_slice(&src_port.to_be_bytes());
            h[UDP + 2..UDP + 4].copy_from_slice(&t.vxlan().port.to_be_bytes());
            h[UDP + 4..UDP + 6].copy_from_slice(&udp_len.to_be_bytes());
            h[VX..VX + VXLAN_LEN].copy_from_slice(&vxlan::header(t.vxlan().vni));
            h[ETH..ETH + 6].copy_from_slice(&mac.0);
            h[ETH + 6..ETH + 12].copy_from_slice(&t.local().vtep_mac.0);
            h[ETH + 12..ETH + ETH_LEN].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let pseudo = Sum::new()
                .add_u32(src)
                .add_u32(dst)
                .add_u16(u16::from(ipv4::proto::UDP))
                .add_u16(udp_len);
            let csum = match st.udp_checksum() {
                // RFC 768: pseudo header + UDP header + payload; 0 is sent as 0xffff.
                UdpChecksum::Full => {
                    match pseudo.add_bytes(&h[UDP..]).add_bytes(pkt.data()).checksum() {
                        0 => 0xffff,
                        c => c,
                    }
                }
                UdpChecksum::Offload => pseudo.fold(),
            };
            h[UDP + 6..UDP + 8].copy_from_slice(&csum.to_be_bytes());
            if let Some(ip) = h.first_chunk_mut::<HEADER_LEN>() {
                ipv4::emit(
                    ip,
                    &ipv4::Emit {
                        tos: ipv4::encap_ecn(inner.tos),
                        total_len,
                        ident: st.next_ip_id(),
                        flags_frag: 0,
                        ttl: VXLAN_TTL,
                        proto: ipv4::proto::UDP,
                        src,
                        dst,
                    },
                );
            }
            match pkt.prepend(OVERHEAD) {
                Some(front) => front.copy_from_slice(&h),
                None => return Verdict::Drop(DropReason::TooBig),
            }
        }
        Target::Direct { .. } => {}
    }
    Verdict::Send(target)
}

/// Completes the UDP checksum of a VXLAN packet built with
/// [`UdpChecksum::Offload`] (outer IPv4 header without options first), for
/// an I/O path that turns out to have no offload after all.
pub fn finish_udp_checksum(outer: &mut [u8]) {
    let Some(h) = outer.first_chunk::<HEADER_LEN>() else {
        return;
    };
    let (src, dst) = (
        u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
    );
    let Some(udp) = outer.get_mut(HEADER_LEN..) else {
        return;
    };
    if udp.len() < UDP_LEN {
        return;
    }
    udp[6..8].copy_from_slice(&[0, 0]);
    let csum = Sum::new()
        .add_u32(src)
        .add_u32(dst)
        .add_u16(u16::from(ipv4::proto::UDP))
        .add_u16(udp.len() as u16)
        .add_bytes(udp)
        .checksum();
    let csum = if csum == 0 { 0xffff } else { csum };
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
}

/// The inner flow's hash: addresses and protocol, plus the ports for TCP,
/// UDP, UDP-Lite and SCTP packets that are not fragments (as the kernel's
/// flow dissector does).
#[inline]
pub fn flow_hash(h: &ipv4::Header, data: &[u8]) -> u32 {
    use ipv4::proto::{SCTP, TCP, UDP, UDPLITE};
    let ports = match h.proto {
        TCP | UDP | SCTP | UDPLITE if !h.is_fragment() => data
            .get(h.header_len..h.header_len + 4)
            .and_then(|p| p.first_chunk::<4>())
            .map_or(0, |p| u32::from_be_bytes(*p)),
        _ => 0,
    };
    // Two rounds of a 64-bit multiply-xorshift mix over the 5-tuple.
    let mut x = (u64::from(h.src) << 32 | u64::from(h.dst)) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= u64::from(ports) << 8 | u64::from(h.proto);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u32
}

/// Scales a flow hash into the source port range, as Linux's
/// `udp_flow_src_port` does: `min + hash × span / 2^32`.
#[inline]
pub fn src_port(hash: u32) -> u16 {
    let span = u64::from(SRC_PORT_MAX - SRC_PORT_MIN) + 1;
    SRC_PORT_MIN + ((u64::from(hash) * span) >> 32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn src_port_spans_the_range() {
        assert_eq!(src_port(0), SRC_PORT_MIN);
        assert_eq!(src_port(u32::MAX), SRC_PORT_MAX);
        assert_eq!(src_port(0x8000_0000), SRC_PORT_MIN + 14116);
    }
}
