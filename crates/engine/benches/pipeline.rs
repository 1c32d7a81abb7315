//! The packet pipeline against a copy of the same packet.
//!
//! The project's goal: encapsulating a 1400-byte packet, route lookup
//! included, costs less than one copy of it. Each group below runs one
//! pipeline function and, as its baseline, `memcpy`: one copy of the packet
//! that function receives into a preallocated buffer.
//!
//! - `{ipip,vxlan}_encap/{64,512,1400}`: [`pipeline::egress`] on node
//!   k8s-node1 of a UDP packet of that IPv4 total length from endpoint
//!   `calif5eaaa317d1` (10.2.36.68) to 10.2.169.138 on k8s-node2: validation,
//!   anti-spoofing, the encapsulated-traffic check, TTL, route lookup, MTU
//!   check and encapsulation (for VXLAN, the UDP checksum over the whole
//!   packet). Throughput is the inner packet's length. The VXLAN groups also
//!   run `encap_csum_offload`: the same with the UDP checksum left to the
//!   kernel or NIC (`UdpChecksum::Offload`).
//! - `{ipip,vxlan}_decap/{64,512,1400}`: [`pipeline::ingress`] on k8s-node2
//!   of what k8s-node1's egress produced (for VXLAN, the UDP checksum is
//!   verified over the whole packet). Throughput, and the `memcpy` baseline,
//!   are the encapsulated packet's length (the function's input).
//! - `checksum/1400`: the Internet checksum of 1400 bytes against a copy.
//! - `vxlan_whole/64000`: what userspace does to a pod's 64,000-byte TCP
//!   super-packet on the tunnel TAP path: [`pipeline::egress_gso`] (checks,
//!   lookup, VXLAN headers in front, the UDP checksum left as the
//!   pseudo-header sum) and [`l2::frame_tunnel`] (Ethernet, TTL, the
//!   tunnel virtio header), against one copy of the super-packet — the
//!   least the default path spends on it, which cuts it into 45 segments,
//!   copying and checksumming each. `ipip_whole/64000`: the same on the
//!   IPIP tunnel TUN's path ([`l2::frame_ipip_tun`]).
//!
//! Tables are compiled from `examples/{ipip,vxlan}.yaml` with a 9000-byte
//! underlay, so no packet here is ever fragmented.
//!
//! Restoring the input between iterations: the pipeline works in place, but
//! encapsulation only writes the outer headers into the headroom (fully
//! overwritten each time) and decrements the inner TTL (changing bytes 8 and
//! 10–11 of the inner header); decapsulation only decrements the inner TTL.
//! The payload is never written. So each iteration re-copies just the
//! 20-byte inner IPv4 header from a pristine copy and builds a fresh
//! [`Packet`] view, rather than using `iter_batched_ref` with a whole-packet
//! copy per iteration, which would time a copy of the very size we compare
//! against. The 20-byte copy (a couple of vector moves) stays inside the
//! measured time, a slight handicap for the pipeline. The packet stays in L1
//! cache across iterations, as does the `memcpy` baseline's.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use podwire::pipeline::{self, HEADROOM, Packet, State, Target, UdpChecksum, Verdict, l2};
use podwire::table::{self, EndpointId, Tables, Underlay};
use podwire::wire::checksum::Sum;
use podwire::wire::ipv4;

mod common;

/// Inner IPv4 total lengths.
const SIZES: [usize; 3] = [64, 512, 1400];

/// The sending endpoint on k8s-node1, and its address.
const FROM_IF: &str = "calif5eaaa317d1";
const SRC: Ipv4Addr = Ipv4Addr::new(10, 2, 36, 68);
/// The receiving endpoint on k8s-node2, and its address.
const TO_IF: &str = "cali7c1d2e3f4a5";
const DST: Ipv4Addr = Ipv4Addr::new(10, 2, 169, 138);

const H: usize = ipv4::HEADER_LEN;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ipip,
    Vxlan,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ipip => "ipip",
            Mode::Vxlan => "vxlan",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Mode::Ipip => include_str!("../../../examples/ipip.yaml"),
            Mode::Vxlan => include_str!("../../../examples/vxlan.yaml"),
        }
    }
}

/// One node's tables from an example file, with a jumbo-frame underlay.
fn tables(config: &str, node: &str) -> Tables {
    let resources = podwire::config::parse(config).expect("example configuration is valid");
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 9000,
    };
    table::compile(&resources, node, &underlay).expect("example tables compile")
}

