//! The bodies of the fuzz targets, callable from the libFuzzer binaries in
//! `fuzz_targets/` and from `tests/replay.rs` (which replays the committed
//! corpus and regressions on a stable toolchain, without libFuzzer).

use std::net::Ipv4Addr;

use arbitrary::Arbitrary;
use podwire::pipeline::{DropReason, Verdict};
use podwire::table::{self, CompileError, EndpointId};

use crate::{
    EgressResult, Entry, IPIP, LOCAL_NODE, Mode, Route, VXLAN, checksum, checksum_ok, cluster,
    options_well_formed, run_egress, run_ingress,
};

/// `ingress`: one selector byte, then the packet.
///
/// - bit 0 picks the tables: 0 = examples/vxlan.yaml, 1 = examples/ipip.yaml;
/// - bits 1-2 pick the UDP source given to `ingress_vxlan_payload`:
///   k8s-node2 (0, 1), k8s-master (2) or a stranger (3);
/// - bits 3-7 are passed as its outer ECN (the library masks them).
///
/// The packet goes through `ingress` as a whole outer IPv4 packet, through
/// `ingress_vxlan_payload` as is and from just past an outer IPv4 + UDP
/// header, and through `ingress_direct` as is and from just past an outer
/// IPv4 header. [`run_ingress`] checks every verdict against the SPEC §4
/// model and the delivered bytes against the input.
pub fn ingress(data: &[u8]) {
    let Some((&sel, packet)) = data.split_first() else {
        return;
    };
    let c = if sel & 1 == 0 { &*VXLAN } else { &*IPIP };
    run_ingress(c, LOCAL_NODE, Entry::Ingress, packet);

    let src = match (sel >> 1) & 3 {
        0 | 1 => Ipv4Addr::new(192, 168, 33, 57),
        2 => Ipv4Addr::new(192, 168, 33, 53),
        _ => Ipv4Addr::new(192, 168, 33, 99),
    };
    let vx = Entry::VxlanPayload {
        src,
        outer_ecn: sel >> 3,
    };
    run_ingress(c, LOCAL_NODE, vx, packet);
    let hl = packet.first().map_or(0, |b| usize::from(b & 0xf) * 4);
    if let Some(payload) = packet.get(hl + 8..) {
        run_ingress(c, LOCAL_NODE, vx, payload);
    }

    run_ingress(c, LOCAL_NODE, Entry::Direct, packet);
    if let Some(inner) = packet.get(hl..) {
        run_ingress(c, LOCAL_NODE, Entry::Direct, inner);
    }
}

/// `egress`: one selector byte, then the packet.
///
/// - bits 6-7 pick the cluster: examples/vxlan.yaml, ipip.yaml, direct.yaml
///   or crosssubnet.yaml;
/// - bits 0-5, modulo the number of local endpoints, pick the endpoint the
///   packet comes from (63 names an endpoint that does not exist).
///
/// [`run_egress`] checks the verdict against the SPEC §3 model, the outer
/// headers of what is sent, ICMP errors, every fragment of a Fragment
/// verdict, and that the peer node's ingress (tables compiled for that node
/// from the same file) delivers the original packet, TTL − 2.
pub fn egress(data: &[u8]) {
    let Some((&sel, packet)) = data.split_first() else {
        return;
    };
    let c = cluster(sel >> 6);
    let n = c.local().endpoints().len();
    let from = match sel & 0x3f {
        0x3f => n,
        i => usize::from(i) % n,
    };
    run_egress(c, EndpointId(from as u32), packet);
    let mtu = usize::from(c.local().mtu().direct);
    for segment in [mtu, mtu + 1] {
        check_super_packet(c, EndpointId(from as u32), packet, segment);
    }
}

/// Runs one packet through `egress`, or `egress_gso` with `segment`.
fn egress_once(
    c: &crate::Cluster,
    from: EndpointId,
    input: &[u8],
    segment: Option<usize>,
) -> (Verdict, Vec<u8>) {
    use podwire::pipeline::{self, HEADROOM, Packet, State};
    let mut buf = vec![0u8; HEADROOM + input.len()];
    buf[HEADROOM..].copy_from_slice(input);
    let mut pkt = Packet::new(&mut buf, HEADROOM, input.len());
    let mut st = State::new(0x1234);
    let v = match segment {
        Some(s) => pipeline::egress_gso(c.local(), &mut st, from, &mut pkt, s),
        None => pipeline::egress(c.local(), &mut st, from, &mut pkt),
    };
    (v, pkt.data().to_vec())
}

