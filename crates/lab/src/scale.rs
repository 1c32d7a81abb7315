//! `podwire bench --scale`: one node of a large cluster on a real etcd,
//! shaped as real clusters are: N nodes with one IPAM block each (with its
//! allocations), P pods per node — N × P WorkloadEndpoints in etcd, of
//! which P are the measured node's. Reported: the time from `podwire run`
//! to forwarding on the first snapshot, the daemon's resident memory (now
//! and peak), the time to apply one change (a node joining), and the CPU
//! the daemon spends while other nodes' pods churn at a given rate; beside
//! them, the file source's figures for the same cluster.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lab::{self, Datastore, LabError};
use crate::netns::{Daemon, Harness, err};

/// What the scale bench was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub pods_per_node: usize,
    /// Remote endpoint updates per second during the churn.
    pub churn_rate: usize,
    /// Seconds of churn (and of the idle window measured before it).
    pub churn_seconds: u32,
    pub out: PathBuf,
    pub json: bool,
}

/// The figures of one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub source: String,
    /// From `podwire run` to its first snapshot compiled.
    pub snapshot_seconds: f64,
    /// From `podwire run` to the control socket answering (its endpoints'
    /// devices created).
    pub start_seconds: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// From the change written to its route shown by `podwire show routes`.
    pub one_change_ms: f64,
    /// The daemon's CPU while other nodes' endpoints change at
    /// `churn_rate` per second, and while nothing changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_cpu_percent: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub workload_endpoints: usize,
    pub etcd_keys: usize,
    pub yaml_mib: f64,
    pub import_seconds: f64,
    pub churn_rate: usize,
    pub results: Vec<Figures>,
}

/// The measured node.
const LOCAL: &str = "k8s-node0";
const LOCAL_IP: &str = "172.16.0.1";
const ETCD_IP: &str = "172.16.255.250";
/// The pool: /25 blocks (a /26 holds 64 addresses; 110 pods need more).
const POOL: &str = "10.128.0.0/12";
const BLOCK: u8 = 25;

fn node_name(i: usize) -> String {
    format!("k8s-node{i}")
}

fn node_ip(i: usize) -> Ipv4Addr {
    // 172.16.0.1, 172.16.0.2, …: one /16 holds 65,000 nodes.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + i as u32)
}

fn block_base(i: usize) -> u32 {
    u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i as u32) * (1 << (32 - BLOCK))
}

/// The interface name Calico would give pod `j` of node `i` (`cali` and
/// eleven hex digits of a hash, as Calico's are).
fn interface(i: usize, j: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (i, j).hash(&mut h);
    format!("cali{:011x}", h.finish() & 0xfff_ffff_ffff)
}

/// Endpoint `j` of node `i`, as one JSON line of YAML flow style (what
/// Calico's CNI plugin writes, labels, profiles and all).
fn endpoint(i: usize, j: usize, generation: usize) -> String {
    let node = node_name(i);
    let pod = format!("app-{j:03}-7c5b4d6f8-x{i:05}");
    let name = podwire::config::workload_endpoint_name(&node, &pod, "eth0");
    let ip = Ipv4Addr::from(block_base(i) + 2 + j as u32);
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{{"name":"{name}","namespace":"default","labels":{{"app":"app-{j:03}","pod-template-hash":"7c5b4d6f8","projectcalico.org/namespace":"default","projectcalico.org/orchestrator":"k8s","projectcalico.org/serviceaccount":"default","generation":"g{generation}"}}}},"spec":{{"orchestrator":"k8s","node":"{node}","containerID":"{:016x}{:016x}","pod":"{pod}","endpoint":"eth0","serviceAccountName":"default","ipNetworks":["{ip}/32"],"profiles":["kns.default","ksa.default.default"],"interfaceName":"{}"}}}}"#,
        i * 1000 + j,
        generation,
        interface(i, j)
    )
}

