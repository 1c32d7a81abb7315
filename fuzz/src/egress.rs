//! The egress model (SPEC §3), the checks on what is sent (outer headers,
//! the peer's ingress, ICMP errors, fragments, direct-mode frames) and
//! `run_egress`.

use std::net::Ipv4Addr;

use podwire::pipeline::{self, DropReason, FragJob, HEADROOM, Packet, State, Target, Verdict};
use podwire::table::{EndpointId, Tables};

use crate::*;

/// SPEC §3's verdict for a packet from a local endpoint, as far as the
/// model can tell it without looking at the library's answer.
#[derive(Debug)]
enum EgressModel {
    /// Step 1 failed: one of these reasons.
    Invalid(Vec<DropReason>),
    Drop(DropReason),
    /// TTL ≤ 1: ICMP time exceeded if one may be sent, else a drop.
    TtlExceeded {
        icmp: bool,
    },
    Deliver,
    /// Encapsulate (or fragment, or refuse) towards `node` by `mode`.
    Remote {
        node: Ipv4Addr,
        mode: Mode,
    },
}

fn mode_mtu(t: &Tables, mode: Mode) -> usize {
    usize::from(match mode {
        Mode::Vxlan => t.mtu().vxlan,
        Mode::Ipip => t.mtu().ipip,
        Mode::Direct => t.mtu().direct,
    })
}

fn mode_of(target: Target) -> Mode {
    match target {
        Target::Vxlan { .. } => Mode::Vxlan,
        Target::Ipip { .. } => Mode::Ipip,
        Target::Direct { .. } => Mode::Direct,
    }
}

fn target_node(target: Target) -> Ipv4Addr {
    match target {
        Target::Vxlan { node, .. } | Target::Ipip { node } => node,
        Target::Direct { gw } => gw,
    }
}

/// May an ICMP error be sent about this packet (RFC 1122 §3.2.2, RFC 792)?
fn icmp_allowed(ip: &Ip, p: &[u8]) -> bool {
    if ip.frag_off != 0 || is_special(ip.src) || is_special(ip.dst) {
        return false;
    }
    if ip.proto == 1 {
        return match p.get(ip.header_len) {
            Some(&t) => !(matches!(t, 3 | 4 | 5 | 11 | 12) || t > 18),
            None => false,
        };
    }
    true
}

/// Every SPEC §3 step-1 rule that `p`, a whole TUN read, breaks: the SPEC
/// lists them as one step, so any of their reasons may be the one counted.
fn step1_failures(p: &[u8]) -> Vec<DropReason> {
    if p.first().is_some_and(|b| b >> 4 != 4) {
        return vec![DropReason::NotIpv4];
    }
    let mut v = Vec::new();
    let hl = p.first().map_or(0, |b| usize::from(b & 0xf) * 4);
    let total = p
        .get(2..4)
        .map_or(0, |t| usize::from(u16::from_be_bytes([t[0], t[1]])));
    if p.len() < 20 || hl < 20 || p.len() < hl || total < hl || total != p.len() {
        v.push(DropReason::Malformed);
    }
    if hl >= 20 && p.len() >= hl && !checksum_ok(&p[..hl]) {
        v.push(DropReason::BadChecksum);
    }
    v
}

fn model_egress(c: &Cluster, from: EndpointId, p: &[u8]) -> EgressModel {
    let t = c.local();
    let ip = match ipv4(p) {
        Ok(ip) if ip.total_len == p.len() => ip,
        Ok(_) => return EgressModel::Invalid(step1_failures(p)),
        Err(r) => {
            // step1_failures covers the length and checksum rules; `ipv4`
            // also rejects bad options and fragments past 65535 bytes.
            let mut reasons = step1_failures(p);
            if !reasons.contains(&r) {
                reasons.push(r);
            }
            return EgressModel::Invalid(reasons);
        }
    };
    let Some(ep) = t.endpoint(from) else {
        return EgressModel::Drop(DropReason::SpoofedSource);
    };
    if !ep.ips.contains(&ip.src) {
        return EgressModel::Drop(DropReason::SpoofedSource);
    }
    let hl = ip.header_len;
    let to_vxlan_port = ip.proto == 17
        && ip.frag_off == 0
        && p.get(hl + 2..hl + 4) == Some(&VXLAN_PORT.to_be_bytes()[..]);
    if ip.proto == 4 || to_vxlan_port {
        return EgressModel::Drop(DropReason::EncapFromWorkload);
    }
    if ip.ttl <= 1 {
        return EgressModel::TtlExceeded {
            icmp: icmp_allowed(&ip, p),
        };
    }
    match c.route(LOCAL_NODE, ip.dst) {
        Route::Endpoint => EgressModel::Deliver,
        Route::Blackhole => EgressModel::Drop(DropReason::Blackhole),
        Route::NoRoute => EgressModel::Drop(DropReason::NoRoute),
        Route::Remote { node, mode } => EgressModel::Remote { node, mode },
    }
}