/// The same packet taken as a TCP super-packet with segments of `segment`
/// bytes (`egress_gso`): it may go whole only to a local pod (where plain
/// egress delivers it too), or to a direct-mode next hop or into VXLAN or
/// IP-in-IP to a node (where plain egress sends it there, or finds it too
/// big), with segments within the MTU, the packet unchanged but for TTL − 1
/// and a header checksum that verifies (behind VXLAN's 50 bytes or IPIP's
/// 20 of headers); it is never fragmented; every other verdict is plain
/// egress's, but for `too-big`.
fn check_super_packet(c: &crate::Cluster, from: EndpointId, input: &[u8], segment: usize) {
    use podwire::pipeline::Target;
    let (plain, _) = egress_once(c, from, input, None);
    let (v, out) = egress_once(c, from, input, Some(segment));
    let what = format!("{}: super-packet of {segment}-byte segments", c.name);
    if *crate::VERBOSE {
        eprintln!("  {what}: {v:?}");
    }
    let size_bound = matches!(
        plain,
        Verdict::Fragment(_)
            | Verdict::Drop(DropReason::TooBig)
            | Verdict::Icmp {
                reason: DropReason::TooBig,
                ..
            }
    );
    match v {
        Verdict::Send(Target::Direct { gw }) => {
            assert!(segment <= usize::from(c.local().mtu().direct), "{what}");
            assert!(
                plain == Verdict::Send(Target::Direct { gw }) || size_bound,
                "{what}: sent whole to {gw}, plain egress says {plain:?}"
            );
            assert_eq!(out.len(), input.len(), "{what}");
            assert_eq!(out[8], input[8].wrapping_sub(1), "{what}: TTL");
            assert_eq!(out[..8], input[..8], "{what}");
            assert_eq!(out[12..], input[12..], "{what}");
            let ihl = usize::from(out[0] & 0x0f) * 4;
            assert!(checksum_ok(&out[..ihl]), "{what}: header checksum");
        }
        Verdict::Send(Target::Vxlan { node, .. }) => {
            assert!(segment <= usize::from(c.local().mtu().vxlan), "{what}");
            assert!(
                matches!(plain, Verdict::Send(Target::Vxlan { node: n, .. }) if n == node)
                    || size_bound,
                "{what}: sent whole into VXLAN to {node}, plain egress says {plain:?}"
            );
            // The outer headers (IPv4, UDP, VXLAN, inner Ethernet) in front
            // of the super-packet, unchanged but for TTL − 1.
            assert_eq!(out.len(), input.len() + 50, "{what}");
            let inner = &out[50..];
            assert_eq!(inner[8], input[8].wrapping_sub(1), "{what}: TTL");
            assert_eq!(inner[12..], input[12..], "{what}");
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            assert!(checksum_ok(&inner[..ihl]), "{what}: header checksum");
        }
        Verdict::Send(Target::Ipip { node }) => {
            assert!(segment <= usize::from(c.local().mtu().ipip), "{what}");
            assert!(
                plain == Verdict::Send(Target::Ipip { node }) || size_bound,
                "{what}: sent whole into IP-in-IP to {node}, plain egress says {plain:?}"
            );
            // One outer IPv4 header (protocol 4, to the node) in front of
            // the super-packet, unchanged but for TTL − 1.
            assert_eq!(out.len(), input.len() + 20, "{what}");
            assert_eq!(out[9], 4, "{what}: protocol");
            assert_eq!(out[16..20], node.octets(), "{what}: outer destination");
            assert!(checksum_ok(&out[..20]), "{what}: outer header checksum");
            let inner = &out[20..];
            assert_eq!(inner[8], input[8].wrapping_sub(1), "{what}: TTL");
            assert_eq!(inner[12..], input[12..], "{what}");
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            assert!(checksum_ok(&inner[..ihl]), "{what}: header checksum");
        }
        Verdict::Deliver(to) => assert_eq!(plain, Verdict::Deliver(to), "{what}"),
        Verdict::Drop(DropReason::TooBig) => assert!(
            size_bound || matches!(plain, Verdict::Send(_)),
            "{what}: too big, plain egress says {plain:?}"
        ),
        Verdict::Fragment(_) => panic!("{what}: {v:?}: a super-packet fragmented"),
        other => assert_eq!(other, plain, "{what}"),
    }
}

