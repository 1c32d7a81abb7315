//! The `virtio_net_hdr` that TUN devices with `IFF_VNET_HDR` and packet
//! sockets with `PACKET_VNET_HDR` put in front of each packet: how a TCP
//! super-packet (GSO) and a partial checksum (`CHECKSUM_PARTIAL`) cross
//! between the kernel and podwire without being cut up or completed.
//!
//! Fields (little-endian): flags, gso_type, hdr_len, gso_size, csum_start,
//! csum_offset. podwire never trusts the offsets it reads for anything but
//! a partial checksum to complete, and rebuilds every header it writes from
//! the packet itself ([`VnetHdr::tcp4_gso`]).

use super::checksum::Sum;

/// Length of the header.
pub const LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` holds only the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP datagrams of `gso_size` bytes of
/// payload each (the last may be shorter) behind one set of headers.
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the segments carry ECN (CWR on the first).
pub const GSO_ECN: u8 = 0x80;

/// Length of `struct virtio_net_hdr_v1_hash_tunnel` (Linux 6.17): the
/// header above (10 bytes), `num_buffers` (2), the hash report (8), and
/// the tunnel's `outer_th_offset` and `inner_nh_offset` (2 + 2). A TUN or
/// TAP device whose header size (`TUNSETVNETHDRSZ`) is this long parses
/// them on writes: GSO over a UDP tunnel.
pub const TNL_LEN: usize = 24;
/// `VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`: the outer UDP checksum holds the
/// pseudo-header sum, for the kernel to complete on every segment.
pub const F_UDP_TUNNEL_CSUM: u8 = 0x08;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`: inside an IPv4 UDP tunnel.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;

/// A parsed header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

fn le(b: &[u8; LEN], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

impl VnetHdr {
    /// Reads the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; LEN] = b.first_chunk()?;
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(b, 2),
            gso_size: le(b, 4),
            csum_start: le(b, 6),
            csum_offset: le(b, 8),
        })
    }

    /// Writes the header.
    pub fn write(&self, out: &mut [u8; LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// True for a TCP/IPv4 super-packet (ECN or not) with a segment size.
    pub fn is_tcp4_gso(&self) -> bool {
        self.gso_type & !GSO_ECN == GSO_TCPV4 && self.gso_size > 0
    }

    /// True when the checksum is partial.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The header of TCP/IPv4 super-packet `pkt` cut into `gso_size`-byte
    /// segments, its TCP checksum partial, with `l2` bytes of link header
    /// in front of `pkt` (14 on a packet socket, 0 on a TUN device).
    /// `None` unless `pkt` is IPv4 carrying TCP with sane header lengths.
    pub fn tcp4_gso(pkt: &[u8], l2: u16, gso_size: u16, ecn: bool) -> Option<VnetHdr> {
        let hl = tcp4_header_len(pkt)?;
        let ihl = u16::from(pkt[0] & 0x0f) * 4;
        Some(VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | if ecn { GSO_ECN } else { 0 },
            hdr_len: l2 + hl as u16,
            gso_size,
            csum_start: l2 + ihl,
            csum_offset: 16,
        })
    }
}

/// The 24-byte tunnel header ([`TNL_LEN`]) for `frame`, a VXLAN frame
/// around a TCP/IPv4 super-packet: Ethernet, outer IPv4 (its options
/// included), UDP, VXLAN, inner Ethernet, inner IPv4 and TCP, the inner TCP
/// checksum partial and the outer UDP checksum holding the pseudo-header
/// sum. The kernel cuts it into `gso_size`-byte segments, each with its
/// own outer and inner headers, and completes both checksums. `None`
/// unless the frame holds those headers (the inner packet not a fragment).
pub fn vxlan_tcp4_gso(frame: &[u8], gso_size: u16) -> Option<[u8; TNL_LEN]> {
    const ETH: usize = 14;
    let outer_ihl = usize::from(*frame.get(ETH)? & 0x0f) * 4;
    if *frame.get(ETH)? >> 4 != 4 || outer_ihl < 20 || *frame.get(ETH + 9)? != 17 {
        return None;
    }
    let outer_th = ETH + outer_ihl;
    // UDP (8), VXLAN (8), inner Ethernet (14).
    let inner_nh = outer_th + 30;
    let hl = tcp4_header_len(frame.get(inner_nh..)?)?;
    let inner_ihl = usize::from(frame[inner_nh] & 0x0f) * 4;
    let le = |v: usize| u16::try_from(v).ok().map(u16::to_le_bytes);
    let mut h = [0u8; TNL_LEN];
    h[0] = F_NEEDS_CSUM | F_UDP_TUNNEL_CSUM;
    h[1] = GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4;
    h[2..4].copy_from_slice(&le(inner_nh + hl)?);
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h[6..8].copy_from_slice(&le(inner_nh + inner_ihl)?);
    h[8..10].copy_from_slice(&16u16.to_le_bytes());
    // num_buffers, hash_value, hash_report, padding: zero.
    h[20..22].copy_from_slice(&le(outer_th)?);
    h[22..24].copy_from_slice(&le(inner_nh)?);
    Some(h)
}

/// IPv4 + TCP header length of `pkt`, if it is IPv4 carrying TCP, not a
/// fragment, with both headers inside it.
pub fn tcp4_header_len(pkt: &[u8]) -> Option<usize> {
    let first = *pkt.first()?;
    if first >> 4 != 4 || *pkt.get(9)? != 6 {
        return None;
    }
    // Not a fragment: MF clear, offset zero.
    if pkt.get(6)? & 0x3f != 0 || *pkt.get(7)? != 0 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let doff = usize::from(*pkt.get(ihl + 12)? >> 4) * 4;
    let hl = ihl + doff;
    (ihl >= 20 && doff >= 20 && hl <= pkt.len()).then_some(hl)
}

