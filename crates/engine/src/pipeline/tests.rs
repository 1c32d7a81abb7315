//! Pipeline tests: golden bytes derived by hand from the RFCs and the SPEC,
//! one scenario per drop reason, and round-trip properties.
//!
//! Checksums in the golden packets are derived in the comments: the Internet
//! checksum (RFC 1071) is the complement of the end-around-carry sum of the
//! big-endian 16-bit words, with the checksum field taken as zero.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::config::cluster::{Block, ClusterBuilder, Endpoint, Node, Pool};
use crate::config::{EncapMode, parse};
use crate::table::{
    EndpointId, LocalNode, Tables, TablesBuilder, Underlay, Via, compile, vtep_mac_for,
};

/// Two nodes on 192.168.33.0/24. Pool 10.2.0.0/16 uses VXLAN (`vxlan`:
/// Always; Never routes it directly), pool
/// 10.3.0.0/16 IP-in-IP. The VTEP MACs follow Felix's rule:
/// SHA-1("k8s-node1") = 8c735a9099…, SHA-1("k8s-node2") = 90433db3e7…
/// (checked with `printf k8s-node1 | sha1sum`), so the MACs are
/// 66:8c:73:5a:90:99 and 66:90:43:3d:b3:e7.
fn cluster(vxlan: EncapMode) -> ClusterBuilder {
    ClusterBuilder::new()
        .with(Pool::new("vx", "10.2.0.0/16").vxlan(vxlan))
        .with(Pool::new("ip", "10.3.0.0/16").ipip(EncapMode::Always))
        .with(Node::new("k8s-node1", "192.168.33.55/24").vxlan_tunnel("10.2.36.65"))
        .with(Node::new("k8s-node2", "192.168.33.57/24").vxlan_tunnel("10.2.169.137"))
        .with(Block::new("10.2.36.64/26").host("k8s-node1").named("b1"))
        .with(Block::new("10.2.169.128/26").host("k8s-node2").named("b2"))
        .with(Block::new("10.3.1.0/26").host("k8s-node1").named("b3"))
        .with(Block::new("10.3.5.0/26").host("k8s-node2").named("b4"))
        .with(Endpoint::new("k8s-node1", "cali1", "10.2.36.68").named("w1"))
        .with(Endpoint::new("k8s-node1", "cali2", "10.2.36.69").named("w2"))
        .with(Endpoint::new("k8s-node1", "cali3", "10.3.1.5").named("w3"))
        .with(Endpoint::new("k8s-node2", "calb1", "10.2.169.138").named("v1"))
        .with(Endpoint::new("k8s-node2", "calb2", "10.3.5.10").named("v2"))
}

const NODE1: Ipv4Addr = Ipv4Addr::new(192, 168, 33, 55);
const NODE2: Ipv4Addr = Ipv4Addr::new(192, 168, 33, 57);

fn tables(node: &str) -> Tables {
    let r = cluster(EncapMode::Always).resources().unwrap();
    compile(
        &r,
        node,
        &Underlay {
            name: "eth0".into(),
            mtu: 1500,
        },
    )
    .unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ep(t: &Tables, name: &str) -> EndpointId {
    t.endpoint_by_interface(name).unwrap()
}

/// Runs egress on a copy of `bytes` (ID counter seeded so the first ID is 0x1000).
fn run_egress(t: &Tables, from: &str, bytes: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + bytes.len().max(2048)];
    buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
    let mut pkt = Packet::new(&mut buf, HEADROOM, bytes.len());
    let mut st = State::new(0x0fff);
    let v = egress(t, &mut st, ep(t, from), &mut pkt);
    (v, pkt.data().to_vec())
}

fn run_ingress(t: &Tables, bytes: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + bytes.len()];
    buf[HEADROOM..].copy_from_slice(bytes);
    let mut pkt = Packet::new(&mut buf, HEADROOM, bytes.len());
    let v = ingress(t, &mut pkt);
    (v, pkt.data().to_vec())
}

/// Recomputes an IPv4 header checksum at `at` (for tests that mutate packets).
fn fix_ip_csum(p: &mut [u8], at: usize) {
    let hl = usize::from(p[at] & 0xf) * 4;
    crate::wire::ipv4::refresh_checksum(&mut p[at..at + hl]);
}

/// Inner ICMP echo request, 36 bytes: 10.2.36.68 → `dst`, TOS 0x2b
/// (DSCP 10, ECN CE), ID 0x1234, DF, TTL 64.
///
/// ICMP: 08 00 [csum] 00 01 00 01 "podwire!"; words 0800 + 0000 + 0001 +
/// 0001 + 706f + 6477 + 6972 + 6521 = 0x1ab7b → fold 0xab7c → csum 0x5483.
const ICMP_ECHO: &str = "08 00 54 83 00 01 00 01 70 6f 64 77 69 72 65 21";

/// IPv4 header to 10.3.5.10 (IPIP pool), TTL 64: words 452b + 0024 + 1234 +
/// 4000 + 4001 + 0000 + 0a02 + 2444 + 0a03 + 050a = 0x114d7 → fold 0x14d8
/// → csum 0xeb27.
const INNER_IPIP_TTL64: &str = "45 2b 00 24 12 34 40 00 40 01 eb 27 0a 02 24 44 0a 03 05 0a";
/// The same after one hop: TTL 63 lowers the TTL/proto word by 0x0100, so
/// the sum is 0x113d7 → fold 0x13d8 → csum 0xec27.
const INNER_IPIP_TTL63: &str = "45 2b 00 24 12 34 40 00 3f 01 ec 27 0a 02 24 44 0a 03 05 0a";
/// After two hops: csum 0xec27 + 0x0100 = 0xed27 (RFC 1624).
const INNER_IPIP_TTL62: &str = "45 2b 00 24 12 34 40 00 3e 01 ed 27 0a 02 24 44 0a 03 05 0a";

/// IPv4 header to 10.2.169.138 (VXLAN pool), TTL 64: words 452b + 0024 +
/// 1234 + 4000 + 4001 + 0000 + 0a02 + 2444 + 0a02 + a98a = 0x1b956 → fold
/// 0xb957 → csum 0x46a8; TTL 63 → 0x47a8; TTL 62 → 0x48a8.
const INNER_VXLAN_TTL64: &str = "45 2b 00 24 12 34 40 00 40 01 46 a8 0a 02 24 44 0a 02 a9 8a";
const INNER_VXLAN_TTL63: &str = "45 2b 00 24 12 34 40 00 3f 01 47 a8 0a 02 24 44 0a 02 a9 8a";
const INNER_VXLAN_TTL62: &str = "45 2b 00 24 12 34 40 00 3e 01 48 a8 0a 02 24 44 0a 02 a9 8a";

