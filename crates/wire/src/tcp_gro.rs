//! Userspace GRO for TUN writes: consecutive TCP/IPv4 segments of one flow
//! become one super-packet, written with a `virtio_net_hdr` (GSO TCPV4,
//! partial checksum) in front, so the pod's kernel takes one write instead
//! of one per segment. The payloads are not copied: the caller writes the
//! header block this module builds, then each segment's payload, as one
//! gathered write.
//!
//! Segments merge (as Linux GRO and wireguard-go's merge them) when they
//! have: IPv4 without options and not fragmented; the same addresses, ports,
//! TOS, TTL and DF; the same TCP header length and options; ACK and no
//! other flag but PSH, which may only be on the last; contiguous sequence
//! numbers; payloads all of the first one's size but the last, which may be
//! shorter; a valid TCP checksum (merged payloads are not checksummed again:
//! the kernel trusts a partial checksum); 65535 bytes in all at most.

use super::checksum::Sum;
use super::vnet::{self, VnetHdr};

/// Length of the `virtio_net_hdr` a TUN device with `IFF_VNET_HDR` expects.
pub const VNET_HDR_LEN: usize = vnet::LEN;
/// Room for the header block: virtio header, IPv4 (20), TCP (up to 60).
pub const MAX_HEADER_BLOCK: usize = VNET_HDR_LEN + 20 + 60;

pub const TCP_FLAG_ACK: u8 = 0x10;
pub const TCP_FLAG_PSH: u8 = 0x08;

/// The parts of a TCP/IPv4 segment that decide merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// IPv4 + TCP header length (payload offset).
    pub header_len: usize,
    pub tcp_header_len: usize,
    pub payload_len: usize,
    pub seq: u32,
    pub psh: bool,
}

/// Reads `pkt` as a mergeable TCP/IPv4 segment, or `None`.
pub fn segment(pkt: &[u8]) -> Option<Segment> {
    let ip: &[u8; 20] = pkt.first_chunk()?;
    if ip[0] != 0x45 || ip[9] != 6 {
        return None;
    }
    // Not a fragment: MF clear, offset zero.
    if ip[6] & 0x3f != 0 || ip[7] != 0 {
        return None;
    }
    if usize::from(u16::from_be_bytes([ip[2], ip[3]])) != pkt.len() {
        return None;
    }
    let tcp = pkt.get(20..40)?;
    let tcp_header_len = usize::from(tcp[12] >> 4) * 4;
    if !(20..=60).contains(&tcp_header_len) || pkt.len() < 20 + tcp_header_len {
        return None;
    }
    let flags = tcp[13];
    if flags & !TCP_FLAG_PSH != TCP_FLAG_ACK {
        return None;
    }
    let payload_len = pkt.len() - 20 - tcp_header_len;
    if payload_len == 0 {
        return None;
    }
    Some(Segment {
        header_len: 20 + tcp_header_len,
        tcp_header_len,
        payload_len,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        psh: flags & TCP_FLAG_PSH != 0,
    })
}

/// True when `pkt`'s TCP checksum verifies.
pub fn tcp_checksum_valid(pkt: &[u8]) -> bool {
    let (Some(ip), Some(tcp)) = (pkt.get(..20), pkt.get(20..)) else {
        return false;
    };
    Sum::new()
        .add_bytes(&ip[12..20])
        .add_u16(6)
        .add_u16(tcp.len() as u16)
        .add_bytes(tcp)
        .fold()
        == 0xffff
}

/// True when `next` (segment `s`) may follow a run that starts with `first`
/// (segment `f`) and has `merged` payload bytes so far.
pub fn may_follow(
    first: &[u8],
    f: &Segment,
    merged: usize,
    next: &[u8],
    s: &Segment,
    last_len: usize,
) -> bool {
    // Same flow and IP fields: addresses (12..20), TOS, TTL, DF.
    let same_ip = first[1] == next[1] && first[8] == next[8] && first[6] & 0x40 == next[6] & 0x40;
    let same_flow = first.get(12..24) == next.get(12..24);
    let same_tcp = f.tcp_header_len == s.tcp_header_len
        // Window and options as the first segment's.
        && first.get(34..36) == next.get(34..36)
        && first.get(40..f.header_len) == next.get(40..s.header_len);
    same_ip
        && same_flow
        && same_tcp
        // The run so far has no short segment and no PSH before this one.
        && last_len == f.payload_len
        && s.payload_len <= f.payload_len
        && s.seq == f.seq.wrapping_add(merged as u32)
        && f.header_len + merged + s.payload_len <= 65_535
}