/// `len` bytes, an IPv4 header from SRC to DST (DF set, TTL 64, `proto`)
/// first, zeros after it.
fn packet_from_src_to_dst(len: usize, proto: u8) -> Vec<u8> {
    let total_len = u16::try_from(len).expect("packet fits an IPv4 total length");
    let mut p = vec![0u8; len];
    ipv4::emit(
        (&mut p[..H]).try_into().expect("20 bytes"),
        &ipv4::Emit {
            tos: 0,
            total_len,
            ident: 0x1c46,
            flags_frag: ipv4::FLAG_DF,
            ttl: 64,
            proto,
            src: u32::from(SRC),
            dst: u32::from(DST),
        },
    );
    p
}

/// A UDP/IPv4 packet of total length `len` from SRC to DST (DF set, TTL 64,
/// correct IP and UDP checksums), the rest filled with a byte pattern.
fn inner_packet(len: usize) -> Vec<u8> {
    let total_len = u16::try_from(len).expect("packet fits an IPv4 total length");
    let udp_len = total_len - H as u16;
    let mut p = packet_from_src_to_dst(len, ipv4::proto::UDP);
    let udp = &mut p[H..];
    udp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = (i.wrapping_mul(7) + 13) as u8;
    }
    let csum = Sum::new()
        .add_u32(u32::from(SRC))
        .add_u32(u32::from(DST))
        .add_u16(u16::from(ipv4::proto::UDP))
        .add_u16(udp_len)
        .add_bytes(udp)
        .checksum();
    let csum = if csum == 0 { 0xffff } else { csum };
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    p
}

/// Adds the `memcpy` baseline to `g`: one copy of `src` into a preallocated
/// buffer, both sides hidden from the optimiser.
fn bench_memcpy(g: &mut BenchmarkGroup<'_, WallTime>, src: &[u8]) {
    let mut dst = vec![0u8; src.len()];
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(src));
            black_box(&mut dst);
        })
    });
}

fn bench_mode(c: &mut Criterion, mode: Mode) {
    let node1 = tables(mode.config(), "k8s-node1");
    let node2 = tables(mode.config(), "k8s-node2");
    let from = node1
        .endpoint_by_interface(FROM_IF)
        .expect("sending endpoint on k8s-node1");
    let to = node2
        .endpoint_by_interface(TO_IF)
        .expect("receiving endpoint on k8s-node2");
    for len in SIZES {
        let inner = inner_packet(len);
        let (outer, outer_at) = encapsulated(&node1, from, &inner, mode);
        let outer_len = outer.len();
        // The inner header as k8s-node1 sent it (TTL already decremented).
        let sent_header: [u8; H] = outer[HEADROOM - outer_at..][..H]
            .try_into()
            .expect("20 bytes");
        assert_eq!(&outer[outer_len - (len - H)..], &inner[H..]);

        // Encapsulation.
        let pristine: [u8; H] = inner[..H].try_into().expect("20 bytes");
        let mut buf = vec![0u8; HEADROOM + len];
        buf[HEADROOM..].copy_from_slice(&inner);
        let mut st = State::new(0);
        let mut g = c.benchmark_group(format!("{}_encap/{len}", mode.name()));
        g.throughput(Throughput::Bytes(len as u64));
        let mut modes = vec![("encap", UdpChecksum::Full)];
        if mode == Mode::Vxlan {
            // The same with the UDP checksum left to the kernel or NIC, as an
            // I/O layer with checksum offload sends it.
            modes.push(("encap_csum_offload", UdpChecksum::Offload));
        }
        for (name, csum) in modes {
            let mut st = State::new(0).with_udp_checksum(csum);
            g.bench_function(name, |b| {
                b.iter(|| {
                    // Undo the previous iteration's TTL decrement (see the top).
                    buf[HEADROOM..HEADROOM + H].copy_from_slice(&pristine);
                    let mut pkt = Packet::new(&mut buf, HEADROOM, len);
                    let v = pipeline::egress(&node1, &mut st, from, black_box(&mut pkt));
                    black_box((v, pkt.offset()));
                })
            });
        }
        bench_memcpy(&mut g, &inner);
        g.finish();
        // Restoring only the inner header gives the same encapsulation again
        // (all but the outer IPv4 header, whose IP ID moves on).
        buf[HEADROOM..HEADROOM + H].copy_from_slice(&pristine);
        let mut pkt = Packet::new(&mut buf, HEADROOM, len);
        assert!(matches!(
            pipeline::egress(&node1, &mut st, from, &mut pkt),
            Verdict::Send(_)
        ));
        assert_eq!(pkt.offset(), outer_at);
        assert_eq!(&pkt.data()[H..], &outer[H..]);

        // Decapsulation: the inner header sits at HEADROOM again.
        let mut buf = vec![0u8; HEADROOM + len];
        buf[outer_at..].copy_from_slice(&outer);
        let mut pkt = Packet::new(&mut buf, outer_at, outer_len);
        assert_eq!(pipeline::ingress(&node2, &mut pkt), Verdict::Deliver(to));
        assert_eq!(pkt.offset(), HEADROOM);
        assert_eq!(pkt.data()[8], 62, "inner TTL decremented on k8s-node2");
        let mut g = c.benchmark_group(format!("{}_decap/{len}", mode.name()));
        g.throughput(Throughput::Bytes(outer_len as u64));
        g.bench_function("decap", |b| {
            b.iter(|| {
                // Undo the previous iteration's TTL decrement (see the top).
                buf[HEADROOM..HEADROOM + H].copy_from_slice(&sent_header);
                let mut pkt = Packet::new(&mut buf, outer_at, outer_len);
                let v = pipeline::ingress(&node2, black_box(&mut pkt));
                black_box((v, pkt.offset()));
            })
        });
        bench_memcpy(&mut g, &outer);
        g.finish();
    }
}