/// Outer IPIP header (RFC 2003 as Linux tunl0 sends it):
/// 45        version 4, IHL 5
/// 02        DSCP 0; ECN: inner CE → outer ECT(0) (RFC 6040 §4.1)
/// 00 38     total length 20 + 36 = 56
/// 10 00     IP ID: the worker's counter (seeded 0x0fff, first ID 0x1000)
/// 40 00     DF copied from the inner packet
/// 3f        TTL copied from the inner packet after its decrement: 63
/// 04        protocol 4 (IP-in-IP)
/// 67 ff     checksum: 4502 + 0038 + 1000 + 4000 + 3f04 + 0000 + c0a8 +
///           2137 + c0a8 + 2139 = 0x297fe → fold 0x9800 → csum 0x67ff
/// c0a82137  source 192.168.33.55 (local node)
/// c0a82139  destination 192.168.33.57 (the remote node)
const OUTER_IPIP: &str = "45 02 00 38 10 00 40 00 3f 04 67 ff c0 a8 21 37 c0 a8 21 39";

/// Outer IPv4 of VXLAN (RFC 7348 as Linux vxlan.calico sends it):
/// 45 02     DSCP 0, ECN: CE → ECT(0)
/// 00 56     total length 20 + 8 + 8 + 14 + 36 = 86
/// 10 00     IP ID 0x1000
/// 00 00     DF clear
/// 40 11     TTL 64, protocol 17 (UDP)
/// a6 d4     checksum: 4502 + 0056 + 1000 + 0000 + 4011 + 0000 + c0a8 +
///           2137 + c0a8 + 2139 = 0x25929 → fold 0x592b → csum 0xa6d4
const OUTER_VXLAN_IP: &str = "45 02 00 56 10 00 00 00 40 11 a6 d4 c0 a8 21 37 c0 a8 21 39";
/// VXLAN header for VNI 4096 (0x001000): I flag, reserved zero.
const VXLAN_4096: &str = "08 00 00 00 00 10 00 00";
/// Inner Ethernet: destination k8s-node2's VTEP MAC (from the neighbour
/// table), source k8s-node1's VTEP MAC, EtherType 0x0800.
const INNER_ETH: &str = "66 90 43 3d b3 e7 66 8c 73 5a 90 99 08 00";

/// The UDP checksum of the golden VXLAN packet as a function of the source
/// port (RFC 768): pseudo header c0a8 + 2137 + c0a8 + 2139 + 0011 + 0042
/// = 0x1c413; UDP header without port and checksum 12b5 + 0042; VXLAN
/// 0800 + 0010; Ethernet 6690 + 433d + b3e7 + 668c + 735a + 9099 + 0800.
/// All of it sums to 0x4af4d → fold 0xaf51. The inner IPv4 header and the
/// ICMP message each carry a valid checksum, so each sums to 0xffff (−0),
/// which leaves a ones'-complement sum unchanged. Hence
/// csum = ~fold(0xaf51 + sport).
fn vxlan_udp_csum(sport: u16) -> u16 {
    let mut s = 0xaf51u32 + u32::from(sport);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

fn cat(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| hex(p)).collect()
}

#[test]
fn ipip_encap_golden() {
    let t = tables("k8s-node1");
    let inner = cat(&[INNER_IPIP_TTL64, ICMP_ECHO]);
    let (v, out) = run_egress(&t, "cali1", &inner);
    assert_eq!(v, Verdict::Send(Target::Ipip { node: NODE2 }));
    assert_eq!(out, cat(&[OUTER_IPIP, INNER_IPIP_TTL63, ICMP_ECHO]));
}

#[test]
fn ipip_outer_df_follows_inner() {
    let t = tables("k8s-node1");
    let mut inner = cat(&[INNER_IPIP_TTL64, ICMP_ECHO]);
    inner[6] = 0; // clear DF
    fix_ip_csum(&mut inner, 0);
    let (_, out) = run_egress(&t, "cali1", &inner);
    assert_eq!(
        &out[6..8],
        &[0, 0],
        "outer DF clear when the inner has none"
    );
}

#[test]
fn vxlan_encap_golden() {
    let t = tables("k8s-node1");
    let inner = cat(&[INNER_VXLAN_TTL64, ICMP_ECHO]);
    let (v, out) = run_egress(&t, "cali1", &inner);
    let Verdict::Send(Target::Vxlan {
        node,
        mac,
        src_port,
    }) = v
    else {
        panic!("{v:?}");
    };
    assert_eq!(node, NODE2);
    assert_eq!(mac, vtep_mac_for("k8s-node2"));
    assert!((32768..=60999).contains(&src_port), "{src_port}");
    assert_eq!(out.len(), 86);
    assert_eq!(out[..20], hex(OUTER_VXLAN_IP)[..]);
    // UDP: source port from the flow hash, destination 4789 (0x12b5),
    // length 8 + 8 + 14 + 36 = 66 (0x42), checksum computed.
    assert_eq!(out[20..22], src_port.to_be_bytes());
    assert_eq!(out[22..26], hex("12 b5 00 42")[..]);
    assert_eq!(out[26..28], vxlan_udp_csum(src_port).to_be_bytes());
    assert_eq!(out[28..36], hex(VXLAN_4096)[..]);
    assert_eq!(out[36..50], hex(INNER_ETH)[..]);
    assert_eq!(out[50..], cat(&[INNER_VXLAN_TTL63, ICMP_ECHO])[..]);
}

