//! Pipeline tests: golden bytes derived by hand from the RFCs and the SPEC
//! (`golden`), one scenario per drop reason (`drops`), and round-trip
//! properties (`props`). This module has the cluster and the packets they
//! share.
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

mod drops;
mod golden;
mod host;
mod props;
