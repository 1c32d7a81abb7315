//! The ingress model (SPEC §4) and `run_ingress`.

use std::net::Ipv4Addr;

use podwire::pipeline::{self, DropReason, HEADROOM, Packet, Verdict};

use crate::*;

/// Which ingress entry point, with its extra arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `pipeline::ingress`: a whole outer IPv4 packet.
    Ingress,
    /// `pipeline::ingress_vxlan_payload`: a UDP payload from `src`.
    VxlanPayload { src: Ipv4Addr, outer_ecn: u8 },
    /// `pipeline::ingress_direct`: an IPv4 packet out of an Ethernet frame.
    Direct,
}

/// The result of an ingress run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The delivered bytes, for `Deliver`.
    pub delivered: Vec<u8>,
}

/// What the SPEC says ingress must do: deliver the inner packet found at
/// `inner_at` (`set_ce` when the outer ECN was CE), or drop it for one of the
/// listed reasons (any failed check: §4 gives no order between them).
#[derive(Debug)]
enum IngressModel {
    Deliver { inner_at: usize, set_ce: bool },
    Drop(Vec<DropReason>),
}

/// §4 for the VXLAN payload `p` (from the VXLAN header on), at offset `at`.
fn model_vxlan(
    c: &Cluster,
    node: &str,
    p: &[u8],
    at: usize,
    ecn: u8,
    fails: &mut Vec<DropReason>,
) -> IngressModel {
    let Some(vx) = p.get(..8) else {
        fails.push(DropReason::Malformed);
        return IngressModel::Drop(std::mem::take(fails));
    };
    if vx[0] != 0x08 || vx[1..4] != [0, 0, 0] || vx[7] != 0 {
        fails.push(DropReason::BadVxlanFlags);
    }
    if u32::from_be_bytes([0, vx[4], vx[5], vx[6]]) != VNI {
        fails.push(DropReason::BadVni);
    }
    let Some(eth) = p.get(8..22) else {
        fails.push(DropReason::Malformed);
        return IngressModel::Drop(std::mem::take(fails));
    };
    if eth[..6] != c.node_vtep_mac(node).0 {
        fails.push(DropReason::WrongVtepMac);
    }
    if eth[12..14] != [0x08, 0x00] {
        fails.push(DropReason::NotIpv4);
        return IngressModel::Drop(std::mem::take(fails));
    }
    model_inner(c, node, &p[22..], at + 22, ecn, true, fails)
}

/// §4 for the inner packet `p` at offset `at` of the input.
fn model_inner(
    c: &Cluster,
    node: &str,
    p: &[u8],
    at: usize,
    outer_ecn: u8,
    ethernet: bool,
    fails: &mut Vec<DropReason>,
) -> IngressModel {
    let ip = match ipv4(p) {
        Ok(ip) => ip,
        Err(r) => {
            fails.push(r);
            return IngressModel::Drop(std::mem::take(fails));
        }
    };
    // Inside an Ethernet frame, a minimum-size frame (60 bytes without FCS)
    // may carry padding after the packet; otherwise the packet fills its
    // container exactly.
    if ip.total_len != p.len() && !(ethernet && p.len() + 14 == 60) {
        fails.push(DropReason::Malformed);
    }
    let set_ce = outer_ecn == 3;
    if set_ce && ip.ecn() == 0 {
        fails.push(DropReason::EcnCeOnNotEct);
    }
    if !c.is_workload_on(node, ip.dst) {
        fails.push(DropReason::NotLocal);
    }
    if ip.ttl <= 1 {
        fails.push(DropReason::TtlExceeded);
    }
    if fails.is_empty() {
        IngressModel::Deliver {
            inner_at: at,
            set_ce,
        }
    } else {
        IngressModel::Drop(std::mem::take(fails))
    }
}

