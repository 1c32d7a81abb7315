//! `podwire lab`: a three-node Calico cluster on one machine, in network
//! namespaces, each node with its own podwire dataplane and two pods whose
//! `eth0` is a podwire TUN endpoint. For each mode it prints one node's
//! tables, pings across nodes and within one, measures a TCP transfer beside
//! the kernel's VXLAN on the same topology, and writes a pcap of the
//! underlay. Everything it creates is removed when it ends — normally, on
//! failure, or on Ctrl-C — unless `--keep` leaves the last cluster up for
//! `podwire lab --down` to remove.
//!
//! ```text
//!                        bridge br0 (namespace <p>-sw), 192.168.33.0/24
//!        ┌───────────────────────┼───────────────────────┐
//!   k8s-master .53          k8s-node1 .55           k8s-node2 .57      nodes: podwire run
//!    │        │              │        │              │        │
//!  pod m-a  pod m-b        pod 1-a  pod 1-b        pod 2-a  pod 2-b    eth0 = TUN endpoint
//! 10.2.235.194/.195       10.2.36.68/.69         10.2.169.138/.139
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where a kept lab records what to remove.
pub const STATE_FILE: &str = "/run/podwire-lab/state.json";

/// What `podwire lab` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ipip`, `vxlan`, `direct`, or all three.
    pub modes: Vec<Mode>,
    pub out: PathBuf,
    pub keep: bool,
    /// Seconds of each TCP transfer.
    pub seconds: u32,
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

    fn pool_modes(self) -> (&'static str, &'static str) {
        match self {
            Mode::Ipip => ("Always", "Never"),
            Mode::Vxlan => ("Never", "Always"),
            Mode::Direct => ("Never", "Never"),
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

struct Node {
    name: &'static str,
    short: &'static str,
    ip: &'static str,
    block: &'static str,
    tunnel: &'static str,
    pods: [(&'static str, &'static str); 2],
}

const NODES: [Node; 3] = [
    Node {
        name: "k8s-master",
        short: "m",
        ip: "192.168.33.53",
        block: "10.2.235.192/26",
        tunnel: "10.2.235.193",
        pods: [
            ("cali-master-a", "10.2.235.194"),
            ("cali-master-b", "10.2.235.195"),
        ],
    },
    Node {
        name: "k8s-node1",
        short: "1",
        ip: "192.168.33.55",
        block: "10.2.36.64/26",
        tunnel: "10.2.36.65",
        pods: [
            ("cali-node1-a", "10.2.36.68"),
            ("cali-node1-b", "10.2.36.69"),
        ],
    },
    Node {
        name: "k8s-node2",
        short: "2",
        ip: "192.168.33.57",
        block: "10.2.169.128/26",
        tunnel: "10.2.169.129",
        pods: [
            ("cali-node2-a", "10.2.169.138"),
            ("cali-node2-b", "10.2.169.139"),
        ],
    },
];

/// The cluster file for `mode`.
pub fn cluster_yaml(mode: Mode) -> String {
    let (ipip, vxlan) = mode.pool_modes();
    let mut y = format!(
        "# podwire lab, {} mode\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv4-ippool\nspec:\n  cidr: 10.2.0.0/16\n  blockSize: 26\n  ipipMode: {ipip}\n  vxlanMode: {vxlan}\n  natOutgoing: true\n",
        mode.name()
    );
    for n in &NODES {
        let _ = write!(
            y,
            "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\nspec:\n  bgp:\n    ipv4Address: {}/24\n  ipv4VXLANTunnelAddr: {}\n",
            n.name, n.ip, n.tunnel
        );
        let _ = write!(
            y,
            "---\napiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata:\n  name: {}\nspec:\n  cidr: {}\n  affinity: host:{}\n",
            n.block.replace(['.', '/'], "-"),
            n.block,
            n.name
        );
        for (iface, ip) in &n.pods {
            let _ = write!(
                y,
                "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {iface}\n  namespace: default\nspec:\n  node: {}\n  interfaceName: {iface}\n  ipNetworks:\n  - {ip}/32\n",
                n.name
            );
        }
    }
    y
}

/// A failure of the lab, in words for the user.
#[derive(Debug)]
pub struct LabError(pub String);

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn err(s: impl Into<String>) -> LabError {
    LabError(s.into())
}

/// What a kept lab left behind.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    dir: PathBuf,
}

/// Everything one run created; removed on drop unless kept.
pub(crate) struct World {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    pub(crate) dir: PathBuf,
    interrupted: Arc<AtomicBool>,
}

pub(crate) fn run(cmd: &str, args: &[&str]) -> Result<Output, LabError> {
    Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| err(format!("cannot run {cmd}: {e}")))
}