/// With the checksum offloaded, the field holds the folded pseudo-header sum
/// (what Linux leaves for `CHECKSUM_PARTIAL`): c0a8 + 2137 + c0a8 + 2139 +
/// 0011 + 0042 = 0x1c413 → fold 0xc414. The rest of the packet is unchanged.
#[test]
fn vxlan_checksum_offload_leaves_the_pseudo_header_sum() {
    let t = tables("k8s-node1");
    let inner = cat(&[INNER_VXLAN_TTL64, ICMP_ECHO]);
    let mut buf = vec![0u8; HEADROOM + inner.len()];
    buf[HEADROOM..].copy_from_slice(&inner);
    let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
    let mut st = State::new(0x0fff).with_udp_checksum(UdpChecksum::Offload);
    assert!(matches!(
        egress(&t, &mut st, ep(&t, "cali1"), &mut pkt),
        Verdict::Send(Target::Vxlan { .. })
    ));
    let (_, full) = run_egress(&t, "cali1", &inner);
    let out = pkt.data();
    assert_eq!(out[26..28], [0xc4, 0x14]);
    assert_eq!(out[..26], full[..26]);
    assert_eq!(out[28..], full[28..]);
    // Finishing it in software gives the full checksum.
    let mut finished = out.to_vec();
    finish_udp_checksum(&mut finished);
    assert_eq!(finished, full);
}

/// RFC 768: a computed checksum of zero is sent as all ones. The ICMP
/// payload word w is replaced by w + c (ones' complement), where c is the
/// checksum of the first packet: the new sum is S + c = S + ~S = 0xffff,
/// whose complement is 0 — so the packet must carry 0xffff.
#[test]
fn vxlan_zero_checksum_is_sent_as_ffff() {
    let t = tables("k8s-node1");
    let mut inner = cat(&[INNER_VXLAN_TTL64, ICMP_ECHO]);
    let (_, first) = run_egress(&t, "cali1", &inner);
    let c = u16::from_be_bytes([first[26], first[27]]);
    let w = u16::from_be_bytes([inner[28], inner[29]]);
    let sum = u32::from(w) + u32::from(c);
    let w2 = ((sum & 0xffff) + (sum >> 16)) as u16;
    inner[28..30].copy_from_slice(&w2.to_be_bytes());
    let (_, second) = run_egress(&t, "cali1", &inner);
    assert_eq!(
        second[20..22],
        first[20..22],
        "ICMP payload does not move the port"
    );
    assert_eq!(second[26..28], [0xff, 0xff]);
}

/// The golden VXLAN packet as k8s-node1 sends it, with source port 45000
/// (0xafc8): checksum ~fold(0xaf51 + 0xafc8) = ~0x5f1a = 0xa0e5.
fn golden_vxlan_packet() -> Vec<u8> {
    assert_eq!(vxlan_udp_csum(45000), 0xa0e5);
    cat(&[
        OUTER_VXLAN_IP,
        "af c8 12 b5 00 42 a0 e5",
        VXLAN_4096,
        INNER_ETH,
        INNER_VXLAN_TTL63,
        ICMP_ECHO,
    ])
}

#[test]
fn vxlan_decap_golden() {
    let t = tables("k8s-node2");
    let (v, out) = run_ingress(&t, &golden_vxlan_packet());
    assert_eq!(v, Verdict::Deliver(ep(&t, "calb1")));
    // The receiving node forwards too: TTL 62, as between two kernel nodes.
    assert_eq!(out, cat(&[INNER_VXLAN_TTL62, ICMP_ECHO]));
}

#[test]
fn ipip_decap_golden() {
    let t = tables("k8s-node2");
    let (v, out) = run_ingress(&t, &cat(&[OUTER_IPIP, INNER_IPIP_TTL63, ICMP_ECHO]));
    assert_eq!(v, Verdict::Deliver(ep(&t, "calb2")));
    assert_eq!(out, cat(&[INNER_IPIP_TTL62, ICMP_ECHO]));
}

#[test]
fn vxlan_zero_udp_checksum_is_accepted() {
    let t = tables("k8s-node2");
    let mut p = golden_vxlan_packet();
    p[26..28].copy_from_slice(&[0, 0]);
    assert_eq!(run_ingress(&t, &p).0, Verdict::Deliver(ep(&t, "calb1")));
}

/// ICMP time exceeded for a TTL-1 packet (RFC 792), as Linux's icmp_send:
/// 45 ca     TOS 0xc0 (internetwork control) | (0x2b & 0x1e = 0x0a)
/// 00 40     20 + 8 + 36 (the whole original fits in 576)
/// 10 00     IP ID;  00 00  DF clear;  40 01  TTL 64, ICMP
/// 59 ce     45ca + 0040 + 1000 + 0000 + 4001 + 0000 + c0a8 + 2137 + 0a02 +
///           2444 = 0x1a630 → fold 0xa631 → csum 0x59ce
/// from 192.168.33.55 (the node) to 10.2.36.68 (the sender)
/// ICMP 0b 00 [csum] 00 00 00 00, then the original packet: it has two valid
/// checksums, so it sums to 0xffff; csum = ~fold(0x0b00 + 0xffff) = 0xf4ff.
/// The original, TTL 1: words 452b + 0024 + 1234 + 4000 + 0101 + 0000 +
/// 0a02 + 2444 + 0a03 + 050a = 0xd5d7 → csum 0x2a28.
#[test]
fn icmp_time_exceeded_golden() {
    let t = tables("k8s-node1");
    let orig = cat(&[
        "45 2b 00 24 12 34 40 00 01 01 2a 28 0a 02 24 44 0a 03 05 0a",
        ICMP_ECHO,
    ]);
    let (v, out) = run_egress(&t, "cali1", &orig);
    assert_eq!(
        v,
        Verdict::Icmp {
            to: ep(&t, "cali1"),
            reason: DropReason::TtlExceeded
        }
    );
    let mut want = cat(&[
        "45 ca 00 40 10 00 00 00 40 01 59 ce c0 a8 21 37 0a 02 24 44",
        "0b 00 f4 ff 00 00 00 00",
    ]);
    want.extend_from_slice(&orig);
    assert_eq!(out, want);
}

