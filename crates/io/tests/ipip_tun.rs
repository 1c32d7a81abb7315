//! The IPIP tunnel TUN against the kernel: a whole IPIP super-packet (a
//! TCP super-packet of 45 segments of 1,400 bytes inside one outer IPv4
//! header) written into the TUN in namespace A, with the re-tag program on
//! it, leaves A's veth as 45 IPIP packets that namespace B's packet socket
//! reads — each checked here field by field against RFC 2003 and RFC 793:
//! outer and inner headers and checksums, IP IDs and sequence numbers
//! stepping, the payload in order. A's veth has transmit checksumming off,
//! so the kernel cuts the packet and completes every checksum itself (as
//! it does for a NIC without tunnel offloads). Needs root (and Linux 6.6
//! for TCX); without root the test says it was skipped and passes.

mod common;

use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use podwire_wire::checksum::{self, Sum};
use podwire_wire::ipv4;
use podwire_wire::vnet::{self, VnetHdr};

const A_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
const MSS: usize = 1400;
const SEGMENTS: usize = 45;
const SEQ: u32 = 1000;
const OUTER_ID: u16 = 0x1234;
const INNER_ID: u16 = 0x0100;

fn payload_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The outer packet as a worker writes it after its virtio header: outer
/// IPv4 A → B, protocol 4, TTL 65 (the kernel forwards it, taking one
/// off), DF; inner IPv4 pod A → pod B; TCP with the pseudo-header sum of
/// the whole TCP length in its checksum (partial, as a pod's kernel leaves
/// it).
fn super_packet() -> (VnetHdr, Vec<u8>) {
    let data = SEGMENTS * MSS;
    let inner_len = 40 + data;
    let mut p = vec![0u8; 20 + inner_len];
    // Both IPv4 headers, DF, with their checksums (podwire-wire's emitter).
    let header = |total: usize, ident, ttl, proto, src: Ipv4Addr, dst: Ipv4Addr| {
        let mut h = [0u8; ipv4::HEADER_LEN];
        let e = ipv4::Emit {
            tos: 0,
            total_len: total as u16,
            ident,
            flags_frag: ipv4::FLAG_DF,
            ttl,
            proto,
            src: u32::from(src),
            dst: u32::from(dst),
        };
        ipv4::emit(&mut h, &e);
        h
    };
    p[..20].copy_from_slice(&header(20 + inner_len, OUTER_ID, 65, 4, A_IP, B_IP));
    p[20..40].copy_from_slice(&header(inner_len, INNER_ID, 63, 6, POD_A, POD_B));
    let inner = &mut p[20..60];
    let tcp = &mut inner[20..40];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&SEQ.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x18; // ACK | PSH
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    let pseudo = Sum::new()
        .add_u32(u32::from(POD_A))
        .add_u32(u32::from(POD_B))
        .add_u16(6)
        .add_u16((20 + data) as u16)
        .fold();
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    for (i, b) in p[60..].iter_mut().enumerate() {
        *b = payload_byte(i);
    }
    let hdr = VnetHdr::tcp4_gso(&p[20..], 20, MSS as u16, false).expect("a TCP packet");
    (hdr, p)
}

