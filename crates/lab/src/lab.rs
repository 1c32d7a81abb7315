//! `podwire lab`: a three-node Calico cluster on one machine, in network
//! namespaces, each node with its own podwire dataplane and two pods whose
//! `eth0` is a podwire TUN endpoint. For each mode it prints one node's
//! tables, pings across nodes and within one, measures a TCP transfer beside
//! the kernel's VXLAN on the same topology, and writes a pcap of the
//! underlay. Everything it creates is removed when it ends — normally, on
//! failure, or on Ctrl-C — unless `--keep` leaves the last cluster up for
//! `podwire lab --down` to remove.
//!
//! The cluster is in [`topology`](crate::topology), the kernel's baselines in
//! [`kernel`](crate::kernel), everything in namespaces through
//! [`netns`](crate::netns).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use crate::keep::{STATE_FILE, down};
use crate::netns::{self, Harness, err};
use crate::pcap::pcap_records;
pub use crate::topology::cluster_yaml;
use crate::topology::{NODES, Source, cni_pods, nodes_yaml, podwire_cluster, start_nodes};

/// A failure of the lab, in words for the user.
pub type LabError = netns::Error;

/// What `podwire lab` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ipip`, `vxlan`, `direct`, or all three.
    pub modes: Vec<Mode>,
    pub out: PathBuf,
    pub keep: bool,
    /// Seconds of each TCP transfer.
    pub seconds: u32,
    /// Where the daemons read the cluster.
    pub datastore: Datastore,
}

/// Where the lab's daemons read the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Datastore {
    /// A cluster file (`--config`).
    #[default]
    File,
    /// One etcd in the lab, on the underlay; k8s-node2 joins while the
    /// others run.
    Etcd,
}

/// A lab mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ipip,
    Vxlan,
    Direct,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Ipip, Mode::Vxlan, Mode::Direct];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ipip => "ipip",
            Mode::Vxlan => "vxlan",
            Mode::Direct => "direct",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Mode::Ipip => "IP-in-IP (ipipMode: Always): outer IPv4 protocol 4 between node IPs",
            Mode::Vxlan => {
                "VXLAN (vxlanMode: Always): outer IPv4/UDP 4789, VNI 4096, inner Ethernet between VTEP MACs"
            }
            Mode::Direct => {
                "direct (both modes Never): pod packets unchanged on the underlay, to the next node's MAC"
            }
        }
    }
}

/// Checks that the lab can run here; says what is missing.
pub(crate) fn preflight(datastore: Datastore) -> Result<(), LabError> {
    if !podwire_io::netdev::running_as_root() {
        return Err(err(
            "podwire lab needs root (it creates network namespaces, TUN devices and raw sockets); run it with sudo",
        ));
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        ("tcpdump", "tcpdump"),
        ("iperf3", "iperf3"),
        ("nft", "nftables"),
        ("nc", "netcat-openbsd"),
        ("etcd", "etcd-server"),
        ("etcdctl", "etcd-client"),
    ] {
        if datastore == Datastore::File && tool.starts_with("etcd") {
            continue;
        }
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(err(format!(
                "podwire lab needs `{tool}`: install it with `apt-get install -y {package}`"
            )));
        }
    }
    if Path::new(STATE_FILE).exists() {
        return Err(err(format!(
            "a lab kept with --keep is still up ({STATE_FILE}); remove it first with `podwire lab --down`"
        )));
    }
    Ok(())
}

/// Result of one mode.
struct ModeResult {
    mode: Mode,
    pings_ok: usize,
    pings: usize,
    /// The host path's checks (node to pods, natOutgoing, a ClusterIP).
    host_ok: usize,
    host_checks: usize,
    gbps: f64,
    pcap: PathBuf,
    packets: usize,
}

/// What the lab and the bench set up before their first namespace.
pub(crate) struct Start {
    /// The output directory, made and made absolute.
    pub dir: std::path::PathBuf,
    /// Set by SIGINT or SIGTERM: end at the next step, cleaning up.
    pub interrupted: Arc<AtomicBool>,
    /// This binary, for the daemons the lab starts.
    pub exe: String,
}

