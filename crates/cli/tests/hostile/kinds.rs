//! The kinds of hostile packet, and what SPEC.md (or, where it is silent,
//! the Linux kernel) says must become of each.

// --- the kinds --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The stranger namespace on the underlay bridge (mostly spoofing
    /// k8s-node2's address).
    Underlay,
    /// Pod p1b on k8s-node1, through its eth0 (podwire's TUN device).
    Pod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// p1a on k8s-node1.
    P1a,
    /// p2a on k8s-node2.
    P2a,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// podwire drops it: `n` counted under `reason`, nothing under any other.
    Drop(&'static str, u64),
    /// podwire drops all `n` packets, each under one of these reasons
    /// (random bytes).
    DropAny(&'static [&'static str], u64),
    /// The node's kernel drops it before podwire's socket: each counter
    /// rises by exactly its count, no other kernel error counter moves, and
    /// podwire counts nothing.
    Kernel(&'static [(&'static str, u64)]),
    /// As `Kernel`, the sum of the first counters rising by `n`; the
    /// second ones may rise too.
    KernelAny(&'static [&'static str], u64, &'static [&'static str]),
    /// Delivered once to the listener `at`, intact, as a marker `tag` of
    /// `len` bytes, with this TTL and ECN codepoint; no drop anywhere.
    Delivered {
        at: At,
        tag: &'static str,
        len: usize,
        ttl: i64,
        ecn: i64,
    },
}

pub(crate) struct Kind {
    pub(crate) name: &'static str,
    pub(crate) from: Source,
    pub(crate) expect: Expect,
}

const MALFORMED: Expect = Expect::Drop("malformed", 1);

/// A marker delivered to p1a across one router hop (podwire): TTL 64 - 1.
const fn to_p1a(tag: &'static str, len: usize) -> Expect {
    Expect::Delivered {
        at: At::P1a,
        tag,
        len,
        ttl: 63,
        ecn: 0,
    }
}

/// Bytes of the outer headers in front of the inner packet.
fn encap_len(mode: &str) -> usize {
    if mode == "ipip" { 20 } else { 20 + 8 + 8 + 14 }
}