/// ICMP fragmentation needed (RFC 792 type 3 code 4, RFC 1191 next-hop
/// MTU) for a 1500-byte DF packet into VXLAN, whose MTU is 1500 − 50 = 1450.
/// The original: UDP 10.2.36.68:5000 → 10.2.169.138:6000, 1472 zero bytes,
/// UDP checksum 0. Its header: 4500 + 05dc + 4321 + 4000 + 4011 + 0000 +
/// 0a02 + 2444 + 0a02 + a98a = 0x1efe0 → fold 0xefe1 → csum 0x101e.
/// The error quotes 576 − 28 = 548 bytes of it. IP header: 45c0 + 0240 +
/// 1000 + 0000 + 4001 + 0000 + c0a8 + 2137 + 0a02 + 2444 = 0x1a826 → fold
/// 0xa827 → csum 0x57d8. ICMP: 03 04 [csum] 00 00 05 aa (MTU 1450); the
/// quoted header sums to 0xffff, the UDP header to 1388 + 1770 + 05c8, the
/// rest is zero: csum = ~fold(0304 + 05aa + ffff + 1388 + 1770 + 05c8) = 0xc691.
#[test]
fn icmp_frag_needed_golden() {
    let t = tables("k8s-node1");
    let mut orig = cat(&[
        "45 00 05 dc 43 21 40 00 40 11 10 1e 0a 02 24 44 0a 02 a9 8a",
        "13 88 17 70 05 c8 00 00",
    ]);
    orig.resize(1500, 0);
    let (v, out) = run_egress(&t, "cali1", &orig);
    assert_eq!(
        v,
        Verdict::Icmp {
            to: ep(&t, "cali1"),
            reason: DropReason::TooBig
        }
    );
    let mut want = cat(&[
        "45 c0 02 40 10 00 00 00 40 01 57 d8 c0 a8 21 37 0a 02 24 44",
        "03 04 c6 91 00 00 05 aa",
    ]);
    want.extend_from_slice(&orig[..548]);
    assert_eq!(out, want);
}

#[test]
fn no_icmp_error_about_icmp_errors_or_multicast() {
    let t = tables("k8s-node1");
    // An ICMP destination unreachable with TTL 1: dropped, no error back.
    let mut p = cat(&[
        INNER_IPIP_TTL64,
        "03 01 00 00 00 00 00 00 70 6f 64 77 69 72 65 21",
    ]);
    p[8] = 1;
    fix_ip_csum(&mut p, 0);
    assert_eq!(
        run_egress(&t, "cali1", &p).0,
        Verdict::Drop(DropReason::TtlExceeded)
    );
    // mDNS-style multicast with TTL 1.
    let mut m = cat(&[INNER_IPIP_TTL64, ICMP_ECHO]);
    m[8] = 1;
    m[16..20].copy_from_slice(&[224, 0, 0, 251]);
    fix_ip_csum(&mut m, 0);
    assert_eq!(
        run_egress(&t, "cali1", &m).0,
        Verdict::Drop(DropReason::TtlExceeded)
    );
}

#[test]
fn local_delivery_decrements_ttl() {
    let t = tables("k8s-node1");
    let mut p = cat(&[INNER_VXLAN_TTL64, ICMP_ECHO]);
    p[16..20].copy_from_slice(&[10, 2, 36, 69]);
    fix_ip_csum(&mut p, 0);
    let (v, out) = run_egress(&t, "cali1", &p);
    assert_eq!(v, Verdict::Deliver(ep(&t, "cali2")));
    assert_eq!(out[8], 63);
    assert!(crate::wire::checksum::verifies(&out[..20]));
    assert_eq!(out[20..], p[20..]);
}

/// RFC 791 fragmentation: a 1500-byte packet without DF into VXLAN (MTU
/// 1450): data per fragment (1450 − 20) / 8 × 8 = 1424 bytes, so two
/// fragments: 20 + 1424 = 1444 bytes with MF at offset 0, and
/// 20 + 56 = 76 bytes without MF at offset 1424 / 8 = 178.
#[test]
fn fragmentation_into_vxlan() {
    let t1 = tables("k8s-node1");
    let t2 = tables("k8s-node2");
    let mut orig =
        hex("45 00 05 dc 43 21 00 00 40 11 00 00 0a 02 24 44 0a 02 a9 8a 13 88 17 70 05 c8 00 00");
    orig.extend((0..1472u32).map(|i| (i % 251) as u8));
    fix_ip_csum(&mut orig, 0);
    let mut buf = vec![0u8; HEADROOM + 1500];
    buf[HEADROOM..].copy_from_slice(&orig);
    let mut pkt = Packet::new(&mut buf, HEADROOM, 1500);
    let mut st = State::new(0);
    let Verdict::Fragment(job) = egress(&t1, &mut st, ep(&t1, "cali1"), &mut pkt) else {
        panic!("expected fragments");
    };
    assert_eq!(job.count(), 2);
    let original = pkt.data().to_vec();
    assert_eq!(original[8], 63, "TTL decremented before fragmenting");
    let mut frags = Vec::new();
    for i in 0..=job.count() {
        let mut out = vec![0u8; HEADROOM + 1500];
        let mut o = Packet::new(&mut out, HEADROOM, 0);
        match job.emit(&t1, &mut st, &original, i, &mut o) {
            None => assert_eq!(i, job.count()),
            Some(v) => {
                assert!(matches!(v, Verdict::Send(Target::Vxlan { .. })), "{v:?}");
                frags.push(o.data().to_vec());
            }
        }
    }
    // Outer sizes: 50 + 1444 = 1494 and 50 + 76 = 126.
    assert_eq!(frags.iter().map(Vec::len).collect::<Vec<_>>(), [1494, 126]);
    // Both fragments of one flow use one source port.
    assert_eq!(frags[0][20..22], frags[1][20..22]);
    let f0 = &frags[0][50..];
    let f1 = &frags[1][50..];
    assert_eq!(f0[2..4], 1444u16.to_be_bytes());
    assert_eq!(f0[6..8], [0x20, 0x00], "MF, offset 0");
    assert_eq!(f1[2..4], 76u16.to_be_bytes());
    assert_eq!(f1[6..8], 0x00b2u16.to_be_bytes(), "no MF, offset 178");
    for f in [f0, f1] {
        assert!(crate::wire::checksum::verifies(&f[..20]));
        assert_eq!(f[4..6], [0x43, 0x21], "fragments keep the ID");
    }
    // Each fragment decapsulates at k8s-node2; reassembled, the data is the original's.
    let mut data = Vec::new();
    for f in &frags {
        let (v, inner) = run_ingress(&t2, f);
        assert_eq!(v, Verdict::Deliver(ep(&t2, "calb1")));
        data.extend_from_slice(&inner[20..]);
    }
    assert_eq!(data, orig[20..]);
}

