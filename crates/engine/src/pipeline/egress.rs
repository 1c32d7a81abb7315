//! Packets from a local workload (SPEC §3), checked in the SPEC's order:
//! well-formed IPv4, anti-spoofing, no encapsulation from workloads, TTL,
//! route lookup, MTU; then the TTL is decremented and the packet delivered
//! locally or encapsulated.

use super::encap::{encapsulate, flow_hash, src_port};
use super::flows::FlowKey;
use super::icmp::{self, error_in_place};
use super::{DropReason, FragJob, Packet, State, Target, Verdict};
use crate::table::{EndpointId, Hop, Tables};
use crate::wire::ipv4;

/// Runs the egress pipeline on `pkt`, an IPv4 packet read from the TUN
/// device of endpoint `from`.
pub fn egress(t: &Tables, st: &mut State, from: EndpointId, pkt: &mut Packet) -> Verdict {
    egress_sized(t, st, from, pkt, None)
}

/// Runs the egress pipeline on a TCP super-packet (GSO) that the pod's
/// kernel left for the device to cut into segments of at most `segment`
/// bytes, headers included: the same checks, the MTU applying to the
/// segments. A local delivery, a direct-mode send or VXLAN (outer headers
/// in front of the whole super-packet, for the kernel to cut up as it cuts
/// its own VXLAN device's) can carry it whole; IP-in-IP, or segments larger
/// than the mode's MTU, drop it as `too-big` — the caller checks the route
/// and the size first and cuts the packet up itself when they do not fit.
pub fn egress_gso(
    t: &Tables,
    st: &mut State,
    from: EndpointId,
    pkt: &mut Packet,
    segment: usize,
) -> Verdict {
    egress_sized(t, st, from, pkt, Some(segment))
}

fn egress_sized(
    t: &Tables,
    st: &mut State,
    from: EndpointId,
    pkt: &mut Packet,
    segment: Option<usize>,
) -> Verdict {
    let h = match ipv4::parse(pkt.data()) {
        Ok(h) => h,
        Err(e) => return Verdict::Drop(e.into()),
    };
    // A TUN read is exactly one packet: its total length must say so.
    if h.total_len != pkt.len() {
        return Verdict::Drop(DropReason::Malformed);
    }
    let Some(endpoint) = t.endpoint(from) else {
        return Verdict::Drop(DropReason::SpoofedSource);
    };
    // What the node's kernel sends through the host interface has been
    // routed (and its TTL decremented) by the kernel already, and may come
    // from anywhere (the node, a de-NATed reply, a NodePort's client):
    // podwire is the link to the pod, not another router.
    let from_host = t.is_host(from);
    if !from_host && !endpoint.ips.iter().any(|ip| u32::from(*ip) == h.src) {
        return Verdict::Drop(DropReason::SpoofedSource);
    }
    if is_encapsulated(t, &h, pkt.data()) {
        return Verdict::Drop(DropReason::EncapFromWorkload);
    }
    if !from_host && h.ttl <= 1 {
        return icmp_error(
            t,
            st,
            from,
            pkt,
            &h,
            icmp::Kind::TimeExceeded,
            DropReason::TtlExceeded,
        );
    }
    let hop = if from_host {
        t.lookup(h.dst)
    } else {
        t.lookup_from_workload(h.dst)
    };
    let (target, mtu) = match hop {
        None => return Verdict::Drop(DropReason::NoRoute),
        Some(Hop::Blackhole) => return Verdict::Drop(DropReason::Blackhole),
        Some(Hop::VxlanNoNeighbour) => return Verdict::Drop(DropReason::NoNeighbour),
        Some(Hop::VxlanNoFdb) => return Verdict::Drop(DropReason::NoFdb),
        Some(Hop::Host) => {
            return match t.host() {
                // The kernel routes it from here (and decrements its TTL).
                Some(host) if !from_host => Verdict::Deliver(host),
                _ => Verdict::Drop(DropReason::NoRoute),
            };
        }
        Some(Hop::Endpoint(to)) => {
            if let Some(v) = through_kernel(t, from_host, &h, pkt.data()) {
                return v;
            }
            forward_ttl(pkt, from_host);
            return Verdict::Deliver(to);
        }
        Some(Hop::Ipip { node }) => (Target::Ipip { node }, t.mtu().ipip),
        Some(Hop::Vxlan { node, mac }) => {
            let src_port = src_port(flow_hash(&h, pkt.data()));
            (
                Target::Vxlan {
                    node,
                    mac,
                    src_port,
                },
                t.mtu().vxlan,
            )
        }
        Some(Hop::Direct { gw }) => (Target::Direct { gw }, t.mtu().direct),
    };
    if let Some(v) = through_kernel(t, from_host, &h, pkt.data()) {
        return v;
    }
    if let Some(segment) = segment {
        let whole = matches!(
            target,
            Target::Direct { .. } | Target::Vxlan { .. } | Target::Ipip { .. }
        );
        if segment > usize::from(mtu) || !whole {
            return Verdict::Drop(DropReason::TooBig);
        }
        forward_ttl(pkt, from_host);
        return encapsulate(t, st, pkt, target);
    }
    if pkt.len() > usize::from(mtu) {
        if h.dont_fragment() {
            let kind = icmp::Kind::FragNeeded { mtu };
            return icmp_error(t, st, from, pkt, &h, kind, DropReason::TooBig);
        }
        let Some(job) = FragJob::plan(&h, mtu, target) else {
            return Verdict::Drop(DropReason::TooBig);
        };
        forward_ttl(pkt, from_host);
        return Verdict::Fragment(job);
    }
    forward_ttl(pkt, from_host);
    encapsulate(t, st, pkt, target)
}

