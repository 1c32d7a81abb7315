//! Hostile traffic, as root, in network namespaces: while a pod on one node
//! streams data to a pod on the other, a "stranger" host on the underlay
//! bridge and a pod inject malformed, misaddressed and oversized packets at
//! k8s-node1, one kind at a time, built by scapy (`tests/hostile/inject.py`).
//! After each kind the test compares k8s-node1's counters with what SPEC.md
//! says (and, where the SPEC is silent, what the Linux kernel does):
//!
//! - podwire's drop counters: exactly the expected reason moves, by exactly
//!   the expected count, and no other reason moves;
//! - the node namespace's kernel counters (`/proc/net/snmp`, `netstat`):
//!   podwire's IPIP listener is a raw `IPPROTO_IPIP` socket and its VXLAN
//!   listener a UDP socket, so the node's kernel validates the outer IPv4
//!   header (ip_rcv_core: checksum, IHL, version, total length, options),
//!   reassembles outer fragments, and validates UDP (length, checksum)
//!   before podwire sees a byte. Those kinds must show up in the kernel's
//!   counters, and not in podwire's;
//! - a listener in the destination pod (`tests/hostile/listen.py`): what
//!   must be delivered arrives once, intact, with the TTL a router chain
//!   gives it and the ECN field RFC 6040 gives it, and nothing else arrives.
//!
//! At the end the transfer must have finished with its content intact
//! (SHA-256 on both sides) and both daemons must still answer.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{Lab, NODES, Testbed, root_or_skip, testbed};

const INJECT: &str = include_str!("hostile/inject.py");
const LISTEN: &str = include_str!("hostile/listen.py");
const STREAM: &str = include_str!("hostile/stream.py");

/// Two nodes on one underlay bridge, three pods, and a stranger host.
struct Cluster {
    lab: Lab,
    /// When this test got the lab (tests wait for one another).
    since: Instant,
    n1: String,
    ctl1: PathBuf,
    ctl2: PathBuf,
    /// k8s-node1's pods: `p1a` receives the transfer, `p1b` is the hostile pod.
    p1a: String,
    p1b: String,
    /// k8s-node2's pod: sends the transfer.
    p2a: String,
    stranger: String,
}

fn two_nodes(mode: &str) -> Cluster {
    // One pool in `mode` (`ipip` or `vxlan`), two nodes, three pods.
    let Testbed {
        mut lab,
        config,
        sw,
        nodes: ns,
    } = testbed(mode, &["cali1a", "cali1b", "cali2a"], &["n1", "n2"]);
    let since = Instant::now();
    let threads = if mode == "vxlan" { "2" } else { "1" };
    // If br_netfilter is loaded, a bridge in a new namespace hands IPv4 to
    // it, and it drops malformed headers itself (br_validate_ipv4) before
    // they reach k8s-node1: an underlay switch does no such thing.
    if Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        lab.must_exec(
            &sw,
            &["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0"],
        );
    }
    let mut ctl = Vec::new();
    for (node, n) in NODES.iter().zip(&ns) {
        lab.must_exec(n, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        ctl.push(lab.podwire(n, &config, node.name, &["--threads", threads]));
    }
    // An incomplete fragment train is given up after one second instead of
    // thirty, so that the test sees the kernel give up.
    lab.must_exec(&ns[0], &["sysctl", "-q", "-w", "net.ipv4.ipfrag_time=1"]);
    // The pods' IPv6 is off before their `eth0` arrives: the kernel would
    // otherwise send router solicitations and MLD reports, which podwire
    // counts as `not-ipv4`, and every count here is exact.
    let p1a = lab.pod_without_ipv6("p1a", &ns[0], "cali1a", "10.2.36.68");
    let p1b = lab.pod_without_ipv6("p1b", &ns[0], "cali1b", "10.2.36.69");
    let p2a = lab.pod_without_ipv6("p2a", &ns[1], "cali2a", "10.2.169.138");
    let stranger = lab.netns("st");
    lab.attach(&sw, "br0", &stranger, "eth0", "192.168.33.99/24");
    Cluster {
        lab,
        since,
        n1: ns[0].clone(),
        ctl1: ctl[0].clone(),
        ctl2: ctl[1].clone(),
        p1a,
        p1b,
        p2a,
        stranger,
    }
}

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(lab: &Lab, ns: &str, dev: &str) -> String {
    let out = lab.ip(ns, &["-o", "link", "show", dev]);
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {out}"))
        .to_string()
}

