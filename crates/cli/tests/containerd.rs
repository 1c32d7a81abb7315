//! Pods made by a real container runtime: Debian's containerd (CRI plugin)
//! and runc on two podwire nodes whose datastore holds only a pool. Each
//! node's containerd runs in the node's network namespace with
//! `podwire-cni` as its CNI plugin; the test is kubelet, speaking CRI v1:
//! `RunPodSandbox` on each node (containerd makes the pod's namespace and
//! calls ADD with `K8S_POD_*` in `CNI_ARGS`), pods ping across nodes and
//! within a node, then `StopPodSandbox` + `RemovePodSandbox` (containerd's
//! DELs) leave no device, endpoint or allocation.

mod common;
#[path = "common/cri.rs"]
mod cri;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::etcd::{self, ctl};
use common::{Lab, NODES, PODWIRE, ping, root_or_skip, testbed};
use cri::{Cri, Sandbox};
use podwire_lab::netns::Io;

const CONTAINERD: &str = "/usr/bin/containerd";
/// containerd's CRI plugin calls the `loopback` plugin for the pod's `lo`.
const LOOPBACK: &str = "/usr/lib/cni/loopback";
const PAUSE: &str = "podwire.test/pause:1";

fn bin(name: &str) -> PathBuf {
    Path::new(PODWIRE).with_file_name(name)
}

/// One node's containerd: its directories, configuration and socket.
struct Runtime {
    socket: PathBuf,
}

