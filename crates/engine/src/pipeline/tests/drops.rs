//! One scenario per drop reason, and the counters.

use super::golden::golden_vxlan_packet;
use super::*;

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
