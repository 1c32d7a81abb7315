//! `podwire bench`: throughput of podwire beside the kernel, on the lab's
//! topology, in the same run.
//!
//! Paths: `kernel-vxlan` (`vxlan.calico` on both nodes, as Felix sets it
//! up), `kernel-direct` (the nodes' kernels routing pod traffic, as in
//! Calico's BGP mode), and `podwire-vxlan`, `podwire-ipip`,
//! `podwire-direct` (every podwire node with its host path on, as a real
//! node runs). Then the host path's own: `-nat`, from the pod to the
//! "internet" host beyond the router, masqueraded by k8s-node1
//! (natOutgoing), and `-svc`, to a ClusterIP whose backend is the pod on
//! k8s-node2 (kube-proxy's nftables DNAT on k8s-node1), each over the
//! kernel's VXLAN node (its `cali-nat-outgoing` rule as nftables, the same
//! DNAT) and over podwire's. Last, `podwire-vxlan-tap`: VXLAN with the
//! pods' super-packets whole, out through the tunnel TAP (`--tunnel-gso`)
//! and in through a packet socket (`--packet-rx`), and `podwire-ipip-tun`:
//! the same for IPIP (out through the IPIP tunnel TUN). Tests, from a pod on k8s-node1 to a pod on
//! k8s-node2 (or as above) with iperf3: `tcp1` (one TCP stream), `tcp4` (four), `udp64` (64-byte UDP
//! datagrams as fast as they go; received packets per second). Each round
//! runs every path once, in the same order, so that drift on this shared
//! machine hits all of them alike; the report is the median of the rounds.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::lab::{self, LabError, Mode};
use crate::netns::{Harness, SOCKPERF_PORT, err};
use crate::{services, topology};

/// The paths `podwire bench` measures.
pub const PATHS: [&str; 11] = [
    "kernel-vxlan",
    "kernel-direct",
    "podwire-vxlan",
    "podwire-ipip",
    "podwire-direct",
    "kernel-vxlan-nat",
    "podwire-vxlan-nat",
    "kernel-vxlan-svc",
    "podwire-vxlan-svc",
    "podwire-vxlan-tap",
    "podwire-ipip-tun",
];

/// More podwire paths, for an ablation beside `podwire-vxlan` (every
/// default on), `podwire-vxlan-tap` and `podwire-ipip-tun` (super-packets
/// whole both ways): one technique off, or one alone. Measured only when
/// `--paths` names them.
pub const ABLATION: [&str; 4] = [
    "podwire-vxlan-no-offload",
    "podwire-vxlan-no-segment",
    "podwire-vxlan-rx",
    "podwire-ipip-rx",
];

/// Every path `--paths` may name: [`PATHS`], then [`ABLATION`].
pub fn all_paths() -> impl Iterator<Item = &'static str> {
    PATHS.into_iter().chain(ABLATION)
}

/// The flags a podwire path runs its daemons with.
fn podwire_flags(path: &str) -> &'static [&'static str] {
    match path {
        "podwire-vxlan-tap" | "podwire-ipip-tun" => &["--tunnel-gso", "--packet-rx"],
        "podwire-vxlan-rx" | "podwire-ipip-rx" => &["--packet-rx"],
        "podwire-vxlan-no-offload" => &["--no-tun-offload"],
        "podwire-vxlan-no-segment" => &["--no-udp-segment"],
        _ => &[],
    }
}

/// The tests it runs on each path.
pub const TESTS: [&str; 5] = ["tcp1", "tcp4", "udp64", "rr-udp", "rr-tcp"];

/// What `podwire bench` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub seconds: u32,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub out: PathBuf,
    /// Worker threads of each podwire daemon.
    pub threads: usize,
    /// Only these paths and tests (empty: all).
    pub paths: Vec<String>,
    pub tests: Vec<String>,
    /// Everything on this CPU: the traffic tools at both ends, and the
    /// podwire daemons' workers (`--cpus`).
    pub pin: Option<usize>,
    /// Pod pairs (k8s-node1 to k8s-node2) the throughput tests run on at
    /// once, summed; 1: the usual pair. Request/response runs on the first.
    pub pods: usize,
}

