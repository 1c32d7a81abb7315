//! Tests of the framing around packets (`l2`) and of the merge policy
//! (`gro`). Header bytes are derived in the comments from the virtio spec
//! (`struct virtio_net_hdr`, little-endian: flags, gso_type, hdr_len,
//! gso_size, csum_start, csum_offset) and IEEE 802.3 (destination MAC,
//! source MAC, EtherType 0x0800 for IPv4).

use std::net::Ipv4Addr;

use super::gro::{self, MAX_MERGE};
use super::l2::{self, FromTun, Gso, Whole};
use super::{DropReason, HEADROOM, Packet};
use crate::table::{Endpoint, LocalNode, NextHops, Tables, TablesBuilder, Underlay, Via};
use crate::wire::MacAddr;
use crate::wire::checksum::Sum;
use crate::wire::tcp_gro::{MAX_HEADER_BLOCK, TCP_FLAG_ACK, TCP_FLAG_PSH};
use crate::wire::vnet::{self, VnetHdr};

const NODE2: Ipv4Addr = Ipv4Addr::new(192, 168, 33, 57);
const OURS: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x55]);
const THEIRS: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x57]);

/// Node 1 with a pod at 10.2.36.68, a direct route to node 2's block, a
/// VXLAN route to another block, and (unless `bare`) the underlay's MAC and
/// node 2's.
fn tables(bare: bool) -> Tables {
    let mut b = TablesBuilder::new(
        LocalNode {
            name: "k8s-node1".into(),
            ip: Ipv4Addr::new(192, 168, 33, 55),
            subnet: "192.168.33.0/24".parse().unwrap(),
            vtep_mac: MacAddr([0x66, 0x8c, 0x73, 0x5a, 0x90, 0x99]),
        },
        Underlay {
            name: "eth0".into(),
            mtu: 1500,
        },
    );
    let id = b.endpoint(Endpoint {
        interface: "cali1".into(),
        name: "w1".into(),
        ips: vec![[10, 2, 36, 68].into()],
        mtu: 1500,
    });
    b.route("10.2.36.68/32".parse().unwrap(), Via::Endpoint(id))
        .route(
            "10.2.169.128/26".parse().unwrap(),
            Via::Direct { gw: NODE2 },
        )
        .route(
            "10.9.1.0/26".parse().unwrap(),
            Via::Vxlan {
                gw: [10, 9, 1, 1].into(),
            },
        );
    let t = b.build().unwrap();
    if bare {
        t
    } else {
        t.with_next_hops(NextHops::new(OURS, [(NODE2, THEIRS)]))
    }
}

/// An IPv4/TCP packet of `len` bytes from 10.2.36.68 to `dst`, DF, TTL 64,
/// with a valid header checksum and zeros for TCP checksum and payload.
fn tcp(dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 2, 36, 68]);
    p[16..20].copy_from_slice(&dst);
    crate::wire::ipv4::refresh_checksum(&mut p[..20]);
    p[20..24].copy_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
    p[32] = 0x50;
    p[33] = TCP_FLAG_ACK;
    p
}

fn buffer(p: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + p.len()];
    buf[HEADROOM..].copy_from_slice(p);
    buf
}

#[test]
fn direct_frame_golden_without_and_with_a_virtio_header() {
    let t = tables(false);
    let p = tcp([10, 2, 169, 138], 60);
    // Without a virtio header: dst 02:00:00:00:00:57, src 02:00:00:00:00:55, 08 00.
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    l2::frame_direct(&t, &mut pkt, NODE2, None, false).unwrap();
    assert_eq!(
        pkt.data()[..14],
        [2, 0, 0, 0, 0, 0x57, 2, 0, 0, 0, 0, 0x55, 0x08, 0x00]
    );
    assert_eq!(pkt.data()[14..], p[..]);
    // With one, for a packet that is not a super-packet: ten zero bytes first.
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    l2::frame_direct(&t, &mut pkt, NODE2, None, true).unwrap();
    assert_eq!(pkt.data()[..10], [0; 10]);
    assert_eq!(
        pkt.data()[10..24],
        [2, 0, 0, 0, 0, 0x57, 2, 0, 0, 0, 0, 0x55, 8, 0]
    );
    assert_eq!(pkt.len(), 10 + 14 + 60);
    // A super-packet of 1448-byte segments, ECN: flags NEEDS_CSUM (01),
    // gso_type TCPV4|ECN (0x81), hdr_len 14 + 20 + 20 = 54 (36 00),
    // gso_size 1448 = 0x05a8 (a8 05), csum_start 14 + 20 = 34 (22 00),
    // csum_offset 16 (10 00).
    let big = tcp([10, 2, 169, 138], 4000);
    let mut buf = buffer(&big);
    let mut pkt = Packet::new(&mut buf, HEADROOM, big.len());
    let gso = Gso {
        size: 1448,
        ecn: true,
    };
    l2::frame_direct(&t, &mut pkt, NODE2, Some(gso), true).unwrap();
    assert_eq!(
        pkt.data()[..10],
        [0x01, 0x81, 0x36, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00]
    );
    assert_eq!(pkt.data()[24..], big[..]);
}