/// `p` with its TTL lowered by one and the checksum recomputed.
pub fn forwarded_copy(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    let hl = usize::from(v[0] & 0xf) * 4;
    v[8] -= 1;
    v[10] = 0;
    v[11] = 0;
    let c = checksum(&v[..hl]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v
}

/// Checks the outer headers of `wire`, an inner packet encapsulated for
/// `target` by node [`LOCAL_NODE`], and returns the inner packet.
pub fn check_encapsulated<'a>(c: &Cluster, target: Target, wire: &'a [u8]) -> &'a [u8] {
    let local_ip = c.node_ip(LOCAL_NODE).expect("local node IP");
    let what = format!("{}: {target:?}", c.name);
    if let Target::Direct { gw } = target {
        check_direct_frame(c, gw, wire);
        return wire;
    }
    let o = must_ipv4(&format!("{what}: outer header"), wire);
    assert_eq!(o.header_len, 20, "{what}: outer options");
    assert_eq!(o.total_len, wire.len(), "{what}: outer total length");
    assert_eq!(o.src, local_ip, "{what}: outer source");
    assert_eq!(o.dst, target_node(target), "{what}: outer destination");
    assert!(!o.mf && o.frag_off == 0, "{what}: outer is a fragment");
    assert_eq!(o.tos >> 2, 0, "{what}: outer DSCP");
    match target {
        Target::Ipip { .. } => {
            assert_eq!(o.proto, 4, "{what}: outer protocol");
            let inner = &wire[20..];
            let i = must_ipv4(&format!("{what}: inner"), inner);
            assert_eq!(i.total_len, inner.len(), "{what}: inner fills the outer");
            assert_eq!(o.ttl, i.ttl, "{what}: outer TTL is the inner's");
            assert_eq!(o.df, i.df, "{what}: DF copied");
            assert_eq!(o.ecn(), encap_ecn(i.ecn()), "{what}: RFC 6040 ECN");
            inner
        }
        Target::Vxlan {
            node,
            mac,
            src_port,
        } => {
            assert_eq!(o.proto, 17, "{what}: outer protocol");
            assert_eq!(o.ttl, 64, "{what}: outer TTL");
            assert!(!o.df, "{what}: VXLAN outer has DF");
            let udp = &wire[20..];
            assert!(udp.len() >= 8 + 8 + 14 + 20, "{what}: too short");
            assert_eq!(
                u16::from_be_bytes([udp[0], udp[1]]),
                src_port,
                "{what}: sport"
            );
            assert!((32768..=60999).contains(&src_port), "{what}: sport range");
            assert_eq!(
                u16::from_be_bytes([udp[2], udp[3]]),
                VXLAN_PORT,
                "{what}: dport"
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([udp[4], udp[5]])),
                udp.len(),
                "{what}: UDP length"
            );
            assert_ne!(udp[6..8], [0, 0], "{what}: UDP checksum not computed");
            assert!(udp_checksum_ok(&o, udp), "{what}: UDP checksum");
            let vni = VNI.to_be_bytes();
            assert_eq!(
                udp[8..16],
                [8, 0, 0, 0, vni[1], vni[2], vni[3], 0],
                "{what}: VXLAN"
            );
            let peer = c.node_name_by_ip(node).expect("target node is a node");
            assert_eq!(
                mac,
                c.node_vtep_mac(peer),
                "{what}: target MAC is the peer VTEP's"
            );
            assert_eq!(udp[16..22], mac.0, "{what}: inner destination MAC");
            assert_eq!(
                udp[22..28],
                c.node_vtep_mac(LOCAL_NODE).0,
                "{what}: inner source MAC"
            );
            assert_eq!(udp[28..30], [0x08, 0x00], "{what}: EtherType");
            let inner = &udp[30..];
            let i = must_ipv4(&format!("{what}: inner"), inner);
            assert_eq!(i.total_len, inner.len(), "{what}: inner fills the frame");
            assert_eq!(o.ecn(), encap_ecn(i.ecn()), "{what}: RFC 6040 ECN");
            inner
        }
        Target::Direct { .. } => unreachable!(),
    }
}