// --- counters --------------------------------------------------------------

/// podwire's drop counters, by reason.
fn podwire_drops(lab: &Lab, ctl: &Path) -> BTreeMap<String, u64> {
    let stats = lab.stats(ctl);
    stats["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_str().unwrap().to_string(), d[1].as_u64().unwrap()))
        .collect()
}

/// The kernel's IPv4 and UDP counters in namespace `ns`, as `Ip.InHdrErrors`,
/// `IpExt.InCsumErrors`, `Udp.InErrors`, ...
fn kernel_counters(lab: &Lab, ns: &str) -> BTreeMap<String, u64> {
    let text = lab.must_exec(ns, &["cat", "/proc/net/snmp", "/proc/net/netstat"]);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((_, values))) =
            (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<i64>() {
                out.insert(format!("{group}.{n}"), v.max(0) as u64);
            }
        }
    }
    out
}

/// Kernel counters that count a packet the kernel refused. Every kind that
/// the kernel must let through to podwire leaves them all unchanged.
const KERNEL_ERRORS: [&str; 7] = [
    "Ip.InHdrErrors",
    "IpExt.InCsumErrors",
    "IpExt.InTruncatedPkts",
    "Ip.ReasmFails",
    "IpExt.ReasmOverlaps",
    "Udp.InErrors",
    "Udp.InCsumErrors",
];

/// Kernel counters shown in the table when they move.
const KERNEL_SHOWN: [&str; 12] = [
    "Ip.InHdrErrors",
    "IpExt.InCsumErrors",
    "IpExt.InTruncatedPkts",
    "Ip.ReasmReqds",
    "Ip.ReasmOKs",
    "Ip.ReasmFails",
    "Ip.ReasmTimeout",
    "IpExt.ReasmOverlaps",
    "Udp.InErrors",
    "Udp.InCsumErrors",
    "Udp.IgnoredMulti",
    "Udp.NoPorts",
];

fn kernel_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, key: &str) -> u64 {
    let d = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(k).copied().unwrap_or(0))
    };
    if key == "Udp.InErrors" {
        // A full receive buffer also counts as an input error; that is load
        // from the transfer, not a refused datagram.
        d(key).saturating_sub(d("Udp.RcvbufErrors") + d("Udp.MemErrors"))
    } else {
        d(key)
    }
}

fn podwire_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(r, n)| {
            let d = n.saturating_sub(before.get(r).copied().unwrap_or(0));
            (d > 0).then(|| (r.clone(), d))
        })
        .collect()
}

// --- the pods' listeners -----------------------------------------------------

/// A line of listen.py's output.
#[derive(Debug, Clone)]
struct Seen {
    tag: String,
    len: usize,
    intact: bool,
    tos: i64,
    ttl: i64,
}

fn listener_lines(path: &Path) -> Vec<Seen> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| *l != "listening")
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [tag, len, ok, tos, ttl] = f[..] else {
                return None;
            };
            Some(Seen {
                tag: tag.to_string(),
                len: len.parse().ok()?,
                intact: ok == "ok",
                tos: tos.parse().ok()?,
                ttl: ttl.parse().ok()?,
            })
        })
        .collect()
}