#[test]
fn direct_frame_drops_say_why() {
    let p = tcp([10, 2, 169, 138], 60);
    let frame = |t: &Tables, gw, gso, vnet, headroom| {
        let mut buf = vec![0u8; headroom + p.len()];
        buf[headroom..].copy_from_slice(&p);
        let mut pkt = Packet::new(&mut buf, headroom, p.len());
        l2::frame_direct(t, &mut pkt, gw, gso, vnet)
    };
    let gso = Some(Gso {
        size: 1448,
        ecn: false,
    });
    let t = tables(false);
    assert_eq!(
        frame(&tables(true), NODE2, None, false, HEADROOM),
        Err(DropReason::NoUnderlay)
    );
    assert_eq!(
        frame(&t, Ipv4Addr::new(192, 168, 33, 53), None, false, HEADROOM),
        Err(DropReason::NoNeighbour)
    );
    assert_eq!(
        frame(&t, NODE2, None, false, 13),
        Err(DropReason::NoHeadroom)
    );
    assert_eq!(
        frame(&t, NODE2, None, true, 23),
        Err(DropReason::NoHeadroom)
    );
    assert_eq!(frame(&t, NODE2, None, true, 24), Ok(()));
    assert_eq!(
        frame(&t, NODE2, gso, false, HEADROOM),
        Err(DropReason::UnsupportedGso)
    );
}

#[test]
fn unframe_takes_back_what_frame_wrote() {
    let t = tables(false);
    let p = tcp([10, 2, 36, 68], 60);
    for vnet in [false, true] {
        let mut buf = buffer(&p);
        let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
        l2::frame_direct(&t, &mut pkt, NODE2, None, vnet).unwrap();
        let (start, len) = (pkt.offset(), pkt.len());
        let mut back = Packet::new(&mut buf, start, len);
        assert_eq!(l2::unframe_direct(&mut back, vnet), Ok(None));
        assert_eq!(back.data(), &p[..]);
    }
    // A super-packet comes back with its segment size.
    let mut frame = vec![0u8; 10 + 14 + 4000];
    VnetHdr::tcp4_gso(&tcp([10, 2, 36, 68], 4000), 14, 1448, false)
        .unwrap()
        .write(frame.first_chunk_mut().unwrap());
    frame[24..].copy_from_slice(&tcp([10, 2, 36, 68], 4000));
    let mut pkt = Packet::new(&mut frame, 0, 10 + 14 + 4000);
    assert_eq!(
        l2::unframe_direct(&mut pkt, true),
        Ok(Some(Gso {
            size: 1448,
            ecn: false
        }))
    );
    assert_eq!(pkt.len(), 4000);
    // A UDP super-packet (gso_type 5, UDP_L4) cannot be delivered whole.
    frame[1] = 5;
    let mut pkt = Packet::new(&mut frame, 0, 10 + 14 + 4000);
    assert_eq!(
        l2::unframe_direct(&mut pkt, true),
        Err(DropReason::UnsupportedGso)
    );
    // Shorter than a virtio header, or than Ethernet after it.
    let mut short = [0u8; 20];
    assert_eq!(
        l2::unframe_direct(&mut Packet::new(&mut short, 0, 9), true),
        Err(DropReason::Malformed)
    );
    assert_eq!(
        l2::unframe_direct(&mut Packet::new(&mut short, 0, 20), true),
        Err(DropReason::Malformed)
    );
}

