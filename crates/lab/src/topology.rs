//! The lab's cluster: three nodes on one underlay bridge, two pods each,
//! and a router to an "internet" host.
//!
//! ```text
//!                 internet 203.0.113.10 (namespace <p>-inet)
//!                        │
//!                 router 192.168.33.1 / 203.0.113.1 (<p>-rt)
//!                        │  bridge br0 (namespace <p>-sw), 192.168.33.0/24
//!        ┌───────────────┴───────┼───────────────────────┐
//!   k8s-master .53          k8s-node1 .55           k8s-node2 .57      nodes: podwire run
//!    │        │              │        │              │        │          --host-interface podwire0
//!  pod m-a  pod m-b        pod 1-a  pod 1-b        pod 2-a  pod 2-b    eth0 = TUN endpoint
//! 10.2.235.194/.195       10.2.36.68/.69         10.2.169.138/.139
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use podwire::config::cluster::{Block, ClusterBuilder, Endpoint, Pool};

use crate::Mode;
use crate::kernel::Host;
use crate::netns::{Daemon, Error, Harness, err};

/// A node of the lab: who it is, the suffix of its namespaces' names,
/// and its two pods (interface, address).
pub(crate) struct Node {
    pub(crate) host: Host<'static>,
    pub(crate) short: &'static str,
    pub(crate) pods: [(&'static str, &'static str); 2],
}

pub(crate) const NODES: [Node; 3] = [
    Node {
        host: Host {
            name: "k8s-master",
            ip: "192.168.33.53",
            block: "10.2.235.192/26",
            tunnel: "10.2.235.193",
        },
        short: "m",
        pods: [
            ("cali-master-a", "10.2.235.194"),
            ("cali-master-b", "10.2.235.195"),
        ],
    },
    Node {
        host: Host {
            name: "k8s-node1",
            ip: "192.168.33.55",
            block: "10.2.36.64/26",
            tunnel: "10.2.36.65",
        },
        short: "1",
        pods: [
            ("cali-node1-a", "10.2.36.68"),
            ("cali-node1-b", "10.2.36.69"),
        ],
    },
    Node {
        host: Host {
            name: "k8s-node2",
            ip: "192.168.33.57",
            block: "10.2.169.128/26",
            tunnel: "10.2.169.129",
        },
        short: "2",
        pods: [
            ("cali-node2-a", "10.2.169.138"),
            ("cali-node2-b", "10.2.169.139"),
        ],
    },
];

/// The address of the receiving pod of the benchmarks (k8s-node2's first).
pub(crate) const POD2: &str = NODES[2].pods[0].1;

/// The cluster file for `mode`.
pub fn cluster_yaml(mode: Mode) -> String {
    cluster_of(mode, NODES.len())
}

/// The most pod pairs `podwire bench --pods` makes (Kubernetes' default
/// of 110 pods a node).
pub const MAX_PAIRS: usize = 110;

/// The blocks of the extra pods of k8s-node1 (`node` 1) or k8s-node2 (2)
/// for `podwire bench --pods`: two /26 blocks of their own each.
pub(crate) fn extra_blocks(node: usize) -> [String; 2] {
    let third = 39 + node;
    [format!("10.2.{third}.0/26"), format!("10.2.{third}.64/26")]
}

/// Extra pod `k` (1 ≤ k < [`MAX_PAIRS`]) of k8s-node1 or k8s-node2: its
/// interface and address (62 a block, from the block's second address).
pub(crate) fn extra_pod(node: usize, k: usize) -> (String, String) {
    let j = k - 1;
    let last = (j / 62) * 64 + j % 62 + 1;
    (
        format!("calix{node}x{k}"),
        format!("10.2.{}.{last}", 39 + node),
    )
}

/// [`cluster_yaml`] with `pairs - 1` more pods on k8s-node1 and as many on
/// k8s-node2, in the blocks of [`extra_blocks`].
pub fn cluster_with_pairs(mode: Mode, pairs: usize) -> String {
    let comment = format!("podwire bench, {} mode, {pairs} pod pairs", mode.name());
    let mut c = nodes_with_pods(mode, NODES.len(), &comment);
    for node in [1, 2] {
        let name = NODES[node].host.name;
        for block in extra_blocks(node) {
            c = c.with(Block::new(&block).host(name));
        }
        for k in 1..pairs.min(MAX_PAIRS) {
            let (iface, ip) = extra_pod(node, k);
            c = c.with(Endpoint::new(name, &iface, &ip));
        }
    }
    c.yaml()
}

