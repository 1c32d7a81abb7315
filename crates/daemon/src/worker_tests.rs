//! The worker against mock backends (`podwire_io::mock`: Unix datagram
//! pairs that mio polls like sockets): no root, no namespace, no device.
//! A worker thread runs on `examples/vxlan.yaml` compiled for k8s-node1,
//! with its two pods' queues, an underlay receive socket for VXLAN and one
//! for IPIP, and a raw sender (VXLAN with a software checksum, as with
//! `--no-udp-segment`). The test is each pod and the underlay.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::stats::{EndpointStats, Offloads, WorkerStats};
use super::worker::{Worker, WorkerIo, poll_with_waker};
use super::{EndpointIo, Shared, Snapshot};
use podwire::config::parse;
use podwire::pipeline::{self, DropReason, HEADROOM, Packet, State, UdpChecksum, Verdict};
use podwire::table::{Tables, Underlay, compile};
use podwire_io::PacketQueue;
use podwire_io::mock::{self, Wire};

const NODE1: Ipv4Addr = Ipv4Addr::new(192, 168, 33, 55);
const NODE2: Ipv4Addr = Ipv4Addr::new(192, 168, 33, 57);
const WAIT: Duration = Duration::from_secs(2);

fn tables(node: &str) -> Tables {
    let r = parse(include_str!("../../../examples/vxlan.yaml")).unwrap();
    let u = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    compile(&r, node, &u).unwrap()
}

/// An IPv4/UDP packet from `src` to `dst`, TTL 64, DF, 8 bytes of payload,
/// UDP checksum 0 (none, as IPv4 allows), header checksum valid.
fn udp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 36];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&36u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    podwire_wire::ipv4::refresh_checksum(&mut p[..20]);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&7000u16.to_be_bytes());
    p[24..26].copy_from_slice(&16u16.to_be_bytes());
    p[28..].copy_from_slice(b"podwire!");
    p
}

/// A running worker and the test's ends of its backends.
struct Harness {
    shared: Arc<Shared>,
    waker: Arc<mio::Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The pods, in the order of the tables' endpoints.
    pods: Vec<Wire>,
    vxlan_in: Wire,
    ipip_in: Wire,
    underlay_out: Wire,
}