/// Runs k8s-node1's egress once on `inner` and checks the verdict; returns
/// the encapsulated packet and its offset in a buffer whose inner packet
/// starts at HEADROOM.
fn encapsulated(node1: &Tables, from: EndpointId, inner: &[u8], mode: Mode) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; HEADROOM + inner.len()];
    buf[HEADROOM..].copy_from_slice(inner);
    let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
    let v = pipeline::egress(node1, &mut State::new(0), from, &mut pkt);
    let node2 = Ipv4Addr::new(192, 168, 33, 57);
    match (mode, v) {
        (Mode::Ipip, Verdict::Send(Target::Ipip { node })) => assert_eq!(node, node2),
        (Mode::Vxlan, Verdict::Send(Target::Vxlan { node, .. })) => assert_eq!(node, node2),
        _ => panic!("{mode:?} egress of a {}-byte packet: {v:?}", inner.len()),
    }
    (pkt.data().to_vec(), pkt.offset())
}

/// The Internet checksum of 1400 bytes (what VXLAN's UDP checksum reads on
/// both sides) against one copy of them.
fn bench_checksum(c: &mut Criterion) {
    let data = inner_packet(1400);
    let mut g = c.benchmark_group("checksum/1400");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("checksum", |b| {
        b.iter(|| black_box(Sum::new().add_bytes(black_box(&data)).fold()))
    });
    bench_memcpy(&mut g, &data);
    g.finish();
}

/// What the host path costs pod-to-pod traffic: VXLAN egress of a 64-byte
/// packet with the host path off, on with an empty flow table, and on with
/// 10,000 kernel-NATed flows recorded (none of them this one's), beside
/// one copy of the packet.
fn bench_host_path(c: &mut Criterion) {
    let config = Mode::Vxlan.config();
    let resources = podwire::config::parse(config).expect("example configuration is valid");
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 9000,
    };
    let off = tables(config, "k8s-node1");
    let on = table::compile_with(&resources, "k8s-node1", &underlay, Some("podwire0"))
        .expect("example tables compile");
    let busy = table::compile_with(&resources, "k8s-node1", &underlay, Some("podwire0"))
        .expect("example tables compile");
    for i in 0..10_000u32 {
        busy.flows().record(
            pipeline::flows::FlowKey {
                proto: ipv4::proto::TCP,
                src: u32::from(DST),
                dst: 0x0a02_0000 | i,
                sport: 8080,
                dport: 40_000,
            },
            0,
        );
    }
    let inner = inner_packet(64);
    let pristine: [u8; H] = inner[..H].try_into().expect("20 bytes");
    let mut g = c.benchmark_group("vxlan_encap_host_path/64");
    g.throughput(Throughput::Bytes(64));
    for (name, t) in [
        ("host_path_off", &off),
        ("host_path_on", &on),
        ("host_path_10k_flows", &busy),
    ] {
        let from = t
            .endpoint_by_interface(FROM_IF)
            .expect("sending endpoint on k8s-node1");
        let mut buf = vec![0u8; HEADROOM + inner.len()];
        buf[HEADROOM..].copy_from_slice(&inner);
        let mut st = State::new(0);
        let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
        assert!(matches!(
            pipeline::egress(t, &mut st, from, &mut pkt),
            Verdict::Send(Target::Vxlan { .. })
        ));
        g.bench_function(name, |b| {
            b.iter(|| {
                buf[HEADROOM..HEADROOM + H].copy_from_slice(&pristine);
                let mut pkt = Packet::new(&mut buf, HEADROOM, 64);
                let v = pipeline::egress(t, &mut st, from, black_box(&mut pkt));
                black_box((v, pkt.offset()));
            })
        });
    }
    bench_memcpy(&mut g, &inner);
    g.finish();
}