pub(crate) fn must(cmd: &str, args: &[&str]) -> Result<String, LabError> {
    let out = run(cmd, args)?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl World {
    /// An empty world whose namespaces are named `<prefix>-…`.
    pub(crate) fn new(prefix: String, dir: PathBuf, interrupted: Arc<AtomicBool>) -> World {
        World {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            interrupted,
        }
    }

    pub(crate) fn check(&self) -> Result<(), LabError> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(err("interrupted"));
        }
        Ok(())
    }

    pub(crate) fn ns(&mut self, short: &str) -> Result<String, LabError> {
        self.check()?;
        let ns = format!("{}-{short}", self.prefix);
        must("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        must("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn ip(&self, ns: &str, args: &[&str]) -> Result<String, LabError> {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        must("ip", &a)
    }

    pub(crate) fn exec(&self, ns: &str, cmd: &[&str]) -> Result<Output, LabError> {
        let mut a = vec!["netns", "exec", ns];
        a.extend_from_slice(cmd);
        run("ip", &a)
    }

    pub(crate) fn spawn(
        &mut self,
        tag: &str,
        ns: &str,
        cmd: &[&str],
        log: Option<&Path>,
    ) -> Result<u32, LabError> {
        let mut a = vec!["netns", "exec", ns];
        a.extend_from_slice(cmd);
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).map_err(|e| err(e.to_string()))?),
            None => Stdio::null(),
        };
        let child = Command::new("ip")
            .args(&a)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", cmd[0])))?;
        let pid = child.id();
        self.children.push((tag.to_string(), child));
        Ok(pid)
    }

    /// Stops the background processes whose tag starts with `tag`.
    pub(crate) fn stop(&mut self, tag: &str) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|(t, _)| t.starts_with(tag));
        self.children = rest;
        for (_, mut c) in mine {
            let _ = run("kill", &["-INT", &c.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Deletes the namespaces whose name ends with one of `shorts`.
    fn remove_namespaces(&mut self) {
        for ns in std::mem::take(&mut self.namespaces).iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }

    /// The underlay: a bridge in its own namespace, and one node per NODES
    /// entry attached to it.
    pub(crate) fn underlay(&mut self) -> Result<(String, Vec<String>), LabError> {
        let sw = self.ns("sw")?;
        self.ip(&sw, &["link", "add", "br0", "type", "bridge"])?;
        self.ip(&sw, &["link", "set", "br0", "up"])?;
        let mut nodes = Vec::new();
        for n in &NODES {
            let ns = self.ns(&format!("n{}", n.short))?;
            let port = format!("port-{}", n.short);
            must(
                "ip",
                &[
                    "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                    "netns", &sw,
                ],
            )?;
            self.ip(&sw, &["link", "set", &port, "master", "br0", "up"])?;
            self.ip(
                &ns,
                &["addr", "add", &format!("{}/24", n.ip), "dev", "eth0"],
            )?;
            self.ip(&ns, &["link", "set", "eth0", "up"])?;
            nodes.push(ns);
        }
        Ok((sw, nodes))
    }

    /// A pod namespace whose `eth0` is `iface`, moved from `node`.
    fn pod(&mut self, node: &str, short: &str, iface: &str, ip: &str) -> Result<String, LabError> {
        let pod = self.ns(short)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !run("ip", &["-n", node, "link", "show", iface])?
            .status
            .success()
        {
            if Instant::now() > deadline {
                return Err(err(format!("endpoint {iface} never appeared in {node}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ip(node, &["link", "set", iface, "netns", &pod])?;
        self.ip(&pod, &["link", "set", iface, "name", "eth0"])?;
        pod_routes(self, &pod, ip)?;
        Ok(pod)
    }
}

/// Calico's pod network shape: the address as a /32, 169.254.1.1 on link,
/// default route through it.
fn pod_routes(w: &World, pod: &str, ip: &str) -> Result<(), LabError> {
    w.ip(pod, &["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
    w.ip(pod, &["link", "set", "eth0", "up"])?;
    w.ip(
        pod,
        &[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ],
    )?;
    w.ip(
        pod,
        &[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ],
    )?;
    Ok(())
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop("");
        self.remove_namespaces();
    }
}

/// Checks that the lab can run here; says what is missing.
pub(crate) fn preflight() -> Result<(), LabError> {
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
    ] {
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
    gbps: f64,
    pcap: PathBuf,
    packets: usize,
}

/// Runs the lab; prints as it goes. Returns the process exit status.
pub fn run_lab(opts: &Options, out: &mut dyn std::io::Write) -> Result<(), LabError> {
    preflight()?;
    std::fs::create_dir_all(&opts.out).map_err(|e| err(format!("{}: {e}", opts.out.display())))?;
    let out_dir = opts.out.canonicalize().map_err(|e| err(e.to_string()))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(|e| err(e.to_string()))?;
    }
    let exe = std::env::current_exe().map_err(|e| err(e.to_string()))?;
    let exe = exe.to_string_lossy().into_owned();
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
            n.name, n.ip, n.pods[0].1, n.pods[0].0, n.pods[1].1, n.pods[1].0
        ));
    }

    // The kernel's VXLAN on the same topology: the baseline.
    let kernel = {
        let mut w = World::new(
            format!("{prefix}k"),
            out_dir.clone(),
            Arc::clone(&interrupted),
        );
        say(String::new());
        say("== baseline: the kernel's VXLAN (vxlan.calico on k8s-node1 and k8s-node2, as Felix sets it up) ==".into());
        let g = kernel_vxlan(&mut w, opts.seconds)?;
        say(format!("tcp 10.2.36.68 -> 10.2.169.138: {g:.2} Gbit/s"));
        g
    };

    let mut results = Vec::new();
    let last = opts.modes.len().saturating_sub(1);
    for (i, &mode) in opts.modes.iter().enumerate() {
        let mut w = World::new(
            format!("{prefix}{}", &mode.name()[..1]),
            out_dir.clone(),
            Arc::clone(&interrupted),
        );
        say(String::new());
        say(format!("== {} ==", mode.title()));
        let r = run_mode(&mut w, &exe, mode, opts.seconds, kernel, &mut say)?;
        results.push(r);
        if opts.keep && i == last {
            keep(w, &exe, &mut say)?;
        }
    }

    say(String::new());
    say("== summary ==".into());
    say(format!(
        "{:<8} {:>7} {:>12} {:>17}  {}",
        "mode", "pings", "tcp Gbit/s", "vs kernel VXLAN", "pcap of the underlay"
    ));
    let mut all_ok = true;
    for r in &results {
        all_ok &= r.pings_ok == r.pings;
        say(format!(
            "{:<8} {:>3}/{:<3} {:>12.2} {:>16.2}x  {} ({} packets)",
            r.mode.name(),
            r.pings_ok,
            r.pings,
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
        return Err(err("some pings were not answered"));
    }
    Ok(())
}

/// Sets up the kernel's VXLAN between k8s-node1 and k8s-node2 with one
/// veth pod each, and measures a TCP transfer.
fn kernel_vxlan(w: &mut World, seconds: u32) -> Result<f64, LabError> {
    let pods = kernel_vxlan_pods(w)?;
    iperf(w, &pods[0], &pods[1], NODES[2].pods[0].1, seconds)
}

/// The address of the receiving pod of the benchmarks (k8s-node2's first).
pub(crate) const POD2: &str = "10.2.169.138";

/// k8s-node1 and k8s-node2 with the kernel's VXLAN as Felix sets it up, a
/// veth pod on each as Calico attaches pods; returns the two pods.
pub(crate) fn kernel_vxlan_pods(w: &mut World) -> Result<Vec<String>, LabError> {
    let (_, nodes) = w.underlay()?;
    let mac = |name: &str| podwire::table::vtep_mac_for(name).to_string();
    let (n1, n2) = (&NODES[1], &NODES[2]);
    let mut pods = Vec::new();
    for (me, peer, ns) in [(n1, n2, &nodes[1]), (n2, n1, &nodes[2])] {
        let ns = ns.clone();
        let my_mac = mac(me.name);
        let peer_mac = mac(peer.name);
        for args in [
            vec![
                "link",
                "add",
                "vxlan.calico",
                "type",
                "vxlan",
                "id",
                "4096",
                "dstport",
                "4789",
                "local",
                me.ip,
                "dev",
                "eth0",
                "nolearning",
            ],
            vec![
                "link",
                "set",
                "vxlan.calico",
                "address",
                &my_mac,
                "mtu",
                "1450",
                "up",
            ],
            vec![
                "addr",
                "add",
                &format!("{}/32", me.tunnel),
                "dev",
                "vxlan.calico",
            ],
            vec![
                "route",
                "add",
                peer.block,
                "via",
                peer.tunnel,
                "dev",
                "vxlan.calico",
                "onlink",
            ],
            vec![
                "neigh",
                "add",
                peer.tunnel,
                "lladdr",
                &peer_mac,
                "dev",
                "vxlan.calico",
                "nud",
                "permanent",
            ],
            vec![
                "route",
                "add",
                "default",
                "via",
                "192.168.33.1",
                "dev",
                "eth0",
                "onlink",
            ],
        ] {
            w.ip(&ns, &args)?;
        }
        must(
            "bridge",
            &[
                "-n",
                &ns,
                "fdb",
                "add",
                &peer_mac,
                "dev",
                "vxlan.calico",
                "dst",
                peer.ip,
            ],
        )?;
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        let pod = w.ns(&format!("p{}", me.short))?;
        w.ip(
            &ns,
            &[
                "link", "add", "cali0", "type", "veth", "peer", "name", "eth0", "netns", &pod,
            ],
        )?;
        w.ip(
            &ns,
            &[
                "link",
                "set",
                "cali0",
                "address",
                "ee:ee:ee:ee:ee:ee",
                "mtu",
                "1450",
                "up",
            ],
        )?;
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.conf.cali0.proxy_arp=1",
            ],
        )?;
        w.ip(
            &ns,
            &[
                "route",
                "add",
                me.pods[0].1,
                "dev",
                "cali0",
                "scope",
                "link",
            ],
        )?;
        w.ip(&pod, &["link", "set", "eth0", "mtu", "1450"])?;
        pod_routes(w, &pod, me.pods[0].1)?;
        pods.push(pod);
    }
    Ok(pods)
}

/// k8s-node1 and k8s-node2 routing pod traffic in their kernels, as a
/// Calico node does in BGP mode: a route per remote block via the other
/// node, forwarding on, a veth pod on each; returns the two pods.
pub(crate) fn kernel_direct_pods(w: &mut World) -> Result<Vec<String>, LabError> {
    let (_, nodes) = w.underlay()?;
    let (n1, n2) = (&NODES[1], &NODES[2]);
    let mut pods = Vec::new();
    for (me, peer, ns) in [(n1, n2, &nodes[1]), (n2, n1, &nodes[2])] {
        let ns = ns.clone();
        w.ip(
            &ns,
            &[
                "route", "add", peer.block, "via", peer.ip, "dev", "eth0", "onlink",
            ],
        )?;
        w.ip(
            &ns,
            &[
                "route",
                "add",
                "default",
                "via",
                "192.168.33.1",
                "dev",
                "eth0",
                "onlink",
            ],
        )?;
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        let pod = w.ns(&format!("p{}", me.short))?;
        w.ip(
            &ns,
            &[
                "link", "add", "cali0", "type", "veth", "peer", "name", "eth0", "netns", &pod,
            ],
        )?;
        w.ip(
            &ns,
            &["link", "set", "cali0", "address", "ee:ee:ee:ee:ee:ee", "up"],
        )?;
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.conf.cali0.proxy_arp=1",
            ],
        )?;
        w.ip(
            &ns,
            &[
                "route",
                "add",
                me.pods[0].1,
                "dev",
                "cali0",
                "scope",
                "link",
            ],
        )?;
        pod_routes(w, &pod, me.pods[0].1)?;
        pods.push(pod);
    }
    Ok(pods)
}

/// Runs iperf3 from `from` to a one-shot server on `to_ip` in `to` for
/// `seconds`, with `extra` client arguments, and returns its JSON report.
/// The client is retried until the server listens.
pub(crate) fn iperf3_json(
    w: &mut World,
    from: &str,
    to: &str,
    to_ip: &str,
    extra: &[&str],
    seconds: u32,
) -> Result<serde_json::Value, LabError> {
    w.check()?;
    w.spawn("iperf-server", to, &["iperf3", "-s", "-1"], None)?;
    let secs = seconds.to_string();
    let mut args = vec!["iperf3", "-c", to_ip, "-t", &secs, "-J"];
    args.extend_from_slice(extra);
    let mut out = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let o = w.exec(from, &args)?;
        if o.status.success() {
            out = Some(o);
            break;
        }
        w.check()?;
    }
    w.stop("iperf-server");
    let out = out.ok_or_else(|| err(format!("iperf3 {} to {to_ip} failed", extra.join(" "))))?;
    serde_json::from_slice(&out.stdout).map_err(|e| err(format!("iperf3 output: {e}")))
}

/// A TCP transfer from `from` to `to_ip` in `to`, in Gbit/s.
fn iperf(w: &mut World, from: &str, to: &str, to_ip: &str, seconds: u32) -> Result<f64, LabError> {
    let v = iperf3_json(w, from, to, to_ip, &[], seconds)?;
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

fn run_mode(
    w: &mut World,
    exe: &str,
    mode: Mode,
    seconds: u32,
    kernel: f64,
    say: &mut dyn FnMut(String),
) -> Result<ModeResult, LabError> {
    let config = w.dir.join(format!("lab-{}.yaml", mode.name()));
    std::fs::write(&config, cluster_yaml(mode)).map_err(|e| err(e.to_string()))?;
    let config = config.to_string_lossy().into_owned();
    let (sw, nodes) = w.underlay()?;
    let pcap = w.dir.join(format!("lab-{}.pcap", mode.name()));
    let pcap_s = pcap.to_string_lossy().into_owned();
    // Headers only (160 bytes of each frame), and the first 5000 frames:
    // the pings and the start of the transfer.
    let capture = [
        "tcpdump",
        "--immediate-mode",
        "-i",
        "br0",
        "-n",
        "-U",
        "-s",
        "160",
        "-c",
        "5000",
        "-Z",
        "root",
        "-w",
        &pcap_s,
    ];
    w.spawn("tcpdump", &sw, &capture, None)?;
    // Let it open the device before anything is sent.
    std::thread::sleep(Duration::from_millis(300));
    let (controls, pods) = podwire_cluster(w, exe, &config, mode, &nodes, 1)?;
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
        w.check()?;
        let (from_ns, from_ip) = (&pods[from].0, pods[from].1);
        let to_ip = pods[to].1;
        let o = w.exec(from_ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to_ip])?;
        let text = String::from_utf8_lossy(&o.stdout);
        let got = text
            .lines()
            .find_map(|l| {
                l.split(", ")
                    .nth(1)?
                    .strip_suffix(" received")?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        let rtt = text
            .lines()
            .find(|l| l.starts_with("rtt"))
            .and_then(|l| l.split('/').nth(4))
            .unwrap_or("-");
        ok += got;
        total += 3;
        say(format!(
            "ping {from_ip} -> {to_ip} ({what}): {got}/3 answered, average rtt {rtt} ms"
        ));
    }
    let gbps = iperf(w, &pods[2].0, &pods[4].0, pods[4].1, seconds)?;
    say(format!(
        "tcp {} -> {}: {gbps:.2} Gbit/s (kernel VXLAN on the same topology: {kernel:.2} Gbit/s, {:.2}x)",
        pods[2].1,
        pods[4].1,
        if kernel > 0.0 { gbps / kernel } else { 0.0 }
    ));
    std::thread::sleep(Duration::from_millis(200));
    w.stop("tcpdump");
    let packets = std::fs::read(&pcap).map(|b| pcap_records(&b)).unwrap_or(0);
    say(format!(
        "pcap of the underlay: {} ({packets} packets)",
        pcap.display()
    ));
    Ok(ModeResult {
        mode,
        pings_ok: ok,
        pings: total,
        gbps,
        pcap,
        packets,
    })
}

/// The number of records in a pcap file (24-byte file header, then records
/// of a 16-byte header whose third word is the captured length).
fn pcap_records(b: &[u8]) -> usize {
    let little = b.get(..4) == Some(&[0xd4, 0xc3, 0xb2, 0xa1]);
    let mut at = 24;
    let mut n = 0;
    while let Some(h) = b.get(at..at + 16) {
        let w = [h[8], h[9], h[10], h[11]];
        let len = if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        } as usize;
        at += 16 + len;
        if at > b.len() {
            break;
        }
        n += 1;
    }
    n
}

/// A pod: its namespace and its address.
pub(crate) type Pod = (String, &'static str);

/// Starts podwire on every node of `nodes` (from [`World::underlay`]) with
/// `config`, waits for the daemons, and makes the pods; returns the
/// control sockets and the pods (namespace, address), two per node.
pub(crate) fn podwire_cluster(
    w: &mut World,
    exe: &str,
    config: &str,
    mode: Mode,
    nodes: &[String],
    threads: usize,
) -> Result<(Vec<PathBuf>, Vec<Pod>), LabError> {
    let threads = threads.max(1).to_string();
    let mut controls = Vec::new();
    for (n, ns) in NODES.iter().zip(nodes) {
        let control = w.dir.join(format!("{}-{}.sock", mode.name(), n.name));
        let log = w.dir.join(format!("lab-{}-{}.log", mode.name(), n.name));
        let c = control.to_string_lossy().into_owned();
        w.spawn(
            &format!("podwire-{}", n.name),
            ns,
            &[
                exe,
                "run",
                "--config",
                config,
                "--node",
                n.name,
                "--control",
                &c,
                "--threads",
                &threads,
            ],
            Some(&log),
        )?;
        controls.push(control);
    }
    for c in &controls {
        let deadline = Instant::now() + Duration::from_secs(10);
        while podwire_daemon::control::request(c, "stats", false).is_err() {
            w.check()?;
            if Instant::now() > deadline {
                return Err(err(format!(
                    "a podwire daemon did not start; see the logs in {}",
                    w.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut pods = Vec::new();
    for (n, ns) in NODES.iter().zip(nodes) {
        for (k, (iface, ip)) in n.pods.iter().enumerate() {
            let short = format!("p{}{}", n.short, ["a", "b"][k]);
            pods.push((w.pod(ns, &short, iface, ip)?, *ip));
        }
    }
    Ok((controls, pods))
}

/// Leaves `w` running: records it for `--down` and prints how to explore it.
fn keep(mut w: World, exe: &str, say: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let state = State {
        namespaces: std::mem::take(&mut w.namespaces),
        pids: w
            .children
            .iter()
            .filter(|(t, _)| t.starts_with("podwire-"))
            .map(|(_, c)| c.id())
            .collect(),
        dir: w.dir.clone(),
    };
    // The daemons keep running; only the capture stops.
    w.stop("tcpdump");
    w.children.clear();
    std::fs::create_dir_all(Path::new(STATE_FILE).parent().unwrap_or(Path::new("/")))
        .map_err(|e| err(e.to_string()))?;
    let json = serde_json::to_string_pretty(&state).map_err(|e| err(e.to_string()))?;
    std::fs::write(STATE_FILE, json).map_err(|e| err(e.to_string()))?;
    let p = &w.prefix;
    say(String::new());
    say("The last cluster is still up. Explore it with, for example:".into());
    say(format!("  ip netns exec {p}-p1a ping 10.2.169.138"));
    say(format!("  ip netns exec {p}-p1a ip route"));
    say(format!(
        "  {exe} show routes --control {}",
        w.dir
            .join(format!("{}-k8s-node1.sock", mode_of(p)))
            .display()
    ));
    say(format!(
        "  {exe} show stats --control {}",
        w.dir
            .join(format!("{}-k8s-node1.sock", mode_of(p)))
            .display()
    ));
    say(format!("  ip netns list | grep {p}"));
    say(format!("and remove it with: {exe} lab --down"));
    Ok(())
}

fn mode_of(prefix: &str) -> &'static str {
    match prefix.chars().last() {
        Some('i') => "ipip",
        Some('v') => "vxlan",
        _ => "direct",
    }
}

/// `podwire lab --down`: removes a lab kept with `--keep`.
pub fn down(out: &mut dyn std::io::Write) -> Result<(), LabError> {
    let text = match std::fs::read_to_string(STATE_FILE) {
        Ok(t) => t,
        Err(_) => {
            let _ = writeln!(out, "no lab is up ({STATE_FILE} does not exist)");
            return Ok(());
        }
    };
    let state: State =
        serde_json::from_str(&text).map_err(|e| err(format!("{STATE_FILE}: {e}")))?;
    for pid in &state.pids {
        // Only our own daemons: a PID may have been reused since.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("podwire") {
            let _ = run("kill", &["-TERM", &pid.to_string()]);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for ns in state.namespaces.iter().rev() {
        let _ = run("ip", &["netns", "del", ns]);
    }
    let _ = std::fs::remove_file(STATE_FILE);
    let _ = writeln!(
        out,
        "removed {} namespaces and {} daemons (their logs and pcaps stay in {})",
        state.namespaces.len(),
        state.pids.len(),
        state.dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_records_are_counted() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.resize(24, 0);
        for len in [3u32, 0, 5] {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend(std::iter::repeat_n(0xab, len as usize));
        }
        assert_eq!(pcap_records(&f), 3);
        assert_eq!(
            pcap_records(&f[..f.len() - 1]),
            2,
            "a truncated last record"
        );
        assert_eq!(pcap_records(&[]), 0);
    }

    #[test]
    fn lab_clusters_validate_and_compile() {
        for mode in Mode::ALL {
            let r = podwire::config::parse(&cluster_yaml(mode)).unwrap();
            assert_eq!(r.nodes.len(), 3);
            assert_eq!(r.endpoints.len(), 6);
            let u = podwire::table::Underlay {
                name: "eth0".into(),
                mtu: 1500,
            };
            let t = podwire::table::compile(&r, "k8s-node1", &u).unwrap();
            let want = match mode {
                Mode::Ipip => "10.2.169.128/26 via 192.168.33.57 dev tunl0 onlink",
                Mode::Vxlan => "10.2.169.128/26 via 10.2.169.129 dev vxlan.calico onlink",
                Mode::Direct => "10.2.169.128/26 via 192.168.33.57 dev eth0 onlink",
            };
            assert!(t.routes_text().contains(want), "{mode:?}");
        }
    }
}