fn model_ingress(c: &Cluster, node: &str, entry: Entry, input: &[u8]) -> IngressModel {
    let mut fails = Vec::new();
    match entry {
        Entry::Direct => model_inner(c, node, input, 0, 0, true, &mut fails),
        Entry::VxlanPayload { src, outer_ecn } => {
            if !c.is_peer_of(node, src) {
                fails.push(DropReason::UnknownPeer);
            }
            model_vxlan(c, node, input, 0, outer_ecn & 3, &mut fails)
        }
        Entry::Ingress => {
            let outer = match ipv4(input) {
                Ok(ip) => ip,
                Err(r) => return IngressModel::Drop(vec![r]),
            };
            // A raw socket may hand over trailing bytes: the outer packet is
            // what its total length says.
            let input = &input[..outer.total_len];
            let hl = outer.header_len;
            if Some(outer.dst) != c.node_ip(node) {
                fails.push(DropReason::NotForNode);
            }
            match outer.proto {
                4 => {
                    if outer.is_fragment() {
                        fails.push(DropReason::FragmentedOuter);
                    }
                    if !c.is_peer_of(node, outer.src) {
                        fails.push(DropReason::UnknownPeer);
                    }
                    model_inner(c, node, &input[hl..], hl, outer.ecn(), false, &mut fails)
                }
                17 => {
                    let Some(udp) = input.get(hl..hl + 8) else {
                        fails.push(DropReason::Malformed);
                        return IngressModel::Drop(fails);
                    };
                    if u16::from_be_bytes([udp[2], udp[3]]) != VXLAN_PORT {
                        fails.push(DropReason::NotForNode);
                        return IngressModel::Drop(fails);
                    }
                    if outer.is_fragment() {
                        fails.push(DropReason::FragmentedOuter);
                    }
                    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
                    if udp_len != input.len() - hl {
                        fails.push(DropReason::Malformed);
                    }
                    if !c.is_peer_of(node, outer.src) {
                        fails.push(DropReason::UnknownPeer);
                    }
                    if udp[6..8] != [0, 0] && !udp_checksum_ok(&outer, &input[hl..]) {
                        fails.push(DropReason::BadChecksum);
                    }
                    model_vxlan(c, node, &input[hl + 8..], hl + 8, outer.ecn(), &mut fails)
                }
                _ => {
                    fails.push(DropReason::NotForNode);
                    IngressModel::Drop(fails)
                }
            }
        }
    }
}

/// RFC 768: the UDP checksum over the pseudo header and `udp` (header and
/// payload, as many bytes as the IP packet holds) verifies.
pub fn udp_checksum_ok(ip: &Ip, udp: &[u8]) -> bool {
    let mut pseudo = Vec::with_capacity(12 + udp.len());
    pseudo.extend_from_slice(&ip.src.octets());
    pseudo.extend_from_slice(&ip.dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(udp);
    checksum_ok(&pseudo)
}

/// Runs one ingress entry point of node `node` on `input` and checks the
/// verdict against the SPEC's model and the delivered bytes against the
/// input.
pub fn run_ingress(c: &Cluster, node: &str, entry: Entry, input: &[u8]) -> Outcome {
    let t = c.tables(node);
    let mut buf = vec![0u8; HEADROOM + input.len()];
    buf[HEADROOM..].copy_from_slice(input);
    let mut pkt = Packet::new(&mut buf, HEADROOM, input.len());
    let verdict = match entry {
        Entry::Ingress => pipeline::ingress(t, &mut pkt),
        Entry::VxlanPayload { src, outer_ecn } => {
            pipeline::ingress_vxlan_payload(t, src, outer_ecn, &mut pkt)
        }
        Entry::Direct => pipeline::ingress_direct(t, &mut pkt),
    };
    let model = model_ingress(c, node, entry, input);
    let what = format!("{}/{node} {entry:?}", c.name);
    if *VERBOSE {
        eprintln!("  {what}: {verdict:?}");
    }
    match verdict {
        Verdict::Deliver(id) => {
            let IngressModel::Deliver { inner_at, set_ce } = model else {
                panic!("{what}: delivered to {id:?}, but the SPEC says drop: {model:?}");
            };
            let endpoint = t
                .endpoint(id)
                .unwrap_or_else(|| panic!("{what}: delivered to {id:?}, which does not exist"));
            let off = pkt
                .offset()
                .checked_sub(HEADROOM)
                .unwrap_or_else(|| panic!("{what}: delivered slice starts in the headroom"));
            let len = pkt.len();
            assert!(
                off + len <= input.len(),
                "{what}: delivered slice ends past the input"
            );
            assert_eq!(off, inner_at, "{what}: delivered the wrong bytes");
            let delivered = pkt.data();
            let ip = must_ipv4(&format!("{what}: delivered packet"), delivered);
            assert_eq!(
                ip.total_len, len,
                "{what}: total length is not the delivered length"
            );
            assert!(
                endpoint.ips.contains(&ip.dst),
                "{what}: delivered {} to {:?} ({:?})",
                ip.dst,
                endpoint.name,
                endpoint.ips
            );
            assert_forwarded(&what, &input[off..off + len], delivered, 1, set_ce);
            Outcome {
                verdict,
                delivered: delivered.to_vec(),
            }
        }
        Verdict::Drop(r) => {
            check_drop(r);
            match model {
                IngressModel::Drop(reasons) => assert!(
                    reasons.contains(&r),
                    "{what}: dropped for {r}, but the failed checks are {reasons:?}"
                ),
                IngressModel::Deliver { .. } => {
                    panic!("{what}: dropped for {r}, but the SPEC says deliver")
                }
            }
            Outcome {
                verdict,
                delivered: Vec::new(),
            }
        }
        other => panic!("{what}: ingress may only deliver or drop, not {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Egress.
