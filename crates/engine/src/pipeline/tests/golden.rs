//! Golden bytes: every header field of IPIP, VXLAN, ICMP errors and
//! fragments, with the checksums derived in the comments.

use super::*;

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
pub(super) fn golden_vxlan_packet() -> Vec<u8> {
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

/// Two VXLAN datagrams behind one set of outer headers, as a `UDP_SEGMENT`
/// send from this host reaches a packet socket uncut: the outer headers
/// are checked once (but for the UDP checksum, partial), and each payload
/// decapsulates as the golden packet's does.
#[test]
fn vxlan_datagrams_behind_one_header_decapsulate_one_by_one() {
    let t = tables("k8s-node2");
    let one = golden_vxlan_packet();
    let payload = &one[28..];
    let run = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = one[..28].to_vec();
        p.extend(payload);
        p.extend(payload);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[24..26].copy_from_slice(&(total - 20).to_be_bytes());
        // The checksum a UDP_SEGMENT send leaves partial: not verified.
        p[26..28].copy_from_slice(&[0x12, 0x34]);
        edit(&mut p);
        fix_ip_csum(&mut p, 0);
        let mut buf = vec![0u8; HEADROOM + p.len()];
        buf[HEADROOM..].copy_from_slice(&p);
        let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
        let r = super::vxlan_datagrams(&t, &mut pkt);
        (r, pkt.offset() - HEADROOM, pkt.len())
    };
    let (r, at, len) = run(&|_| {});
    // From k8s-node1, outer ECN ECT(0); the payloads from byte 28 on.
    assert_eq!(r, Ok((Ipv4Addr::new(192, 168, 33, 55), 2)));
    assert_eq!((at, len), (28, 2 * payload.len()));
    for _ in 0..2 {
        let mut p = payload.to_vec();
        let mut pkt = Packet::new(&mut p, 0, payload.len());
        let v = super::ingress_vxlan_payload(&t, Ipv4Addr::new(192, 168, 33, 55), 2, &mut pkt);
        assert_eq!(v, Verdict::Deliver(ep(&t, "calb1")));
        assert_eq!(pkt.data(), cat(&[INNER_VXLAN_TTL62, ICMP_ECHO]));
    }
    // The outer checks still apply: a stranger, another port, a fragment,
    // a UDP length that is not the packet's, another address.
    let stranger = run(&|p| p[12..16].copy_from_slice(&[192, 168, 33, 99])).0;
    assert_eq!(stranger, Err(DropReason::UnknownPeer));
    let port = run(&|p| p[22..24].copy_from_slice(&4790u16.to_be_bytes())).0;
    assert_eq!(port, Err(DropReason::NotForNode));
    let frag = run(&|p| p[6] |= 0x20).0;
    assert_eq!(frag, Err(DropReason::FragmentedOuter));
    let udp_len = run(&|p| p[25] -= 1).0;
    assert_eq!(udp_len, Err(DropReason::Malformed));
    let other = run(&|p| p[19] = 58).0;
    assert_eq!(other, Err(DropReason::NotForNode));
}

/// A frame whose checksums the virtio header says are partial skips the
/// outer UDP checksum; any other is verified.
#[test]
fn a_partial_frame_skips_only_the_outer_udp_checksum() {
    let t = tables("k8s-node2");
    let mut p = golden_vxlan_packet();
    p[26] ^= 0xff;
    let run = |p: &[u8], partial: bool| {
        let mut buf = p.to_vec();
        let mut pkt = Packet::new(&mut buf, 0, p.len());
        super::ingress_frame(&t, &mut pkt, partial)
    };
    assert_eq!(run(&p, true), Verdict::Deliver(ep(&t, "calb1")));
    assert_eq!(run(&p, false), Verdict::Drop(DropReason::BadChecksum));
    // Every other check holds for a partial frame too.
    let mut vni = golden_vxlan_packet();
    vni[28 + 5] = 0x11;
    assert_eq!(run(&vni, true), Verdict::Drop(DropReason::BadVni));
}