#[test]
fn fragment_options_are_copied_only_when_flagged() {
    let t1 = tables("k8s-node1");
    // IHL 7: record route (not copied) of 7 bytes + NOP; then data.
    let mut orig =
        hex("47 00 05 dc 00 07 00 00 40 01 00 00 0a 03 01 05 0a 03 05 0a 07 07 04 00 00 00 00 01");
    orig.resize(1500, 0xab);
    fix_ip_csum(&mut orig, 0);
    let mut buf = vec![0u8; HEADROOM + 1500];
    buf[HEADROOM..].copy_from_slice(&orig);
    let mut pkt = Packet::new(&mut buf, HEADROOM, 1500);
    let mut st = State::new(0);
    let Verdict::Fragment(job) = egress(&t1, &mut st, ep(&t1, "cali3"), &mut pkt) else {
        panic!("expected fragments");
    };
    let original = pkt.data().to_vec();
    let mut second = vec![0u8; HEADROOM + 1500];
    let mut o = Packet::new(&mut second, HEADROOM, 0);
    job.emit(&t1, &mut st, &original, 1, &mut o).unwrap();
    let inner = &o.data()[20..]; // after the IPIP header
    assert_eq!(inner[0], 0x47, "header length kept");
    assert_eq!(
        inner[20..28],
        [1, 1, 1, 1, 1, 1, 1, 1],
        "record route replaced by NOPs"
    );
    let mut first = vec![0u8; HEADROOM + 1500];
    let mut o = Packet::new(&mut first, HEADROOM, 0);
    job.emit(&t1, &mut st, &original, 0, &mut o).unwrap();
    assert_eq!(
        o.data()[20 + 20..20 + 28],
        orig[20..28],
        "first fragment keeps options"
    );
}

#[test]
fn flow_port_is_stable_per_flow() {
    let t = tables("k8s-node1");
    let udp = |sport: u16, dport: u16, payload: u8| {
        let mut p = hex("45 00 00 20 00 01 00 00 40 11 00 00 0a 02 24 44 0a 02 a9 8a");
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 12, 0, 0, payload, payload, payload, payload]);
        fix_ip_csum(&mut p, 0);
        p
    };
    let port = |p: &[u8]| {
        let (v, out) = run_egress(&t, "cali1", p);
        let Verdict::Send(Target::Vxlan { src_port, .. }) = v else {
            panic!("{v:?}")
        };
        assert_eq!(out[20..22], src_port.to_be_bytes());
        src_port
    };
    assert_eq!(
        port(&udp(1000, 53, 1)),
        port(&udp(1000, 53, 2)),
        "same flow, same port"
    );
    let ports: BTreeSet<u16> = (0..64).map(|i| port(&udp(1000 + i, 53, 0))).collect();
    assert!(
        ports.len() > 48,
        "64 flows spread over {} ports",
        ports.len()
    );
}

#[test]
fn ecn_on_decap_follows_rfc6040() {
    let t = tables("k8s-node2");
    let with = |outer_ecn: u8, inner_ecn: u8| {
        let mut p = cat(&[OUTER_IPIP, INNER_IPIP_TTL63, ICMP_ECHO]);
        p[1] = outer_ecn;
        p[20 + 1] = 0x28 | inner_ecn;
        fix_ip_csum(&mut p, 0);
        fix_ip_csum(&mut p, 20);
        run_ingress(&t, &p)
    };
    // Outer CE on inner ECT(0) and ECT(1): the inner becomes CE.
    for inner in [0b10, 0b01] {
        let (v, out) = with(0b11, inner);
        assert_eq!(v, Verdict::Deliver(ep(&t, "calb2")));
        assert_eq!(out[1] & 3, 0b11);
        assert!(crate::wire::checksum::verifies(&out[..20]));
    }
    // Outer CE on not-ECT: drop.
    assert_eq!(with(0b11, 0).0, Verdict::Drop(DropReason::EcnCeOnNotEct));
    // Outer not CE: the inner is left as it is.
    for (outer, inner) in [(0, 0b10), (0b10, 0), (0b01, 0b11)] {
        let (v, out) = with(outer, inner);
        assert_eq!(v, Verdict::Deliver(ep(&t, "calb2")));
        assert_eq!(out[1] & 3, inner);
    }
}

#[test]
fn ethernet_padding_on_a_minimum_frame_is_tolerated() {
    let t = tables("k8s-node2");
    // A 28-byte inner packet in a 60-byte frame carries 18 bytes of padding.
    let mut inner =
        hex("45 00 00 1c 00 09 00 00 3f 01 00 00 0a 02 24 44 0a 02 a9 8a 08 00 f7 ff 00 00 00 00");
    fix_ip_csum(&mut inner, 0);
    let build = |inner: &[u8]| {
        // Outer UDP checksum 0 (accepted); lengths filled in below.
        let mut p = cat(&[
            "45 00 00 00 00 01 00 00 40 11 00 00 c0 a8 21 37 c0 a8 21 39",
            "c3 50 12 b5 00 00 00 00",
            VXLAN_4096,
            INNER_ETH,
        ]);
        p.extend_from_slice(inner);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[24..26].copy_from_slice(&(total - 20).to_be_bytes());
        fix_ip_csum(&mut p, 0);
        p
    };
    let mut padded = inner.clone();
    padded.resize(46, 0);
    let (v, out) = run_ingress(&t, &build(&padded));
    assert_eq!(v, Verdict::Deliver(ep(&t, "calb1")));
    assert_eq!(out.len(), 28, "padding removed");
    // Trailing bytes on a frame that is not minimum-size are malformed.
    let mut long = inner.clone();
    long.resize(100, 0);
    assert_eq!(
        run_ingress(&t, &build(&long)).0,
        Verdict::Drop(DropReason::Malformed)
    );
}

/// Tables with a VXLAN route whose gateway has no neighbour entry, and one
/// whose MAC has no FDB entry (compile never produces these; a builder can).
fn gapped_tables() -> Tables {
    let mut b = TablesBuilder::new(
        LocalNode {
            name: "k8s-node1".into(),
            ip: NODE1,
            subnet: "192.168.33.0/24".parse().unwrap(),
            vtep_mac: vtep_mac_for("k8s-node1"),
        },
        Underlay {
            name: "eth0".into(),
            mtu: 1500,
        },
    );
    let id = b.endpoint(crate::table::Endpoint {
        interface: "cali1".into(),
        name: "w1".into(),
        ips: vec![[10, 2, 36, 68].into()],
        mtu: 1450,
    });
    b.route("10.2.36.68/32".parse().unwrap(), Via::Endpoint(id))
        .route(
            "10.9.1.0/26".parse().unwrap(),
            Via::Vxlan {
                gw: [10, 9, 1, 1].into(),
            },
        )
        .route(
            "10.9.2.0/26".parse().unwrap(),
            Via::Vxlan {
                gw: [10, 9, 2, 1].into(),
            },
        )
        .neigh([10, 9, 2, 1].into(), "66:00:00:00:00:02".parse().unwrap());
    b.build().unwrap()
}

