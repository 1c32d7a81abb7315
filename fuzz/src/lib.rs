//! Fixtures and independent checkers shared by podwire's fuzz targets.
//!
//! The checkers re-derive what a verdict and its bytes must be from the SPEC,
//! the RFCs, etherparse and the Calico resources themselves — never from
//! `podwire::wire` or the compiled tables' own answers — so that a bug in the
//! library cannot vouch for itself. Each `run_*` function runs one pipeline
//! entry point on a fresh buffer with [`HEADROOM`] bytes of headroom, checks
//! every invariant (panicking, which libFuzzer reports as a crash, on any
//! violation) and returns what happened.

pub mod targets;

use std::net::Ipv4Addr;
use std::sync::LazyLock;

use etherparse::Ipv4HeaderSlice;
use podwire::config::{EncapMode, Resources};
use podwire::pipeline::{self, DropReason, FragJob, HEADROOM, Packet, State, Target, Verdict};
use podwire::table::{self, EndpointId, Tables, Underlay};
use podwire::wire::MacAddr;

/// The node whose dataplane the targets drive.
pub const LOCAL_NODE: &str = "k8s-node1";
/// Underlay MTU the tables are compiled for.
pub const UNDERLAY_MTU: u16 = 1500;
/// Calico's VXLAN VNI and port, which every example file uses.
pub const VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
/// SPEC §2: the VTEP MAC Felix derives for `k8s-node1`.
pub const NODE1_VTEP_MAC: [u8; 6] = [0x66, 0x8c, 0x73, 0x5a, 0x90, 0x99];
/// Bytes each mode adds in front of the inner packet.
pub const IPIP_OVERHEAD: usize = 20;
pub const VXLAN_OVERHEAD: usize = 20 + 8 + 8 + 14;
/// RFC 1812 / Linux: the largest ICMP error.
pub const MAX_ICMP_ERROR: usize = 576;

/// Set `PODWIRE_FUZZ_VERBOSE=1` to print every verdict to stderr (for
/// looking at what a corpus reaches; far too slow for fuzzing).
pub static VERBOSE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("PODWIRE_FUZZ_VERBOSE").is_some_and(|v| v != "0"));

/// The underlay every fixture is compiled for.
pub fn underlay() -> Underlay {
    Underlay {
        name: "eth0".into(),
        mtu: UNDERLAY_MTU,
    }
}

// ---------------------------------------------------------------------------
// Fixtures: the example clusters, compiled once per process.

/// One example cluster: its resources and the tables of each node.
pub struct Cluster {
    pub name: &'static str,
    pub resources: Resources,
    /// (node name, tables) for every node that has an address.
    pub tables: Vec<(String, Tables)>,
}

/// How a packet leaves a node, derived from the resources (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Vxlan,
    Ipip,
    Direct,
}

/// Where the SPEC says a destination goes from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A workload on this node.
    Endpoint,
    /// A block affine to this node, no workload at the address.
    Blackhole,
    /// Outside every block affine to a node.
    NoRoute,
    /// A block of another node, reached by `mode`.
    Remote { node: Ipv4Addr, mode: Mode },
}

fn encapsulates(mode: EncapMode, same_subnet: bool) -> bool {
    match mode {
        EncapMode::Never => false,
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !same_subnet,
    }
}

impl Cluster {
    fn load(name: &'static str, yaml: &str) -> Cluster {
        let resources = podwire::config::parse(yaml)
            .unwrap_or_else(|e| panic!("examples/{name}.yaml does not parse: {e}"));
        let tables = resources
            .nodes
            .iter()
            .filter(|n| n.ip().is_some())
            .map(|n| {
                let t = table::compile(&resources, &n.name, &underlay()).unwrap_or_else(|e| {
                    panic!(
                        "examples/{name}.yaml: tables of {} do not compile: {e}",
                        n.name
                    )
                });
                (n.name.clone(), t)
            })
            .collect();
        let c = Cluster {
            name,
            resources,
            tables,
        };
        c.sanity();
        c
    }

    /// The fixture facts the checkers rely on, checked once.
    fn sanity(&self) {
        for (node, t) in &self.tables {
            assert_eq!(t.vxlan().vni, VNI, "{}: {node}", self.name);
            assert_eq!(t.vxlan().port, VXLAN_PORT, "{}: {node}", self.name);
            assert_eq!(Some(t.local().ip), self.node_ip(node));
            let m = t.mtu();
            assert_eq!(
                (m.ipip, m.vxlan, m.direct),
                (1480, 1450, 1500),
                "{}: {node}: MTUs",
                self.name
            );
            assert!(!t.endpoints().is_empty() || node != LOCAL_NODE);
        }
        if self.node_vtep_mac(LOCAL_NODE).0 != NODE1_VTEP_MAC {
            panic!("{}: VTEP MAC of {LOCAL_NODE} is not the SPEC's", self.name);
        }
    }

    /// The tables of node `node`.
    pub fn tables(&self, node: &str) -> &Tables {
        self.tables
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{}: no tables for node {node}", self.name))
    }