impl Options {
    fn wants(list: &[String], name: &str) -> bool {
        list.is_empty() || list.iter().any(|x| x == name)
    }
}

/// One measured series.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub path: String,
    pub test: String,
    pub unit: String,
    pub median: f64,
    pub samples: Vec<f64>,
    /// TCP tests: segments the sender retransmitted, per round (iperf3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retransmits: Vec<u64>,
    /// TCP tests: times the sending pod's kernel detected reordering, per
    /// round (`TcpExt` `TCPSACKReorder` + `TCPTSReorder` + `TCPRenoReorder`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reorder_events: Vec<u64>,
    /// The fraction of all the machine's CPUs busy during each round's
    /// test (`/proc/stat`), and its median: throughput per CPU, path by
    /// path, is `median / cpu_busy`.
    pub cpu_busy_samples: Vec<f64>,
    pub cpu_busy: f64,
    /// Request/response tests: the median over rounds of each round's
    /// 99th and 99.9th percentile (the median itself is the 50th).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999: Option<f64>,
    /// `--pods`: per round, the pairs whose iperf3 did not finish (their
    /// throughput counted as nothing); empty when every pair finished.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_pairs: Vec<usize>,
}

/// One run of one test.
#[derive(Debug, Clone, Copy)]
struct Sample {
    value: f64,
    tcp: Option<(u64, u64)>,
    cpu: f64,
    /// Request/response: the 99th and 99.9th percentiles (µs).
    tail: Option<(f64, f64)>,
    /// `--pods`: pairs whose iperf3 did not finish (counted as nothing).
    failed: usize,
}

/// The 50th, 99th and 99.9th percentiles of latency (µs, half a round
/// trip) in sockperf's summary, or `None` without all three.
fn sockperf_percentiles(text: &str) -> Option<(f64, f64, f64)> {
    let at = |p: &str| {
        text.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((at("50.000")?, at("99.000")?, at("99.900")?))
}

/// The machine's CPU time so far (`/proc/stat`'s first line): busy and
/// total, in ticks. Idle and iowait are not busy.
fn cpu_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    cpu_ticks_of(&text)
}

fn cpu_ticks_of(stat: &str) -> (u64, u64) {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user).
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The busy fraction between two [`cpu_ticks`] readings.
fn busy_between(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64
}

/// The sum of the kernel's reordering counters in namespace `ns`.
fn reorder_events(w: &mut Harness, ns: &str) -> Result<u64, LabError> {
    let o = w.exec(ns, &["cat", "/proc/net/netstat"])?;
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines[..] else {
        return Ok(0);
    };
    Ok(names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| matches!(*n, "TCPSACKReorder" | "TCPTSReorder" | "TCPRenoReorder"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum())
}

/// The whole result, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rounds: usize,
    pub results: Vec<Series>,
}

fn unit(test: &str) -> &'static str {
    match test {
        "udp64" => "kpps",
        "rr-udp" | "rr-tcp" => "us",
        _ => "Gbit/s",
    }
}

/// Request/response tests: their value is a latency (lower is better).
fn is_latency(test: &str) -> bool {
    test.starts_with("rr-")
}

/// The kernel path a podwire path is compared with.
pub fn baseline(path: &str) -> Option<&'static str> {
    match path {
        "podwire-direct" => Some("kernel-direct"),
        "podwire-vxlan-nat" => Some("kernel-vxlan-nat"),
        "podwire-vxlan-svc" => Some("kernel-vxlan-svc"),
        p if p.starts_with("podwire-vxlan") || p.starts_with("podwire-ipip") => {
            Some("kernel-vxlan")
        }
        _ => None,
    }
}

/// Where a path's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// The pod on k8s-node2.
    Pod,
    /// The internet host, masqueraded by k8s-node1.
    Internet,
    /// A ClusterIP whose backend is the pod on k8s-node2.
    Service,
}