/// Mutates a copy of `base` and recomputes the checksums at `fix`.
fn mutate(base: &[u8], fix: &[usize], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut p = base.to_vec();
    f(&mut p);
    for &at in fix {
        fix_ip_csum(&mut p, at);
    }
    p
}

/// Recomputes the UDP checksum of an outer VXLAN packet.
fn fix_udp_csum(p: &mut [u8]) {
    p[26..28].copy_from_slice(&[0, 0]);
    let len = u16::from_be_bytes([p[24], p[25]]);
    let c = crate::wire::checksum::Sum::new()
        .add_bytes(&p[12..20])
        .add_u16(17)
        .add_u16(len)
        .add_bytes(&p[20..])
        .checksum();
    p[26..28].copy_from_slice(&c.to_be_bytes());
}

/// One scenario per drop reason the pipeline produces: (expected, verdict).
fn drop_scenarios() -> Vec<(DropReason, Verdict)> {
    use DropReason::*;
    let t1 = tables("k8s-node1");
    let t2 = tables("k8s-node2");
    let echo = cat(&[INNER_VXLAN_TTL64, ICMP_ECHO]);
    let eg = |p: &[u8]| run_egress(&t1, "cali1", p).0;
    let ig = |p: &[u8]| run_ingress(&t2, p).0;
    let vx = golden_vxlan_packet();
    let ipip = cat(&[OUTER_IPIP, INNER_IPIP_TTL63, ICMP_ECHO]);
    let gapped = gapped_tables();
    let to = |dst: [u8; 4]| mutate(&echo, &[0], |p| p[16..20].copy_from_slice(&dst));
    let vx_mut = |f: &dyn Fn(&mut Vec<u8>)| {
        mutate(&vx, &[0], |p| {
            f(p);
            fix_udp_csum(p);
        })
    };
    vec![
        // Egress.
        (Malformed, eg(&echo[..19])),
        (Malformed, eg(&mutate(&echo, &[0], |p| p[0] = 0x44))),
        (Malformed, eg(&[echo.as_slice(), &[0]].concat())),
        (NotIpv4, eg(&mutate(&echo, &[], |p| p[0] = 0x60))),
        // Record route claiming 40 bytes in a 4-byte options area.
        (
            Malformed,
            eg(&mutate(&echo, &[0], |p| {
                p.splice(20..20, [7, 40, 4, 0]);
                p[0] = 0x46;
                p[3] = 40;
            })),
        ),
        (BadChecksum, eg(&mutate(&echo, &[], |p| p[11] ^= 0xff))),
        (SpoofedSource, eg(&mutate(&echo, &[0], |p| p[15] = 69))),
        (EncapFromWorkload, eg(&mutate(&echo, &[0], |p| p[9] = 4))),
        (
            EncapFromWorkload,
            eg(&mutate(&echo, &[0], |p| {
                p[9] = 17;
                p[22..24].copy_from_slice(&4789u16.to_be_bytes());
            })),
        ),
        (TtlExceeded, eg(&mutate(&echo, &[0], |p| p[8] = 1))),
        (Blackhole, eg(&to([10, 2, 36, 100]))),
        (NoRoute, eg(&to([8, 8, 8, 8]))),
        (
            NoNeighbour,
            run_egress(&gapped, "cali1", &to([10, 9, 1, 7])).0,
        ),
        (NoFdb, run_egress(&gapped, "cali1", &to([10, 9, 2, 7])).0),
        (TooBig, {
            let mut big = mutate(&echo, &[], |p| p.resize(1451, 0));
            big[2..4].copy_from_slice(&1451u16.to_be_bytes());
            fix_ip_csum(&mut big, 0);
            eg(&big)
        }),
        // Ingress.
        (Malformed, ig(&vx[..30])),
        (NotIpv4, ig(&mutate(&vx, &[], |p| p[0] = 0x65))),
        (BadChecksum, ig(&mutate(&vx, &[], |p| p[10] ^= 1))),
        (BadChecksum, ig(&mutate(&vx, &[], |p| p[85] ^= 1))),
        (UnknownPeer, ig(&mutate(&ipip, &[0], |p| p[15] = 99))),
        (UnknownPeer, ig(&vx_mut(&|p| p[15] = 99))),
        (NotForNode, ig(&mutate(&vx, &[0], |p| p[19] = 58))),
        (NotForNode, ig(&mutate(&vx, &[0], |p| p[9] = 6))),
        (NotForNode, ig(&vx_mut(&|p| p[23] = 0xb6))),
        (FragmentedOuter, ig(&mutate(&ipip, &[0], |p| p[6] = 0x20))),
        (BadVxlanFlags, ig(&vx_mut(&|p| p[28] = 0x0c))),
        (BadVxlanFlags, ig(&vx_mut(&|p| p[35] = 1))),
        (BadVni, ig(&vx_mut(&|p| p[33] = 0x11))),
        (WrongVtepMac, ig(&vx_mut(&|p| p[41] ^= 1))),
        (
            NotIpv4,
            ig(&vx_mut(&|p| p[48..50].copy_from_slice(&[0x86, 0xdd]))),
        ),
        (Malformed, ig(&vx_mut(&|p| p[50] = 0x44))),
        (NotLocal, ig(&mutate(&ipip, &[0, 20], |p| p[39] = 11))),
        (TtlExceeded, ig(&mutate(&ipip, &[0, 20], |p| p[28] = 1))),
        (
            EcnCeOnNotEct,
            ig(&mutate(&ipip, &[0, 20], |p| {
                p[1] = 3;
                p[21] = 0;
            })),
        ),
        // Framing for the underlay and unframing from it (`l2`).
        (NoUnderlay, framed(&tables("k8s-node1"), &echo, HEADROOM)),
        (NoHeadroom, framed(&with_next_hops(), &echo, 10)),
        (UnsupportedGso, {
            // A virtio header of a UDP super-packet (gso_type 5, UDP_L4).
            let mut frame = vec![0u8; 10 + 14 + echo.len()];
            frame[1] = 5;
            frame[4] = 0x10;
            frame[24..].copy_from_slice(&echo);
            let len = frame.len();
            let mut pkt = Packet::new(&mut frame, 0, len);
            Verdict::Drop(l2::unframe_direct(&mut pkt, true).unwrap_err())
        }),
    ]
}