impl Harness {
    fn start() -> Harness {
        let t = tables("k8s-node1");
        let mut pods = Vec::new();
        let mut endpoints = Vec::new();
        for ep in t.endpoints() {
            let (q, wire) = mock::queue().unwrap();
            pods.push(wire);
            endpoints.push(Arc::new(EndpointIo {
                interface: ep.interface.clone(),
                workload: ep.name.clone(),
                mtu: ep.mtu,
                queues: vec![Box::new(q) as Box<dyn PacketQueue>],
                stats: vec![EndpointStats::default()],
            }));
        }
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                tables: t,
                endpoints,
            }),
            workers: vec![WorkerStats::default()],
            stop: AtomicBool::new(false),
            started: Instant::now(),
            reloads: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            underlay: None,
            swap: std::sync::Mutex::new(()),
            neigh_waker: std::sync::OnceLock::new(),
            state_thread: std::sync::OnceLock::new(),
            worker_generations: vec![AtomicU64::new(0)],
            offloads: Offloads::default(),
            source_status: None,
            host: None,
            blackholes: crate::blackhole::Blackholes::new(),
            pending: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let (vx, vxlan_in) = mock::rx().unwrap();
        let (ip, ipip_in) = mock::rx().unwrap();
        let (raw, underlay_out) = mock::tx().unwrap();
        let io = WorkerIo {
            raw_tx: Box::new(raw),
            ipip_rx: Some(Box::new(ip)),
            vxlan_rx: Some(Box::new(vx)),
            direct_tx: None,
            direct_rx: None,
            vxlan_tx: None,
            tunnel: None,
            vxlan_frames_rx: None,
            ipip_frames_rx: None,
            ipip_tun: None,
        };
        let (poll, waker) = poll_with_waker().unwrap();
        let w = Worker::new(0, Arc::clone(&shared), poll, io).unwrap();
        let thread = std::thread::spawn(move || w.run());
        Harness {
            shared,
            waker,
            thread: Some(thread),
            pods,
            vxlan_in,
            ipip_in,
            underlay_out,
        }
    }

    /// Waits until the worker has counted `n` drops for `reason`.
    fn drops(&self, reason: DropReason, n: u64) {
        let deadline = Instant::now() + WAIT;
        while self.shared.totals().drop_count(reason) < n {
            assert!(Instant::now() < deadline, "no {reason} drop counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(self.shared.totals().drop_count(reason), n);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_worker_forwards_between_pods_and_the_underlay_without_root() {
    let h = Harness::start();
    let (a, b) = (&h.pods[0], &h.pods[1]);

    // Pod to pod on the node: delivered, TTL 63, checksum updated.
    let p = udp([10, 2, 36, 68], [10, 2, 36, 69]);
    a.put_packet(&p).unwrap();
    let got = b.take(WAIT).expect("pod b got nothing");
    assert_eq!(got.len(), p.len());
    assert_eq!(got[8], 63);
    assert!(podwire_wire::checksum::verifies(&got[..20]));
    assert_eq!(got[20..], p[20..]);

    // To k8s-node2's pod: VXLAN from the node IP to node 2, through the raw
    // sender; VNI 4096 (08 00 00 00 00 10 00 00), destination port 4789,
    // the inner packet TTL 63 after the 50 bytes of headers.
    let p = udp([10, 2, 36, 68], [10, 2, 169, 138]);
    a.put_packet(&p).unwrap();
    let (dst, out) = h.underlay_out.take_sent(WAIT).expect("nothing sent");
    assert_eq!(dst, NODE2);
    assert_eq!(out.len(), 50 + p.len());
    assert_eq!(out[9], 17);
    assert_eq!(out[12..16], NODE1.octets());
    assert_eq!(out[16..20], NODE2.octets());
    assert_eq!(u16::from_be_bytes([out[22], out[23]]), 4789);
    assert_eq!(out[28..36], [0x08, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(out[50 + 8], 63);
    assert_eq!(out[50 + 20..], p[20..]);

    // From k8s-node2 over VXLAN (as its own pipeline would send it; a UDP
    // socket gives the payload after the outer IPv4 and UDP headers): to
    // pod a, TTL 62 (one hop on each node).
    let t2 = tables("k8s-node2");
    let from = t2.endpoint_by_interface("cali7c1d2e3f4a5").unwrap();
    let p = udp([10, 2, 169, 138], [10, 2, 36, 68]);
    let mut buf = vec![0u8; HEADROOM + p.len()];
    buf[HEADROOM..].copy_from_slice(&p);
    let mut pkt = Packet::new(&mut buf, HEADROOM, p.len());
    let mut st = State::new(1).with_udp_checksum(UdpChecksum::Full);
    assert!(matches!(
        pipeline::egress(&t2, &mut st, from, &mut pkt),
        Verdict::Send(_)
    ));
    h.vxlan_in.put(NODE2, 0, &pkt.data()[28..]).unwrap();
    let got = a.take(WAIT).expect("pod a got nothing from node 2");
    assert_eq!(got.len(), p.len());
    assert_eq!(got[8], 62);
    assert_eq!(got[20..], p[20..]);

    // The same from a stranger: dropped as unknown-peer, nothing delivered.
    h.vxlan_in
        .put(Ipv4Addr::new(192, 168, 33, 99), 0, &pkt.data()[28..])
        .unwrap();
    h.drops(DropReason::UnknownPeer, 1);
    // A spoofed source from pod a: dropped, counted.
    a.put_packet(&udp([10, 2, 36, 99], [10, 2, 36, 69]))
        .unwrap();
    h.drops(DropReason::SpoofedSource, 1);
    // Garbage on the IPIP socket: malformed.
    h.ipip_in.put(NODE2, 0, &[0x45, 0, 0]).unwrap();
    h.drops(DropReason::Malformed, 1);
    assert!(b.take(Duration::from_millis(100)).is_none());
    assert!(a.take(Duration::from_millis(100)).is_none());

    // The counters moved once per packet.
    let t = h.shared.totals();
    assert_eq!(t.endpoints[0].from_workload.packets, 3);
    assert_eq!(t.endpoints[0].to_workload.packets, 1);
    assert_eq!(t.endpoints[1].to_workload.packets, 1);
}