/// Sends `wire` (encapsulated for `target` by [`LOCAL_NODE`], inner packet
/// `inner` as sent) through the ingress of the node it is for, and checks
/// that the workload there gets `inner` with its TTL lowered once more.
/// Returns the delivered bytes, if the peer delivered.
pub fn check_peer_receives(
    c: &Cluster,
    target: Target,
    wire: &[u8],
    inner: &[u8],
) -> Option<Vec<u8>> {
    let node_ip = target_node(target);
    let peer = c
        .node_name_by_ip(node_ip)
        .unwrap_or_else(|| panic!("{}: {target:?} is not a node", c.name));
    let entry = match target {
        Target::Direct { .. } => Entry::Direct,
        _ => Entry::Ingress,
    };
    let out = run_ingress(c, peer, entry, wire);
    let ip = must_ipv4("sent inner packet", inner);
    let what = format!("{}: {LOCAL_NODE} → {peer} {target:?}", c.name);
    if !c.is_workload_on(peer, ip.dst) {
        assert_eq!(out.verdict, Verdict::Drop(DropReason::NotLocal), "{what}");
    } else if ip.ttl <= 1 {
        assert_eq!(
            out.verdict,
            Verdict::Drop(DropReason::TtlExceeded),
            "{what}"
        );
    } else {
        let Verdict::Deliver(id) = out.verdict else {
            panic!("{what}: peer did not deliver: {:?}", out.verdict);
        };
        let ep = c
            .tables(peer)
            .endpoint(id)
            .expect("delivered endpoint exists");
        assert!(ep.ips.contains(&ip.dst), "{what}: wrong endpoint {ep:?}");
        assert_forwarded(&what, inner, &out.delivered, 1, false);
        return Some(out.delivered);
    }
    None
}

/// Checks an ICMP error podwire built in the buffer about `original`.
pub fn check_icmp(c: &Cluster, reason: DropReason, mtu: Option<u16>, wire: &[u8], original: &[u8]) {
    let what = format!("{}: ICMP for {reason}", c.name);
    let o = must_ipv4(&what, original);
    let ip = must_ipv4(&what, wire);
    assert_eq!(ip.header_len, 20, "{what}: options");
    assert_eq!(ip.total_len, wire.len(), "{what}: total length");
    assert!(wire.len() <= MAX_ICMP_ERROR, "{what}: longer than 576");
    assert_eq!(ip.proto, 1, "{what}: protocol");
    assert_eq!(
        Some(ip.src),
        c.node_ip(LOCAL_NODE),
        "{what}: source is the node IP"
    );
    assert_eq!(ip.dst, o.src, "{what}: destination is the sender");
    assert_eq!(ip.ttl, 64, "{what}: TTL");
    assert!(!ip.df && !ip.is_fragment(), "{what}: flags");
    assert_eq!(ip.tos, 0xc0 | (o.tos & 0x1e), "{what}: TOS");
    let icmp = &wire[20..];
    assert!(icmp.len() >= 8, "{what}: ICMP header");
    assert!(checksum_ok(icmp), "{what}: ICMP checksum");
    match (reason, mtu) {
        (DropReason::TtlExceeded, None) => {
            assert_eq!(icmp[..2], [11, 0], "{what}: type/code");
            assert_eq!(icmp[4..8], [0, 0, 0, 0], "{what}: unused");
        }
        (DropReason::TooBig, Some(mtu)) => {
            assert_eq!(icmp[..2], [3, 4], "{what}: type/code");
            let m = mtu.to_be_bytes();
            assert_eq!(icmp[4..8], [0, 0, m[0], m[1]], "{what}: next-hop MTU");
        }
        other => panic!("{what}: unexpected ICMP error {other:?}"),
    }
    let quote = original.len().min(MAX_ICMP_ERROR - 28);
    assert_eq!(&icmp[8..], &original[..quote], "{what}: quote");
}