#[test]
fn tun_reads_are_completed_kept_whole_or_cut() {
    let t = tables(false);
    let run = |p: &[u8], hdr: &VnetHdr, direct: bool| {
        let mut buf = buffer(p);
        let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
        let whole = Whole {
            direct,
            vxlan: true,
            ipip: true,
        };
        let r = l2::from_tun(&t, hdr, &mut pkt, whole);
        (r, pkt.data().to_vec())
    };
    // One packet with a partial TCP checksum: completed (RFC 793's sum over
    // the pseudo-header and the segment, checked independently below).
    let mut p = tcp([10, 2, 169, 138], 60);
    let pseudo = Sum::new()
        .add_bytes(&p[12..20])
        .add_u16(6)
        .add_u16(40)
        .fold();
    p[36..38].copy_from_slice(&pseudo.to_be_bytes());
    let partial = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    let (r, out) = run(&p, &partial, true);
    assert_eq!(r, Ok(FromTun::Packet));
    let full = Sum::new()
        .add_bytes(&out[12..20])
        .add_u16(6)
        .add_u16(40)
        .add_bytes(&out[20..]);
    assert_eq!(full.checksum(), 0, "the completed checksum verifies");
    // A checksum place outside the packet is malformed.
    let bad = VnetHdr {
        csum_start: 58,
        ..partial
    };
    assert_eq!(run(&p, &bad, true).0, Err(DropReason::Malformed));
    // Super-packets of 1448-byte segments (1488 bytes on the wire).
    let gso = |dst| {
        let p = tcp(dst, 4000);
        (VnetHdr::tcp4_gso(&p, 0, 1448, false).unwrap(), p)
    };
    let whole = Ok(FromTun::Whole {
        gso: Gso {
            size: 1448,
            ecn: false,
        },
        segment: 1488,
    });
    let (h, p) = gso([10, 2, 36, 68]);
    assert_eq!(run(&p, &h, false).0, whole, "to a local pod: whole");
    let (h, p) = gso([10, 2, 169, 138]);
    assert_eq!(run(&p, &h, true).0, whole, "direct, the socket takes it");
    assert_eq!(
        run(&p, &h, false).0,
        Ok(FromTun::Split),
        "the socket does not"
    );
    let (h, p) = gso([10, 9, 1, 7]);
    assert_eq!(
        run(&p, &h, true).0,
        Ok(FromTun::Split),
        "VXLAN without a neighbour: cut"
    );
    // Segments past the direct MTU (1500): cut.
    let p = tcp([10, 2, 169, 138], 4000);
    let h = VnetHdr::tcp4_gso(&p, 0, 1461, false).unwrap();
    assert_eq!(run(&p, &h, true).0, Ok(FromTun::Split));
}

#[test]
fn a_whole_super_packet_for_a_pod_gets_its_virtio_header() {
    let p = tcp([10, 2, 36, 68], 4000);
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    let gso = Gso {
        size: 1448,
        ecn: false,
    };
    l2::to_tun_whole(&mut pkt, gso).unwrap();
    // On a TUN device there is no link header: hdr_len 40 (28 00),
    // csum_start 20 (14 00).
    assert_eq!(
        pkt.data()[..10],
        [0x01, 0x01, 0x28, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00]
    );
    assert_eq!(pkt.data()[10..], p[..]);
    let mut tiny = buffer(&p);
    let mut pkt = Packet::new(&mut tiny[HEADROOM - 9..], 9, p.len());
    assert_eq!(l2::to_tun_whole(&mut pkt, gso), Err(DropReason::NoHeadroom));
}

/// A TCP segment of `payload` bytes with sequence number `seq`, valid
/// checksums (RFC 1071 over the pseudo-header and segment).
fn segment(seq: u32, payload: usize, flags: u8) -> Vec<u8> {
    let mut p = tcp([10, 2, 36, 68], 40 + payload);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[33] = flags;
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i as u32 ^ seq) as u8;
    }
    let c = Sum::new()
        .add_bytes(&p[12..20])
        .add_u16(6)
        .add_u16((20 + payload) as u16)
        .add_bytes(&p[20..])
        .checksum();
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn gro_merges_a_flow_in_order_and_stops_where_it_must() {
    let mut block = [0u8; MAX_HEADER_BLOCK];
    let plan = |segs: &[Vec<u8>], block: &mut [u8; MAX_HEADER_BLOCK]| {
        gro::plan(&segs[0], segs[1..].iter().map(|s| s.as_slice()), block)
    };
    // Three in a row: one write of the block (10 + 40 bytes) and payloads.
    let run = [
        segment(1000, 100, TCP_FLAG_ACK),
        segment(1100, 100, TCP_FLAG_ACK),
        segment(1200, 60, TCP_FLAG_ACK | TCP_FLAG_PSH),
        segment(1260, 100, TCP_FLAG_ACK),
    ];
    let m = plan(&run, &mut block);
    assert_eq!(
        m,
        gro::Merge {
            count: 3,
            block_len: 50
        },
        "stops after the PSH segment"
    );
    // The block's IPv4 total length is 40 + 260 = 300 (01 2c).
    assert_eq!(block[10 + 2..10 + 4], [0x01, 0x2c]);
    assert_eq!(gro::payload(&run[1]), &run[1][40..]);
    // A gap in the sequence: alone.
    let gap = [
        segment(1000, 100, TCP_FLAG_ACK),
        segment(1200, 100, TCP_FLAG_ACK),
    ];
    assert_eq!(
        plan(&gap, &mut block),
        gro::Merge {
            count: 1,
            block_len: 0
        }
    );
    // A bad checksum in the second: alone.
    let mut bad = [
        segment(1000, 100, TCP_FLAG_ACK),
        segment(1100, 100, TCP_FLAG_ACK),
    ];
    bad[1][50] ^= 1;
    assert_eq!(plan(&bad, &mut block).count, 1);
    // Not TCP: alone.
    let mut udp = [
        segment(1000, 100, TCP_FLAG_ACK),
        segment(1100, 100, TCP_FLAG_ACK),
    ];
    udp[0][9] = 17;
    assert_eq!(plan(&udp, &mut block).count, 1);
    // At most MAX_MERGE.
    let many: Vec<Vec<u8>> = (0..MAX_MERGE as u32 + 5)
        .map(|i| segment(1000 + 100 * i, 100, TCP_FLAG_ACK))
        .collect();
    assert_eq!(plan(&many, &mut block).count, MAX_MERGE);
}

