//! `podwire-cni` driven as a container runtime drives a CNI plugin
//! (`CNI_*` in the environment, the network configuration on stdin), on
//! two podwire nodes whose datastore held only a pool: ADD on each node
//! makes the pod's `eth0` inside its namespace (through the daemon),
//! writes the WorkloadEndpoint, and the pods ping across nodes; DEL twice
//! leaves nothing (device, endpoint, allocation).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::etcd::{self, ctl};
use common::{Lab, NODES, PODWIRE, ping, root_or_skip, testbed, wait_reachable};
use serde_json::Value;

fn plugin() -> PathBuf {
    Path::new(PODWIRE).with_file_name("podwire-cni")
}

/// Runs the plugin in node namespace `node_ns` with `command` for pod
/// `pod` (container id `pod`, namespace `netns`); returns success and stdout.
fn cni(
    lab: &Lab,
    node_ns: &str,
    command: &str,
    pod: &str,
    netns: &str,
    conf: &Path,
) -> (bool, String) {
    let script = format!(
        "CNI_COMMAND={command} CNI_CONTAINERID={pod} CNI_NETNS={netns} CNI_IFNAME=eth0 \
         CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}' CNI_PATH={} \
         exec {} < {}",
        plugin().parent().unwrap().display(),
        plugin().display(),
        conf.display()
    );
    let out = lab.exec(node_ns, &["sh", "-c", &script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn cni_add_makes_pods_that_ping_across_nodes_and_del_leaves_nothing() {
    if !root_or_skip("cni_add_makes_pods_that_ping_across_nodes_and_del_leaves_nothing") {
        return;
    }
    assert!(plugin().is_file(), "{} not built", plugin().display());
    let mut t = testbed("vxlan", &[], &["n1", "n2"]);
    let (ens, m, mut controls) = etcd::pool_only_cluster(&mut t);
    let nodes = t.nodes.clone();
    let mut pods = Vec::new();
    let mut results = Vec::new();
    for (i, host) in NODES[..2].iter().enumerate() {
        let conf = t.lab.file(
            &format!("{}.conflist", host.name),
            &etcd::cni_conf(host.name, &m.url, &controls[i]).to_string(),
        );
        let pod = format!("web-{i}");
        let netns = t.lab.netns(&format!("pod{i}"));
        let path = format!("/var/run/netns/{netns}");
        let (ok, out) = cni(&t.lab, &nodes[i], "ADD", &pod, &path, &conf);
        assert!(ok, "ADD on {}: {out}\n{}", host.name, t.lab.log(host.name));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["interfaces"][0]["name"], "eth0", "{v}");
        assert_eq!(v["interfaces"][0]["sandbox"], path, "{v}");
        assert_eq!(v["routes"][0]["gw"], "169.254.1.1", "{v}");
        let ip = v["ips"][0]["address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/32")
            .to_string();
        // The device is in the pod, with its 4096-packet rings and no
        // qdisc (a multi-queue TUN's default one would hold 25 MB of kernel
        // memory at that length, and make every ADD slower).
        let link = t.lab.ip(&netns, &["link", "show", "eth0"]);
        assert!(
            link.contains("qdisc noqueue") && link.contains("qlen 4096"),
            "{link}"
        );
        // The device is in the pod, with Calico's routes.
        let routes = t.lab.ip(&netns, &["-4", "route", "show"]);
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0")
                && routes.contains("169.254.1.1 dev eth0 scope link"),
            "{routes}"
        );
        pods.push((netns, ip, conf, path, pod));
        results.push(v);
    }
    // Across nodes, once each node has the other's endpoint.
    wait_reachable(&t.lab, &pods[0].0, &pods[1].1, || {
        "the pods never reached each other".into()
    });
    ping(&t.lab, &pods[0].0, &pods[1].1, 3);
    ping(&t.lab, &pods[1].0, &pods[0].1, 3);

    // CHECK against the ADD's result as prevResult: as made, it passes; an
    // address the device lacks, or a route taken away, fails with a message.
    {
        let (netns, _, conf, path, pod) = &pods[0];
        let with_prev = |name: &str, prev: &Value| {
            with_fields(&t.lab, conf, name, &[("prevResult", prev.clone())])
        };
        let good = with_prev("check.conf", &results[0]);
        assert_eq!(
            cni(&t.lab, &nodes[0], "CHECK", pod, path, &good),
            (true, String::new())
        );
        let mut other = results[0].clone();
        other["ips"][0]["address"] = "10.2.99.99/32".into();
        let bad = with_prev("check-bad.conf", &other);
        let (ok, out) = cni(&t.lab, &nodes[0], "CHECK", pod, path, &bad);
        assert!(!ok && out.contains("lacks 10.2.99.99/32"), "{out}");
        t.lab.ip(netns, &["route", "del", "default"]);
        let (ok, out) = cni(&t.lab, &nodes[0], "CHECK", pod, path, &good);
        assert!(
            !ok && out.contains("lacks the route 0.0.0.0/0 via 169.254.1.1"),
            "{out}"
        );
        t.lab.ip(
            netns,
            &[
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ],
        );
        assert_eq!(
            cni(&t.lab, &nodes[0], "CHECK", pod, path, &good),
            (true, String::new())
        );
    }

    // GC (CNI 1.1): a pod of node 1 the runtime no longer knows goes —
    // endpoint, device, allocation —; the valid one stays and still pings.
    {
        let (_, _, conf, _, pod) = &pods[0];
        let netns = t.lab.netns("stale");
        let path = format!("/var/run/netns/{netns}");
        let (ok, out) = cni(&t.lab, &nodes[0], "ADD", "stale", &path, conf);
        assert!(ok, "{out}");
        let key = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/k8s--node1-k8s-stale-eth0";
        let got = ctl(&t.lab, &ens, &m.url, &["get", "--keys-only", key]);
        assert_eq!(got.trim(), key);
        let valid = serde_json::json!([{ "containerID": pod, "ifname": "eth0" }]);
        let gc = with_fields(
            &t.lab,
            conf,
            "gc.conf",
            &[
                ("cniVersion", "1.1.0".into()),
                ("cni.dev/valid-attachments", valid),
            ],
        );
        assert_eq!(
            cni(&t.lab, &nodes[0], "GC", "", "", &gc),
            (true, String::new())
        );
        let got = ctl(&t.lab, &ens, &m.url, &["get", "--keys-only", key]);
        assert!(got.trim().is_empty(), "GC left {got}");
        let handle = ctl(
            &t.lab,
            &ens,
            &m.url,
            &[
                "get",
                "--keys-only",
                "/calico/ipam/v2/handle/k8s-pod-network.stale",
            ],
        );
        assert!(handle.trim().is_empty(), "GC left {handle}");
        wait_gone(&t.lab, &netns);
        let handle = ctl(
            &t.lab,
            &ens,
            &m.url,
            &[
                "get",
                "--keys-only",
                "/calico/ipam/v2/handle/k8s-pod-network.web-0",
            ],
        );
        assert!(
            !handle.trim().is_empty(),
            "GC released the valid pod's address"
        );
        ping(&t.lab, &pods[1].0, &pods[0].1, 1);
    }
    // The WorkloadEndpoint, in Calico's layout.
    let key = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/k8s--node1-k8s-web--0-eth0";
    let wep = ctl(&t.lab, &ens, &m.url, &["get", "--print-value-only", key]);
    let wep: Value = serde_json::from_str(wep.trim()).unwrap_or_else(|e| panic!("{e}: {wep:?}"));
    assert_eq!(wep["spec"]["ipNetworks"][0], format!("{}/32", pods[0].1));
    assert_eq!(wep["spec"]["containerID"], "web-0");
    // A daemon killed and started again re-attaches the pod it made
    // through CNI (its device in the pod's namespace, recorded in the
    // daemon's state file within a second), and the pod is reached again.
    std::thread::sleep(Duration::from_millis(1500));
    t.lab.signal(NODES[0].name, "KILL");
    assert!(!t.lab.stop(NODES[0].name).success());
    controls[0] = t.lab.podwire_etcd(&nodes[0], &m.url, NODES[0].name, &[]);
    let log = t.lab.log(NODES[0].name);
    assert!(
        log.contains("endpoint re-attached to the device a previous daemon left"),
        "{log}"
    );
    wait_reachable(&t.lab, &pods[1].0, &pods[0].1, || {
        format!(
            "the restarted node's pod never answered: {}",
            t.lab.log(NODES[0].name)
        )
    });

    // Another IPAM plugin, delegated to by the CNI convention: Debian's
    // host-local, with a range of the pool that no block of podwire-ipam's
    // covers (10.2.250.0/24). Its node routes to it (the endpoint's /32);
    // other nodes do not, as no IPAM block says where it is (a Calico
    // node's routes come from the blocks too).
    let host_local = Path::new(HOST_LOCAL);
    assert!(
        host_local.is_file(),
        "{HOST_LOCAL}: install containernetworking-plugins"
    );
    let store = t.lab.dir.join("host-local");
    let conf = t.lab.file(
        "host-local.conflist",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"podwire-cni","nodename":"k8s-node1","datastore_type":"etcdv3","etcd_endpoints":"{}","podwire_control":"{}","ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.2.250.0/24"}}]],"dataDir":"{}"}}}}"#,
            m.url,
            controls[0].display(),
            store.display()
        ),
    );
    let netns = t.lab.netns("pod9");
    let path = format!("/var/run/netns/{netns}");
    let script = |command: &str, netns: &str| {
        format!(
            "CNI_COMMAND={command} CNI_CONTAINERID=hl CNI_NETNS={netns} CNI_IFNAME=eth0 \
             CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=hl' CNI_PATH={}:{} exec {} < {}",
            host_local.parent().unwrap().display(),
            plugin().parent().unwrap().display(),
            plugin().display(),
            conf.display()
        )
    };
    let out = t.lab.exec(&nodes[0], &["sh", "-c", &script("ADD", &path)]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let ip = v["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    assert!(ip.starts_with("10.2.250."), "{v}");
    wait_reachable(&t.lab, &pods[0].0, &ip, || {
        "the host-local pod never answered".into()
    });
    // host-local's own record of the lease, then its release on DEL.
    let lease = store.join("k8s-pod-network").join(&ip);
    assert!(lease.exists(), "{}", lease.display());
    let out = t.lab.exec(&nodes[0], &["sh", "-c", &script("DEL", "")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!lease.exists(), "host-local kept {}", lease.display());
    // DEL, twice (the second as a runtime sends it: no namespace).
    let (netns, _, conf, path, pod) = &pods[0];
    assert_eq!(
        cni(&t.lab, &nodes[0], "DEL", pod, path, conf),
        (true, String::new())
    );
    assert_eq!(
        cni(&t.lab, &nodes[0], "DEL", pod, "", conf),
        (true, String::new())
    );
    let gone = ctl(&t.lab, &ens, &m.url, &["get", "--keys-only", key]);
    assert!(gone.trim().is_empty(), "{gone}");
    let handle = ctl(
        &t.lab,
        &ens,
        &m.url,
        &[
            "get",
            "--keys-only",
            "/calico/ipam/v2/handle/k8s-pod-network.web-0",
        ],
    );
    assert!(handle.trim().is_empty(), "{handle}");
    wait_gone(&t.lab, netns);
}

/// Waits until the pod's eth0 in `netns` is gone (its endpoint was).
fn wait_gone(lab: &Lab, netns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab
        .exec(netns, &["ip", "link", "show", "eth0"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the pod's device in {netns} outlived its endpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A copy of the network configuration `conf` with `fields` set, as the
/// runtime sends it for CHECK (`prevResult`) and GC.
fn with_fields(lab: &Lab, conf: &Path, name: &str, fields: &[(&str, Value)]) -> PathBuf {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(conf).unwrap()).unwrap();
    for (k, f) in fields {
        v[*k] = f.clone();
    }
    lab.file(name, &v.to_string())
}

/// Debian's containernetworking-plugins' host-local IPAM plugin.
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// ADDs `pods` (name, node index) at once, each in a namespace of its own;
/// returns each pod's namespace and address, in order.
fn add_at_once(
    t: &mut common::Testbed,
    confs: &[PathBuf],
    pods: &[(String, usize)],
) -> Vec<(String, String)> {
    let netns: Vec<String> = pods.iter().map(|(p, _)| t.lab.netns(p)).collect();
    let lab = &t.lab;
    let nodes = &t.nodes;
    let outs: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .zip(&netns)
            .map(|((pod, node), ns)| {
                let path = format!("/var/run/netns/{ns}");
                let conf = &confs[*node];
                s.spawn(move || cni(lab, &nodes[*node], "ADD", pod, &path, conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    outs.iter()
        .zip(pods)
        .zip(netns)
        .map(|(((ok, out), (pod, _)), ns)| {
            assert!(ok, "ADD {pod}: {out}");
            let v: Value = serde_json::from_str(out).unwrap();
            let ip = v["ips"][0]["address"].as_str().unwrap();
            (ns, ip.trim_end_matches("/32").to_string())
        })
        .collect()
}

#[test]
fn concurrent_cni_adds_on_one_node_and_on_two_get_distinct_addresses_and_devices() {
    if !root_or_skip(
        "concurrent_cni_adds_on_one_node_and_on_two_get_distinct_addresses_and_devices",
    ) {
        return;
    }
    let mut t = testbed("vxlan", &[], &["n1", "n2"]);
    let (ens, m, controls) = etcd::pool_only_cluster(&mut t);
    let nodes = t.nodes.clone();
    let confs: Vec<PathBuf> = NODES
        .iter()
        .zip(&controls)
        .map(|(host, control)| {
            t.lab.file(
                &format!("{}.conflist", host.name),
                &etcd::cni_conf(host.name, &m.url, control).to_string(),
            )
        })
        .collect();
    // 20 at once on node 1, then 10 on each node at once.
    let first: Vec<(String, usize)> = (0..20).map(|i| (format!("a{i}"), 0)).collect();
    let second: Vec<(String, usize)> = (0..20).map(|i| (format!("b{i}"), i % 2)).collect();
    let mut made = add_at_once(&mut t, &confs, &first);
    made.extend(add_at_once(&mut t, &confs, &second));
    let pods: Vec<(String, usize)> = first.into_iter().chain(second).collect();
    let distinct: std::collections::BTreeSet<&String> = made.iter().map(|(_, ip)| ip).collect();
    assert_eq!(
        distinct.len(),
        made.len(),
        "an address handed out twice: {made:?}"
    );
    // Every pod has its device with its address, and its endpoint.
    for ((ns, ip), (pod, _)) in made.iter().zip(&pods) {
        let addr = t.lab.ip(ns, &["-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains(&format!("{ip}/32")), "{pod}: {addr}");
    }
    let weps = etcd::keys(&t.lab, &ens, &m.url, etcd::ENDPOINTS);
    assert_eq!(weps.len(), pods.len(), "{weps:?}");
    // A pod of the first round reaches one of node 2's, and one of its own node's.
    let b1 = pods.iter().position(|(p, _)| p == "b1").unwrap();
    let b2 = pods.iter().position(|(p, _)| p == "b2").unwrap();
    wait_reachable(&t.lab, &made[0].0, &made[b1].1, || {
        "a0 never reached b1".into()
    });
    ping(&t.lab, &made[0].0, &made[b2].1, 1);
    // DEL all at once: nothing left but the nodes' tunnel addresses.
    let lab = &t.lab;
    std::thread::scope(|s| {
        for (pod, node) in &pods {
            let conf = &confs[*node];
            let ns = &nodes[*node];
            s.spawn(move || assert_eq!(cni(lab, ns, "DEL", pod, "", conf), (true, String::new())));
        }
    });
    for h in etcd::keys(&t.lab, &ens, &m.url, etcd::HANDLES) {
        assert!(h.contains("-tunnel-addr-"), "left allocated: {h}");
    }
    let weps = etcd::keys(&t.lab, &ens, &m.url, etcd::ENDPOINTS);
    assert!(weps.is_empty(), "{weps:?}");
    for (ns, _) in &made {
        wait_gone(&t.lab, ns);
    }
}