/// Emits every fragment of `job` for `sent` (the packet as the Fragment
/// verdict left it), checks each one on the wire and through the peer's
/// ingress, and that the fragments put together give back `original`'s
/// payload. Returns the number of fragments sent.
pub fn check_fragments(
    c: &Cluster,
    st: &mut State,
    job: &FragJob,
    sent: &[u8],
    original: &[u8],
) -> usize {
    let t = c.local();
    let what = format!("{}: fragmenting {:?}", c.name, job.target());
    let o = must_ipv4(&what, original);
    let hl = o.header_len;
    let mode = mode_of(job.target());
    let mtu = mode_mtu(t, mode);
    let overhead = match mode {
        Mode::Vxlan => VXLAN_OVERHEAD,
        Mode::Ipip => IPIP_OVERHEAD,
        Mode::Direct => 0,
    };
    let chunk = (mtu - hl) / 8 * 8;
    let payload = &original[hl..];
    assert_eq!(
        job.count(),
        payload.len().div_ceil(chunk),
        "{what}: fragment count"
    );
    let later_opts = later_fragment_options(&original[20..hl]);
    let mut reassembled = Vec::with_capacity(payload.len());
    let mut sent_count = 0;
    for index in 0..job.count() {
        let mut obuf = vec![0u8; HEADROOM + mtu];
        let mut out = Packet::new(&mut obuf, HEADROOM, mtu);
        let v = job
            .emit(t, st, sent, index, &mut out)
            .unwrap_or_else(|| panic!("{what}: fragment {index} of {} missing", job.count()));
        let target = match v {
            Verdict::Send(target) => target,
            other => panic!("{what}: fragment {index}: {other:?}"),
        };
        assert_eq!(target, job.target(), "{what}: fragment {index} target");
        let wire = out.data();
        assert!(
            wire.len() <= mtu + overhead,
            "{what}: fragment {index} too long"
        );
        let frag = check_encapsulated(c, target, wire);
        let f = must_ipv4(&format!("{what}: fragment {index}"), frag);
        assert!(frag.len() <= mtu, "{what}: fragment {index} over the MTU");
        assert_eq!(f.header_len, hl, "{what}: fragment {index} header length");
        let s = must_ipv4(&what, sent);
        assert_eq!(
            (f.tos, f.ident, f.df, f.ttl, f.proto, f.src, f.dst),
            (s.tos, s.ident, s.df, s.ttl, s.proto, s.src, s.dst),
            "{what}: fragment {index} header fields"
        );
        if index == 0 {
            assert_eq!(
                frag[20..hl],
                original[20..hl],
                "{what}: first fragment options"
            );
        } else {
            let want = later_opts.as_deref().expect("well-formed options");
            assert_eq!(&frag[20..hl], want, "{what}: fragment {index} options");
        }
        let rel = (usize::from(f.frag_off) - usize::from(o.frag_off)) * 8;
        assert_eq!(rel, reassembled.len(), "{what}: fragment {index} offset");
        let piece = &frag[hl..];
        let last = index + 1 == job.count();
        if last {
            assert_eq!(f.mf, o.mf, "{what}: last fragment MF");
        } else {
            assert!(f.mf, "{what}: fragment {index} without MF");
            assert_eq!(
                piece.len() % 8,
                0,
                "{what}: fragment {index} data not 8-aligned"
            );
            assert!(!piece.is_empty(), "{what}: empty fragment");
        }
        reassembled.extend_from_slice(piece);
        check_peer_receives(c, target, wire, frag);
        sent_count += 1;
    }
    let mut obuf = vec![0u8; HEADROOM + mtu];
    let mut out = Packet::new(&mut obuf, HEADROOM, mtu);
    assert_eq!(
        job.emit(t, st, sent, job.count(), &mut out),
        None,
        "{what}: a fragment past the last"
    );
    assert_eq!(reassembled, payload, "{what}: reassembled payload");
    sent_count
}

