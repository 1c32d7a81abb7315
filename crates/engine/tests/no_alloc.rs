//! The hot path allocates nothing: egress and ingress of every kind of
//! packet (delivered, encapsulated, fragmented, ICMP error, dropped) run
//! under a counting global allocator that must see zero allocations.

use podwire::config;
use podwire::pipeline::{HEADROOM, Packet, State, Verdict, egress, ingress};
use podwire::table::{Underlay, compile};

fn tables(node: &str) -> podwire::table::Tables {
    let text = include_str!("../../../examples/vxlan.yaml");
    let r = config::parse(text).unwrap();
    let u = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    compile(&r, node, &u).unwrap()
}

/// An IPv4/UDP packet of `len` bytes from 10.2.36.68 to `dst`.
fn udp(dst: [u8; 4], len: usize, df: bool, ttl: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = if df { 0x40 } else { 0 };
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 2, 36, 68]);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&5678u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    podwire::wire::ipv4::refresh_checksum(&mut p[..20]);
    p
}

#[test]
fn egress_and_ingress_do_not_allocate() {
    let t1 = tables("k8s-node1");
    let t2 = tables("k8s-node2");
    let from = t1.endpoint_by_interface("calif5eaaa317d1").unwrap();
    let inputs = [
        udp([10, 2, 169, 138], 1400, true, 64),  // VXLAN
        udp([10, 2, 36, 69], 200, true, 64),     // local
        udp([10, 2, 169, 138], 1500, false, 64), // fragmented
        udp([10, 2, 169, 138], 1500, true, 64),  // ICMP too big
        udp([10, 2, 169, 138], 100, true, 1),    // ICMP time exceeded
        udp([8, 8, 8, 8], 100, true, 64),        // no route
        vec![0x60; 80],                          // IPv6
        vec![0xff; 3],                           // garbage
    ];
    // Buffers are allocated up front, as a worker does.
    let mut buf = vec![0u8; HEADROOM + 2048];
    let mut out = vec![0u8; HEADROOM + 2048];
    let mut wire = vec![0u8; HEADROOM + 2048];
    let mut st = State::new(1);
    let mut verdicts = 0usize;
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            for input in &inputs {
                buf[HEADROOM..HEADROOM + input.len()].copy_from_slice(input);
                let mut pkt = Packet::new(&mut buf, HEADROOM, input.len());
                let v = egress(&t1, &mut st, from, &mut pkt);
                verdicts += 1;
                match v {
                    Verdict::Send(_) => {
                        let n = pkt.len();
                        wire[HEADROOM..HEADROOM + n].copy_from_slice(pkt.data());
                        let mut w = Packet::new(&mut wire, HEADROOM, n);
                        assert!(matches!(ingress(&t2, &mut w), Verdict::Deliver(_)));
                    }
                    Verdict::Fragment(job) => {
                        let original = pkt.data();
                        for i in 0..job.count() {
                            let mut o = Packet::new(&mut out, HEADROOM, 0);
                            assert!(job.emit(&t1, &mut st, original, i, &mut o).is_some());
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    assert_eq!(verdicts, 800);
    assert_eq!(
        info.count_total, 0,
        "allocations on the packet path: {info:?}"
    );
}

/// The framing around packets allocates nothing either: a TUN read's
/// virtio header (checksum completion, whole or cut), a direct-mode frame
/// and its unframing, a whole super-packet's header for a pod, and the GRO
/// merge plan.
#[test]
fn framing_and_coalescing_do_not_allocate() {
    use podwire::pipeline::{gro, l2};
    use podwire::table::NextHops;
    use podwire::wire::MacAddr;
    use podwire::wire::tcp_gro::MAX_HEADER_BLOCK;
    use podwire::wire::vnet::VnetHdr;

    let direct = include_str!("../../../examples/direct.yaml");
    let u = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    let t = compile(&config::parse(direct).unwrap(), "k8s-node1", &u).unwrap();
    let gw = t.direct_gateways()[0];
    let t = t.with_next_hops(NextHops::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        [(gw, MacAddr([2, 0, 0, 0, 0, 2]))],
    ));
    let mut tcp = udp([10, 2, 169, 138], 4000, true, 64);
    tcp[9] = 6;
    tcp[32] = 0x50;
    podwire::wire::ipv4::refresh_checksum(&mut tcp[..20]);
    let gso_hdr = VnetHdr::tcp4_gso(&tcp, 0, 1448, false).unwrap();
    let plain = VnetHdr::default();
    let segs = [
        udp([10, 2, 36, 69], 100, true, 64),
        udp([10, 2, 36, 69], 100, true, 64),
    ];
    let mut buf = vec![0u8; HEADROOM + 8192];
    let mut block = [0u8; MAX_HEADER_BLOCK];
    let mut framed = 0usize;
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            for hdr in [&gso_hdr, &plain] {
                buf[HEADROOM..HEADROOM + tcp.len()].copy_from_slice(&tcp);
                let mut pkt = Packet::new(&mut buf, HEADROOM, tcp.len());
                let whole = l2::Whole {
                    direct: true,
                    vxlan: true,
                    ipip: true,
                };
                let r = l2::from_tun(&t, hdr, &mut pkt, whole);
                let gso = match r {
                    Ok(l2::FromTun::Whole { gso, .. }) => Some(gso),
                    _ => None,
                };
                if l2::frame_direct(&t, &mut pkt, gw, gso, true).is_ok() {
                    framed += 1;
                    let (start, len) = (pkt.offset(), pkt.len());
                    let mut back = Packet::new(&mut buf, start, len);
                    assert!(l2::unframe_direct(&mut back, true).is_ok());
                    if let Some(g) = gso {
                        let _ = l2::to_tun_whole(&mut back, g);
                    }
                }
            }
            let m = gro::plan(&segs[0], segs[1..].iter().map(|s| s.as_slice()), &mut block);
            assert_eq!(m.count, 1);
        }
    });
    assert_eq!(framed, 200);
    assert_eq!(info.count_total, 0, "allocations while framing: {info:?}");
}