/// Makes the extra pods of [`cluster_with_pairs`] (the daemons made their
/// devices) on k8s-node1 and k8s-node2; returns pairs of pods (node 1's,
/// node 2's, node 2's address).
pub(crate) fn make_extra_pods(
    w: &mut Harness,
    nodes: &[String],
    pairs: usize,
) -> Result<Vec<(String, String, String)>, Error> {
    let mut out = Vec::new();
    for k in 1..pairs.min(MAX_PAIRS) {
        let (i1, ip1) = extra_pod(1, k);
        let (i2, ip2) = extra_pod(2, k);
        let a = w.pod(&format!("q1-{k}"), &nodes[1], &i1, &ip1)?;
        let b = w.pod(&format!("q2-{k}"), &nodes[2], &i2, &ip2)?;
        out.push((a, b, ip2));
    }
    Ok(out)
}

/// The cluster of the first `nodes` of [`NODES`], with their pods.
pub(crate) fn cluster_of(mode: Mode, nodes: usize) -> String {
    nodes_with_pods(mode, nodes, &format!("podwire lab, {} mode", mode.name())).yaml()
}

/// The pool (headed by `comment`) and the first `nodes` of [`NODES`] with
/// their pods.
fn nodes_with_pods(mode: Mode, nodes: usize, comment: &str) -> ClusterBuilder {
    let mut c = with_pool(mode, comment);
    for n in &NODES[..nodes] {
        let h = n.host;
        c = c.calico_node(h.name, &h.cidr(), h.block);
        for (iface, ip) in &n.pods {
            c = c.with(Endpoint::new(h.name, iface, ip));
        }
    }
    c
}

/// A cluster of the lab's pool alone (10.2.0.0/16, blocks of /26, the
/// mode's overlay, natOutgoing), headed by `comment`.
fn with_pool(mode: Mode, comment: &str) -> ClusterBuilder {
    ClusterBuilder::new().comment(comment).with(
        Pool::new("default-ipv4-ippool", "10.2.0.0/16")
            .block_size(26)
            .overlay(mode.name())
            .nat_outgoing(true),
    )
}

/// The Nodes and blocks of [`NODES`]`[i]` for each `i` of `which`, with the
/// pool and no endpoint: what the lab on etcd imports, its pods being
/// made by `podwire-cni` (which writes their WorkloadEndpoints).
pub(crate) fn nodes_yaml(mode: Mode, which: &[usize]) -> String {
    let mut c = with_pool(
        mode,
        &format!("podwire lab, {} mode, nodes only", mode.name()),
    );
    for &i in which {
        let h = NODES[i].host;
        c = c.calico_node(h.name, &h.cidr(), h.block);
    }
    c.yaml()
}

/// The pods of the nodes `which`, made as a container runtime makes them:
/// a network namespace each, then `podwire-cni` ADD run in the node's
/// namespace against its daemon (`controls[i]`) and the datastore at
/// `endpoints`, asking for the pod's address with `IP=` (calico-ipam's
/// convention) so that the lab's addresses stay those of [`NODES`].
/// Returns the pods and one line per ADD.
pub(crate) fn cni_pods(
    w: &mut Harness,
    cni: &Path,
    endpoints: &str,
    nodes: &[String],
    controls: &[(usize, PathBuf)],
) -> Result<(Vec<Pod>, Vec<String>), Error> {
    let (mut pods, mut lines) = (Vec::new(), Vec::new());
    for (i, control) in controls {
        let (n, ns) = (&NODES[*i], &nodes[*i]);
        let conf = w.file(
            &format!("cni-{}.conf", n.host.name),
            &serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "k8s-pod-network",
                "type": "podwire-cni",
                "nodename": n.host.name,
                "datastore_type": "etcdv3",
                "etcd_endpoints": endpoints,
                "podwire_control": control,
                "ipam": { "type": "podwire-ipam" },
            })
            .to_string(),
        )?;
        for (k, (_, ip)) in n.pods.iter().enumerate() {
            let short = format!("p{}{}", n.short, ["a", "b"][k]);
            let pod_ns = w.netns(&short)?;
            let pod = format!("pod-{}{}", n.short, ["a", "b"][k]);
            let script = format!(
                "CNI_COMMAND=ADD CNI_CONTAINERID=lab-{short} CNI_NETNS=/var/run/netns/{pod_ns}                  CNI_IFNAME=eth0 CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};IP={ip}'                  CNI_PATH={} exec {} < {}",
                cni.parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                cni.display(),
                conf.display()
            );
            let out = w.exec(ns, &["sh", "-c", &script])?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !out.status.success() {
                return Err(err(format!(
                    "podwire-cni ADD of {pod} on {}: {text}",
                    n.host.name
                )));
            }
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| err(format!("podwire-cni ADD of {pod}: {e}: {text}")))?;
            lines.push(format!(
                "podwire-cni ADD default/{pod} on {}: {} as {} in {}, default via {}",
                n.host.name,
                v["ips"][0]["address"].as_str().unwrap_or("?"),
                v["interfaces"][0]["name"].as_str().unwrap_or("?"),
                v["interfaces"][0]["sandbox"].as_str().unwrap_or("?"),
                v["routes"][0]["gw"].as_str().unwrap_or("?"),
            ));
            pods.push((pod_ns, *ip));
        }
    }
    Ok((pods, lines))
}