    /// The tables of [`LOCAL_NODE`].
    pub fn local(&self) -> &Tables {
        self.tables(LOCAL_NODE)
    }

    /// The name of the node whose IP is `ip` (via `Resources::nodes`).
    pub fn node_name_by_ip(&self, ip: Ipv4Addr) -> Option<&str> {
        self.resources
            .nodes
            .iter()
            .find(|n| n.ip() == Some(ip))
            .map(|n| n.name.as_str())
    }

    /// The IP of node `node`.
    pub fn node_ip(&self, node: &str) -> Option<Ipv4Addr> {
        self.resources.node(node)?.ip()
    }

    /// The VTEP MAC of node `node`.
    pub fn node_vtep_mac(&self, node: &str) -> MacAddr {
        self.resources
            .node(node)
            .unwrap_or_else(|| panic!("{}: no node {node}", self.name))
            .vtep_mac()
    }

    /// True when `src` is the IP of a node other than `node`.
    pub fn is_peer_of(&self, node: &str, src: Ipv4Addr) -> bool {
        self.resources
            .nodes
            .iter()
            .any(|n| n.name != node && n.ip() == Some(src))
    }

    /// True when `ip` is an address of a workload on `node`.
    pub fn is_workload_on(&self, node: &str, ip: Ipv4Addr) -> bool {
        self.resources
            .endpoints
            .iter()
            .any(|w| w.node == node && w.ips.contains(&ip))
    }

    /// Where `dst` goes from `node`, per SPEC §2, from the resources.
    pub fn route(&self, node: &str, dst: Ipv4Addr) -> Route {
        let r = &self.resources;
        if self.is_workload_on(node, dst) {
            return Route::Endpoint;
        }
        let Some(block) = r.blocks.iter().find(|b| b.cidr.contains(dst)) else {
            return Route::NoRoute;
        };
        let Some(owner) = &block.node else {
            return Route::NoRoute;
        };
        if owner == node {
            return Route::Blackhole;
        }
        let pool = r
            .pools
            .iter()
            .find(|p| p.cidr.contains(block.cidr.network()))
            .expect("validated: every block is in a pool");
        let me = r
            .node(node)
            .and_then(|n| n.ipv4)
            .expect("node with address");
        let peer = r.node(owner).expect("validated: block owner exists");
        let peer_ip = peer.ip().expect("validated: block owner has an address");
        let same_subnet = me.contains(peer_ip);
        let mode = if encapsulates(pool.vxlan_mode, same_subnet) && peer.vxlan_tunnel_addr.is_some()
        {
            Mode::Vxlan
        } else if encapsulates(pool.ipip_mode, same_subnet) {
            Mode::Ipip
        } else {
            Mode::Direct
        };
        Route::Remote {
            node: peer_ip,
            mode,
        }
    }

    /// Addresses worth sending to: every workload, one free address in
    /// every block, and one address outside every block.
    pub fn interesting_destinations(&self) -> Vec<Ipv4Addr> {
        let r = &self.resources;
        let mut v: Vec<Ipv4Addr> = r.endpoints.iter().flat_map(|w| w.ips.clone()).collect();
        for b in &r.blocks {
            let base = u32::from(b.cidr.network());
            let free = (1..b.cidr.size())
                .map(|i| Ipv4Addr::from(base + i))
                .find(|ip| !v.contains(ip));
            v.extend(free);
        }
        v.push(Ipv4Addr::new(8, 8, 8, 8));
        v
    }
}

pub static VXLAN: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::load("vxlan", include_str!("../../examples/vxlan.yaml")));
pub static IPIP: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::load("ipip", include_str!("../../examples/ipip.yaml")));
pub static DIRECT: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::load("direct", include_str!("../../examples/direct.yaml")));
pub static CROSSSUBNET: LazyLock<Cluster> = LazyLock::new(|| {
    Cluster::load(
        "crosssubnet",
        include_str!("../../examples/crosssubnet.yaml"),
    )
});

/// The example clusters by index (modulo 4): vxlan, ipip, direct, crosssubnet.
pub fn cluster(i: u8) -> &'static Cluster {
    match i % 4 {
        0 => &VXLAN,
        1 => &IPIP,
        2 => &DIRECT,
        _ => &CROSSSUBNET,
    }
}

// ---------------------------------------------------------------------------
// Independent wire decoding.

/// RFC 1071 one's complement sum of `data` (odd length padded with zero).
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        s += u32::from(w);
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// True when the Internet checksum over `data` verifies.
pub fn checksum_ok(data: &[u8]) -> bool {
    ones_sum(data) == 0xffff
}

/// RFC 1071 checksum to put in a field that is zero in `data`.
pub fn checksum(data: &[u8]) -> u16 {
    !ones_sum(data)
}

/// A decoded IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip {
    pub header_len: usize,
    pub total_len: usize,
    pub tos: u8,
    pub ident: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub checksum: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ip {
    pub fn ecn(&self) -> u8 {
        self.tos & 3
    }
    pub fn is_fragment(&self) -> bool {
        self.mf || self.frag_off != 0
    }
}