/// Every kind for `mode`, with what SPEC.md (or, where it is silent, the
/// Linux kernel) says must become of it. Most underlay kinds come from
/// k8s-node2's address, so that they pass the known-peer check.
pub(crate) fn kinds(mode: &str) -> Vec<Kind> {
    use Expect::*;
    use Source::*;
    let ipip = mode == "ipip";
    // Largest datagram (65535) minus the outer headers, the inner IPv4 and UDP headers.
    let max_marker = 65_535 - encap_len(mode) - 28;
    let mut k = vec![
        // -- The outer IPv4 header: the node's kernel (ip_rcv_core) judges it
        // first, for a raw socket as for a UDP one.
        // Cut 12 bytes into the header: not even a header (RFC 791).
        ("outer-truncated-header", Kernel(&[("Ip.InHdrErrors", 1)])),
        // A bad header checksum is a header error too (csum_error falls
        // through to inhdr_error).
        (
            "outer-bad-checksum",
            Kernel(&[("IpExt.InCsumErrors", 1), ("Ip.InHdrErrors", 1)]),
        ),
        ("outer-ihl-4", Kernel(&[("Ip.InHdrErrors", 1)])),
        ("outer-version-6", Kernel(&[("Ip.InHdrErrors", 1)])),
        // Total length larger than the datagram: a truncated packet.
        (
            "outer-total-length-larger",
            Kernel(&[("IpExt.InTruncatedPkts", 1)]),
        ),
        (
            "outer-total-length-below-header",
            Kernel(&[("Ip.InHdrErrors", 1)]),
        ),
        // Total length smaller than the datagram: what follows it is not
        // part of the datagram (RFC 791; link padding looks the same), the
        // kernel trims it, and the packet inside is intact.
        (
            "outer-total-length-smaller",
            to_p1a("outer-total-length-smaller", 64),
        ),
        // An option whose length runs past the header (ip_options_compile).
        ("outer-bad-option", Kernel(&[("Ip.InHdrErrors", 1)])),
        // Well-formed options (NOPs, EOL) are allowed (RFC 791).
        ("outer-options", to_p1a("outer-options", 64)),
        // A host must not drop a datagram for its TTL (RFC 1122 3.2.1.7);
        // the outer packet ends at the node, and the SPEC checks only the
        // inner TTL.
        ("outer-ttl-0", to_p1a("outer-ttl-0", 64)),
        // Outer fragments, out of order: reassembled by the kernel (so
        // podwire's `fragmented-outer` never sees one), then decapsulated.
        ("outer-fragments", to_p1a("outer-fragments", 1200)),
        // Overlapping fragments: the kernel drops the whole datagram.
        (
            "outer-overlapping-fragments",
            Kernel(&[
                ("Ip.ReasmReqds", 2),
                ("IpExt.ReasmOverlaps", 1),
                ("Ip.ReasmFails", 1),
            ]),
        ),
        // Fragments adding up to more than 65535 bytes (RFC 791's maximum):
        // ip_frag_reasm refuses them.
        (
            "outer-oversize-fragments",
            Kernel(&[("Ip.ReasmReqds", 45), ("Ip.ReasmFails", 1)]),
        ),
        // The largest datagram (65535 bytes, as 45 fragments): reassembled
        // and decapsulated; the pod gets the whole inner datagram (a kernel
        // node would fragment it for the pod's MTU and the pod reassemble
        // it: the pod's socket gets the same datagram either way).
        ("outer-max-size", to_p1a("outer-max-size", max_marker)),
        // The same size for a pod of another node: not ours to forward.
        ("max-size-not-local", Drop("not-local", 1)),
        // Random bytes as IPv4 packets: every one is a header error or a
        // truncated packet to the kernel (a header error may be a checksum
        // error as well).
        (
            "outer-random",
            KernelAny(
                &["Ip.InHdrErrors", "IpExt.InTruncatedPkts"],
                20,
                &["IpExt.InCsumErrors"],
            ),
        ),
        // -- What podwire judges.
        // From the stranger's own address (SPEC §2, known peers).
        ("unknown-peer", Drop("unknown-peer", 1)),
        // The inner packet (SPEC §4: "inner must be well-formed IPv4", as
        // §3.1 defines it, "whose destination is a local endpoint").
        ("inner-bad-checksum", Drop("bad-checksum", 1)),
        ("inner-ihl-4", MALFORMED),
        ("inner-version-6", Drop("not-ipv4", 1)),
        ("inner-total-length-larger", MALFORMED),
        // Inside IPIP the inner packet is the whole payload (RFC 2003);
        // inside VXLAN only a minimum-size Ethernet frame may be padded.
        ("inner-total-length-smaller", MALFORMED),
        ("inner-bad-option", MALFORMED),
        ("inner-options", to_p1a("inner-options", 64)),
        // SPEC §4: an inner TTL <= 1 is dropped and counted.
        ("inner-ttl-0", Drop("ttl-exceeded", 1)),
        ("inner-ttl-1", Drop("ttl-exceeded", 1)),
        ("inner-not-local", Drop("not-local", 1)),
        ("inner-blackhole", Drop("not-local", 1)),
        ("inner-outside-pools", Drop("not-local", 1)),
        // RFC 6040: outer CE around a not-ECT inner packet is dropped; around
        // an ECT one, CE is copied inward.
        ("ecn-ce-on-not-ect", Drop("ecn-ce-on-not-ect", 1)),
        (
            "ecn-ce-on-ect",
            Delivered {
                at: At::P1a,
                tag: "ecn-ce-on-ect",
                len: 64,
                ttl: 63,
                ecn: 3,
            },
        ),
        // Inner fragments are forwarded as they are (a router does not
        // reassemble); the pod reassembles them.
        ("inner-fragments", to_p1a("inner-fragments", 2400)),
        // A fragment reaching past byte 65535 is not a valid IPv4 fragment.
        ("inner-fragment-past-65535", MALFORMED),
        // Cut after the outer header (IPIP) or the UDP header (VXLAN: an
        // empty datagram), inside the inner header, after it.
        ("trunc-after-outer-header", MALFORMED),
        ("trunc-in-inner-header", MALFORMED),
        ("trunc-after-inner-header", MALFORMED),
    ];
    if ipip {
        k.extend([
            // SPEC §4: "destination = local node IP"; the raw socket also
            // gets broadcasts.
            ("outer-broadcast", Drop("not-for-node", 1)),
            // Random bytes as the inner packet.
            (
                "random-payload",
                DropAny(&["malformed", "not-ipv4", "bad-checksum"], 20),
            ),
        ]);
    } else {
        k.extend([
            // UDP (RFC 768) is the kernel's to check: a header cut short, a
            // length past the datagram or below 8, a wrong non-zero checksum.
            ("udp-truncated-header", Kernel(&[("Udp.InErrors", 1)])),
            ("udp-length-larger", Kernel(&[("Udp.InErrors", 1)])),
            ("udp-length-below-8", Kernel(&[("Udp.InErrors", 1)])),
            (
                "udp-bad-checksum",
                Kernel(&[("Udp.InCsumErrors", 1), ("Udp.InErrors", 1)]),
            ),
            // A UDP length smaller than the IPv4 payload: the kernel trims
            // the rest, the datagram is intact.
            ("udp-length-smaller", to_p1a("udp-length-smaller", 64)),
            // SPEC §4: a zero UDP checksum is accepted.
            ("udp-zero-checksum", to_p1a("udp-zero-checksum", 64)),
            // To 255.255.255.255: podwire's socket is bound to the node IP,
            // so no socket takes it.
            ("broadcast", Kernel(&[("Udp.IgnoredMulti", 1)])),
            // Cut after the UDP header (an empty datagram), inside the VXLAN
            // header, after it, inside the inner Ethernet header, after it.
            ("trunc-after-udp-header", MALFORMED),
            ("trunc-in-vxlan", MALFORMED),
            ("trunc-after-vxlan", MALFORMED),
            ("trunc-in-ethernet", MALFORMED),
            ("trunc-after-ethernet", MALFORMED),
            // SPEC §4: flags exactly 0x08, every reserved bit zero, the VNI.
            ("vxlan-flags-zero", Drop("bad-vxlan-flags", 1)),
            ("vxlan-flags-extra", Drop("bad-vxlan-flags", 1)),
            ("vxlan-reserved-bits", Drop("bad-vxlan-flags", 1)),
            ("vxlan-reserved-last", Drop("bad-vxlan-flags", 1)),
            ("vxlan-wrong-vni", Drop("bad-vni", 1)),
            ("vxlan-vni-zero", Drop("bad-vni", 1)),
            // The inner frame: to the local VTEP MAC, EtherType IPv4.
            ("inner-wrong-mac", Drop("wrong-vtep-mac", 1)),
            ("inner-broadcast-mac", Drop("wrong-vtep-mac", 1)),
            ("inner-arp", Drop("not-ipv4", 1)),
            ("inner-ipv6", Drop("not-ipv4", 1)),
            ("inner-vlan-tag", Drop("not-ipv4", 1)),
            // A frame padded to Ethernet's 60-byte minimum is fine.
            ("inner-min-frame-padding", to_p1a("pad", 12)),
            // Random bytes as the UDP payload (none starting with 0x08).
            ("random-payload", Drop("bad-vxlan-flags", 20)),
        ]);
    }
    // Given up by the kernel after net.ipv4.ipfrag_time (1 s here): last, so
    // that its timer does not run into another kind's counts.
    k.push((
        "outer-incomplete-fragment",
        Kernel(&[
            ("Ip.ReasmReqds", 1),
            ("Ip.ReasmTimeout", 1),
            ("Ip.ReasmFails", 1),
        ]),
    ));
    let mut out: Vec<Kind> = k
        .into_iter()
        .map(|(name, expect)| Kind {
            name,
            from: Underlay,
            expect,
        })
        .collect();
    // -- From a pod (SPEC §3, in its order).
    let pod = [
        // 1. Well-formed IPv4.
        ("pod-bad-checksum", Drop("bad-checksum", 1)),
        ("pod-ihl-4", MALFORMED),
        // A TUN read is one packet: the total length must be what was read.
        ("pod-total-length-larger", MALFORMED),
        ("pod-total-length-smaller", MALFORMED),
        ("pod-truncated-header", MALFORMED),
        // One byte, 0x45. (An empty packet cannot be sent: AF_PACKET refuses
        // a zero-length write with EINVAL, and IP sockets add a header.)
        ("pod-one-byte", MALFORMED),
        ("pod-bad-option", MALFORMED),
        ("pod-ipv6", Drop("not-ipv4", 1)),
        (
            "pod-random",
            DropAny(&["malformed", "not-ipv4", "bad-checksum"], 20),
        ),
        // 2. Anti-spoofing.
        ("pod-spoofed-other-pod", Drop("spoofed-source", 1)),
        ("pod-spoofed-outside", Drop("spoofed-source", 1)),
        ("pod-spoofed-node", Drop("spoofed-source", 1)),
        // 3. No encapsulation from a workload: IPIP, UDP to the VXLAN port,
        // to the node's listeners or across.
        ("pod-ipip-to-node", Drop("encap-from-workload", 1)),
        ("pod-ipip-to-pod", Drop("encap-from-workload", 1)),
        ("pod-vxlan-to-node", Drop("encap-from-workload", 1)),
        ("pod-vxlan-to-pod", Drop("encap-from-workload", 1)),
        // 4. TTL <= 1.
        ("pod-ttl-0", Drop("ttl-exceeded", 1)),
        ("pod-ttl-1", Drop("ttl-exceeded", 1)),
        // 5. Route lookup.
        ("pod-no-route", Drop("no-route", 1)),
        ("pod-blackhole", Drop("blackhole", 1)),
        // 6. MTU: a 65535-byte DF packet is too big for any mode.
        ("pod-max-size-df", Drop("too-big", 1)),
        // Without DF: to a pod of this node it is delivered (a kernel would
        // fragment it for the pod's MTU; the pod's socket gets the same
        // datagram); to a pod of the other node it is fragmented, each
        // fragment encapsulated, and decapsulated there (two router hops).
        ("pod-max-size-local", to_p1a("pod-max-size-local", 65_507)),
        (
            "pod-max-size-remote",
            Delivered {
                at: At::P2a,
                tag: "pod-max-size-remote",
                len: 65_507,
                ttl: 62,
                ecn: 0,
            },
        ),
    ];
    out.extend(pod.into_iter().map(|(name, expect)| Kind {
        name,
        from: Pod,
        expect,
    }));
    out
}
