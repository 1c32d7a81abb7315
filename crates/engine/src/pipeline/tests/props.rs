//! Properties over random packets, and super-packets.

use super::*;

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
    run_egress_gso_from(t, "cali1", bytes, segment)
}

fn run_egress_gso_from(t: &Tables, from: &str, bytes: &[u8], segment: usize) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + bytes.len()];
    buf[HEADROOM..].copy_from_slice(bytes);
    let mut pkt = Packet::new(&mut buf, HEADROOM, bytes.len());
    let mut st = State::new(0x0fff);
    let v = super::egress_gso(t, &mut st, ep(t, from), &mut pkt, segment);
    (v, pkt.data().to_vec())
}

/// A super-packet goes whole only where the kernel will cut it up: to a
/// direct-mode route when its segments fit the MTU (TTL decremented, the
/// rest untouched), to a local pod, or into VXLAN; never into IP-in-IP,
/// never with segments past the MTU. The same packet through plain `egress` is
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
    // VXLAN: whole, the outer headers in front of the super-packet (for
    // the kernel to cut up, each segment within the VXLAN MTU of 1450).
    let vx = tables("k8s-node1");
    let (v, out) = run_egress_gso(&vx, &p, 1450);
    assert!(
        matches!(v, Verdict::Send(Target::Vxlan { node, .. }) if node == NODE2),
        "{v:?}"
    );
    assert_eq!(out.len(), 4050);
    // Outer IPv4: the whole length (4050 = 0x0fd2), UDP; the UDP length
    // 4030 = 0x0fbe; the inner packet after 50 bytes, its TTL 63.
    assert_eq!((out[2], out[3], out[9]), (0x0f, 0xd2, 17));
    assert_eq!((out[24], out[25]), (0x0f, 0xbe));
    assert_eq!(out[50 + 8], 63);
    assert_eq!(out[50 + 20..], p[20..]);
    assert_eq!(
        run_egress_gso(&vx, &p, 1451).0,
        Verdict::Drop(DropReason::TooBig)
    );
    // IP-in-IP: whole (for the IPIP tunnel TUN), one outer header of 20
    // bytes (RFC 2003: protocol 4, TTL and DF of the inner packet after its
    // decrement) in front, each segment within the IPIP MTU of 1480.
    let mut ipip = tcp_super_packet([10, 3, 5, 10]);
    ipip[12..16].copy_from_slice(&[10, 3, 1, 5]);
    fix_ip_csum(&mut ipip, 0);
    let (v, out) = run_egress_gso_from(&vx, "cali3", &ipip, 1480);
    assert!(matches!(v, Verdict::Send(Target::Ipip { .. })), "{v:?}");
    assert_eq!(out.len(), ipip.len() + 20);
    // 4020 = 0x0fb4 bytes, DF as the inner's, TTL 63 as the inner's, IPIP.
    assert_eq!(
        (out[2], out[3], out[6] & 0x40, out[8], out[9]),
        (0x0f, 0xb4, ipip[6] & 0x40, 63, 4)
    );
    assert_eq!(out[20 + 8], 63);
    assert_eq!(out[20 + 12..], ipip[12..]);
    assert_eq!(
        run_egress_gso_from(&vx, "cali3", &ipip, 1481).0,
        Verdict::Drop(DropReason::TooBig)
    );
}
