//! `podwire-ipam` driven as a container runtime drives a CNI IPAM plugin
//! (`CNI_*` in the environment, the network configuration on stdin),
//! against a real etcd (3.4, started here in a namespace of its own):
//! 20 concurrent ADDs on one node, then 10 on each of two nodes at once —
//! every address distinct and inside a block affine to its node, in
//! Calico's layout —, DEL twice, VERSION, and a CNI error when the
//! datastore does not answer.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use podwire_lab::etcd;
use podwire_lab::netns::{self, Harness};
use serde_json::Value;

const IPAM: &str = env!("CARGO_BIN_EXE_podwire-ipam");
const POOL: &str = "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool";

fn root_or_skip(test: &str) -> bool {
    if netns::is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces, etcd in one); CI runs it as root");
    false
}

fn conf(w: &Harness, node: &str, endpoints: &str) -> PathBuf {
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"podwire-cni","nodename":"{node}","datastore_type":"etcdv3","etcd_endpoints":"{endpoints}","ipam":{{"type":"podwire-ipam"}}}}"#
    );
    w.file(&format!("{node}.conf"), &text).unwrap()
}

/// Starts the plugin with `command` for container `id` in namespace `ns`.
fn call(ns: &str, command: &str, id: &str, conf: &Path) -> Child {
    call_args(ns, command, id, conf, "")
}

/// As [`call`], with `extra` appended to `CNI_ARGS` (`;IP=…`).
fn call_args(ns: &str, command: &str, id: &str, conf: &Path, extra: &str) -> Child {
    let script = format!(
        "CNI_COMMAND={command} CNI_CONTAINERID={id} CNI_NETNS=/var/run/netns/{id} CNI_IFNAME=eth0 \
         CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={id}{extra}' CNI_PATH=/opt/cni/bin \
         exec {IPAM} < {}",
        conf.display()
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for every call; returns each one's exit success and stdout.
fn finish(children: Vec<Child>) -> Vec<(bool, String)> {
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        })
        .collect()
}

/// The address an ADD's result gives.
fn address(out: &(bool, String)) -> Ipv4Addr {
    assert!(out.0, "ADD failed: {}", out.1);
    let v: Value = serde_json::from_str(&out.1).unwrap();
    let a = v["ips"][0]["address"].as_str().unwrap();
    let (ip, len) = a.split_once('/').unwrap();
    assert_eq!(len, "32", "{a}");
    ip.parse().unwrap()
}

/// The blocks affine to `node`, from their affinity keys.
fn affine(w: &Harness, ns: &str, endpoints: &str, node: &str) -> Vec<ipnet::Net> {
    let keys = etcd::ctl(
        w,
        ns,
        endpoints,
        &[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/calico/ipam/v2/host/{node}/ipv4/block/"),
        ],
    )
    .unwrap();
    keys.lines()
        .filter_map(|k| k.rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (a, len) = s.rsplit_once('-').unwrap();
            ipnet::Net {
                base: u32::from(a.parse::<Ipv4Addr>().unwrap()),
                len: len.parse().unwrap(),
            }
        })
        .collect()
}

mod ipnet {
    /// A block, without a CIDR crate.
    #[derive(Debug, Clone, Copy)]
    pub struct Net {
        pub base: u32,
        pub len: u32,
    }

    impl Net {
        pub fn contains(&self, a: std::net::Ipv4Addr) -> bool {
            let mask = if self.len == 0 {
                0
            } else {
                u32::MAX << (32 - self.len)
            };
            u32::from(a) & mask == self.base
        }
    }
}

