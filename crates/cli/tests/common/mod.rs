//! The integration tests' layer over the lab crate's namespace harness
//! ([`podwire_lab::netns`]): the same operations, failing the test instead
//! of returning an error, the binary under test, and the tests' cluster.
//!
//! Every namespace gets a name unique to the run (`pw<pid>x<n>…`) and is
//! deleted by name when the [`Lab`] is dropped, pass or fail; every process
//! it started is ended by PID. Addresses live only inside the namespaces.
//! A [`Lab`] holds the machine-wide lock [`netns::TEST_LOCK`] while it
//! lives: the root tests of concurrent `cargo test` runs on one machine,
//! and of one run's threads, take turns.

#![allow(dead_code)]

pub mod etcd;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use podwire::config::cluster::{Block, ClusterBuilder, Endpoint, Node, Pool};
pub use podwire_lab::kernel::Host;
use podwire_lab::netns::{self, Daemon, Harness, Io};

/// The podwire binary under test.
pub const PODWIRE: &str = env!("CARGO_BIN_EXE_podwire");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The harness's result, or the test fails with its error.
pub fn ok<T>(r: Result<T, netns::Error>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// True when running as root; otherwise says why the test does nothing.
pub fn root_or_skip(test: &str) -> bool {
    if netns::is_root() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs root (network namespaces, TUN devices, raw sockets); run the tests as root, as CI does"
    );
    false
}

/// Runs a command, returning its output; panics if it cannot start.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    ok(netns::run(cmd, args))
}

/// Runs a command and panics with its stderr unless it succeeds.
pub fn must(cmd: &str, args: &[&str]) -> String {
    ok(netns::must(cmd, args))
}

/// The namespaces, links and processes of one test, and its directory.
pub struct Lab(Harness);

impl Deref for Lab {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.0
    }
}

impl DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.0
    }
}

impl Lab {
    /// Waits for the machine-wide lock, then an empty lab.
    pub fn new() -> Lab {
        let lock = ok(netns::lock(Path::new(netns::TEST_LOCK)));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("pw{:x}x{n}", std::process::id() & 0xffff);
        Lab(ok(Harness::temporary(prefix)).holding(lock))
    }