/// A TCP/IPv4 super-packet of `len` bytes from SRC to DST (DF, TTL 64, a
/// 20-byte TCP header with ACK), as a pod's kernel hands it to its TUN
/// device with TSO.
fn tcp_super_packet(len: usize) -> Vec<u8> {
    let mut p = packet_from_src_to_dst(len, ipv4::proto::TCP);
    p[H..H + 4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
    p[H + 12] = 0x50;
    p[H + 13] = 0x10;
    for (i, b) in p[H + 20..].iter_mut().enumerate() {
        *b = (i.wrapping_mul(7) + 13) as u8;
    }
    p
}

fn bench_whole(c: &mut Criterion) {
    let t = tables(Mode::Vxlan.config(), "k8s-node1");
    let from = t
        .endpoint_by_interface(FROM_IF)
        .expect("sending endpoint on k8s-node1");
    let inner = tcp_super_packet(64_000);
    let pristine: [u8; H] = inner[..H].try_into().expect("20 bytes");
    let tap = podwire::wire::MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    let gso = pipeline::Gso {
        size: 1398,
        ecn: false,
    };
    let mut g = c.benchmark_group("vxlan_whole/64000");
    g.throughput(Throughput::Bytes(inner.len() as u64));
    let mut buf = vec![0u8; HEADROOM + inner.len()];
    buf[HEADROOM..].copy_from_slice(&inner);
    let mut st = State::new(0).with_udp_checksum(UdpChecksum::Offload);
    let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
    let v = pipeline::egress_gso(&t, &mut st, from, &mut pkt, 1450);
    assert!(matches!(v, Verdict::Send(Target::Vxlan { .. })), "{v:?}");
    assert!(l2::frame_tunnel(&mut pkt, tap, Some(gso)).is_ok());
    g.bench_function("egress_gso_frame_tunnel", |b| {
        b.iter(|| {
            buf[HEADROOM..HEADROOM + H].copy_from_slice(&pristine);
            let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
            let v = pipeline::egress_gso(&t, &mut st, from, black_box(&mut pkt), 1450);
            let hdr = l2::frame_tunnel(&mut pkt, tap, Some(gso));
            let _ = black_box((v, hdr, pkt.offset()));
        })
    });
    bench_memcpy(&mut g, &inner);
    g.finish();
    // The same for IPIP: egress_gso (one outer IPv4 header) and
    // frame_ipip_tun (the outer TTL, the TCPv4 virtio header).
    let t = tables(Mode::Ipip.config(), "k8s-node1");
    let from = t
        .endpoint_by_interface(FROM_IF)
        .expect("sending endpoint on k8s-node1");
    let mut g = c.benchmark_group("ipip_whole/64000");
    g.throughput(Throughput::Bytes(inner.len() as u64));
    buf[HEADROOM..].copy_from_slice(&inner);
    let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
    let v = pipeline::egress_gso(&t, &mut st, from, &mut pkt, 1480);
    assert!(matches!(v, Verdict::Send(Target::Ipip { .. })), "{v:?}");
    assert!(l2::frame_ipip_tun(&mut pkt, Some(gso)).is_ok());
    g.bench_function("egress_gso_frame_ipip_tun", |b| {
        b.iter(|| {
            buf[HEADROOM..HEADROOM + H].copy_from_slice(&pristine);
            let mut pkt = Packet::new(&mut buf, HEADROOM, inner.len());
            let v = pipeline::egress_gso(&t, &mut st, from, black_box(&mut pkt), 1480);
            let hdr = l2::frame_ipip_tun(&mut pkt, Some(gso));
            let _ = black_box((v, hdr, pkt.offset()));
        })
    });
    bench_memcpy(&mut g, &inner);
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_mode(c, Mode::Ipip);
    bench_mode(c, Mode::Vxlan);
    bench_checksum(c);
    bench_host_path(c);
    bench_whole(c);
}

criterion_group! {
    name = pipeline_benches;
    config = common::config();
    targets = benches
}
criterion_main!(pipeline_benches);