/// What an egress run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressResult {
    Verdict(Verdict),
    /// Fragmented into this many fragments, all sent.
    Fragments(usize),
}

/// Runs `pipeline::egress` of [`LOCAL_NODE`] on `input` from endpoint
/// `from` and checks the verdict, the bytes, and the peer's view of them.
pub fn run_egress(c: &Cluster, from: EndpointId, input: &[u8]) -> EgressResult {
    let t = c.local();
    let mut st = State::new(0x1234);
    let mut buf = vec![0u8; HEADROOM + input.len()];
    buf[HEADROOM..].copy_from_slice(input);
    let mut pkt = Packet::new(&mut buf, HEADROOM, input.len());
    let verdict = pipeline::egress(t, &mut st, from, &mut pkt);
    let model = model_egress(c, from, input);
    let what = format!("{}: egress from {from:?}", c.name);
    if *VERBOSE {
        eprintln!("  {what}: {verdict:?}");
    }
    match (verdict, model) {
        (Verdict::Drop(r), EgressModel::Invalid(reasons)) => {
            check_drop(r);
            assert!(
                reasons.contains(&r),
                "{what}: dropped for {r}, expected {reasons:?}"
            );
        }
        (v, EgressModel::Invalid(reasons)) => {
            panic!("{what}: {v:?} for a packet the SPEC drops ({reasons:?})")
        }
        (Verdict::Drop(r), EgressModel::Drop(want)) => {
            check_drop(r);
            assert_eq!(r, want, "{what}: drop reason");
        }
        (Verdict::Drop(r), EgressModel::TtlExceeded { icmp: false }) => {
            assert_eq!(r, DropReason::TtlExceeded, "{what}: drop reason");
        }
        (Verdict::Icmp { to, reason }, EgressModel::TtlExceeded { icmp: true }) => {
            assert_eq!(to, from, "{what}: ICMP goes back to the sender");
            assert_eq!(reason, DropReason::TtlExceeded, "{what}: ICMP reason");
            check_drop(reason);
            check_icmp(c, reason, None, pkt.data(), input);
        }
        (Verdict::Deliver(id), EgressModel::Deliver) => {
            let ep = t
                .endpoint(id)
                .unwrap_or_else(|| panic!("{what}: no endpoint {id:?}"));
            let ip = must_ipv4(&what, input);
            assert!(
                ep.ips.contains(&ip.dst),
                "{what}: delivered {} to {ep:?}",
                ip.dst
            );
            assert_eq!(pkt.offset(), HEADROOM, "{what}: delivered view moved");
            assert_forwarded(&what, input, pkt.data(), 1, false);
        }
        (v, EgressModel::Remote { node, mode }) => {
            let ip = must_ipv4(&what, input);
            let mtu = mode_mtu(t, mode);
            let what = format!("{what} to {} via {mode:?} {node}", ip.dst);
            let target = match v {
                Verdict::Send(target) => {
                    assert!(
                        input.len() <= mtu,
                        "{what}: sent {} bytes over MTU {mtu}",
                        input.len()
                    );
                    target
                }
                Verdict::Fragment(job) => {
                    assert!(input.len() > mtu, "{what}: fragmented within the MTU");
                    assert!(!ip.df, "{what}: fragmented a DF packet");
                    job.target()
                }
                Verdict::Icmp { to, reason } => {
                    assert!(input.len() > mtu && ip.df, "{what}: ICMP {reason}");
                    assert_eq!(to, from, "{what}: ICMP goes back to the sender");
                    assert!(icmp_allowed(&ip, input), "{what}: ICMP about {ip:?}");
                    check_icmp(c, reason, Some(mtu as u16), pkt.data(), input);
                    return EgressResult::Verdict(v);
                }
                Verdict::Drop(DropReason::TooBig) => {
                    assert!(
                        input.len() > mtu && ip.df && !icmp_allowed(&ip, input),
                        "{what}: too big"
                    );
                    return EgressResult::Verdict(v);
                }
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(mode_of(target), mode, "{what}: {target:?}");
            assert_eq!(target_node(target), node, "{what}: {target:?}");
            let inner_sent = forwarded_copy(input);
            if let Verdict::Fragment(job) = v {
                assert_eq!(pkt.offset(), HEADROOM, "{what}: fragment original moved");
                assert_forwarded(&what, input, pkt.data(), 1, false);
                let n = check_fragments(c, &mut st, &job, pkt.data(), input);
                return EgressResult::Fragments(n);
            }
            let wire = pkt.data();
            let inner = check_encapsulated(c, target, wire);
            assert_forwarded(&what, input, inner, 1, false);
            assert_eq!(&inner[..10], &inner_sent[..10]);
            // Round trip: the peer delivers the original, TTL − 2.
            if let Some(delivered) = check_peer_receives(c, target, wire, inner) {
                assert_forwarded(&format!("{what}: round trip"), input, &delivered, 2, false);
            }
            // One flow, one source port.
            if let Target::Vxlan { src_port, .. } = target {
                let mut buf2 = vec![0u8; HEADROOM + input.len()];
                buf2[HEADROOM..].copy_from_slice(input);
                let mut p2 = Packet::new(&mut buf2, HEADROOM, input.len());
                match pipeline::egress(t, &mut State::new(7), from, &mut p2) {
                    Verdict::Send(Target::Vxlan {
                        src_port: again, ..
                    }) => {
                        assert_eq!(again, src_port, "{what}: source port not stable")
                    }
                    other => panic!("{what}: second run gave {other:?}"),
                }
            }
        }
        (v, m) => panic!("{what}: verdict {v:?}, but the SPEC says {m:?}"),
    }
    EgressResult::Verdict(verdict)
}

/// Frames `wire`, an inner packet egress sent to direct-mode next hop `gw`,
/// as the worker does (`l2::frame_direct`, with and without a virtio
/// header), checks the frame with etherparse (the next hop's MAC, the
/// underlay's, EtherType IPv4, the packet unchanged after it; a zero
/// virtio header), and that `l2::unframe_direct` gives the packet back.
pub fn check_direct_frame(c: &Cluster, gw: std::net::Ipv4Addr, wire: &[u8]) {
    use podwire::pipeline::{HEADROOM, Packet, l2};
    use podwire::table::NextHops;
    use podwire::wire::MacAddr;
    let (ours, theirs) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
    let t = c
        .local()
        .with_next_hops(NextHops::new(ours, [(gw, theirs)]));
    let what = format!("{}: frame for {gw}", c.name);
    for vnet in [false, true] {
        let mut buf = vec![0u8; HEADROOM + wire.len()];
        buf[HEADROOM..].copy_from_slice(wire);
        let mut pkt = Packet::new(&mut buf, HEADROOM, wire.len());
        l2::frame_direct(&t, &mut pkt, gw, None, vnet).unwrap_or_else(|r| panic!("{what}: {r}"));
        let frame = pkt.data();
        let at = if vnet { 10 } else { 0 };
        assert!(frame[..at].iter().all(|&b| b == 0), "{what}: virtio header");
        let eth = etherparse::Ethernet2HeaderSlice::from_slice(&frame[at..])
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(eth.destination(), theirs.0, "{what}: destination MAC");
        assert_eq!(eth.source(), ours.0, "{what}: source MAC");
        assert_eq!(
            eth.ether_type(),
            etherparse::EtherType::IPV4,
            "{what}: EtherType"
        );
        assert_eq!(
            &frame[at + 14..],
            wire,
            "{what}: the packet after the header"
        );
        let (start, len) = (pkt.offset(), pkt.len());
        let mut back = Packet::new(&mut buf, start, len);
        assert_eq!(
            l2::unframe_direct(&mut back, vnet),
            Ok(None),
            "{what}: unframe"
        );
        assert_eq!(back.data(), wire, "{what}: unframed");
    }
}