/// `config`: arbitrary text as a configuration file.
///
/// - `config::parse` never panics; an error's message starts with
///   "document " (it says where the problem is);
/// - on success, the tables of every node compile without panicking, and
///   fail only for what a validated configuration may still have (a node
///   without an address, an MTU below 68), never for an inconsistency the
///   validator should have caught (`CompileError::Build`);
/// - `Tables::report()` has `# routes`, `# neigh`, `# fdb` in that order and
///   one line per route, neighbour and FDB entry.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let resources = match podwire::config::parse(text) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("document "),
                "error without a location: {msg}"
            );
            return;
        }
    };
    let underlay = crate::underlay();
    for node in &resources.nodes {
        match table::compile(&resources, &node.name, &underlay) {
            Ok(t) => {
                let report = t.report();
                let routes = report.find("# routes\n");
                let neigh = report.find("\n# neigh\n").map(|i| i + 1);
                let fdb = report.find("\n# fdb\n").map(|i| i + 1);
                assert_eq!(routes, Some(0), "{report}");
                assert!(neigh.is_some() && fdb.is_some() && neigh < fdb, "{report}");
                assert_eq!(
                    report.lines().count(),
                    3 + t.routes().len() + t.neigh().len() + t.fdb().len(),
                    "{report}"
                );
                assert_eq!(t.local().name, node.name);
            }
            Err(CompileError::NoAddress(name)) => {
                assert_eq!(name, node.name);
                assert!(node.ipv4.is_none(), "NoAddress for a node with one");
            }
            Err(CompileError::MtuTooSmall { .. }) => {}
            Err(e) => panic!(
                "a validated configuration does not compile for node {:?}: {e}",
                node.name
            ),
        }
    }
}

/// `frag`'s input: a valid IPv4 packet from a local workload of k8s-node1 to
/// a remote block, larger than the mode's MTU, DF clear.
#[derive(Arbitrary, Debug)]
pub struct FragInput {
    pub cluster: u8,
    pub from: u8,
    pub dst: u8,
    pub extra_len: u16,
    pub tos: u8,
    pub ident: u16,
    pub ttl: u8,
    pub proto: u8,
    pub mf: bool,
    pub frag_off: u16,
    /// Use `frag_off` as is (13 bits), not just its low 8 bits: offsets that
    /// run past 65535 bytes.
    pub big_offset: bool,
    /// Use `options` as raw bytes, not as a recipe for a well-formed list.
    pub raw_options: bool,
    /// Sizes up to 65535 bytes, not just up to about four MTUs.
    pub huge: bool,
    pub options: Vec<u8>,
    pub seed: u8,
}

/// Up to 40 bytes of IPv4 options built from `recipe`: a well-formed list
/// (EOL, NOP, or kind + length + data) unless `raw`, padded with EOL to a
/// multiple of 4.
fn build_options(recipe: &[u8], raw: bool) -> Vec<u8> {
    let mut opts = Vec::new();
    if raw {
        opts.extend(recipe.iter().take(40));
    } else {
        let mut it = recipe.iter().copied();
        while let Some(kind) = it.next() {
            match kind {
                0 => break,
                1 => opts.push(1),
                _ => {
                    let len = 2 + usize::from(it.next().unwrap_or(0) % 8);
                    if opts.len() + len > 40 {
                        break;
                    }
                    opts.extend([kind, len as u8]);
                    opts.extend((0..len - 2).map(|_| it.next().unwrap_or(0)));
                }
            }
            if opts.len() >= 40 {
                break;
            }
        }
        opts.truncate(40);
    }
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    opts
}