/// The "internet": a host beyond the underlay's router that knows the
/// nodes' subnet but no pod address, so that only a masqueraded packet
/// from a pod is answered.
pub(crate) const INTERNET: &str = "203.0.113.10";

/// The underlay: a bridge in its own namespace, one node per NODES entry
/// attached to it (default route via the router), the router (namespace
/// `rt`, [`GATEWAY`](crate::kernel::GATEWAY) on the underlay) and the
/// internet host beyond it (namespace `inet`, [`INTERNET`]); returns the
/// bridge's namespace and the nodes'.
pub(crate) fn underlay(w: &mut Harness) -> Result<(String, Vec<String>), Error> {
    let sw = w.netns("sw")?;
    w.bridge(&sw, "br0")?;
    let rt = w.netns("rt")?;
    w.attach(
        &sw,
        "br0",
        &rt,
        "eth0",
        &format!("{}/24", crate::kernel::GATEWAY),
    )?;
    let inet = w.netns("inet")?;
    w.ip(
        &rt,
        &[
            "link", "add", "ethi", "type", "veth", "peer", "name", "eth0", "netns", &inet,
        ],
    )?;
    w.ip(&rt, &["addr", "add", "203.0.113.1/24", "dev", "ethi"])?;
    w.ip(&rt, &["link", "set", "ethi", "up"])?;
    w.ip(
        &inet,
        &["addr", "add", &format!("{INTERNET}/24"), "dev", "eth0"],
    )?;
    w.ip(&inet, &["link", "set", "eth0", "up"])?;
    w.ip(
        &inet,
        &["route", "add", "192.168.33.0/24", "via", "203.0.113.1"],
    )?;
    w.sysctl(&rt, "net.ipv4.ip_forward=1")?;
    let mut nodes = Vec::new();
    for n in &NODES {
        let ns = w.netns(&format!("n{}", n.short))?;
        w.attach(&sw, "br0", &ns, "eth0", &n.host.cidr())?;
        w.ip(
            &ns,
            &["route", "replace", "default", "via", crate::kernel::GATEWAY],
        )?;
        nodes.push(ns);
    }
    Ok((sw, nodes))
}