fn dest(path: &str) -> Dest {
    if path.ends_with("-nat") {
        Dest::Internet
    } else if path.ends_with("-svc") {
        Dest::Service
    } else {
        Dest::Pod
    }
}

/// The iperf3 port, which the Service maps to the same port of its
/// backend.
const IPERF_PORT: &str = "5201";

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Runs one test from `b.from` to `b.to_ip` (server in `b.to`); a
/// throughput test on every pair of `b` at once, summed.
fn measure(w: &mut Harness, b: &Built, test: &str, seconds: u32) -> Result<Sample, LabError> {
    let (from, to, to_ip) = (b.from.as_str(), b.to.as_str(), b.to_ip.as_str());
    w.check()?;
    if is_latency(test) {
        let tcp = test == "rr-tcp";
        let before = cpu_ticks();
        let text = w.sockperf_ping_pong(from, to, to_ip, tcp, seconds)?;
        let cpu = busy_between(before, cpu_ticks());
        let (p50, p99, p999) = sockperf_percentiles(&text)
            .ok_or_else(|| err(format!("sockperf printed no percentiles: {text}")))?;
        return Ok(Sample {
            value: p50,
            tcp: None,
            cpu,
            tail: Some((p99, p999)),
            failed: 0,
        });
    }
    let extra: &[&str] = match test {
        "tcp4" => &["-P", "4"],
        "udp64" => &["-u", "-l", "64", "-b", "0"],
        _ => &[],
    };
    measure_pairs(w, b, test, extra, seconds)
}

/// A throughput test on every pod pair of `b` at once (one pair without
/// `--pods`): summed over the pairs, retransmissions and reordering too.
fn measure_pairs(
    w: &mut Harness,
    b: &Built,
    test: &str,
    extra: &[&str],
    seconds: u32,
) -> Result<Sample, LabError> {
    let mut pairs = vec![(b.from.clone(), b.to.clone(), b.to_ip.clone())];
    pairs.extend(b.extra.iter().cloned());
    let udp = test == "udp64";
    let mut reorder_before = 0;
    for (from, _, _) in pairs.iter().filter(|_| !udp) {
        reorder_before += reorder_events(w, from)?;
    }
    let before = cpu_ticks();
    let (results, failed) = w.iperf3_concurrent(&pairs, extra, seconds)?;
    let cpu = busy_between(before, cpu_ticks());
    if results.is_empty() {
        return Err(err(format!("no pair finished: {}", failed.join("; "))));
    }
    let sum = |f: &dyn Fn(&serde_json::Value) -> f64| results.iter().map(f).sum::<f64>();
    let mut sample = Sample {
        value: 0.0,
        tcp: None,
        cpu,
        tail: None,
        failed: failed.len(),
    };
    if udp {
        // Datagrams received (sent less lost) per second, in thousands.
        sample.value = sum(&|v| {
            let s = &v["end"]["sum"];
            let received =
                s["packets"].as_f64().unwrap_or(0.0) - s["lost_packets"].as_f64().unwrap_or(0.0);
            received / s["seconds"].as_f64().unwrap_or(1.0).max(1e-9) / 1e3
        });
        return Ok(sample);
    }
    let mut reorder_after = 0;
    for (from, _, _) in &pairs {
        reorder_after += reorder_events(w, from)?;
    }
    sample.value = sum(&|v| {
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
    }) / 1e9;
    sample.tcp = Some((
        sum(&|v| v["end"]["sum_sent"]["retransmits"].as_f64().unwrap_or(0.0)) as u64,
        reorder_after.saturating_sub(reorder_before),
    ));
    Ok(sample)
}

/// What a built path measures: the sender's namespace, the receiver's
/// (where iperf3's server runs) and the address the sender sends to; with
/// `--pods`, the other pairs (sender, receiver, address).
struct Built {
    from: String,
    to: String,
    to_ip: String,
    extra: Vec<(String, String, String)>,
}