#[test]
fn concurrent_adds_never_share_an_address_and_del_releases() {
    if !root_or_skip("concurrent_adds_never_share_an_address_and_del_releases") {
        return;
    }
    let lock = netns::lock(Path::new(netns::TEST_LOCK)).unwrap();
    let prefix = format!("pwipam{:x}", std::process::id() & 0xffff);
    let mut w = Harness::temporary(prefix).unwrap().holding(lock);
    let ns = w.netns("etcd").unwrap();
    let m = etcd::cluster(&mut w, &[(&ns, "127.0.0.1")])
        .unwrap()
        .remove(0);
    let eps = m.url.clone();
    etcd::ctl(
        &w,
        &ns,
        &eps,
        &[
            "put",
            POOL,
            r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool"},"spec":{"cidr":"10.2.0.0/16","blockSize":26,"vxlanMode":"Always","natOutgoing":true}}"#,
        ],
    )
    .unwrap();
    let c1 = conf(&w, "k8s-node1", &eps);
    let c2 = conf(&w, "k8s-node2", &eps);

    // 20 ADDs at once on one node.
    let first = finish(
        (0..20)
            .map(|i| call(&ns, "ADD", &format!("a{i:02}"), &c1))
            .collect(),
    );
    let mut seen = BTreeSet::new();
    let node1 = affine(&w, &ns, &eps, "k8s-node1");
    assert!(!node1.is_empty(), "no block claimed for k8s-node1");
    for out in &first {
        let a = address(out);
        assert!(seen.insert(a), "{a} handed out twice");
        assert!(node1.iter().any(|b| b.contains(a)), "{a} outside {node1:?}");
    }
    // 10 on each of two nodes at once.
    let mut children = Vec::new();
    for i in 0..10 {
        children.push(call(&ns, "ADD", &format!("b{i:02}"), &c1));
        children.push(call(&ns, "ADD", &format!("c{i:02}"), &c2));
    }
    let second = finish(children);
    let node1 = affine(&w, &ns, &eps, "k8s-node1");
    let node2 = affine(&w, &ns, &eps, "k8s-node2");
    assert!(!node2.is_empty(), "no block claimed for k8s-node2");
    for (i, out) in second.iter().enumerate() {
        let a = address(out);
        assert!(seen.insert(a), "{a} handed out twice");
        let blocks = if i % 2 == 0 { &node1 } else { &node2 };
        assert!(
            blocks.iter().any(|b| b.contains(a)),
            "{a} outside {blocks:?}"
        );
    }
    assert_eq!(seen.len(), 40);
    // Calico's layout: the handle names the block and the count.
    let h = etcd::ctl(
        &w,
        &ns,
        &eps,
        &[
            "get",
            "--print-value-only",
            "/calico/ipam/v2/handle/k8s-pod-network.a00",
        ],
    )
    .unwrap();
    let h: Value = serde_json::from_str(h.trim()).unwrap();
    assert_eq!(h["handleID"], "k8s-pod-network.a00");
    assert_eq!(h["block"].as_object().map(|b| b.len()), Some(1), "{h}");

    // DEL, twice: both succeed, the handle goes, the address is free.
    for _ in 0..2 {
        let out = finish(vec![call(&ns, "DEL", "a00", &c1)]);
        assert_eq!(out[0], (true, String::new()));
    }
    let gone = etcd::ctl(
        &w,
        &ns,
        &eps,
        &[
            "get",
            "--keys-only",
            "/calico/ipam/v2/handle/k8s-pod-network.a00",
        ],
    )
    .unwrap();
    assert!(gone.trim().is_empty(), "{gone}");
    let check = finish(vec![
        call(&ns, "CHECK", "a00", &c1),
        call(&ns, "CHECK", "a01", &c1),
    ]);
    assert!(
        !check[0].0 && check[0].1.contains("holds no address"),
        "{check:?}"
    );
    assert!(check[1].0, "{check:?}");

    // VERSION, and a datastore that does not answer.
    let v = finish(vec![call(&ns, "VERSION", "x", &c1)]);
    let v: Value = serde_json::from_str(&v[0].1).unwrap();
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "1.1.0"),
        "{v}"
    );
    // An address asked for (`IP=`, calico-ipam's convention): in a block
    // nobody had (claimed for the node), taken once; a second pod asking
    // for it is refused with the reason, until the first is deleted.
    let out = finish(vec![call_args(&ns, "ADD", "s00", &c1, ";IP=10.2.200.5")]);
    assert_eq!(address(&out[0]), Ipv4Addr::new(10, 2, 200, 5));
    assert!(
        affine(&w, &ns, &eps, "k8s-node1")
            .iter()
            .any(|b| b.len == 26 && b.contains(Ipv4Addr::new(10, 2, 200, 0))),
        "the asked-for address's block was not claimed for its node"
    );
    let out = finish(vec![call_args(&ns, "ADD", "s01", &c2, ";IP=10.2.200.5")]);
    assert!(!out[0].0 && out[0].1.contains("not free"), "{out:?}");
    let out = finish(vec![call_args(&ns, "ADD", "s02", &c1, ";IP=192.0.2.1")]);
    assert!(!out[0].0 && out[0].1.contains("in no enabled"), "{out:?}");
    assert!(finish(vec![call(&ns, "DEL", "s00", &c1)])[0].0);
    let out = finish(vec![call_args(&ns, "ADD", "s01", &c2, ";IP=10.2.200.5")]);
    assert_eq!(address(&out[0]), Ipv4Addr::new(10, 2, 200, 5));

    let dead = conf(&w, "k8s-node3", "http://127.0.0.1:1");
    let out = finish(vec![call(&ns, "ADD", "d00", &dead)]);
    assert!(!out[0].0, "{out:?}");
    let e: Value = serde_json::from_str(&out[0].1).unwrap();
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("did not answer"), "{e}");
}