/// Checks root and the tools, makes `out`, and catches SIGINT and SIGTERM.
pub(crate) fn start(out: &std::path::Path, datastore: Datastore) -> Result<Start, LabError> {
    preflight(datastore)?;
    std::fs::create_dir_all(out).map_err(|e| err(format!("{}: {e}", out.display())))?;
    let dir = out.canonicalize().map_err(|e| err(e.to_string()))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(|e| err(e.to_string()))?;
    }
    let exe = std::env::current_exe().map_err(|e| err(e.to_string()))?;
    let exe = exe.to_string_lossy().into_owned();
    Ok(Start {
        dir,
        interrupted,
        exe,
    })
}

/// Runs the lab; prints as it goes. Returns the process exit status.
pub fn run_lab(opts: &Options, out: &mut dyn std::io::Write) -> Result<(), LabError> {
    let Start {
        dir: out_dir,
        interrupted,
        exe,
    } = start(&opts.out, opts.datastore)?;
    let prefix = format!("pwlab{:x}", std::process::id() & 0xffff);
    let started = Instant::now();
    let mut say = |s: String| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    say(format!(
        "podwire lab: a three-node Calico cluster in network namespaces {prefix}-*, output in {}",
        out_dir.display()
    ));
    for n in &NODES {
        say(format!(
            "  {:<10} {:<14} pods {} ({}), {} ({})",
            n.host.name, n.host.ip, n.pods[0].1, n.pods[0].0, n.pods[1].1, n.pods[1].0
        ));
    }

    // The kernel's VXLAN on the same topology: the baseline.
    let kernel = {
        let mut w = Harness::new(format!("{prefix}k-"), out_dir.clone())
            .interruptible(Arc::clone(&interrupted));
        say(String::new());
        say("== baseline: the kernel's VXLAN (vxlan.calico on k8s-node1 and k8s-node2, as Felix sets it up) ==".into());
        let g = kernel_vxlan(&mut w, opts.seconds)?;
        say(format!("tcp 10.2.36.68 -> 10.2.169.138: {g:.2} Gbit/s"));
        g
    };

    let mut results = Vec::new();
    let last = opts.modes.len().saturating_sub(1);
    for (i, &mode) in opts.modes.iter().enumerate() {
        let mut w = Harness::new(format!("{prefix}{}-", &mode.name()[..1]), out_dir.clone())
            .interruptible(Arc::clone(&interrupted));
        say(String::new());
        say(format!("== {} ==", mode.title()));
        let r = run_mode(&mut w, &exe, mode, opts, kernel, &mut say)?;
        results.push(r);
        if opts.keep && i == last {
            crate::keep::keep(w, &exe, &mut say)?;
        }
    }

    say(String::new());
    say("== summary ==".into());
    say(format!(
        "{:<8} {:>7} {:>9} {:>12} {:>17}  {}",
        "mode", "pings", "host path", "tcp Gbit/s", "vs kernel VXLAN", "pcap of the underlay"
    ));
    let mut all_ok = true;
    for r in &results {
        all_ok &= r.pings_ok == r.pings && r.host_ok == r.host_checks;
        say(format!(
            "{:<8} {:>3}/{:<3} {:>5}/{:<3} {:>12.2} {:>16.2}x  {} ({} packets)",
            r.mode.name(),
            r.pings_ok,
            r.pings,
            r.host_ok,
            r.host_checks,
            r.gbps,
            if kernel > 0.0 { r.gbps / kernel } else { 0.0 },
            r.pcap.display(),
            r.packets
        ));
    }
    say(format!(
        "kernel VXLAN: {kernel:.2} Gbit/s. Done in {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    if !all_ok {
        return Err(err(
            "some pings were not answered or host-path checks failed (see above)",
        ));
    }
    Ok(())
}

/// Sets up the kernel's VXLAN between k8s-node1 and k8s-node2 with one
/// veth pod each, and measures a TCP transfer.
fn kernel_vxlan(w: &mut Harness, seconds: u32) -> Result<f64, LabError> {
    let pods = crate::kernel::pods(w, true)?;
    iperf(w, &pods[0], &pods[1], NODES[2].pods[0].1, seconds)
}

/// A TCP transfer from `from` to `to_ip` in `to`, in Gbit/s.
fn iperf(
    w: &mut Harness,
    from: &str,
    to: &str,
    to_ip: &str,
    seconds: u32,
) -> Result<f64, LabError> {
    let v = w.iperf3_json(from, to, to_ip, &[], seconds)?;
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

/// The etcd member's address on the lab's underlay.
const ETCD_IP: &str = "192.168.33.250";

/// The lab on etcd: one member on the underlay; k8s-master and k8s-node1
/// start on a datastore that holds only the pool and their Nodes and
/// blocks, and their pods are made through `podwire-cni` (the lab being the
/// container runtime); then k8s-node2's Node and block are imported while
/// they run, they route to it without a restart before its own daemon
/// starts, and its pods are made the same way. Returns the control sockets and pods of
/// all three, as [`podwire_cluster`] does.
fn etcd_cluster(
    w: &mut Harness,
    exe: &str,
    mode: Mode,
    sw: &str,
    nodes: &[String],
    say: &mut dyn FnMut(String),
) -> Result<(Vec<PathBuf>, Vec<crate::topology::Pod>), LabError> {
    let cni = Path::new(exe).with_file_name("podwire-cni");
    if !cni.is_file() {
        return Err(err(format!(
            "the lab on etcd makes its pods with {}: build it with `cargo build --release` (the workspace builds every binary)",
            cni.display()
        )));
    }
    let ens = w.netns("etcd")?;
    w.attach(sw, "br0", &ens, "eth0", &format!("{ETCD_IP}/24"))?;
    let m = crate::etcd::cluster(w, &[(&ens, ETCD_IP)])?.remove(0);
    let import = |w: &Harness, name: &str, yaml: &str| -> Result<String, LabError> {
        let file = w.dir.join(name);
        std::fs::write(&file, yaml).map_err(|e| err(e.to_string()))?;
        let file = file.to_string_lossy().into_owned();
        let out = w.exec_ok(
            &ens,
            &[
                exe,
                "datastore",
                "import",
                &file,
                "--etcd-endpoints",
                &m.url,
            ],
        )?;
        Ok(out.trim().to_string())
    };
    let two = import(
        w,
        &format!("lab-{}-two.yaml", mode.name()),
        &nodes_yaml(mode, &[0, 1]),
    )?;
    say(format!(
        "etcd 3.4 at {} (on the underlay); podwire datastore import of k8s-master's and k8s-node1's Nodes and blocks: {two}",
        m.url
    ));
    let source = Source::Etcd(&m.url);
    let mut controls = start_nodes(w, exe, source, mode, nodes, &[0, 1], &["--threads", "1"])?;
    // The pods, as a container runtime makes them: through podwire-cni.
    let (mut pods, lines) = cni_pods(
        w,
        &cni,
        &m.url,
        nodes,
        &[(0, controls[0].clone()), (1, controls[1].clone())],
    )?;
    lines.into_iter().for_each(&mut *say);
    let line = podwire_daemon::control::request(&controls[1], "stats", false)
        .map_err(|e| err(e.to_string()))?;
    if let Some(l) = line.lines().find(|l| l.starts_with("datastore ")) {
        say(format!("k8s-node1: {l}"));
    }
    // k8s-node2 joins: its Node and block put into etcd.
    let third = import(
        w,
        &format!("lab-{}-node2.yaml", mode.name()),
        &nodes_yaml(mode, &[2]),
    )?;
    let joined = Instant::now();
    say(format!(
        "k8s-node2 joins: podwire datastore import of its Node and block: {third}"
    ));
    let block = NODES[2].host.block;
    for (i, c) in controls.iter().enumerate() {
        loop {
            let routes = podwire_daemon::control::request(c, "routes", false)
                .map_err(|e| err(e.to_string()))?;
            if let Some(r) = routes.lines().find(|l| l.starts_with(block)) {
                say(format!(
                    "{}: {r}  (applied {} ms after the import returned, no restart, no signal)",
                    NODES[i].host.name,
                    joined.elapsed().as_millis()
                ));
                break;
            }
            if joined.elapsed() > Duration::from_secs(10) {
                return Err(err(format!(
                    "{} did not route k8s-node2's block within 10 s",
                    NODES[i].host.name
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    controls.extend(start_nodes(
        w,
        exe,
        source,
        mode,
        nodes,
        &[2],
        &["--threads", "1"],
    )?);
    say("k8s-node2's podwire started on the datastore; its pods:".into());
    let (more, lines) = cni_pods(w, &cni, &m.url, nodes, &[(2, controls[2].clone())])?;
    lines.into_iter().for_each(&mut *say);
    pods.extend(more);
    Ok((controls, pods))
}

fn run_mode(
    w: &mut Harness,
    exe: &str,
    mode: Mode,
    opts: &Options,
    kernel: f64,
    say: &mut dyn FnMut(String),
) -> Result<ModeResult, LabError> {
    let seconds = opts.seconds;
    let config = w.dir.join(format!("lab-{}.yaml", mode.name()));
    std::fs::write(&config, cluster_yaml(mode)).map_err(|e| err(e.to_string()))?;
    let config = config.to_string_lossy().into_owned();
    let (sw, nodes) = crate::topology::underlay(w)?;
    let pcap = w.dir.join(format!("lab-{}.pcap", mode.name()));
    // Headers only (160 bytes of each frame), and the first 5000 frames:
    // the pings and the start of the transfer.
    let mut headers = vec!["-s", "160", "-c", "5000", "-Z", "root"];
    if opts.datastore == Datastore::Etcd {
        // The pod traffic, not the datastore's.
        headers.extend(["not", "tcp", "port", "2379"]);
    }
    w.capture("tcpdump", &sw, "br0", &pcap, &headers)?;
    let (controls, pods) = match opts.datastore {
        Datastore::File => podwire_cluster(w, exe, &config, mode, &nodes, 1, &[])?,
        Datastore::Etcd => etcd_cluster(w, exe, mode, &sw, &nodes, say)?,
    };
    say("k8s-node1's tables (podwire show routes, neigh, fdb):".into());
    for topic in ["routes", "neigh", "fdb"] {
        let text = podwire_daemon::control::request(&controls[1], topic, false)
            .map_err(|e| err(e.to_string()))?;
        say(format!("# {topic}\n{}", text.trim_end())
            .trim_end()
            .to_string());
    }
    // pods: [m-a, m-b, 1-a, 1-b, 2-a, 2-b]
    let checks = [
        (2, 4, "k8s-node1 -> k8s-node2"),
        (4, 2, "k8s-node2 -> k8s-node1"),
        (2, 0, "k8s-node1 -> k8s-master"),
        (2, 3, "k8s-node1, pod to pod on one node"),
    ];
    let (mut ok, mut total) = (0, 0);
    for (from, to, what) in checks {
        let (from_ns, from_ip) = (&pods[from].0, pods[from].1);
        let to_ip = pods[to].1;
        let p = w.ping(from_ns, to_ip, 3)?;
        let (got, rtt) = (p.received, p.rtt_avg.as_deref().unwrap_or("-"));
        ok += got;
        total += 3;
        say(format!(
            "ping {from_ip} -> {to_ip} ({what}): {got}/3 answered, average rtt {rtt} ms"
        ));
    }
    let (host_ok, host_checks) = crate::services::run(w, &nodes, &pods, say)?;
    let gbps = iperf(w, &pods[2].0, &pods[4].0, pods[4].1, seconds)?;
    say(format!(
        "tcp {} -> {}: {gbps:.2} Gbit/s (kernel VXLAN on the same topology: {kernel:.2} Gbit/s, {:.2}x)",
        pods[2].1,
        pods[4].1,
        if kernel > 0.0 { gbps / kernel } else { 0.0 }
    ));
    std::thread::sleep(Duration::from_millis(200));
    let _ = w.stop("tcpdump", "INT", Duration::from_secs(5));
    let packets = std::fs::read(&pcap).map(|b| pcap_records(&b)).unwrap_or(0);
    say(format!(
        "pcap of the underlay: {} ({packets} packets)",
        pcap.display()
    ));
    Ok(ModeResult {
        mode,
        pings_ok: ok,
        pings: total,
        host_ok,
        host_checks,
        gbps,
        pcap,
        packets,
    })
}