fn block(i: usize, pods: usize) -> String {
    let size = 1usize << (32 - BLOCK);
    let node = node_name(i);
    let base = Ipv4Addr::from(block_base(i));
    let mut allocations = vec!["null".to_string(); size];
    let mut attributes = vec![format!(
        r#"{{"handle_id":"vxlan-tunnel-addr-{node}","secondary":{{"node":"{node}","type":"vxlanTunnelAddress"}}}}"#
    )];
    allocations[1] = "0".into();
    for j in 0..pods {
        allocations[2 + j] = (j + 1).to_string();
        attributes.push(format!(
            r#"{{"handle_id":"k8s-pod-network.{:016x}","secondary":{{"namespace":"default","node":"{node}","pod":"app-{j:03}-7c5b4d6f8-x{i:05}","timestamp":"2026-12-02 10:00:00.000000001 +0000 UTC"}}}}"#,
            i * 1000 + j
        ));
    }
    let unallocated: Vec<String> = (0..size)
        .filter(|o| allocations[*o] == "null")
        .map(|o| o.to_string())
        .collect();
    format!(
        r#"{{"apiVersion":"crd.projectcalico.org/v1","kind":"IPAMBlock","metadata":{{"name":"{}-{BLOCK}"}},"spec":{{"cidr":"{base}/{BLOCK}","affinity":"host:{node}","strictAffinity":false,"allocations":[{}],"unallocated":[{}],"attributes":[{}],"deleted":false}}}}"#,
        base.to_string().replace('.', "-"),
        allocations.join(","),
        unallocated.join(","),
        attributes.join(",")
    )
}

fn node(i: usize) -> String {
    let name = node_name(i);
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"}}}},"spec":{{"bgp":{{"ipv4Address":"{}/16"}},"ipv4VXLANTunnelAddr":"{}","orchRefs":[{{"nodeName":"{name}","orchestrator":"k8s"}}]}}}}"#,
        node_ip(i),
        Ipv4Addr::from(block_base(i) + 1)
    )
}

/// Writes the cluster (JSON documents are YAML) to `path`; returns its size.
fn write_cluster(path: &Path, nodes: usize, pods: usize) -> Result<u64, LabError> {
    let f = std::fs::File::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
    let io = |e: std::io::Error| err(format!("{}: {e}", path.display()));
    writeln!(
        f,
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{{"name":"default-ipv4-ippool"}},"spec":{{"cidr":"{POOL}","blockSize":{BLOCK},"vxlanMode":"Always","ipipMode":"Never","natOutgoing":true,"nodeSelector":"all()"}}}}"#
    )
    .map_err(io)?;
    for i in 0..nodes {
        writeln!(f, "---\n{}\n---\n{}", node(i), block(i, pods)).map_err(io)?;
        for j in 0..pods {
            writeln!(f, "---\n{}", endpoint(i, j, 0)).map_err(io)?;
        }
    }
    f.flush().map_err(io)?;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