/// `frag`: egress must fragment (RFC 791) a packet larger than the mode's
/// MTU with DF clear. Options, TOS, TTL, ID, protocol, an incoming fragment
/// offset and MF, and the size are the fuzzer's.
///
/// Checked by [`run_egress`] and [`crate::check_fragments`]: the verdict is
/// Fragment; the fragment count is ceil(payload / chunk); each fragment,
/// encapsulated, is at most MTU + overhead, decodes, has 8-aligned data
/// except the last, the right MF, offset and ID, copied-only options after
/// the first, and is delivered by the peer's ingress; the payloads put
/// together are the original payload.
pub fn frag(input: FragInput) {
    let c = cluster(input.cluster);
    let t = c.local();
    let eps = t.endpoints();
    let from = usize::from(input.from) % eps.len();
    let src = eps[from].ips[0];
    let remote: Vec<_> = c
        .interesting_destinations()
        .into_iter()
        .filter_map(|d| match c.route(LOCAL_NODE, d) {
            Route::Remote { mode, .. } => Some((d, mode)),
            _ => None,
        })
        .collect();
    let (dst, mode) = remote[usize::from(input.dst) % remote.len()];
    let mtu = usize::from(match mode {
        Mode::Vxlan => t.mtu().vxlan,
        Mode::Ipip => t.mtu().ipip,
        Mode::Direct => t.mtu().direct,
    });

    let opts = build_options(&input.options, input.raw_options);
    let hl = 20 + opts.len();
    let span = if input.huge { 65535 - mtu } else { 3 * mtu };
    let total = mtu + 1 + usize::from(input.extra_len) % span;
    let proto = match input.proto {
        4 => 1, // a workload may not send IP-in-IP
        p => p,
    };
    let mut p = vec![0u8; total];
    p[0] = 0x40 | (hl / 4) as u8;
    p[1] = input.tos;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&input.ident.to_be_bytes());
    let frag_off = if input.big_offset {
        input.frag_off & 0x1fff
    } else {
        input.frag_off & 0xff
    };
    let flags = (u16::from(input.mf) << 13) | frag_off;
    p[6..8].copy_from_slice(&flags.to_be_bytes());
    p[8] = input.ttl.max(2);
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..hl].copy_from_slice(&opts);
    for (i, b) in p[hl..].iter_mut().enumerate() {
        *b = ((i * 31 + usize::from(input.seed)) % 251) as u8;
    }
    if proto == 17 && p[hl + 2..hl + 4] == 4789u16.to_be_bytes() {
        p[hl + 3] ^= 1; // UDP to the VXLAN port is not a workload's to send
    }
    let csum = checksum(&p[..hl]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());

    // A malformed options list, or a fragment reaching past 65535 bytes, is
    // dropped as a whole (never part-way through its fragments).
    let well_formed =
        options_well_formed(&opts) && usize::from(frag_off) * 8 + (total - hl) <= 65535;
    match run_egress(c, EndpointId(from as u32), &p) {
        EgressResult::Fragments(_) => {
            assert!(well_formed, "{}: fragmented a malformed packet", c.name)
        }
        EgressResult::Verdict(Verdict::Drop(DropReason::Malformed)) if !well_formed => {}
        other => panic!("{}: not fragmented: {other:?}", c.name),
    }
}

