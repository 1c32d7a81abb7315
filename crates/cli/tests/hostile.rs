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
#[path = "hostile/kinds.rs"]
mod kinds;
#[path = "hostile/probes.rs"]
mod probes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Lab, NODES, Testbed, root_or_skip, testbed};
use kinds::{At, Expect, Kind, Source, kinds};
use probes::{
    Injector, KERNEL_ERRORS, KERNEL_SHOWN, kernel_counters, kernel_delta, listener_lines,
    podwire_delta, podwire_drops, start_listener,
};

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