/// Checks one received frame as segment `k`, returning its payload length.
fn check_segment(frame: &[u8], k: usize) -> usize {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "segment {k}: not IPv4");
    let outer = &frame[14..];
    assert_eq!(outer[0], 0x45, "segment {k}: outer version/IHL");
    let outer_len = usize::from(u16::from_be_bytes([outer[2], outer[3]]));
    assert_eq!(outer_len, 20 + 40 + MSS, "segment {k}: outer length");
    assert_eq!(
        u16::from_be_bytes([outer[4], outer[5]]),
        OUTER_ID.wrapping_add(k as u16),
        "segment {k}: outer IP ID"
    );
    assert_eq!(outer[6] & 0x40, 0x40, "segment {k}: outer DF");
    assert_eq!((outer[8], outer[9]), (64, 4), "segment {k}: TTL, protocol");
    assert_eq!(&outer[12..16], &A_IP.octets());
    assert_eq!(&outer[16..20], &B_IP.octets());
    assert!(
        checksum::verifies(&outer[..20]),
        "segment {k}: outer checksum"
    );
    let inner = &outer[20..outer_len];
    assert_eq!(inner[0], 0x45);
    assert_eq!(
        usize::from(u16::from_be_bytes([inner[2], inner[3]])),
        inner.len(),
        "segment {k}: inner length"
    );
    assert_eq!(
        u16::from_be_bytes([inner[4], inner[5]]),
        INNER_ID.wrapping_add(k as u16),
        "segment {k}: inner IP ID"
    );
    assert_eq!(inner[8], 63, "segment {k}: inner TTL untouched");
    assert!(
        checksum::verifies(&inner[..20]),
        "segment {k}: inner checksum"
    );
    let tcp = &inner[20..];
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    assert_eq!(seq, SEQ + (k * MSS) as u32, "segment {k}: sequence number");
    let psh = tcp[13] & 0x08 != 0;
    assert_eq!(psh, k == SEGMENTS - 1, "segment {k}: PSH on the last only");
    let sum = Sum::new()
        .add_u32(u32::from(POD_A))
        .add_u32(u32::from(POD_B))
        .add_u16(6)
        .add_u16(tcp.len() as u16)
        .add_bytes(tcp)
        .fold();
    assert_eq!(sum, 0xffff, "segment {k}: TCP checksum");
    for (i, b) in tcp[20..].iter().enumerate() {
        assert_eq!(
            *b,
            payload_byte(k * MSS + i),
            "segment {k}: payload byte {i}"
        );
    }
    tcp.len() - 20
}

#[test]
fn an_ipip_super_packet_leaves_as_ipip_segments() {
    if !root_or_skip("an_ipip_super_packet_leaves_as_ipip_segments") {
        return;
    }
    let pair = Pair::new('i');
    let b_mac = B_MAC.to_string();
    ip(&[
        "-n",
        &pair.a,
        "neigh",
        "replace",
        &B_IP.to_string(),
        "lladdr",
        &b_mac,
        "dev",
        &pair.veth_a,
    ]);
    let ethtool = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.a,
            "ethtool",
            "-K",
            &pair.veth_a,
            "tx",
            "off",
        ])
        .output()
        .expect("run ethtool");
    assert!(ethtool.status.success(), "ethtool: {ethtool:?}");
    let (ready_tx, ready_rx) = mpsc::channel();
    let veth_b = pair.veth_b.clone();
    let receiver = in_ns(&pair.b, move || {
        let ifindex = podwire_io::netdev::ifindex(&veth_b).expect("B's veth");
        let sock = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(i32::from(
                (libc::ETH_P_ALL as u16).to_be(),
            ))),
        )
        .expect("packet socket");
        podwire_io::sys::sockopt::bind_packet(&sock, ifindex, libc::ETH_P_ALL as u16)
            .expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut frames = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 70_000];
        while frames.len() < SEGMENTS && Instant::now() < deadline {
            let n = match (&sock).read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let f = &buf[..n];
            if f.len() > 23 && f[12..14] == [0x08, 0x00] && f[23] == 4 {
                frames.push(f.to_vec());
            }
        }
        frames
    });
    ready_rx.recv().unwrap();
    let name = format!("pwip{}", std::process::id());
    let written = in_ns(&pair.a, move || {
        std::fs::write("/proc/sys/net/ipv4/conf/all/rp_filter", "0").unwrap();
        let tun = podwire_io::tap::open_ipip(&name, 1).expect("the IPIP tunnel TUN");
        let (hdr, pkt) = super_packet();
        let mut h = [0u8; vnet::LEN];
        hdr.write(&mut h);
        let n = tun.queues[0]
            .send_vectored(&[std::io::IoSlice::new(&h), std::io::IoSlice::new(&pkt)])
            .expect("write the super-packet");
        // Keep the device (and the program) until the segments are out.
        std::thread::sleep(Duration::from_millis(500));
        n
    })
    .join()
    .unwrap();
    assert_eq!(written, vnet::LEN + 20 + 40 + SEGMENTS * MSS);
    let frames = receiver.join().unwrap();
    assert_eq!(frames.len(), SEGMENTS, "IPIP segments seen in B");
    let data: usize = frames
        .iter()
        .enumerate()
        .map(|(k, f)| check_segment(f, k))
        .sum();
    assert_eq!(data, SEGMENTS * MSS);
}