/// `control`: arbitrary bytes as what a client writes to the control
/// socket (the daemon reads at most `MAX_REQUEST` bytes, up to the first
/// newline). One selector byte picks the cluster whose k8s-node1 tables
/// answer; the rest is the request.
///
/// - `respond` never panics; its answer is whole lines (or nothing, for
///   an empty table);
/// - a refusal is exactly one line starting with `error: ` and bounded in
///   size (the request is quoted, escaped, never more);
/// - an accepted request is exactly the canonical words: the first line,
///   split on whitespace, is `show <topic>` or `show <topic> json`, and
///   printing the parsed request and parsing it again gives it back;
/// - the answer is `render` of the request: a JSON answer parses as JSON
///   (an array for routes/neigh/fdb/endpoints, an object for stats and
///   host), a
///   text answer for routes is `Tables::routes_text()`.
pub fn control(data: &[u8]) {
    use podwire_daemon::control::{self, MAX_REQUEST, Topic};
    use podwire_daemon::stats::Totals;

    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let bytes = &rest[..rest.len().min(MAX_REQUEST)];
    let t = cluster(sel).local();
    let totals = || Totals {
        workers: 1,
        ..Totals::default()
    };
    let answer = control::respond(bytes, t, totals);
    // Empty tables print nothing, as `ip route` does; anything else is lines.
    assert!(answer.is_empty() || answer.ends_with('\n'), "{answer:?}");
    match control::parse(bytes) {
        Err(refusal) => {
            let refusal = refusal.answer();
            assert_eq!(answer, refusal);
            assert!(answer.starts_with("error: "), "{answer:?}");
            assert_eq!(answer.matches('\n').count(), 1, "{answer:?}");
            // Escaped as Rust's Debug does: at most 10 characters a byte.
            assert!(answer.len() <= 120 + 10 * MAX_REQUEST, "{}", answer.len());
        }
        Ok(req) => {
            assert!(!answer.starts_with("error: "), "{answer:?}");
            let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
            let words: Vec<&str> = std::str::from_utf8(line)
                .expect("accepted a request that is not UTF-8")
                .split_whitespace()
                .collect();
            let canonical = req.to_string();
            assert_eq!(words.join(" "), canonical);
            assert_eq!(control::parse(canonical.as_bytes()), Ok(req));
            assert_eq!(answer, control::render(req, t, totals));
            if req.json {
                let v: serde_json::Value =
                    serde_json::from_str(&answer).expect("JSON answer does not parse");
                match req.topic {
                    Topic::Stats | Topic::Host => assert!(v.is_object(), "{v}"),
                    _ => assert!(v.is_array(), "{v}"),
                }
            } else if req.topic == Topic::Routes {
                assert_eq!(answer, t.routes_text());
            }
        }
    }
}

/// `etcd`: a key of Calico's etcd datastore and its value, split at the
/// first newline (a key has none), decoded for k8s-node1.
///
/// - neither `layout::parse_key` nor `decode::document` panics;
/// - a key that is not a resource or a block podwire reads gives no
///   document, whatever the value; so does another node's WorkloadEndpoint
///   (dropped by its key, its value never read);
/// - a document that comes back parses on its own, and is JSON of the kind
///   the key names (an IPAMBlock for a block key);
/// - a key built back from what was parsed is the key (for resources and
///   blocks).
pub fn etcd(data: &[u8]) {
    use podwire_etcd::decode::document;
    use podwire_etcd::layout::{self, Key};

    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    let node = crate::LOCAL_NODE;
    let parsed = layout::parse_key(key);
    let doc = document(key, value, node);
    let kind = match parsed {
        Key::Resource {
            plural,
            namespace,
            name,
        } => {
            assert_eq!(layout::resource_key(plural, namespace, name), key);
            match plural {
                "workloadendpoints" if !layout::endpoint_is_on(name, node) => None,
                "ippools" => Some("IPPool"),
                "nodes" => Some("Node"),
                "felixconfigurations" => Some("FelixConfiguration"),
                "workloadendpoints" => Some("WorkloadEndpoint"),
                _ => None,
            }
        }
        Key::Block(cidr) => {
            assert_eq!(layout::block_key(cidr), key);
            Some("IPAMBlock")
        }
        Key::Affinity { host, cidr } => {
            assert_eq!(layout::affinity_key(host, cidr), key);
            None
        }
        Key::Handle(id) => {
            assert_eq!(layout::handle_key(id), key);
            None
        }
        Key::Other => None,
    };
    match (kind, doc) {
        (None, Ok(d)) => assert!(
            d.is_none(),
            "{key}: a document for a key podwire does not read"
        ),
        (None, Err(e)) => panic!("{key}: an error for a key podwire does not read: {e}"),
        (Some(_), Err(_)) => {}
        (Some(_), Ok(None)) => panic!("{key}: no document for a key podwire reads"),
        (Some(kind), Ok(Some(d))) => {
            let v: serde_json::Value =
                serde_json::from_str(&d).expect("a document that is not JSON");
            assert_eq!(v["kind"], kind, "{key}");
            podwire::config::parse_documents(&d).expect("a document that does not parse");
        }
    }
}