/// Builds `path` in `w`.
fn build(w: &mut Harness, exe: &str, path: &str, opts: &Options) -> Result<Built, LabError> {
    let (threads, pin) = (opts.threads, opts.pin);
    // More pairs only pod to pod.
    let pairs = if dest(path) == Dest::Pod {
        opts.pods
    } else {
        1
    };
    let base = path.trim_end_matches("-nat").trim_end_matches("-svc");
    let mut extra = Vec::new();
    let pods = match base {
        "kernel-vxlan" | "kernel-direct" => {
            let (pods, more) = crate::kernel::pods_with_pairs(w, base == "kernel-vxlan", pairs)?;
            extra = more;
            pods
        }
        _ => {
            let mode = match base {
                b if b.starts_with("podwire-vxlan") => Mode::Vxlan,
                b if b.starts_with("podwire-ipip") => Mode::Ipip,
                _ => Mode::Direct,
            };
            let config = w.dir.join(format!("bench-{}.yaml", mode.name()));
            let yaml = if pairs > 1 {
                topology::cluster_with_pairs(mode, pairs)
            } else {
                topology::cluster_yaml(mode)
            };
            std::fs::write(&config, yaml).map_err(|e| err(e.to_string()))?;
            let (_, nodes) = topology::underlay(w)?;
            let config = config.to_string_lossy().into_owned();
            // Super-packets whole: out through the tunnel TAP (or TUN), in
            // through the packet socket.
            let mut flags: Vec<String> =
                podwire_flags(base).iter().map(|f| f.to_string()).collect();
            if let Some(cpu) = pin {
                flags.extend(["--cpus".into(), cpu.to_string()]);
            }
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let (_, pods) =
                topology::podwire_cluster(w, exe, &config, mode, &nodes, threads, &flags)?;
            if pairs > 1 {
                extra = topology::make_extra_pods(w, &nodes, pairs)?;
            }
            // Pods: m-a, m-b, 1-a, 1-b, 2-a, 2-b.
            vec![pods[2].0.clone(), pods[4].0.clone()]
        }
    };
    // k8s-node1's namespace (`n` + its short name in the topology).
    let node1 = w.name(&format!("n{}", topology::NODES[1].short));
    let kernel = base.starts_with("kernel-");
    Ok(match dest(path) {
        Dest::Pod => Built {
            from: pods[0].clone(),
            to: pods[1].clone(),
            to_ip: topology::POD2.into(),
            extra,
        },
        Dest::Internet => {
            if kernel {
                // Calico's cali-nat-outgoing for the pool, in nftables.
                let script = "table ip calico-nat {\n\
                     chain nat-outgoing { type nat hook postrouting priority srcnat; policy accept; \
                     ip saddr 10.2.0.0/16 ip daddr != 10.2.0.0/16 masquerade fully-random; }\n}\n";
                let file = w.file("calico-nat.nft", script)?;
                w.exec_ok(&node1, &["nft", "-f", &file.to_string_lossy()])?;
            }
            Built {
                from: pods[0].clone(),
                to: w.name("inet"),
                to_ip: topology::INTERNET.into(),
                extra: Vec::new(),
            }
        }
        Dest::Service => {
            // iperf3's port and sockperf's.
            let ports = [(IPERF_PORT, IPERF_PORT), (SOCKPERF_PORT, SOCKPERF_PORT)];
            services::kube_proxy(w, &node1, &ports, topology::POD2)?;
            Built {
                from: pods[0].clone(),
                to: pods[1].clone(),
                to_ip: services::CLUSTER_IP.into(),
                extra: Vec::new(),
            }
        }
    })
}