    /// Creates namespace `short` with loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> String {
        ok(self.0.netns(short))
    }

    /// Runs `cmd` inside namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        ok(self.0.exec(ns, cmd))
    }

    /// Like [`Lab::exec`], panicking on failure; returns stdout.
    pub fn must_exec(&self, ns: &str, cmd: &[&str]) -> String {
        ok(self.0.exec_ok(ns, cmd))
    }

    /// `ip -n ns …`
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        ok(self.0.ip(ns, args))
    }

    /// A bridge `br` in namespace `ns` (the underlay segment).
    pub fn bridge(&self, ns: &str, br: &str) {
        ok(self.0.bridge(ns, br))
    }

    /// Connects `host_ns` to bridge `br` in `switch_ns` with a veth whose
    /// host end is `ifname`, addressed `addr` (with prefix).
    pub fn attach(&self, switch_ns: &str, br: &str, host_ns: &str, ifname: &str, addr: &str) {
        ok(self.0.attach(switch_ns, br, host_ns, ifname, addr))
    }

    /// Starts `podwire run` for `node` in namespace `ns`; returns the
    /// control socket path once the daemon answers on it.
    pub fn podwire(&mut self, ns: &str, config: &Path, node: &str, extra: &[&str]) -> PathBuf {
        self.podwire_via(ns, &[], config, node, extra)
    }

    /// As [`Lab::podwire`], with the daemon started through `wrapper` (a
    /// command and its arguments, e.g. `setpriv …`) inside the namespace.
    pub fn podwire_via(
        &mut self,
        ns: &str,
        wrapper: &[&str],
        config: &Path,
        node: &str,
        extra: &[&str],
    ) -> PathBuf {
        self.podwire_from(ns, wrapper, Some(config), node, extra)
    }

    /// Starts `podwire run` for `node` in namespace `ns` on the etcd
    /// datastore at `endpoints`.
    pub fn podwire_etcd(
        &mut self,
        ns: &str,
        endpoints: &str,
        node: &str,
        extra: &[&str],
    ) -> PathBuf {
        let mut args = vec!["--datastore", "etcdv3", "--etcd-endpoints", endpoints];
        args.extend_from_slice(extra);
        self.podwire_from(ns, &[], None, node, &args)
    }

    fn podwire_from(
        &mut self,
        ns: &str,
        wrapper: &[&str],
        config: Option<&Path>,
        node: &str,
        extra: &[&str],
    ) -> PathBuf {
        let control = self.dir.join(format!("{node}.sock"));
        let log = self.dir.join(format!("{node}.log"));
        let daemon = Daemon {
            exe: PODWIRE,
            config,
            node,
            control: &control,
            log: &log,
            wrapper,
            extra,
            env: &[("RUST_LOG", "info")],
        };
        ok(self.0.start_podwire(node, ns, &daemon));
        if let Err(e) = self.0.wait_podwire(node, &control, Duration::from_secs(10)) {
            panic!("{e}: {}", self.log(node));
        }
        control
    }

    /// The log of the daemon of `node`.
    pub fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{node}.log"))).unwrap_or_default()
    }

    /// Sends `signal` to the daemon of `node` (by the PID of its process).
    pub fn signal(&self, node: &str, signal: &str) {
        ok(self.0.signal(node, signal))
    }

    /// Stops the daemon of `node` with SIGTERM and waits for it.
    pub fn stop(&mut self, node: &str) -> ExitStatus {
        ok(self.0.stop(node, "TERM", Duration::from_secs(10)))
    }

    /// Moves endpoint `iface` from `node_ns` into a new pod namespace and
    /// configures it the way Calico configures a pod: `eth0`, the address as
    /// a /32, `169.254.1.1` on link, default route through it.
    pub fn pod(&mut self, short: &str, node_ns: &str, iface: &str, ip: &str) -> String {
        ok(self.0.pod(short, node_ns, iface, ip))
    }

    /// As [`Lab::pod`], with the pod's IPv6 off before its `eth0` arrives.
    pub fn pod_without_ipv6(
        &mut self,
        short: &str,
        node_ns: &str,
        iface: &str,
        ip: &str,
    ) -> String {
        ok(self.0.pod_without_ipv6(short, node_ns, iface, ip))
    }

    /// Starts a background process in `ns`, ended when the lab ends.
    pub fn spawn(&mut self, ns: &str, tag: &str, cmd: &[&str]) -> u32 {
        ok(self.0.spawn(tag, ns, cmd, Io::Piped))
    }

    /// The PID of background process `tag`.
    pub fn pid(&self, tag: &str) -> u32 {
        ok(self.0.pid(tag))
    }

    /// Waits for the background process `tag` and returns its output.
    pub fn wait(&mut self, tag: &str, timeout: Duration) -> Output {
        ok(self.0.wait(tag, timeout))
    }

    /// `podwire show <topic>` against a control socket.
    pub fn show(&self, control: &Path, topic: &str, json: bool) -> String {
        ok(netns::show(control, topic, json))
    }

    /// The daemon's counters as JSON.
    pub fn stats(&self, control: &Path) -> serde_json::Value {
        ok(netns::stats(control))
    }

    /// The number of drops for `reason`.
    pub fn drops(&self, control: &Path, reason: &str) -> u64 {
        ok(netns::drops(control, reason))
    }

    /// Writes a file in the lab's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        ok(self.0.file(name, text))
    }
}

/// `count` pings from namespace `from` to `to`, all answered.
/// Waits (15 s at most) until namespace `from` gets an echo reply from
/// `to`; on failure, panics with `why()`: for pods whose routes arrive
/// through a datastore watch.
pub fn wait_reachable(lab: &Lab, from: &str, to: &str, why: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !lab
        .exec(from, &["ping", "-c", "1", "-W", "1", to])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{from} never reached {to}: {}",
            why()
        );
    }
}

pub fn ping(lab: &Lab, from: &str, to: &str, count: usize) {
    let out = ok(lab.0.ping(from, to, count)).output;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(&format!("{count} received"))
            && !text.contains("DUP!"),
        "ping {from} -> {to}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP transfer of `mbytes` MB of random data from namespace `from` to
/// `to_ip` (in namespace `to`), compared at the far end by SHA-256.
pub fn transfer(lab: &mut Lab, from: &str, to: &str, to_ip: &str, mbytes: usize, port: u16) {
    let t = ok(lab.0.transfer(from, to, to_ip, mbytes, port));
    assert!(
        t.sender.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&t.sender.stderr)
    );
    assert_eq!(
        t.received.as_deref(),
        Some(t.sent.as_str()),
        "content of the transfer from {from} to {to}"
    );
}

/// Starts tcpdump on `dev` in `ns`, writing `file`; returns once it listens.
pub fn capture(lab: &mut Lab, ns: &str, dev: &str, file: &Path, tag: &str) {
    ok(lab.0.capture(tag, ns, dev, file, &[]))
}