/// `tables("k8s-node1")` with the underlay's MAC and node 2's.
fn with_next_hops() -> Tables {
    let mac = |b| crate::wire::MacAddr([2, 0, 0, 0, 0, b]);
    tables("k8s-node1").with_next_hops(crate::table::NextHops::new(mac(0x55), [(NODE2, mac(0x57))]))
}

/// The drop of framing `p` for direct-mode next hop node 2 with `headroom`.
fn framed(t: &Tables, p: &[u8], headroom: usize) -> Verdict {
    let mut buf = vec![0u8; headroom + p.len()];
    buf[headroom..].copy_from_slice(p);
    let mut pkt = Packet::new(&mut buf, headroom, p.len());
    match l2::frame_direct(t, &mut pkt, NODE2, None, false) {
        Ok(()) => Verdict::Send(Target::Direct { gw: NODE2 }),
        Err(r) => Verdict::Drop(r),
    }
}

#[test]
fn every_drop_reason_is_reached() {
    let mut reached = BTreeSet::new();
    for (i, (want, got)) in drop_scenarios().into_iter().enumerate() {
        assert_eq!(got.drop_reason(), Some(want), "scenario {i}: {got:?}");
        reached.insert(want);
    }
    // tx-full and tx-error are the I/O layer's: a full or failing socket or
    // queue, never a verdict.
    let missing: Vec<_> = DropReason::ALL
        .iter()
        .filter(|r| {
            !reached.contains(*r) && !matches!(**r, DropReason::TxFull | DropReason::TxError)
        })
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}

#[test]
fn drop_counters_count_by_reason() {
    let mut c = DropCounters::default();
    for (_, v) in drop_scenarios() {
        c.record(&v);
    }
    c.count(DropReason::TxFull);
    assert_eq!(c.get(DropReason::NotForNode), 3);
    assert_eq!(c.get(DropReason::TxFull), 1);
    assert_eq!(c.total(), drop_scenarios().len() as u64 + 1);
    for r in DropReason::ALL {
        assert_eq!(DropReason::from_name(r.name()), Some(*r));
        assert!(!r.description().is_empty());
    }
    c.record(&Verdict::Deliver(EndpointId(0)));
    assert_eq!(
        c.total(),
        drop_scenarios().len() as u64 + 1,
        "deliveries are not drops"
    );
}

#[test]
fn unknown_endpoint_and_tiny_headroom_do_not_panic() {
    let t = tables("k8s-node1");
    let p = cat(&[INNER_IPIP_TTL64, ICMP_ECHO]);
    let mut buf = p.clone();
    let len = buf.len();
    let mut pkt = Packet::new(&mut buf, 0, len);
    let mut st = State::new(0);
    assert_eq!(
        egress(&t, &mut st, EndpointId(99), &mut pkt),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    let mut pkt = Packet::new(&mut buf, 0, len);
    assert_eq!(
        egress(&t, &mut st, ep(&t, "cali1"), &mut pkt),
        Verdict::Drop(DropReason::TooBig),
        "no headroom for the outer header"
    );
}

#[test]
fn packet_view_is_clamped() {
    let mut buf = [0u8; 10];
    let mut p = Packet::new(&mut buf, 20, 5);
    assert_eq!((p.offset(), p.len()), (10, 0));
    p.reset(4, 100);
    assert_eq!((p.headroom(), p.len(), p.tailroom()), (4, 6, 0));
    assert!(p.prepend(5).is_none());
    assert_eq!(p.prepend(4).map(|f| f.len()), Some(4));
    assert!(!p.advance(11));
    assert!(p.advance(10));
    assert!(p.is_empty());
}

/// Strategy: an inner packet from k8s-node1's endpoint 10.2.36.68 (VXLAN)
/// or 10.3.1.5 (IPIP) to k8s-node2's endpoint in the same pool.
fn inner_packet() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (
        any::<bool>(),
        any::<u8>(),
        3u8..=255, // TTL 2 would arrive at the second node with 1 and be dropped
        any::<bool>(),
        any::<u16>(),
        prop_oneof![Just(1u8), Just(6), Just(17), Just(47), Just(132)],
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(vxlan, tos, ttl, df, id, proto, payload)| {
            let (src, dst) = if vxlan {
                ([10, 2, 36, 68], [10, 2, 169, 138])
            } else {
                ([10, 3, 1, 5], [10, 3, 5, 10])
            };
            let mut p = vec![0x45, tos];
            p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
            p.extend_from_slice(&[ttl, proto, 0, 0]);
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
            // Keep UDP away from the VXLAN port, which workloads may not use.
            let mut payload = payload;
            if proto == 17 && payload.len() >= 4 {
                payload[2] = 0;
            }
            p.extend_from_slice(&payload);
            fix_ip_csum(&mut p, 0);
            (vxlan, p)
        })
}