/// Runs the benchmark; prints progress to `log` and the report to `out`.
pub fn run(
    opts: &Options,
    out: &mut dyn std::io::Write,
    log: &mut dyn std::io::Write,
) -> Result<Report, LabError> {
    let lab::Start {
        dir,
        interrupted,
        exe,
    } = lab::start(&opts.out, lab::Datastore::File)?;
    let prefix = format!("pwbench{:x}", std::process::id() & 0xffff);
    let known = PATHS.len() + ABLATION.len();
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); TESTS.len()]; known];
    // The named paths; without names, PATHS (the ablation's only when named).
    let paths = || {
        all_paths().enumerate().filter(|(i, p)| {
            if opts.paths.is_empty() {
                *i < PATHS.len()
            } else {
                opts.paths.iter().any(|x| x == p)
            }
        })
    };
    let tests = || {
        TESTS
            .iter()
            .enumerate()
            .filter(|(_, t)| Options::wants(&opts.tests, t))
    };
    for round in 0..opts.rounds {
        for (p, path) in paths() {
            // One hex digit of the path's index keeps link names within 15 bytes.
            let mut w = Harness::new(format!("{prefix}{p:x}-"), dir.clone())
                .interruptible(Arc::clone(&interrupted));
            w.tools_cpu = opts.pin;
            let b = build(&mut w, &exe, path, opts)?;
            for (t, test) in tests() {
                let v = measure(&mut w, &b, test, opts.seconds)?;
                let tcp = v.tcp.map_or(String::new(), |(r, o)| {
                    format!("  retransmits {r}, reordering {o}")
                });
                let mut tcp = match v.tail {
                    Some((p99, p999)) => format!("  p99 {p99:.1}, p99.9 {p999:.1}"),
                    None => tcp,
                };
                if v.failed > 0 {
                    let _ = write!(tcp, "  ({} pair(s) did not finish)", v.failed);
                }
                let _ = writeln!(
                    log,
                    "round {}/{} {path:<24} {test:<6} {:>9.2} {}  cpu {:.2}{tcp}",
                    round + 1,
                    opts.rounds,
                    v.value,
                    unit(test),
                    v.cpu
                );
                samples[p][t].push(v);
            }
        }
    }
    let mut results = Vec::new();
    for (p, path) in paths() {
        for (t, test) in tests() {
            let values: Vec<f64> = samples[p][t].iter().map(|s| s.value).collect();
            let tcp: Vec<(u64, u64)> = samples[p][t].iter().filter_map(|s| s.tcp).collect();
            let cpu: Vec<f64> = samples[p][t].iter().map(|s| s.cpu).collect();
            let tails: Vec<(f64, f64)> = samples[p][t].iter().filter_map(|s| s.tail).collect();
            let tail = |f: fn(&(f64, f64)) -> f64| {
                (!tails.is_empty()).then(|| median(&tails.iter().map(f).collect::<Vec<_>>()))
            };
            let failed: Vec<usize> = samples[p][t].iter().map(|s| s.failed).collect();
            results.push(Series {
                failed_pairs: if failed.iter().any(|f| *f > 0) {
                    failed
                } else {
                    Vec::new()
                },
                p99: tail(|t| t.0),
                p999: tail(|t| t.1),
                cpu_busy: median(&cpu),
                cpu_busy_samples: cpu,
                path: path.to_string(),
                test: test.to_string(),
                unit: unit(test).to_string(),
                median: median(&values),
                samples: values,
                retransmits: tcp.iter().map(|t| t.0).collect(),
                reorder_events: tcp.iter().map(|t| t.1).collect(),
            });
        }
    }
    let report = Report {
        rounds: opts.rounds,
        results,
    };
    if opts.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", table(&report));
    }
    if let Some(plot) = &opts.plot {
        std::fs::write(plot, svg(&report)).map_err(|e| err(format!("{}: {e}", plot.display())))?;
    }
    Ok(report)
}

fn find<'a>(r: &'a Report, path: &str, test: &str) -> Option<&'a Series> {
    r.results.iter().find(|s| s.path == path && s.test == test)
}