/// Decodes and validates the IPv4 header at the start of `data` with
/// etherparse and an independent checksum, in the order of SPEC §3 step 1:
/// version, header length, total length against the bytes, checksum. The
/// error is the drop reason the SPEC gives for the first failed rule.
pub fn ipv4(data: &[u8]) -> Result<Ip, DropReason> {
    let Some(&first) = data.first() else {
        return Err(DropReason::Malformed);
    };
    if first >> 4 != 4 {
        return Err(DropReason::NotIpv4);
    }
    let s = Ipv4HeaderSlice::from_slice(data).map_err(|_| DropReason::Malformed)?;
    let header_len = usize::from(s.ihl()) * 4;
    let total_len = usize::from(s.total_len());
    if header_len < 20 || total_len < header_len || total_len > data.len() {
        return Err(DropReason::Malformed);
    }
    // Two independent checksum verifications: etherparse's, and ours.
    let ours = checksum_ok(&data[..header_len]);
    // (Over the raw bytes: `Ipv4Header` has no field for the reserved flag
    // bit, so a header rebuilt from it may not have the same checksum.)
    let theirs = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&data[..header_len])
        .ones_complement()
        == 0;
    assert_eq!(
        ours,
        theirs,
        "checksum verifiers disagree on {:02x?}",
        &data[..header_len]
    );
    if !ours {
        return Err(DropReason::BadChecksum);
    }
    // RFC 791: options form a well-formed list, and no fragment reaches
    // past the largest datagram (65535 bytes).
    if !options_well_formed(&data[20..header_len]) {
        return Err(DropReason::Malformed);
    }
    if usize::from(s.fragments_offset().value()) * 8 + (total_len - header_len) > 65535 {
        return Err(DropReason::Malformed);
    }
    Ok(Ip {
        header_len,
        total_len,
        tos: data[1],
        ident: s.identification(),
        df: s.dont_fragment(),
        mf: s.more_fragments(),
        frag_off: s.fragments_offset().value(),
        ttl: s.ttl(),
        proto: s.protocol().0,
        checksum: s.header_checksum(),
        src: s.source_addr(),
        dst: s.destination_addr(),
    })
}

/// `ipv4` that must succeed.
#[track_caller]
pub fn must_ipv4(what: &str, data: &[u8]) -> Ip {
    ipv4(data).unwrap_or_else(|r| panic!("{what} is not valid IPv4 ({r}): {:02x?}", data))
}

/// True when the options are a well-formed list (EOL, NOP, or kind, length
/// ≥ 2, within the header), as Linux's `ip_options_compile` requires at the
/// least.
pub fn options_well_formed(opts: &[u8]) -> bool {
    later_fragment_options(opts).is_some()
}

/// The options of a later fragment: the original's with every option that
/// lacks the "copied" flag overwritten by NOPs; `None` for a malformed list.
pub fn later_fragment_options(opts: &[u8]) -> Option<Vec<u8>> {
    let mut out = opts.to_vec();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return Some(out),
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind & 0x80 == 0 {
                    out[i..i + len].fill(1);
                }
                i += len;
            }
        }
    }
    Some(out)
}

/// Multicast, limited broadcast or unspecified (RFC 1122 §3.2.2).
pub fn is_special(a: Ipv4Addr) -> bool {
    a.is_multicast() || a.is_broadcast() || a.is_unspecified()
}

/// RFC 6040 §4.1 normal mode: outer ECN copies the inner, CE becomes ECT(0).
pub fn encap_ecn(inner: u8) -> u8 {
    match inner & 3 {
        3 => 2,
        e => e,
    }
}

/// Asserts that `got` is `want` with the TTL lowered by `dec` and a valid
/// (recomputed) header checksum, and, when `set_ce`, ECN set to CE; every
/// other byte equal.
#[track_caller]
pub fn assert_forwarded(what: &str, want: &[u8], got: &[u8], dec: u8, set_ce: bool) {
    assert_eq!(want.len(), got.len(), "{what}: length changed");
    let w = must_ipv4(what, want);
    let g = must_ipv4(what, got);
    assert!(w.ttl > dec, "{what}: TTL {} forwarded {dec} times", w.ttl);
    assert_eq!(g.ttl, w.ttl - dec, "{what}: TTL");
    let want_ecn = if set_ce { 3 } else { w.ecn() };
    assert_eq!(g.tos, (w.tos & !3) | want_ecn, "{what}: TOS");
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        if !matches!(i, 1 | 8 | 10 | 11) {
            assert_eq!(a, b, "{what}: byte {i} changed");
        }
    }
}

/// Drop reasons are a closed set whose names round-trip.
#[track_caller]
pub fn check_drop(r: DropReason) {
    assert_eq!(DropReason::from_name(r.name()), Some(r), "{r:?}");
    assert_eq!(r.to_string(), r.name());
    assert!(!r.description().is_empty());
    assert!(DropReason::ALL.contains(&r));
}

// ---------------------------------------------------------------------------
// Ingress.

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