/// The kernel-NATed flows (see [`flows`](super::flows)): a packet the host
/// interface brings from a pool address to a pod records its flow; a
/// packet between pods that answers such a flow goes back through the
/// kernel (its TTL left for the kernel to decrement), which un-NATs it.
#[inline]
pub(super) fn through_kernel(
    t: &Tables,
    from_host: bool,
    h: &ipv4::Header,
    data: &[u8],
) -> Option<Verdict> {
    let host = t.host()?;
    let flows = t.flows();
    if from_host {
        if t.in_pool(h.src) {
            flows.record(FlowKey::of(h, data).reversed(), flows.now());
        }
        return None;
    }
    flows
        .contains(FlowKey::of(h, data), flows.now())
        .then_some(Verdict::Deliver(host))
}

/// IP-in-IP, or UDP to the VXLAN port (checked on first fragments only:
/// later ones carry no UDP header).
fn is_encapsulated(t: &Tables, h: &ipv4::Header, data: &[u8]) -> bool {
    match h.proto {
        ipv4::proto::IPIP => true,
        ipv4::proto::UDP if !h.is_later_fragment() => data
            .get(h.header_len + 2..h.header_len + 4)
            .and_then(|p| p.first_chunk::<2>())
            .is_some_and(|p| u16::from_be_bytes(*p) == t.vxlan().port),
        _ => false,
    }
}

/// Decrements the TTL as a router does, unless the packet came from the
/// host interface (the kernel routed it, and decremented it, already).
fn forward_ttl(pkt: &mut Packet, from_host: bool) {
    if !from_host {
        decrement_ttl(pkt);
    }
}

fn decrement_ttl(pkt: &mut Packet) {
    if let Some(h) = pkt.data_mut().first_chunk_mut() {
        ipv4::decrement_ttl(h);
    }
}

/// Drops the packet for `reason`, turning it into an ICMP error for its
/// sender when one may be sent.
fn icmp_error(
    t: &Tables,
    st: &mut State,
    from: EndpointId,
    pkt: &mut Packet,
    h: &ipv4::Header,
    kind: icmp::Kind,
    reason: DropReason,
) -> Verdict {
    if error_in_place(t, st, pkt, h, kind) {
        Verdict::Icmp { to: from, reason }
    } else {
        Verdict::Drop(reason)
    }
}