pub fn stop_capture(lab: &mut Lab, tag: &str) {
    ok(lab.0.stop_capture(tag))
}

/// tshark's dissection of `file`: one row of `fields` per packet matching `filter`.
pub fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    ok(netns::tshark(file, filter, fields))
}

/// The tests' nodes, on 192.168.33.0/24.
pub const NODES: [Host<'static>; 3] = [
    Host {
        name: "k8s-node1",
        ip: "192.168.33.55",
        block: "10.2.36.64/26",
        tunnel: "10.2.36.65",
    },
    Host {
        name: "k8s-node2",
        ip: "192.168.33.57",
        block: "10.2.169.128/26",
        tunnel: "10.2.169.129",
    },
    Host {
        name: "k8s-node3",
        ip: "192.168.33.59",
        block: "10.2.235.192/26",
        tunnel: "10.2.235.193",
    },
];

/// The tests' workloads: node, interface, address.
pub const WORKLOADS: [(&str, &str, &str); 4] = [
    ("k8s-node1", "cali1a", "10.2.36.68"),
    ("k8s-node1", "cali1b", "10.2.36.69"),
    ("k8s-node2", "cali2a", "10.2.169.138"),
    ("k8s-node3", "cali3a", "10.2.235.194"),
];

/// The tests' cluster: pool 10.2.0.0/16 in `mode` (`ipip`, `vxlan` or
/// `direct`), the first `nodes` of [`NODES`] with their blocks, then the
/// workloads among `pods` (interfaces of [`WORKLOADS`]) on those nodes.
pub fn cluster(mode: &str, nodes: usize, pods: &[&str]) -> ClusterBuilder {
    let mut c = ClusterBuilder::new().with(Pool::new("pool", "10.2.0.0/16").overlay(mode));
    for n in &NODES[..nodes] {
        c = c.calico_node(n.name, &n.cidr(), n.block);
    }
    let names: Vec<&str> = NODES[..nodes].iter().map(|n| n.name).collect();
    for (node, iface, ip) in WORKLOADS {
        if names.contains(&node) && pods.contains(&iface) {
            c = c.with(Endpoint::new(node, iface, ip));
        }
    }
    c
}

/// A lab with the tests' cluster in a file, and its underlay.
pub struct Testbed {
    pub lab: Lab,
    /// `cluster.yaml`.
    pub config: PathBuf,
    /// The switch's namespace: bridge `br0`.
    pub sw: String,
    /// The nodes' namespaces, in the order of [`NODES`].
    pub nodes: Vec<String>,
}

/// A new [`Lab`] with [`cluster`]`(mode, nodes.len(), pods)` in
/// `cluster.yaml`, a switch namespace `sw` with bridge `br0`, and namespace
/// `nodes[i]` attached to it as `NODES[i]` (`eth0`, the node IP /24).
pub fn testbed(mode: &str, pods: &[&str], nodes: &[&str]) -> Testbed {
    let mut lab = Lab::new();
    let config = lab.file("cluster.yaml", &cluster(mode, nodes.len(), pods).yaml());
    let sw = lab.netns("sw");
    lab.bridge(&sw, "br0");
    let nodes = nodes
        .iter()
        .zip(&NODES)
        .map(|(short, node)| {
            let ns = lab.netns(short);
            lab.attach(&sw, "br0", &ns, "eth0", &node.cidr());
            ns
        })
        .collect();
    Testbed {
        lab,
        config,
        sw,
        nodes,
    }
}

/// A node of a two-pool cluster: name, node IP/prefix, VXLAN tunnel
/// address, its block in the first pool, its block in the second.
pub type TwoPoolNode = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The YAML of a cluster of `pools`, `nodes` (each with its two blocks) and
/// `pods` (node index, interface, address).
pub fn two_pool_cluster(
    pools: [Pool; 2],
    nodes: &[TwoPoolNode],
    pods: &[(usize, &str, &str)],
) -> String {
    let mut c = ClusterBuilder::new();
    for p in pools {
        c = c.with(p);
    }
    for &(name, ip, tunnel, a, b) in nodes {
        c = c.with(Node::new(name, ip).vxlan_tunnel(tunnel));
        for block in [a, b] {
            c = c.with(Block::new(block).host(name));
        }
    }
    for &(node, iface, ip) in pods {
        c = c.with(Endpoint::new(nodes[node].0, iface, ip));
    }
    c.yaml()
}