/// Writes the header block of a super-packet made of `first` followed by
/// `merged` payload bytes in all (the first segment's included), PSH if
/// `psh`: the virtio header, then `first`'s IPv4 and TCP headers with the
/// total length, IPv4 checksum, flags and partial TCP checksum of the whole.
/// Returns the block's length.
pub fn header_block(
    first: &[u8],
    f: &Segment,
    merged: usize,
    psh: bool,
    out: &mut [u8; MAX_HEADER_BLOCK],
) -> usize {
    let len = VNET_HDR_LEN + f.header_len;
    let total = f.header_len + merged;
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: f.header_len as u16,
        gso_size: f.payload_len as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    if let Some(b) = out.first_chunk_mut() {
        hdr.write(b);
    }
    let h = &mut out[VNET_HDR_LEN..len];
    h.copy_from_slice(&first[..f.header_len]);
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    super::ipv4::refresh_checksum(&mut h[..20]);
    if psh {
        h[20 + 13] |= TCP_FLAG_PSH;
    }
    // Partial checksum (CHECKSUM_PARTIAL): the folded pseudo-header sum,
    // not complemented; the kernel completes it per segment.
    let pseudo = Sum::new()
        .add_bytes(&h[12..20])
        .add_u16(6)
        .add_u16((total - 20) as u16)
        .fold();
    h[20 + 16..20 + 18].copy_from_slice(&pseudo.to_be_bytes());
    len
}

/// A virtio header for a packet written as it is (no GSO, checksum complete).
pub const PLAIN_VNET_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, payload: usize, flags: u8) -> Vec<u8> {
        let total = 40 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 63;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 2, 36, 68]);
        p[16..20].copy_from_slice(&[10, 2, 169, 138]);
        crate::ipv4::refresh_checksum(&mut p[..20]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[32] = 0x50;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = (i as u32 ^ seq) as u8;
        }
        let c = Sum::new()
            .add_bytes(&p[12..20])
            .add_u16(6)
            .add_u16((total - 20) as u16)
            .add_bytes(&p[20..])
            .checksum();
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn segments_and_merge_rules() {
        let a = seg(1000, 100, TCP_FLAG_ACK);
        let fa = segment(&a).unwrap();
        assert_eq!(
            (fa.header_len, fa.payload_len, fa.seq, fa.psh),
            (40, 100, 1000, false)
        );
        assert!(tcp_checksum_valid(&a));
        let b = seg(1100, 100, TCP_FLAG_ACK | TCP_FLAG_PSH);
        let fb = segment(&b).unwrap();
        assert!(may_follow(&a, &fa, 100, &b, &fb, 100));
        // Out of sequence, or after a short segment, or bigger: no.
        let gap = seg(1200, 100, TCP_FLAG_ACK);
        assert!(!may_follow(
            &a,
            &fa,
            100,
            &gap,
            &segment(&gap).unwrap(),
            100
        ));
        assert!(!may_follow(&a, &fa, 100, &b, &fb, 50));
        let big = seg(1100, 101, TCP_FLAG_ACK);
        assert!(!may_follow(
            &a,
            &fa,
            100,
            &big,
            &segment(&big).unwrap(),
            100
        ));
        // Not mergeable at all: SYN, FIN, no payload, a fragment, options.
        assert!(segment(&seg(1, 10, 0x02)).is_none());
        assert!(segment(&seg(1, 10, TCP_FLAG_ACK | 0x01)).is_none());
        assert!(segment(&seg(1, 0, TCP_FLAG_ACK)).is_none());
        let mut frag = seg(1, 10, TCP_FLAG_ACK);
        frag[6] = 0x20;
        assert!(segment(&frag).is_none());
        let mut bad = a.clone();
        bad[45] ^= 1;
        assert!(!tcp_checksum_valid(&bad));
    }

    #[test]
    fn header_block_of_a_merged_pair() {
        let a = seg(1000, 100, TCP_FLAG_ACK);
        let fa = segment(&a).unwrap();
        let mut out = [0u8; MAX_HEADER_BLOCK];
        let n = header_block(&a, &fa, 200, true, &mut out);
        assert_eq!(n, 50);
        // virtio: NEEDS_CSUM, TCPV4, hdr_len 40, gso_size 100, csum 20/16.
        assert_eq!(out[..10], [1, 1, 40, 0, 100, 0, 20, 0, 16, 0]);
        let ip = &out[10..30];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 240);
        assert!(crate::checksum::verifies(ip));
        assert_eq!(out[10 + 33] & TCP_FLAG_PSH, TCP_FLAG_PSH);
        // Partial checksum: the pseudo header of 220 TCP bytes, folded.
        let want = Sum::new()
            .add_bytes(&a[12..20])
            .add_u16(6)
            .add_u16(220)
            .fold();
        assert_eq!(out[10 + 36..10 + 38], want.to_be_bytes());
    }
}