fn start_listener(lab: &mut Lab, pod: &str, addr: &str, name: &str) -> PathBuf {
    let script = lab.file("listen.py", LISTEN);
    let out = lab.dir.join(format!("{name}.seen"));
    lab.spawn(
        pod,
        name,
        &[
            "/usr/bin/python3",
            script.to_str().unwrap(),
            addr,
            out.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(Instant::now() < deadline, "listener {name} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

// --- the injectors ----------------------------------------------------------

/// inject.py, running in a namespace and driven one kind at a time.
struct Injector {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: PathBuf,
}

impl Injector {
    fn start(lab: &Lab, ns: &str, args: &[&str], tag: &str) -> Injector {
        let script = lab.file("inject.py", INJECT);
        let log = lab.dir.join(format!("{tag}.stderr"));
        let mut cmd = vec![
            "netns",
            "exec",
            ns,
            "/usr/bin/python3",
            "-u",
            script.to_str().unwrap(),
        ];
        cmd.extend_from_slice(args);
        let mut child = Command::new("ip")
            .args(&cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start inject.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Injector {
            child,
            stdin,
            lines,
            log,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to inject.py");
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "inject.py did not answer {line}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }

    /// Every kind the script knows.
    fn kinds(&mut self) -> Vec<String> {
        let answer = self.ask("list");
        answer
            .strip_prefix("list ")
            .unwrap_or_else(|| panic!("inject.py: {answer}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Sends kind `name`; returns how many packets went out.
    fn send(&mut self, name: &str) -> Result<u64, String> {
        let answer = self.ask(name);
        let mut f = answer.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("sent"), Some(n), Some(count)) if n == name => Ok(count.parse().unwrap()),
            _ => Err(answer),
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // `ip netns exec` runs python in its own process: this PID is ours.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the kinds --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The stranger namespace on the underlay bridge (mostly spoofing
    /// k8s-node2's address).
    Underlay,
    /// Pod p1b on k8s-node1, through its eth0 (podwire's TUN device).
    Pod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// p1a on k8s-node1.
    P1a,
    /// p2a on k8s-node2.
    P2a,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
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

struct Kind {
    name: &'static str,
    from: Source,
    expect: Expect,
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
fn kinds(mode: &str) -> Vec<Kind> {
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

// --- running a kind -----------------------------------------------------------

struct Row {
    kind: &'static str,
    from: Source,
    expected: String,
    observed: String,
    ok: bool,
}

fn describe(e: &Expect) -> String {
    match e {
        Expect::Drop(r, n) => format!("{r} +{n}"),
        Expect::DropAny(rs, n) => format!("{} +{n}", rs.join("|")),
        Expect::Kernel(cs) => {
            let parts: Vec<String> = cs.iter().map(|(c, n)| format!("{c} +{n}")).collect();
            format!("kernel: {}", parts.join(", "))
        }
        Expect::KernelAny(cs, n, _) => format!("kernel: {} +{n}", cs.join("|")),
        Expect::Delivered {
            at, len, ttl, ecn, ..
        } => {
            let pod = if *at == At::P1a { "p1a" } else { "p2a" };
            let ecn = if *ecn == 3 { " CE" } else { "" };
            format!("delivered to {pod}: {len} B, ttl {ttl}{ecn}")
        }
    }
}

struct Watch<'a> {
    lab: &'a Lab,
    n1: &'a str,
    ctl1: &'a Path,
    ctl2: &'a Path,
    seen_p1a: &'a Path,
    seen_p2a: &'a Path,
}

struct Snapshot {
    pw1: BTreeMap<String, u64>,
    pw2: BTreeMap<String, u64>,
    kernel: BTreeMap<String, u64>,
    p1a: usize,
    p2a: usize,
}

impl Watch<'_> {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            pw1: podwire_drops(self.lab, self.ctl1),
            pw2: podwire_drops(self.lab, self.ctl2),
            kernel: kernel_counters(self.lab, self.n1),
            p1a: listener_lines(self.seen_p1a).len(),
            p2a: listener_lines(self.seen_p2a).len(),
        }
    }

    /// Sends `kind` and judges what became of it.
    fn run(&self, kind: &Kind, injector: &mut Injector) -> Row {
        let before = self.snapshot();
        let sent = injector.send(kind.name);
        let mut row = Row {
            kind: kind.name,
            from: kind.from,
            expected: describe(&kind.expect),
            observed: String::new(),
            ok: false,
        };
        if let Err(e) = sent {
            row.observed = format!("not sent: {e}");
            return row;
        }
        // Wait until the expected effect shows (or time runs out), then a
        // little longer, so that anything beyond it shows too.
        let timeout = if kind.name == "outer-incomplete-fragment" {
            Duration::from_secs(8)
        } else {
            Duration::from_secs(4)
        };
        let deadline = Instant::now() + timeout;
        loop {
            if self.reached(&kind.expect, &before) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150));
        let after = self.snapshot();
        let (ok, observed) = judge(&kind.expect, &before, &after, self);
        row.ok = ok;
        row.observed = observed;
        row
    }

    fn reached(&self, e: &Expect, before: &Snapshot) -> bool {
        match e {
            Expect::Drop(r, n) => {
                let now = podwire_drops(self.lab, self.ctl1);
                now[*r] >= before.pw1[*r] + n
            }
            Expect::DropAny(rs, n) => {
                let now = podwire_drops(self.lab, self.ctl1);
                rs.iter().map(|r| now[*r] - before.pw1[*r]).sum::<u64>() >= *n
            }
            Expect::Kernel(cs) => {
                let now = kernel_counters(self.lab, self.n1);
                cs.iter()
                    .all(|(c, n)| kernel_delta(&before.kernel, &now, c) >= *n)
            }
            Expect::KernelAny(cs, n, _) => {
                let now = kernel_counters(self.lab, self.n1);
                cs.iter()
                    .map(|c| kernel_delta(&before.kernel, &now, c))
                    .sum::<u64>()
                    >= *n
            }
            Expect::Delivered { at, tag, .. } => {
                let (path, skip) = match at {
                    At::P1a => (self.seen_p1a, before.p1a),
                    At::P2a => (self.seen_p2a, before.p2a),
                };
                listener_lines(path)[skip..].iter().any(|s| s.tag == *tag)
            }
        }
    }
}

/// Compares the counters before and after a kind with what was expected.
fn judge(e: &Expect, before: &Snapshot, after: &Snapshot, w: &Watch) -> (bool, String) {
    let pw1 = podwire_delta(&before.pw1, &after.pw1);
    let pw2 = podwire_delta(&before.pw2, &after.pw2);
    let kernel: BTreeMap<&str, u64> = KERNEL_SHOWN
        .iter()
        .map(|c| (*c, kernel_delta(&before.kernel, &after.kernel, c)))
        .filter(|(_, d)| *d > 0)
        .collect();
    let p1a = listener_lines(w.seen_p1a)[before.p1a..].to_vec();
    let p2a = listener_lines(w.seen_p2a)[before.p2a..].to_vec();

    let mut parts = Vec::new();
    if !pw1.is_empty() {
        let v: Vec<String> = pw1.iter().map(|(r, n)| format!("{r} +{n}")).collect();
        parts.push(v.join(", "));
    }
    if !pw2.is_empty() {
        let v: Vec<String> = pw2.iter().map(|(r, n)| format!("{r} +{n}")).collect();
        parts.push(format!("k8s-node2: {}", v.join(", ")));
    }
    if !kernel.is_empty() {
        let v: Vec<String> = kernel.iter().map(|(c, n)| format!("{c} +{n}")).collect();
        parts.push(format!("kernel: {}", v.join(", ")));
    }
    for (pod, seen) in [("p1a", &p1a), ("p2a", &p2a)] {
        for s in seen.iter() {
            let ecn = if s.tos & 3 == 3 { " CE" } else { "" };
            let intact = if s.intact { "" } else { " CORRUPT" };
            parts.push(format!(
                "delivered to {pod}: {} {} B, ttl {}{ecn}{intact}",
                s.tag, s.len, s.ttl
            ));
        }
    }
    let observed = if parts.is_empty() {
        "nothing".to_string()
    } else {
        parts.join("; ")
    };

    let kernel_errors_except = |allowed: &[&str]| {
        KERNEL_ERRORS
            .iter()
            .filter(|c| !allowed.contains(c))
            .all(|c| kernel_delta(&before.kernel, &after.kernel, c) == 0)
    };
    let nothing_delivered = p1a.is_empty() && p2a.is_empty();
    let ok = pw2.is_empty()
        && match e {
            Expect::Drop(r, n) => {
                pw1.len() == 1
                    && pw1.get(*r) == Some(n)
                    && kernel_errors_except(&[])
                    && nothing_delivered
            }
            Expect::DropAny(rs, n) => {
                pw1.keys().all(|r| rs.contains(&r.as_str()))
                    && pw1.values().sum::<u64>() == *n
                    && kernel_errors_except(&[])
                    && nothing_delivered
            }
            Expect::Kernel(cs) => {
                let listed: Vec<&str> = cs.iter().map(|(c, _)| *c).collect();
                pw1.is_empty()
                    && cs
                        .iter()
                        .all(|(c, n)| kernel_delta(&before.kernel, &after.kernel, c) == *n)
                    && kernel_errors_except(&listed)
                    && nothing_delivered
            }
            Expect::KernelAny(cs, n, also) => {
                let allowed: Vec<&str> = cs.iter().chain(also.iter()).copied().collect();
                pw1.is_empty()
                    && cs
                        .iter()
                        .map(|c| kernel_delta(&before.kernel, &after.kernel, c))
                        .sum::<u64>()
                        == *n
                    && kernel_errors_except(&allowed)
                    && nothing_delivered
            }
            Expect::Delivered {
                at,
                tag,
                len,
                ttl,
                ecn,
            } => {
                let (mine, other) = match at {
                    At::P1a => (&p1a, &p2a),
                    At::P2a => (&p2a, &p1a),
                };
                pw1.is_empty()
                    && kernel_errors_except(&[])
                    && other.is_empty()
                    && mine.len() == 1
                    && mine[0].tag == *tag
                    && mine[0].len == *len
                    && mine[0].intact
                    && mine[0].ttl == *ttl
                    && mine[0].tos & 3 == *ecn
            }
        };
    (ok, observed)
}

// --- the test -----------------------------------------------------------------

fn hostile_traffic(mode: &str) {
    let mut c = two_nodes(mode);
    let lab = &mut c.lab;

    // The pods' listeners for what must be delivered.
    let seen_p1a = start_listener(lab, &c.p1a, "10.2.36.68", "listen-p1a");
    let seen_p2a = start_listener(lab, &c.p2a, "10.2.169.138", "listen-p2a");
    // The hostile pod may send up to 65535 bytes at once.
    lab.ip(&c.p1b, &["link", "set", "eth0", "mtu", "65535"]);

    // The transfer, p2a -> p1a across the nodes: it runs from before the
    // first hostile packet until after the last.
    let stream = lab.file("stream.py", STREAM);
    let stream = stream.to_str().unwrap().to_string();
    let flag_started = lab.dir.join("stream.started");
    let flag_stop = lab.dir.join("stream.stop");
    lab.spawn(
        &c.p1a,
        "receiver",
        &["/usr/bin/python3", &stream, "recv", "10.2.36.68", "5001"],
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.spawn(
        &c.p2a,
        "sender",
        &[
            "/usr/bin/python3",
            &stream,
            "send",
            "10.2.36.68",
            "5001",
            flag_started.to_str().unwrap(),
            flag_stop.to_str().unwrap(),
        ],
    );

    // The injectors: the stranger on the underlay, and pod p1b.
    let node_mac = mac_of(lab, &c.n1, "eth0");
    let own_mac = mac_of(lab, &c.stranger, "eth0");
    let vtep = podwire::table::vtep_mac_for("k8s-node1").to_string();
    let mut underlay = Injector::start(
        lab,
        &c.stranger,
        &["underlay", mode, "eth0", &node_mac, &own_mac, &vtep],
        "inject-underlay",
    );
    let mut from_pod = Injector::start(lab, &c.p1b, &["pod", mode, "eth0"], "inject-pod");
    let mut kinds = kinds(mode);
    // Both sides agree on the list of kinds.
    let mut known = underlay.kinds();
    known.extend(from_pod.kinds());
    let mut listed: Vec<String> = kinds.iter().map(|k| k.name.to_string()).collect();
    known.sort();
    listed.sort();
    assert_eq!(known, listed, "kinds in inject.py and in this test");
    // PODWIRE_HOSTILE_KINDS=a,b,... runs only those kinds (to debug one).
    let only = std::env::var("PODWIRE_HOSTILE_KINDS").ok();
    if let Some(only) = &only {
        let only: Vec<&str> = only.split(',').collect();
        kinds.retain(|k| only.contains(&k.name));
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    while !flag_started.exists() {
        assert!(Instant::now() < deadline, "the transfer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let injection = Instant::now();
    let watch = Watch {
        lab,
        n1: &c.n1,
        ctl1: &c.ctl1,
        ctl2: &c.ctl2,
        seen_p1a: &seen_p1a,
        seen_p2a: &seen_p2a,
    };
    let mut rows = Vec::new();
    for kind in &kinds {
        let injector = match kind.from {
            Source::Underlay => &mut underlay,
            Source::Pod => &mut from_pod,
        };
        rows.push(watch.run(kind, injector));
    }
    let injection = injection.elapsed();
    drop(underlay);
    drop(from_pod);

    // The table.
    println!(
        "\n{mode}: {} kinds in {:.1} s, {} from the underlay, {} from a pod",
        rows.len(),
        injection.as_secs_f64(),
        rows.iter().filter(|r| r.from == Source::Underlay).count(),
        rows.iter().filter(|r| r.from == Source::Pod).count()
    );
    println!(
        "{:<32} {:<8} {:<52} {:<4} observed",
        "kind", "from", "expected", "ok"
    );
    for r in &rows {
        let from = match r.from {
            Source::Underlay => "underlay",
            Source::Pod => "pod",
        };
        let ok = if r.ok { "ok" } else { "FAIL" };
        println!(
            "{:<32} {:<8} {:<52} {:<4} {}",
            r.kind, from, r.expected, ok, r.observed
        );
    }

    // The transfer ends now, and must be whole.
    std::fs::write(&flag_stop, "").unwrap();
    let sent = c.lab.wait("sender", Duration::from_secs(60));
    let got = c.lab.wait("receiver", Duration::from_secs(60));
    let sent_text = String::from_utf8_lossy(&sent.stdout).trim().to_string();
    let got_text = String::from_utf8_lossy(&got.stdout).trim().to_string();
    println!("transfer: sent {sent_text}; received {got_text}");
    assert!(
        sent.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        got.status.success(),
        "receiver: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        got_text, sent_text,
        "content of the transfer (bytes, SHA-256)"
    );
    let bytes: u64 = sent_text
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes >= 4 << 20, "the transfer moved {bytes} bytes");

    // Both daemons are still up and answering, and said nothing alarming.
    for (node, ctl) in [("k8s-node1", &c.ctl1), ("k8s-node2", &c.ctl2)] {
        let stats = c.lab.stats(ctl);
        assert!(stats["drops"].is_array(), "{node}: {stats}");
        let log = c.lab.log(node);
        assert!(!log.contains("panicked"), "{node}: {log}");
        // Two workers share a flow's source port (SO_REUSEPORT): no
        // fallback to the raw socket.
        assert!(!log.contains("through the raw socket"), "{node}: {log}");
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.ok).map(|r| r.kind).collect();
    assert!(
        failed.is_empty(),
        "{mode}: kinds not handled as expected: {failed:?}\nk8s-node1's log:\n{}",
        c.lab.log("k8s-node1")
    );
    let underlay_kinds = rows.iter().filter(|r| r.from == Source::Underlay).count();
    assert!(
        underlay_kinds >= 20 || only.is_some(),
        "{underlay_kinds} underlay kinds"
    );
    println!("{mode}: total {:.1} s", c.since.elapsed().as_secs_f64());
}

#[test]
fn hostile_traffic_ipip() {
    if root_or_skip("hostile_traffic_ipip") {
        hostile_traffic("ipip");
    }
}

#[test]
fn hostile_traffic_vxlan() {
    if root_or_skip("hostile_traffic_vxlan") {
        hostile_traffic("vxlan");
    }
}