/// The table of medians, each podwire path with its ratio to its baseline.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "medians of {} round(s)", r.rounds);
    let _ = write!(s, "{:<25}", "path");
    let tests = || {
        TESTS
            .into_iter()
            .filter(|t| r.results.iter().any(|x| x.test == *t))
    };
    for t in tests() {
        let _ = write!(s, " {:>22}", format!("{t} ({})", unit(t)));
    }
    let _ = writeln!(s);
    let measured = || all_paths().filter(|p| r.results.iter().any(|x| x.path == *p));
    for path in measured() {
        let _ = write!(s, "{path:<25}");
        for test in tests() {
            let v = find(r, path, test).map_or(0.0, |x| x.median);
            let cell = match baseline(path).and_then(|b| find(r, b, test)) {
                Some(b) if b.median > 0.0 => format!("{v:.2} ({:.2}x)", v / b.median),
                _ => format!("{v:.2}"),
            };
            let _ = write!(s, " {cell:>22}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "(ratios: every podwire-vxlan* and podwire-ipip* path to kernel-vxlan, podwire-direct to kernel-direct, each -nat and -svc path to the kernel's; for latency, rr-*, lower is better)"
    );
    let _ = writeln!(
        s,
        "CPU busy during each test (fraction of all CPUs, median), and the median per busy CPU"
    );
    let _ = write!(s, "{:<25}", "path");
    for t in tests() {
        let _ = write!(s, " {:>22}", format!("{t} (per CPU)"));
    }
    let _ = writeln!(s);
    for path in measured() {
        let _ = write!(s, "{path:<25}");
        for test in tests() {
            let cell = find(r, path, test).map_or(String::from("-"), |x| {
                let per = if x.cpu_busy > 0.0 {
                    x.median / x.cpu_busy
                } else {
                    0.0
                };
                format!("{:.2} ({per:.2})", x.cpu_busy)
            });
            let _ = write!(s, " {cell:>22}");
        }
        let _ = writeln!(s);
    }
    if r.results.iter().any(|x| x.p99.is_some()) {
        let _ = writeln!(
            s,
            "Request/response latency, 64 bytes, half a round trip (us): p50 / p99 / p99.9, ratio of p50 and p99 to the baseline's"
        );
        let _ = write!(s, "{:<25}", "path");
        for t in TESTS.into_iter().filter(|t| is_latency(t)) {
            let _ = write!(s, " {t:>36}");
        }
        let _ = writeln!(s);
        for path in measured() {
            let _ = write!(s, "{path:<25}");
            for test in TESTS.into_iter().filter(|t| is_latency(t)) {
                let cell = find(r, path, test).map_or(String::from("-"), |x| {
                    let (p99, p999) = (x.p99.unwrap_or(0.0), x.p999.unwrap_or(0.0));
                    let ratio = baseline(path)
                        .and_then(|b| find(r, b, test))
                        .filter(|b| b.median > 0.0 && b.p99.is_some_and(|v| v > 0.0))
                        .map_or(String::new(), |b| {
                            format!(
                                " ({:.2}x, {:.2}x)",
                                x.median / b.median,
                                p99 / b.p99.unwrap_or(1.0)
                            )
                        });
                    format!("{:.1} / {p99:.1} / {p999:.1}{ratio}", x.median)
                });
                let _ = write!(s, " {cell:>36}");
            }
            let _ = writeln!(s);
        }
    }
    let tcp: Vec<&str> = TESTS.into_iter().filter(|t| t.starts_with("tcp")).collect();
    if r.results.iter().any(|x| !x.retransmits.is_empty()) {
        let _ = writeln!(
            s,
            "TCP retransmissions / reordering events, summed over rounds"
        );
        let _ = write!(s, "{:<25}", "path");
        for t in &tcp {
            let _ = write!(s, " {t:>22}");
        }
        let _ = writeln!(s);
        for path in measured() {
            let _ = write!(s, "{path:<25}");
            for test in &tcp {
                let cell = find(r, path, test).map_or(String::from("-"), |x| {
                    format!(
                        "{} / {}",
                        x.retransmits.iter().sum::<u64>(),
                        x.reorder_events.iter().sum::<u64>()
                    )
                });
                let _ = write!(s, " {cell:>22}");
            }
            let _ = writeln!(s);
        }
    }
    s
}

/// A bar chart of the medians, one group per test, one bar per path,
/// each group scaled to its own maximum.
pub fn svg(r: &Report) -> String {
    const COLORS: [&str; PATHS.len()] = [
        "#4c72b0", "#8172b2", "#dd8452", "#c44e52", "#55a868", "#937860", "#da8bc3", "#8c8c8c",
        "#ccb974", "#64b5cd", "#2f4f4f",
    ];
    let (bar_w, gap, top, chart_h) = (30.0, 4.0, 50.0, 220.0);
    let group_w = 20.0 + PATHS.len() as f64 * (bar_w + gap);
    let w = 40.0 + TESTS.len() as f64 * group_w;
    // The legend: four entries a row.
    let h = top + chart_h + 50.0 + 18.0 * PATHS.len().div_ceil(4) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">podwire bench: medians of {} round(s)</text>"#,
        w / 2.0,
        r.rounds
    );
    for (g, test) in TESTS.iter().enumerate() {
        let max = PATHS
            .iter()
            .filter_map(|p| find(r, p, test))
            .map(|x| x.median)
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let x0 = 20.0 + g as f64 * group_w;
        for (i, path) in PATHS.iter().enumerate() {
            let v = find(r, path, test).map_or(0.0, |x| x.median);
            let bh = chart_h * v / max;
            let x = x0 + 10.0 + i as f64 * (bar_w + gap);
            let y = top + chart_h - bh;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w}" height="{bh:.1}" fill="{}"><title>{path} {test}: {v:.2} {}</title></rect>"#,
                COLORS[i],
                unit(test)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{v:.1}</text>"#,
                x + bar_w / 2.0,
                y - 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{test} ({})</text>"#,
            x0 + group_w / 2.0,
            top + chart_h + 20.0,
            unit(test)
        );
    }
    for (i, path) in PATHS.iter().enumerate() {
        let x = 20.0 + (i % 4) as f64 * 160.0;
        let y = top + chart_h + 40.0 + (i / 4) as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{}"/>"#,
            COLORS[i]
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{path}</text>"#,
            x + 16.0,
            y + 10.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut results = Vec::new();
        for (i, path) in PATHS.iter().enumerate() {
            for test in TESTS {
                let samples = vec![1.0 + i as f64, 3.0 + i as f64, 2.0 + i as f64];
                let tcp = test.starts_with("tcp");
                results.push(Series {
                    path: path.to_string(),
                    test: test.to_string(),
                    unit: unit(test).to_string(),
                    median: median(&samples),
                    samples,
                    retransmits: if tcp { vec![i as u64, 1, 0] } else { vec![] },
                    reorder_events: if tcp { vec![0, 0, 2] } else { vec![] },
                    cpu_busy_samples: vec![0.5, 0.25, 0.5],
                    cpu_busy: 0.5,
                    failed_pairs: Vec::new(),
                    p99: is_latency(test).then_some(10.0 + i as f64),
                    p999: is_latency(test).then_some(100.0 + i as f64),
                });
            }
        }
        Report { rounds: 3, results }
    }

    #[test]
    fn ablation_paths_run_their_flags_against_the_kernels_vxlan() {
        assert_eq!(all_paths().count(), PATHS.len() + ABLATION.len());
        // One hex digit of a path's index in its namespaces' names.
        assert!(all_paths().count() <= 16);
        for p in ABLATION {
            assert_eq!(baseline(p), Some("kernel-vxlan"), "{p}");
            assert!(!podwire_flags(p).is_empty(), "{p}");
        }
        assert!(podwire_flags("podwire-vxlan").is_empty());
        assert_eq!(podwire_flags("podwire-ipip-rx"), ["--packet-rx"]);
        assert_eq!(
            podwire_flags("podwire-ipip-tun"),
            ["--tunnel-gso", "--packet-rx"]
        );
        assert_eq!(baseline("podwire-vxlan-svc"), Some("kernel-vxlan-svc"));
        assert_eq!(baseline("podwire-direct"), Some("kernel-direct"));
        assert_eq!(baseline("kernel-vxlan"), None);
    }

    #[test]
    fn medians_ratios_json_and_svg() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let r = report();
        let t = table(&r);
        // podwire-vxlan (median 4) against kernel-vxlan (median 2): 2x.
        assert!(
            t.lines()
                .any(|l| l.starts_with("podwire-vxlan") && l.contains("4.00 (2.00x)")),
            "{t}"
        );
        // podwire-vxlan-nat (median 8) against kernel-vxlan-nat (7).
        assert!(
            t.lines()
                .any(|l| l.starts_with("podwire-vxlan-nat ") && l.contains("8.00 (1.14x)")),
            "{t}"
        );
        // CPU busy 0.5 everywhere: kernel-vxlan's tcp1 (median 2) is 4 per CPU.
        assert!(
            t.lines()
                .skip_while(|l| !l.starts_with("CPU busy"))
                .any(|l| l.starts_with("kernel-vxlan ") && l.contains("0.50 (4.00)")),
            "{t}"
        );
        // /proc/stat: busy = user + nice + system + irq + softirq + steal.
        let a = cpu_ticks_of("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n");
        assert_eq!(a, (150, 1000));
        let b = cpu_ticks_of("cpu  400 0 150 900 50 0 0 0 0 0\n");
        assert_eq!(busy_between(a, b), 0.8);
        assert_eq!(busy_between(b, b), 0.0);
        assert_eq!(cpu_ticks_of("nothing"), (0, 0));
        // podwire-vxlan-tap (path 9, median 11) against kernel-vxlan: 5.5x.
        assert!(
            t.lines()
                .any(|l| l.starts_with("podwire-vxlan-tap") && l.contains("11.00 (5.50x)")),
            "{t}"
        );
        // podwire-direct (6) against kernel-direct (3): 2x.
        assert!(
            t.lines()
                .any(|l| l.starts_with("podwire-direct") && l.contains("6.00 (2.00x)")),
            "{t}"
        );
        // podwire-ipip (path 3): retransmits 3 + 1 + 0, reordering 2.
        assert!(
            t.lines()
                .skip_while(|l| !l.starts_with("TCP retransmissions"))
                .any(|l| l.starts_with("podwire-ipip") && l.matches("4 / 2").count() == 2),
            "{t}"
        );
        let j: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(j["results"][0]["retransmits"], serde_json::json!([0, 1, 0]));
        assert!(
            j["results"][2].get("retransmits").is_none(),
            "udp64 has none"
        );
        assert_eq!(j["rounds"], 3);
        assert_eq!(j["results"][0]["path"], "kernel-vxlan");
        assert_eq!(j["results"][0]["test"], "tcp1");
        assert_eq!(j["results"][0]["unit"], "Gbit/s");
        assert_eq!(j["results"][2]["unit"], "kpps");
        assert_eq!(j["results"][0]["samples"].as_array().unwrap().len(), 3);
        // Latency: microseconds, with its tail; throughput has none.
        assert_eq!(j["results"][3]["test"], "rr-udp");
        assert_eq!(j["results"][3]["unit"], "us");
        assert_eq!(j["results"][3]["p99"], 10.0);
        assert!(j["results"][0].get("p99").is_none());
        // podwire-vxlan (path 2: p50 4, p99 12) against kernel-vxlan (2, 10).
        assert!(
            t.lines()
                .skip_while(|l| !l.starts_with("Request/response"))
                .any(|l| l.starts_with("podwire-vxlan ")
                    && l.contains("4.0 / 12.0 / 102.0 (2.00x, 1.20x)")),
            "{t}"
        );
        let out = "sockperf: ---> percentile 99.900 =   59.392\n\
                   sockperf: ---> percentile 99.000 =   39.828\n\
                   sockperf: ---> percentile 50.000 =   23.870\n";
        assert_eq!(sockperf_percentiles(out), Some((23.87, 39.828, 59.392)));
        assert_eq!(
            sockperf_percentiles("sockperf: ---> percentile 50.000 = 1"),
            None
        );
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect").count(),
            PATHS.len() * TESTS.len() + PATHS.len(),
            "a bar per path and test, and the legend"
        );
    }
}