/// Completes a partial checksum in place: the one's complement sum from
/// `start` to the end of `pkt`, over the pseudo-header sum already at
/// `start + offset`. False (and nothing changed) when the offsets do not
/// fit in `pkt`.
pub fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start.saturating_add(offset);
    if start > pkt.len() || at.saturating_add(2) > pkt.len() {
        return false;
    }
    let sum = !Sum::new().add_bytes(&pkt[start..]).fold();
    pkt[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 (20 bytes) + TCP (20 bytes, ACK) + 4 payload bytes, from
    /// 10.0.0.1 to 10.0.0.2.
    fn tcp_packet(payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0,
            64,
            6,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        p.extend([
            0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff,
        ]);
        p.extend([0, 0, 0, 0]);
        p.extend(payload);
        p
    }

    #[test]
    fn header_round_trips_little_endian() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; LEN];
        h.write(&mut b);
        // 54 = 0x36, 1448 = 0x05a8, 34 = 0x22, 16 = 0x10, low byte first.
        assert_eq!(b, [1, 0x81, 0x36, 0, 0xa8, 0x05, 0x22, 0, 0x10, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert!(h.is_tcp4_gso() && h.needs_csum());
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn gso_header_from_the_packet() {
        let p = tcp_packet(&[1, 2, 3, 4]);
        let h = VnetHdr::tcp4_gso(&p, 14, 1448, false).unwrap();
        assert_eq!(
            (h.hdr_len, h.csum_start, h.csum_offset, h.gso_type),
            (54, 34, 16, GSO_TCPV4)
        );
        let h = VnetHdr::tcp4_gso(&p, 0, 1448, true).unwrap();
        assert_eq!((h.hdr_len, h.csum_start, h.gso_type), (40, 20, 0x81));
        // Not TCP, a fragment, or a TCP header past the end: none.
        let mut udp = p.clone();
        udp[9] = 17;
        assert_eq!(VnetHdr::tcp4_gso(&udp, 0, 1448, false), None);
        let mut frag = p.clone();
        frag[6] |= 0x20;
        assert_eq!(VnetHdr::tcp4_gso(&frag, 0, 1448, false), None);
        assert_eq!(VnetHdr::tcp4_gso(&p[..30], 0, 1448, false), None);
    }

    #[test]
    fn tunnel_header_of_a_vxlan_frame() {
        // Ethernet (14) + outer IPv4 (20, UDP) + UDP (8) + VXLAN (8) +
        // inner Ethernet (14) + the inner TCP packet (20 + 20 + 4).
        let inner = tcp_packet(&[1, 2, 3, 4]);
        let mut f = vec![0u8; 64];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f.extend(&inner);
        let h = vxlan_tcp4_gso(&f, 1398).unwrap();
        // As Linux 6.17's uapi lays it out (little-endian): flags NEEDS_CSUM
        // | UDP_TUNNEL_CSUM, gso_type TCPV4 | UDP_TUNNEL_IPV4, hdr_len 104
        // (64 + 40), gso_size 1398 (0x0576), csum_start 84 (inner TCP),
        // csum_offset 16; num_buffers and the hash report zero;
        // outer_th_offset 34 (the outer UDP), inner_nh_offset 64.
        assert_eq!(
            h,
            [
                0x09, 0x21, 104, 0, 0x76, 0x05, 84, 0, 16, 0, //
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
                34, 0, 64, 0
            ]
        );
        // Outer IPv4 options move every offset past them.
        let mut opt = f.clone();
        opt[14] = 0x46;
        opt.splice(34..34, [1, 1, 1, 1]);
        let h = vxlan_tcp4_gso(&opt, 1398).unwrap();
        assert_eq!((h[2], h[6], h[20], h[22]), (108, 88, 38, 68));
        // Not UDP outside, not TCP inside, an inner fragment, or cut short.
        let mut tcp = f.clone();
        tcp[23] = 6;
        assert_eq!(vxlan_tcp4_gso(&tcp, 1398), None);
        let mut udp = f.clone();
        udp[64 + 9] = 17;
        assert_eq!(vxlan_tcp4_gso(&udp, 1398), None);
        let mut frag = f.clone();
        frag[64 + 6] |= 0x20;
        assert_eq!(vxlan_tcp4_gso(&frag, 1398), None);
        assert_eq!(vxlan_tcp4_gso(&f[..90], 1398), None);
        assert_eq!(vxlan_tcp4_gso(&f[..20], 1398), None);
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut p = tcp_packet(&[1, 2, 3, 4]);
        // Pseudo-header sum (RFC 793): 10.0.0.1 + 10.0.0.2 + protocol 6 +
        // TCP length 24 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0006 +
        // 0x0018 = 0x1421, left in the checksum field, not complemented.
        p[36..38].copy_from_slice(&0x1421u16.to_be_bytes());
        assert!(complete_checksum(&mut p, 20, 16));
        // The TCP header and payload words: 0x3039 + 0x0050 + 0x0000 +
        // 0x0001 + 0 + 0 + 0x5010 + 0xffff + 0x1421 (the field) + 0 +
        // 0x0102 + 0x0304 = 0x198c0 -> 0x98c1, complemented 0x673e: the
        // RFC 1071 checksum of pseudo-header and segment with a zero field.
        assert_eq!(&p[36..38], &[0x67, 0x3e]);
        assert!(!complete_checksum(&mut p, 20, 40));
        assert!(!complete_checksum(&mut p, 60, 0));
    }
}