/// The daemon's resident memory now and at its peak, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |field: &str| {
        text.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// The CPU time the process has used, in seconds (utime + stime).
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat, counted from the state (field 3) here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits until `podwire show routes` on `control` has a line starting with
/// `prefix`; returns how long it took.
fn until_route(control: &Path, prefix: &str, timeout: Duration) -> Result<Duration, LabError> {
    let start = Instant::now();
    loop {
        if let Ok(r) = podwire_daemon::control::request(control, "routes", false)
            && r.lines().any(|l| l.starts_with(prefix))
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(err(format!("no route {prefix} after {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts the daemon; returns its PID, control socket, and how long it
/// took to compile its first snapshot and to answer (its endpoints made).
fn start_daemon(
    w: &mut Harness,
    exe: &str,
    ns: &str,
    tag: &str,
    config: Option<&Path>,
    extra: &[&str],
) -> Result<(u32, PathBuf, f64, f64), LabError> {
    let control = w.dir.join(format!("scale-{tag}.sock"));
    let log = w.dir.join(format!("scale-{tag}.log"));
    let d = Daemon {
        exe,
        config,
        node: LOCAL,
        control: &control,
        log: &log,
        wrapper: &[],
        extra,
        env: &[("RUST_LOG", "info")],
    };
    let t0 = Instant::now();
    let pid = w.start_podwire(tag, ns, &d)?;
    // The daemon logs `starting` once its first snapshot compiled, before
    // it creates the endpoints' devices.
    let compiled = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(" starting node=") {
            break t0.elapsed().as_secs_f64();
        }
        if let Some(status) = w.exited(tag)? {
            return Err(err(format!(
                "podwire exited with {status}: see {}",
                log.display()
            )));
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(err(format!(
                "no snapshot after 600 s: see {}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    w.wait_podwire(tag, &control, Duration::from_secs(600))?;
    Ok((pid, control, compiled, t0.elapsed().as_secs_f64()))
}

/// A new node's Node and block, for the one-change measurement.
fn joining(nodes: usize) -> (String, String, String) {
    let i = nodes;
    let cidr = format!("{}/{BLOCK}", Ipv4Addr::from(block_base(i)));
    let yaml = format!("{}\n---\n{}\n", node(i), block(i, 0));
    (cidr, yaml, node_name(i))
}

/// Runs the scale bench; prints the report.
pub fn run(opts: &Options, out: &mut dyn std::io::Write) -> Result<Report, LabError> {
    let lab::Start {
        dir,
        interrupted,
        exe,
    } = lab::start(&opts.out, Datastore::Etcd)?;
    let mut say = |s: String| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    let prefix = format!("pwsc{:x}", std::process::id() & 0xffff);
    let mut w = Harness::new(prefix, dir.clone()).interruptible(interrupted);
    let (n, p) = (opts.nodes.max(1), opts.pods_per_node.clamp(1, 120));
    let file = dir.join("scale-cluster.yaml");
    say(format!(
        "scale: {n} nodes, one /{BLOCK} block each, {p} pods per node: {} WorkloadEndpoints; this node: {LOCAL}",
        n * p
    ));
    let bytes = write_cluster(&file, n, p)?;
    say(format!(
        "cluster file: {} ({:.0} MiB)",
        file.display(),
        bytes as f64 / (1 << 20) as f64
    ));

    // The underlay: the node and etcd on one bridge.
    let sw = w.netns("sw")?;
    w.bridge(&sw, "br0")?;
    let node_ns = w.netns("n")?;
    w.attach(&sw, "br0", &node_ns, "eth0", &format!("{LOCAL_IP}/16"))?;
    let ens = w.netns("e")?;
    w.attach(&sw, "br0", &ens, "eth0", &format!("{ETCD_IP}/16"))?;
    let m = crate::etcd::cluster(&mut w, &[(&ens, ETCD_IP)])?.remove(0);
    let file_s = file.display().to_string();
    let t = Instant::now();
    let imported = w.exec_ok(
        &ens,
        &[
            &exe,
            "datastore",
            "import",
            &file_s,
            "--etcd-endpoints",
            &m.url,
        ],
    )?;
    let import_seconds = t.elapsed().as_secs_f64();
    say(format!(
        "podwire datastore import: {} in {import_seconds:.1} s",
        imported.trim()
    ));
    // The response's count is that of the whole range, whatever the limit.
    let keys = crate::etcd::ctl(
        &w,
        &ens,
        &m.url,
        &[
            "get",
            "/calico/",
            "--prefix",
            "--keys-only",
            "--limit",
            "1",
            "-w",
            "json",
        ],
    )?;
    let etcd_keys = serde_json::from_str::<serde_json::Value>(&keys)
        .ok()
        .and_then(|v| v["count"].as_u64())
        .unwrap_or(0) as usize;
    let mut results = Vec::new();
    // etcd.
    {
        let (pid, control, snapshot, start) = start_daemon(
            &mut w,
            &exe,
            &node_ns,
            "etcd",
            None,
            &["--datastore", "etcdv3", "--etcd-endpoints", &m.url],
        )?;
        let (rss_now, peak) = rss(pid);
        let (cidr, yaml, _) = joining(n);
        let join = dir.join("scale-join.yaml");
        std::fs::write(&join, yaml).map_err(|e| err(e.to_string()))?;
        let join_s = join.display().to_string();
        // Written with etcdctl, not import (which reads the whole datastore
        // first): one put of the Node, one of the block.
        let docs: Vec<(String, String)> = podwire_etcd::transfer::to_keys_unchecked(
            &std::fs::read_to_string(&join).unwrap_or_default(),
            "2026-12-02T10:00:00Z",
        )
        .map_err(|e| err(format!("{join_s}: {e}")))?;
        let mut txn = String::from("\n");
        for (k, v) in &docs {
            let _ = writeln!(txn, "put {k} {v}");
        }
        txn.push_str("\n\n");
        let txn_file = dir.join("scale-join.txn");
        std::fs::write(&txn_file, &txn).map_err(|e| err(e.to_string()))?;
        let cmd = format!("etcdctl --endpoints {} txn < {}", m.url, txn_file.display());
        w.exec_ok(&ens, &["sh", "-c", &cmd])?;
        let one = until_route(&control, &cidr, Duration::from_secs(60))?;
        // Churn: other nodes' endpoints, `churn_rate` per second, one
        // transaction a second.
        let idle_start = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(u64::from(opts.churn_seconds)));
        let idle = (cpu_seconds(pid) - idle_start) / f64::from(opts.churn_seconds);
        let rate = opts.churn_rate.max(1);
        let mut files = Vec::new();
        for s in 0..opts.churn_seconds as usize {
            let mut txn = String::from("\n");
            for k in 0..rate {
                let flat = s * rate + k;
                // Distinct endpoints within a transaction (etcd refuses a
                // key twice), while the rate is below the remote endpoints.
                let others = n.max(2) - 1;
                let (i, j) = (1 + flat % others, (flat / others) % p);
                let doc = endpoint(i, j, s + 1);
                let kv = podwire_etcd::transfer::to_keys_unchecked(&doc, "2026-12-02T10:00:00Z")
                    .map_err(|e| err(e.to_string()))?;
                for (k, v) in kv {
                    let _ = writeln!(txn, "put {k} {v}");
                }
            }
            txn.push_str("\n\n");
            let f = dir.join(format!("scale-churn-{s}.txn"));
            std::fs::write(&f, txn).map_err(|e| err(e.to_string()))?;
            files.push(f);
        }
        let churn_start = cpu_seconds(pid);
        let t = Instant::now();
        for (s, f) in files.iter().enumerate() {
            let cmd = format!(
                "etcdctl --endpoints {} txn < {} > /dev/null",
                m.url,
                f.display()
            );
            w.exec_ok(&ens, &["sh", "-c", &cmd])?;
            let next = Duration::from_secs(s as u64 + 1);
            if let Some(left) = next.checked_sub(t.elapsed()) {
                std::thread::sleep(left);
            }
        }
        // Let the last batch through.
        std::thread::sleep(Duration::from_millis(500));
        let churn = (cpu_seconds(pid) - churn_start) / t.elapsed().as_secs_f64();
        let stats = podwire_daemon::control::request(&control, "stats", false)
            .map_err(|e| err(e.to_string()))?;
        if let Some(l) = stats.lines().find(|l| l.starts_with("datastore ")) {
            say(format!("after the churn: {l}"));
        }
        w.stop("etcd", "TERM", Duration::from_secs(20))?;
        results.push(Figures {
            source: "etcdv3".into(),
            snapshot_seconds: snapshot,
            start_seconds: start,
            rss_mib: rss_now,
            peak_rss_mib: peak,
            one_change_ms: one.as_secs_f64() * 1000.0,
            churn_cpu_percent: Some(churn * 100.0),
            idle_cpu_percent: Some(idle * 100.0),
        });
    }
    // The file.
    {
        let (pid, control, snapshot, start) =
            start_daemon(&mut w, &exe, &node_ns, "file", Some(&file), &[])?;
        let (rss_now, peak) = rss(pid);
        let (cidr, yaml, _) = joining(n);
        let mut text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
        text.push_str("---\n");
        text.push_str(&yaml);
        let tmp = dir.join("scale-cluster.yaml.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &file).map_err(|e| err(e.to_string()))?;
        let t = Instant::now();
        w.signal("file", "HUP")?;
        until_route(&control, &cidr, Duration::from_secs(600))?;
        let one = t.elapsed();
        let (_, peak_after) = rss(pid);
        w.stop("file", "TERM", Duration::from_secs(20))?;
        results.push(Figures {
            source: "file".into(),
            snapshot_seconds: snapshot,
            start_seconds: start,
            rss_mib: rss_now,
            peak_rss_mib: peak.max(peak_after),
            one_change_ms: one.as_secs_f64() * 1000.0,
            churn_cpu_percent: None,
            idle_cpu_percent: None,
        });
    }
    let report = Report {
        nodes: n,
        pods_per_node: p,
        workload_endpoints: n * p,
        etcd_keys,
        yaml_mib: bytes as f64 / (1 << 20) as f64,
        import_seconds,
        churn_rate: opts.churn_rate,
        results,
    };
    if opts.json {
        say(serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        say(format!(
            "{:<8} {:>11} {:>9} {:>9} {:>10} {:>12} {:>22}",
            "source",
            "snapshot s",
            "start s",
            "RSS MiB",
            "peak MiB",
            "1 change ms",
            "CPU % idle / churn"
        ));
        for r in &report.results {
            let cpu = match (r.idle_cpu_percent, r.churn_cpu_percent) {
                (Some(i), Some(c)) => format!("{i:.1} / {c:.1} at {}/s", report.churn_rate),
                _ => "-".into(),
            };
            say(format!(
                "{:<8} {:>11.2} {:>9.2} {:>9.1} {:>10.1} {:>12.1} {:>22}",
                r.source,
                r.snapshot_seconds,
                r.start_seconds,
                r.rss_mib,
                r.peak_rss_mib,
                r.one_change_ms,
                cpu
            ));
        }
    }
    Ok(report)
}