/// A pod: its namespace and its address.
pub(crate) type Pod = (String, &'static str);

/// Where the daemons read the cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// `--config FILE`.
    File(&'a Path),
    /// `--datastore etcdv3 --etcd-endpoints URLS`.
    Etcd(&'a str),
}

/// Starts podwire on every node of `nodes` (from [`underlay`]) with
/// `config`, waits for the daemons, and makes the pods; returns the
/// control sockets and the pods (namespace, address), two per node.
pub(crate) fn podwire_cluster(
    w: &mut Harness,
    exe: &str,
    config: &str,
    mode: Mode,
    nodes: &[String],
    threads: usize,
    flags: &[&str],
) -> Result<(Vec<PathBuf>, Vec<Pod>), Error> {
    let config = PathBuf::from(config);
    let all: Vec<usize> = (0..NODES.len()).collect();
    let source = Source::File(&config);
    let threads = threads.max(1).to_string();
    let mut args = vec!["--threads", &threads];
    args.extend(flags);
    let controls = start_nodes(w, exe, source, mode, nodes, &all, &args)?;
    let pods = make_pods(w, nodes, &all)?;
    Ok((controls, pods))
}

/// Starts podwire on the nodes `which` (indexes of [`NODES`] and `nodes`)
/// with `flags` (and the host path), and waits until each answers; returns
/// their control sockets.
pub(crate) fn start_nodes(
    w: &mut Harness,
    exe: &str,
    source: Source,
    mode: Mode,
    nodes: &[String],
    which: &[usize],
    flags: &[&str],
) -> Result<Vec<PathBuf>, Error> {
    let mut controls = Vec::new();
    for &i in which {
        let (n, ns) = (&NODES[i], &nodes[i]);
        let control = w.dir.join(format!("{}-{}.sock", mode.name(), n.host.name));
        let log = w
            .dir
            .join(format!("lab-{}-{}.log", mode.name(), n.host.name));
        // Each node's own traffic, natOutgoing and Services through the
        // host path, as on a real node.
        let mut extra = vec!["--host-interface", "podwire0"];
        extra.extend(flags);
        let config = match source {
            Source::File(path) => Some(path),
            Source::Etcd(endpoints) => {
                extra.extend(["--datastore", "etcdv3", "--etcd-endpoints", endpoints]);
                None
            }
        };
        let daemon = Daemon {
            exe,
            config,
            node: n.host.name,
            control: &control,
            log: &log,
            wrapper: &[],
            extra: &extra,
            env: &[],
        };
        w.start_podwire(&format!("podwire-{}", n.host.name), ns, &daemon)?;
        controls.push(control);
    }
    for (&i, c) in which.iter().zip(&controls) {
        let n = &NODES[i];
        match w.wait_podwire(
            &format!("podwire-{}", n.host.name),
            c,
            Duration::from_secs(10),
        ) {
            Err(Error::Failed(_)) => {
                return Err(err(format!(
                    "a podwire daemon did not start; see the logs in {}",
                    w.dir.display()
                )));
            }
            other => other?,
        }
    }
    Ok(controls)
}

/// Makes the two pods of each node of `which`; returns them in order.
pub(crate) fn make_pods(
    w: &mut Harness,
    nodes: &[String],
    which: &[usize],
) -> Result<Vec<Pod>, Error> {
    let mut pods = Vec::new();
    for &i in which {
        let (n, ns) = (&NODES[i], &nodes[i]);
        for (k, (iface, ip)) in n.pods.iter().enumerate() {
            let short = format!("p{}{}", n.short, ["a", "b"][k]);
            pods.push((w.pod(&short, ns, iface, ip)?, *ip));
        }
    }
    Ok(pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_pods_fill_their_blocks_and_compile() {
        assert_eq!(extra_pod(1, 1), ("calix1x1".into(), "10.2.40.1".into()));
        assert_eq!(extra_pod(2, 62).1, "10.2.41.62");
        assert_eq!(extra_pod(2, 63).1, "10.2.41.65");
        // k = 109: the second block's 47th (.65 is its first, k = 63).
        assert_eq!(extra_pod(1, MAX_PAIRS - 1).1, "10.2.40.111");
        assert!(extra_pod(1, MAX_PAIRS - 1).0.len() <= 15);
        for mode in Mode::ALL {
            let r = podwire::config::parse(&cluster_with_pairs(mode, MAX_PAIRS)).unwrap();
            assert_eq!(r.endpoints.len(), 6 + 2 * (MAX_PAIRS - 1));
            let u = podwire::table::Underlay {
                name: "eth0".into(),
                mtu: 1500,
            };
            // Each node routes the other's extra blocks as its first one.
            let t = podwire::table::compile(&r, "k8s-node1", &u).unwrap();
            for block in extra_blocks(2) {
                assert!(
                    t.routes_text().contains(&format!("{block} via")),
                    "{mode:?}"
                );
            }
            let t = podwire::table::compile(&r, "k8s-node2", &u).unwrap();
            for block in extra_blocks(1) {
                assert!(
                    t.routes_text().contains(&format!("{block} via")),
                    "{mode:?}"
                );
            }
        }
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