/// Starts containerd in node namespace `ns` (entered with `nsenter --net=`
/// only), with `podwire-cni` configured for `node`, and imports the pause
/// image `image` into its `k8s.io` namespace.
fn containerd(lab: &mut Lab, ns: &str, node: &str, cni_conf: &str, image: &Path) -> Runtime {
    let dir = lab.dir.join(format!("containerd-{node}"));
    let (bin_dir, conf_dir) = (dir.join("bin"), dir.join("net.d"));
    for d in [&bin_dir, &conf_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (link, target) in [
        ("podwire-cni", bin("podwire-cni")),
        ("podwire-ipam", bin("podwire-ipam")),
        ("loopback", PathBuf::from(LOOPBACK)),
    ] {
        std::os::unix::fs::symlink(&target, bin_dir.join(link)).unwrap();
    }
    std::fs::write(conf_dir.join("10-podwire.conflist"), cni_conf).unwrap();
    let socket = dir.join("containerd.sock");
    let d = dir.display();
    // The snapshotters this kernel lacks are left out; the sandbox lacks
    // CAP_SYS_RESOURCE, hence restrict_oom_score_adj.
    let config = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.ttrpc.sock"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/bin"
    conf_dir = "{d}/net.d"
"#
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = lab.dir.join(format!("containerd-{node}.log"));
    let tag = format!("containerd-{node}");
    let cfg = config_path.display().to_string();
    common::ok(lab.spawn_net(
        &tag,
        ns,
        &[CONTAINERD, "--config", &cfg],
        Io::Log(log.clone()),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd on {node} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sock = socket.display().to_string();
    let img = image.display().to_string();
    let out = common::must(
        "ctr",
        &["--address", &sock, "-n", "k8s.io", "images", "import", &img],
    );
    assert!(out.contains(PAUSE), "{out}");
    Runtime { socket }
}

/// Sandboxes a test ran, stopped and removed when it ends however it ends
/// (declared after the lab: dropped before containerd is stopped).
struct Pods<'a> {
    runtimes: Vec<&'a mut Cri>,
    ran: Vec<(usize, String)>,
}

impl Drop for Pods<'_> {
    fn drop(&mut self) {
        for (r, id) in std::mem::take(&mut self.ran) {
            let _ = self.runtimes[r].stop_pod(&id);
            let _ = self.runtimes[r].remove_pod(&id);
        }
    }
}

fn wait_ping(lab: &Lab, from: &str, to: &str) {
    common::wait_reachable(lab, from, to, String::new);
    ping(lab, from, to, 3);
}

/// The namespace's name under /var/run/netns, for `ip netns exec`.
fn netns_name(s: &Sandbox) -> String {
    s.netns.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn containerd_pods_ping_across_and_within_nodes_and_removal_leaves_nothing() {
    if !root_or_skip("containerd_pods_ping_across_and_within_nodes_and_removal_leaves_nothing") {
        return;
    }
    for f in [CONTAINERD, LOOPBACK, "/usr/bin/runc", "/bin/busybox"] {
        assert!(
            Path::new(f).exists(),
            "{f}: install containerd, runc, containernetworking-plugins and busybox-static"
        );
    }
    let mut t = testbed("vxlan", &[], &["n1", "n2"]);
    let (ens, m, controls) = etcd::pool_only_cluster(&mut t);
    let nodes = t.nodes.clone();
    let image = t.lab.dir.join("pause.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pause-image.sh");
    common::must(script.to_str().unwrap(), &[image.to_str().unwrap(), PAUSE]);
    let mut runtimes = Vec::new();
    for ((ns, host), control) in nodes.iter().zip(&NODES).zip(&controls) {
        // A conflist, as containerd reads from its conf_dir.
        let mut plugin = etcd::cni_conf(host.name, &m.url, control);
        let list = serde_json::json!({
            "cniVersion": plugin["cniVersion"].take(),
            "name": plugin["name"].take(),
            "plugins": [plugin],
        });
        runtimes.push(containerd(
            &mut t.lab,
            ns,
            host.name,
            &list.to_string(),
            &image,
        ));
    }
    let mut clients: Vec<Cri> = runtimes
        .iter()
        .map(|r| Cri::connect(&r.socket).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut pods = Pods {
        runtimes: clients.iter_mut().collect(),
        ran: Vec::new(),
    };

    // Two pods on node 1, one on node 2, as kubelet asks for them.
    let mut sandboxes: Vec<(usize, Sandbox, &str)> = Vec::new();
    for (node, name) in [(0, "web-0"), (0, "web-1"), (1, "web-2")] {
        let log = |t: &common::Testbed| {
            format!(
                "{}\n{}",
                t.lab.log(NODES[node].name),
                std::fs::read_to_string(
                    t.lab
                        .dir
                        .join(format!("containerd-{}.log", NODES[node].name))
                )
                .unwrap_or_default()
            )
        };
        let id = pods.runtimes[node]
            .run_pod("default", name, &format!("uid-{name}"))
            .unwrap_or_else(|e| panic!("{e}\n{}", log(&t)));
        pods.ran.push((node, id.clone()));
        let s = pods.runtimes[node].status(&id).unwrap();
        assert!(s.ready, "{name}: {s:?}");
        assert!(s.ip.starts_with("10.2."), "{name}: {s:?}");
        // The pod's eth0 is podwire's device, with Calico's routes.
        let ns = netns_name(&s);
        let routes = t.lab.ip(&ns, &["-4", "route", "show"]);
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0")
                && routes.contains("169.254.1.1 dev eth0 scope link"),
            "{name}: {routes}"
        );
        let link = t.lab.ip(&ns, &["-d", "link", "show", "eth0"]);
        assert!(link.contains("tun"), "{name}: {link}");
        sandboxes.push((node, s, name));
    }
    let ns: Vec<String> = sandboxes.iter().map(|(_, s, _)| netns_name(s)).collect();
    let ip: Vec<String> = sandboxes.iter().map(|(_, s, _)| s.ip.clone()).collect();
    // Across nodes (VXLAN, through each other's block) and within node 1.
    wait_ping(&t.lab, &ns[0], &ip[2]);
    wait_ping(&t.lab, &ns[2], &ip[1]);
    wait_ping(&t.lab, &ns[0], &ip[1]);

    // What containerd's ADDs wrote: the WorkloadEndpoint in Calico's
    // layout, with the sandbox's id as the container, and the allocation's
    // handle.
    let wep_key = |name: &str, node: usize| {
        format!(
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/{}-k8s-{}-eth0",
            NODES[node].name.replace('-', "--"),
            name.replace('-', "--")
        )
    };
    for (node, s, name) in &sandboxes {
        let key = wep_key(name, *node);
        let wep = ctl(&t.lab, &ens, &m.url, &["get", "--print-value-only", &key]);
        let wep: serde_json::Value =
            serde_json::from_str(wep.trim()).unwrap_or_else(|e| panic!("{key}: {e}: {wep:?}"));
        assert_eq!(wep["spec"]["containerID"], s.id.as_str(), "{wep}");
        assert_eq!(
            wep["spec"]["ipNetworks"][0],
            format!("{}/32", s.ip),
            "{wep}"
        );
        assert_eq!(wep["spec"]["pod"], *name, "{wep}");
        let handle = format!("/calico/ipam/v2/handle/k8s-pod-network.{}", s.id);
        let got = ctl(&t.lab, &ens, &m.url, &["get", "--keys-only", &handle]);
        assert_eq!(got.trim(), handle, "{name}: no allocation handle");
    }

    // Removal, as kubelet does it: stop, then remove.
    for (node, s, name) in &sandboxes {
        pods.runtimes[*node].stop_pod(&s.id).unwrap();
        pods.runtimes[*node].remove_pod(&s.id).unwrap();
        pods.ran.retain(|(_, id)| *id != s.id);
        let key = wep_key(name, *node);
        let gone = ctl(&t.lab, &ens, &m.url, &["get", "--keys-only", &key]);
        assert!(gone.trim().is_empty(), "{name}: {gone}");
        let handle = format!("/calico/ipam/v2/handle/k8s-pod-network.{}", s.id);
        let gone = ctl(&t.lab, &ens, &m.url, &["get", "--keys-only", &handle]);
        assert!(gone.trim().is_empty(), "{name}: {gone}");
        assert!(!s.netns.exists(), "{name}: {} left", s.netns.display());
    }
    // The daemons hold no endpoint any more (the devices went with them),
    // and the blocks no allocation but the nodes' tunnel addresses.
    for (i, control) in controls.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let eps = t.lab.show(control, "endpoints", false);
            if !eps.contains("cali") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: endpoints left: {eps}",
                NODES[i].name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for h in etcd::keys(&t.lab, &ens, &m.url, etcd::HANDLES) {
        assert!(h.contains("-tunnel-addr-"), "left allocated: {h}");
    }
    drop(pods);
}