#[test]
fn a_vxlan_super_packet_is_framed_for_the_tunnel_tap() {
    // What egress makes of a 4000-byte super-packet for VXLAN: outer IPv4
    // (192.168.33.55 -> .57, UDP, TTL 64, total 4050), UDP (to 4789,
    // length 4030), VXLAN (VNI 4096), inner Ethernet, the packet.
    let inner = tcp([10, 2, 169, 138], 4000);
    let mut p = vec![0u8; 50];
    p[..20].copy_from_slice(&[
        0x45, 0, 0x0f, 0xd2, 0, 7, 0, 0, 64, 17, 0, 0, 192, 168, 33, 55, 192, 168, 33, 57,
    ]);
    crate::wire::ipv4::refresh_checksum(&mut p[..20]);
    p[20..28].copy_from_slice(&[0x9c, 0x41, 0x12, 0xb5, 0x0f, 0xbe, 0xaa, 0xbb]);
    p[28..36].copy_from_slice(&[0x08, 0, 0, 0, 0, 0x10, 0, 0]);
    p[48..50].copy_from_slice(&[0x08, 0x00]);
    p.extend(&inner);
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    let tap = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    let gso = Gso {
        size: 1398,
        ecn: false,
    };
    let hdr = l2::frame_tunnel(&mut pkt, tap, Some(gso)).unwrap();
    let f = pkt.data();
    assert_eq!(f.len(), 14 + 4050);
    // Ethernet to the TAP's own MAC (from it too), IPv4.
    assert_eq!(f[..6], tap.0);
    assert_eq!(f[6..12], tap.0);
    assert_eq!(f[12..14], [0x08, 0x00]);
    // TTL 65 (the kernel forwards it out at 64), the header checksum
    // recomputed; the rest of the header unchanged.
    assert_eq!(f[14 + 8], 65);
    assert!(crate::wire::checksum::verifies(&f[14..34]));
    assert_eq!(f[14..22], p[..8]);
    assert_eq!(f[14 + 12..34], p[12..20]);
    // The UDP checksum: RFC 768's pseudo-header sum, not complemented
    // (what the kernel completes per segment): c0a8 + 2137 + c0a8 + 2139
    // + 0011 + 0fbe = 0x1d38f -> 0xd390.
    assert_eq!(f[34 + 6..34 + 8], [0xd3, 0x90]);
    assert_eq!(f[34..40], p[20..26]);
    assert_eq!(f[42..], p[28..]);
    // The tunnel header: NEEDS_CSUM | UDP_TUNNEL_CSUM, TCPV4 |
    // UDP_TUNNEL_IPV4, hdr_len 104, gso_size 1398, csum_start 84,
    // csum_offset 16, outer_th_offset 34, inner_nh_offset 64.
    assert_eq!(
        hdr,
        [
            0x09, 0x21, 104, 0, 0x76, 0x05, 84, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 34, 0, 64,
            0
        ]
    );
    // Not an outer IPv4 UDP packet: malformed; no room for Ethernet: none.
    let mut tcp_outer = p.clone();
    tcp_outer[9] = 6;
    let mut buf = buffer(&tcp_outer);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    assert_eq!(
        l2::frame_tunnel(&mut pkt, tap, Some(gso)),
        Err(DropReason::Malformed)
    );
    let mut buf = p.clone();
    let mut pkt = Packet::new(&mut buf, 0, p.len());
    assert_eq!(
        l2::frame_tunnel(&mut pkt, tap, Some(gso)),
        Err(DropReason::NoHeadroom)
    );
}