proptest! {
    /// decap(encap(p)) = p, with the TTL two lower (one hop per node) and
    /// the ECN codepoint unchanged, for VXLAN and IPIP, fragmented or not.
    #[test]
    fn decap_of_encap_gives_back_the_packet((vxlan, p) in inner_packet(), seed in any::<u16>()) {
        let t1 = tables("k8s-node1");
        let t2 = tables("k8s-node2");
        let from = if vxlan { "cali1" } else { "cali3" };
        let to = ep(&t2, if vxlan { "calb1" } else { "calb2" });
        let mut buf = vec![0u8; HEADROOM + p.len()];
        buf[HEADROOM..].copy_from_slice(&p);
        let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
        let mut st = State::new(seed);
        let v = egress(&t1, &mut st, ep(&t1, from), &mut pkt);
        let mut outers = Vec::new();
        match v {
            Verdict::Send(Target::Vxlan { .. }) => prop_assert!(vxlan),
            Verdict::Send(Target::Ipip { .. }) => prop_assert!(!vxlan),
            _ => {}
        }
        match v {
            Verdict::Send(_) => outers.push(pkt.data().to_vec()),
            Verdict::Fragment(job) => {
                let original = pkt.data().to_vec();
                for i in 0..job.count() {
                    let mut out = vec![0u8; HEADROOM + 1500];
                    let mut o = Packet::new(&mut out, HEADROOM, 0);
                    let fv = job.emit(&t1, &mut st, &original, i, &mut o).unwrap();
                    prop_assert!(matches!(fv, Verdict::Send(_)));
                    prop_assert!(o.len() <= 1500, "fragment of {} bytes", o.len());
                    outers.push(o.data().to_vec());
                }
            }
            Verdict::Icmp { reason: DropReason::TooBig, .. } => {
                let mtu = if vxlan { 1450 } else { 1480 };
                prop_assert!(p.len() > mtu && p[6] & 0x40 != 0);
                return Ok(());
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        let mut data = Vec::new();
        for outer in &outers {
            prop_assert!(outer.len() <= 1500);
            // An independent decoder (etherparse) agrees on the outer headers.
            let ip = etherparse::Ipv4HeaderSlice::from_slice(outer).unwrap();
            let ip_header = ip.to_header();
            prop_assert_eq!(ip_header.calc_header_checksum(), ip.header_checksum());
            prop_assert_eq!(ip.source_addr(), NODE1);
            prop_assert_eq!(ip.destination_addr(), NODE2);
            prop_assert_eq!(usize::from(ip.total_len()), outer.len());
            if vxlan {
                prop_assert_eq!(ip.protocol(), etherparse::IpNumber::UDP);
                let udp = etherparse::UdpHeaderSlice::from_slice(&outer[20..]).unwrap();
                prop_assert_eq!(udp.destination_port(), 4789);
                prop_assert!((32768..=60999).contains(&udp.source_port()));
                prop_assert_eq!(usize::from(udp.length()), outer.len() - 20);
                let want = udp.to_header().calc_checksum_ipv4(&ip_header, &outer[28..]).unwrap();
                prop_assert_eq!(udp.checksum(), want);
            } else {
                prop_assert_eq!(ip.protocol(), etherparse::IpNumber::IPV4);
                prop_assert_eq!(ip.ttl(), outer[20 + 8], "outer TTL is the inner's");
            }
            let mut b = vec![0u8; HEADROOM + outer.len()];
            b[HEADROOM..].copy_from_slice(outer);
            let mut o = Packet::new(&mut b, HEADROOM, outer.len());
            prop_assert_eq!(ingress(&t2, &mut o), Verdict::Deliver(to));
            let inner = o.data();
            prop_assert!(crate::wire::checksum::verifies(&inner[..20]));
            prop_assert_eq!(inner[8], p[8] - 2, "TTL");
            prop_assert_eq!(inner[1], p[1], "TOS/ECN");
            prop_assert_eq!(&inner[12..20], &p[12..20], "addresses");
            prop_assert_eq!(inner[9], p[9], "protocol");
            data.extend_from_slice(&inner[20..]);
            if outers.len() == 1 {
                prop_assert_eq!(&inner[..8], &p[..8]);
            }
        }
        prop_assert_eq!(&data[..], &p[20..]);
    }

    /// Any bytes from a workload or from the underlay get a verdict, and a
    /// delivered packet is a valid IPv4 packet to a local endpoint.
    #[test]
    fn arbitrary_bytes_get_a_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let t = tables("k8s-node1");
        let (_, _) = run_egress(&t, "cali1", &bytes);
        let (v, out) = run_ingress(&t, &bytes);
        if let Verdict::Deliver(id) = v {
            let h = crate::wire::ipv4::parse(&out).unwrap();
            prop_assert!(t.endpoint(id).unwrap().ips.contains(&Ipv4Addr::from(h.dst)));
        }
    }
}

/// A 4000-byte TCP/IPv4 packet with DF, TTL 64, from 10.2.36.68 to `dst`:
/// what a pod's kernel hands a TUN device with TSO as one super-packet.
fn tcp_super_packet(dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 4000];
    p[..16].copy_from_slice(&hex("45 00 0f a0 00 01 40 00 40 06 00 00 0a 02 24 44"));
    p[16..20].copy_from_slice(&dst);
    fix_ip_csum(&mut p, 0);
    // TCP: ports 40000 -> 5001, data offset 5, ACK.
    p[20..34].copy_from_slice(&hex("9c 40 13 89 00 00 00 01 00 00 00 01 50 10"));
    p
}

fn run_egress_gso(t: &Tables, bytes: &[u8], segment: usize) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + bytes.len()];
    buf[HEADROOM..].copy_from_slice(bytes);
    let mut pkt = Packet::new(&mut buf, HEADROOM, bytes.len());
    let mut st = State::new(0x0fff);
    let v = super::egress_gso(t, &mut st, ep(t, "cali1"), &mut pkt, segment);
    (v, pkt.data().to_vec())
}

/// A super-packet goes whole only where the kernel will cut it up: to a
/// direct-mode route when its segments fit the MTU (TTL decremented, the
/// rest untouched), or to a local pod; never into an encapsulation, never
/// with segments past the MTU. The same packet through plain `egress` is
/// too big for the MTU.
#[test]
fn super_packets_go_whole_only_where_the_kernel_segments() {
    let direct = cluster(EncapMode::Never).yaml();
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    let t = compile(&parse(&direct).unwrap(), "k8s-node1", &underlay).unwrap();
    let p = tcp_super_packet([10, 2, 169, 138]);
    let (v, out) = run_egress_gso(&t, &p, 1500);
    assert_eq!(v, Verdict::Send(Target::Direct { gw: NODE2 }));
    assert_eq!(out.len(), 4000);
    assert_eq!(out[8], 63);
    assert!(crate::wire::checksum::verifies(&out[..20]));
    assert_eq!(out[20..], p[20..]);
    // Segments of 1501 bytes do not fit the underlay's 1500.
    assert_eq!(
        run_egress_gso(&t, &p, 1501).0,
        Verdict::Drop(DropReason::TooBig)
    );
    // To a local pod: whole.
    let local = tcp_super_packet([10, 2, 36, 69]);
    assert_eq!(
        run_egress_gso(&t, &local, 1500).0,
        Verdict::Deliver(ep(&t, "cali2"))
    );
    // Plain egress: a DF packet over the MTU.
    assert!(matches!(
        run_egress(&t, "cali1", &p).0,
        Verdict::Icmp {
            reason: DropReason::TooBig,
            ..
        }
    ));
    // VXLAN: never whole, whatever the segments.
    let vx = tables("k8s-node1");
    assert_eq!(
        run_egress_gso(&vx, &p, 1000).0,
        Verdict::Drop(DropReason::TooBig)
    );
}