#[test]
fn one_vxlan_packet_is_framed_for_the_tunnel_tap_with_its_udp_checksum_partial() {
    let inner = tcp([10, 2, 169, 138], 100);
    let mut p = vec![0u8; 50];
    p[..20].copy_from_slice(&[
        0x45, 0, 0, 150, 0, 7, 0, 0, 64, 17, 0, 0, 192, 168, 33, 55, 192, 168, 33, 57,
    ]);
    p[20..28].copy_from_slice(&[0x9c, 0x41, 0x12, 0xb5, 0, 130, 0xaa, 0xbb]);
    p.extend(&inner);
    assert!(l2::carries_tcp_data(&p), "60 bytes of TCP data");
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    let tap = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    let hdr = l2::frame_tunnel(&mut pkt, tap, None).unwrap();
    // NEEDS_CSUM, no GSO, hdr_len 42, csum_start 34 (the outer UDP),
    // csum_offset 6; no tunnel offsets.
    let mut want = [0u8; 24];
    want[..10].copy_from_slice(&[0x01, 0, 42, 0, 0, 0, 34, 0, 6, 0]);
    assert_eq!(hdr, want);
    assert_eq!(pkt.data()[14 + 8], 65);
    // A pure ACK (no data), or not TCP, stays on the UDP path.
    let ack = [&p[..50], &tcp([10, 2, 169, 138], 40)[..]].concat();
    assert!(!l2::carries_tcp_data(&ack));
    let mut udp = p.clone();
    udp[50 + 9] = 17;
    assert!(!l2::carries_tcp_data(&udp));
    assert!(!l2::carries_tcp_data(&p[..60]));
}

#[test]
fn ipip_packets_are_framed_for_the_ipip_tunnel_tun() {
    // RFC 2003's outer header as egress wrote it: 192.168.33.55 ->
    // 192.168.33.57, protocol 4, TTL 63 (the inner's after its decrement),
    // DF, around a 4000-byte TCP super-packet.
    let inner = tcp([10, 3, 1, 5], 4000);
    let mut p = vec![
        0x45, 0, 0x0f, 0xb4, 0, 9, 0x40, 0, 63, 4, 0, 0, 192, 168, 33, 55, 192, 168, 33, 57,
    ];
    let c = crate::wire::checksum::checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend(&inner);
    assert!(l2::carries_tcp_data(&p), "3960 bytes of TCP data");
    let gso = Gso {
        size: 1440,
        ecn: false,
    };
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    let hdr = l2::frame_ipip_tun(&mut pkt, Some(gso)).unwrap();
    // TCPv4 GSO with a partial checksum at the inner TCP header: csum_start
    // 40 (outer + inner IPv4), offset 16, hdr_len 60 (through TCP).
    let mut want = [0u8; vnet::LEN];
    want.copy_from_slice(&[0x01, 0x01, 60, 0, 0xa0, 0x05, 40, 0, 16, 0]);
    let mut got = [0u8; vnet::LEN];
    hdr.write(&mut got);
    assert_eq!(got, want);
    // The outer TTL one more (the kernel forwards it), the checksum good,
    // nothing else changed; nothing in front of it (an L3 TUN).
    let out = pkt.data();
    assert_eq!(out.len(), p.len());
    assert_eq!(out[8], 64);
    assert!(crate::wire::checksum::verifies(&out[..20]));
    assert_eq!(out[..8], p[..8]);
    assert_eq!(out[9..10], p[9..10]);
    assert_eq!(out[12..], p[12..]);
    // One packet: a header of zeros.
    let mut buf = buffer(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    assert_eq!(l2::frame_ipip_tun(&mut pkt, None), Ok(VnetHdr::default()));
    // Not IPIP, or options on the outer header: refused.
    let mut udp = p.clone();
    udp[9] = 17;
    let mut buf = buffer(&udp);
    let mut pkt = Packet::new(&mut buf, HEADROOM, udp.len());
    assert_eq!(
        l2::frame_ipip_tun(&mut pkt, Some(gso)),
        Err(DropReason::Malformed)
    );
    let mut opts = p.clone();
    opts[0] = 0x46;
    let mut buf = buffer(&opts);
    let mut pkt = Packet::new(&mut buf, HEADROOM, opts.len());
    assert_eq!(
        l2::frame_ipip_tun(&mut pkt, None),
        Err(DropReason::Malformed)
    );
    // A pure ACK inside IPIP carries no data.
    let ack = [&p[..20], &tcp([10, 3, 1, 5], 40)[..]].concat();
    assert!(!l2::carries_tcp_data(&ack));
}
