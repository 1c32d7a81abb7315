//! CrossSubnet, end to end: nodes in two subnets joined by a router
//! namespace. Pool 10.2.0.0/16 uses `vxlanMode: CrossSubnet`, pool
//! 10.3.0.0/16 `ipipMode: CrossSubnet`. Traffic between the two nodes of
//! 192.168.33.0/24 must go unencapsulated; traffic to the node in
//! 192.168.34.0/24 encapsulated — checked on the wire with tshark.

mod common;

use common::{Lab, capture, ping, root_or_skip, stop_capture, tshark};
use podwire::config::EncapMode;
use podwire::config::cluster::Pool;

const NODES: [common::TwoPoolNode; 3] = [
    // name, node IP/prefix, VXLAN tunnel, VXLAN-pool block, IPIP-pool block
    (
        "k8s-node1",
        "192.168.33.55/24",
        "10.2.36.65",
        "10.2.36.64/26",
        "10.3.1.0/26",
    ),
    (
        "k8s-node2",
        "192.168.33.57/24",
        "10.2.169.129",
        "10.2.169.128/26",
        "10.3.2.0/26",
    ),
    (
        "k8s-node3",
        "192.168.34.53/24",
        "10.2.235.193",
        "10.2.235.192/26",
        "10.3.3.0/26",
    ),
];

/// Pods: (node index, interface, address).
const PODS: [(usize, &str, &str); 6] = [
    (0, "calia1", "10.2.36.68"),
    (0, "calib1", "10.3.1.5"),
    (1, "calia2", "10.2.169.138"),
    (1, "calib2", "10.3.2.5"),
    (2, "calia3", "10.2.235.194"),
    (2, "calib3", "10.3.3.5"),
];

fn cluster() -> String {
    common::two_pool_cluster(
        [
            Pool::new("vx", "10.2.0.0/16").vxlan(EncapMode::CrossSubnet),
            Pool::new("ip", "10.3.0.0/16").ipip(EncapMode::CrossSubnet),
        ],
        &NODES,
        &PODS,
    )
}

#[test]
fn crosssubnet_encapsulates_only_across_subnets() {
    if !root_or_skip("crosssubnet_encapsulates_only_across_subnets") {
        return;
    }
    let mut lab = Lab::new();
    let config = lab.file("cluster.yaml", &cluster());
    // Two L2 segments and a router between them.
    let swa = lab.netns("swa");
    let swb = lab.netns("swb");
    lab.bridge(&swa, "br0");
    lab.bridge(&swb, "br0");
    let rt = lab.netns("rt");
    lab.attach(&swa, "br0", &rt, "etha", "192.168.33.1/24");
    lab.attach(&swb, "br0", &rt, "ethb", "192.168.34.1/24");
    lab.must_exec(&rt, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    let mut nodes = Vec::new();
    let mut ctl = Vec::new();
    for (i, (name, ip, ..)) in NODES.iter().enumerate() {
        let ns = lab.netns(&format!("n{}", i + 1));
        let (sw, other, gw) = if i < 2 {
            (&swa, "192.168.34.0/24", "192.168.33.1")
        } else {
            (&swb, "192.168.33.0/24", "192.168.34.1")
        };
        lab.attach(sw, "br0", &ns, "eth0", ip);
        lab.ip(&ns, &["route", "add", other, "via", gw]);
        ctl.push(lab.podwire(&ns, &config, name, &[]));
        nodes.push(ns);
    }
    let mut pods = Vec::new();
    for (i, (node, iface, ip)) in PODS.iter().enumerate() {
        let node_ns = nodes[*node].clone();
        pods.push(lab.pod(&format!("p{i}"), &node_ns, iface, ip));
    }
    // k8s-node1's view: same-subnet node2 direct, node3 encapsulated.
    let routes = lab.show(&ctl[0], "routes", false);
    for want in [
        "10.2.169.128/26 via 192.168.33.57 dev eth0 onlink",
        "10.2.235.192/26 via 10.2.235.193 dev vxlan.calico onlink",
        "10.3.2.0/26 via 192.168.33.57 dev eth0 onlink",
        "10.3.3.0/26 via 192.168.34.53 dev tunl0 onlink",
    ] {
        assert!(routes.contains(want), "{want} missing from:\n{routes}");
    }

    let pcap = lab.dir.join("underlay.pcap");
    let n1 = nodes[0].clone();
    capture(&mut lab, &n1, "eth0", &pcap, "tcpdump");
    ping(&lab, &pods[0], "10.2.169.138", 3); // VXLAN pool, same subnet
    ping(&lab, &pods[0], "10.2.235.194", 3); // VXLAN pool, across subnets
    ping(&lab, &pods[1], "10.3.2.5", 3); // IPIP pool, same subnet
    ping(&lab, &pods[1], "10.3.3.5", 3); // IPIP pool, across subnets
    ping(&lab, &pods[4], "10.2.36.68", 3); // and back from the other subnet
    ping(&lab, &pods[3], "10.3.1.5", 3);
    stop_capture(&mut lab, "tcpdump");

    // One IPv4 layer, pod to pod: unencapsulated.
    let plain = |src: &str, dst: &str| {
        tshark(
            &pcap,
            &format!("icmp && ip.src == {src} && ip.dst == {dst}"),
            &["ip.src", "udp.dstport"],
        )
        .into_iter()
        .filter(|r| !r[0].contains(',') && r[1].is_empty())
        .count()
    };
    assert_eq!(
        plain("10.2.36.68", "10.2.169.138"),
        3,
        "same subnet, VXLAN pool: direct"
    );
    // (3 requests from b1, and b1's 3 replies to b2's pings.)
    assert_eq!(
        plain("10.3.1.5", "10.3.2.5"),
        6,
        "same subnet, IPIP pool: direct"
    );
    assert_eq!(plain("10.2.36.68", "10.2.235.194"), 0);
    assert_eq!(plain("10.3.1.5", "10.3.3.5"), 0);
    // Across subnets: VXLAN and IPIP to 192.168.34.53.
    let vxlan = tshark(
        &pcap,
        "vxlan && ip.dst == 10.2.235.194",
        &["ip.dst", "udp.dstport", "vxlan.vni"],
    );
    // (a1's 3 requests, and a1's 3 replies to a3's pings.)
    assert_eq!(vxlan.len(), 6, "{vxlan:?}");
    for r in &vxlan {
        assert_eq!(r[0], "192.168.34.53,10.2.235.194");
        assert_eq!(r[1], "4789");
        assert_eq!(r[2], "4096");
    }
    let ipip = tshark(&pcap, "ip.proto == 4 && ip.dst == 10.3.3.5", &["ip.dst"]);
    assert_eq!(ipip.len(), 3, "{ipip:?}");
    assert!(
        ipip.iter().all(|r| r[0] == "192.168.34.53,10.3.3.5"),
        "{ipip:?}"
    );
    // Replies from the other subnet come back encapsulated too.
    assert_eq!(
        tshark(&pcap, "vxlan && ip.src == 10.2.235.194", &["ip.src"]).len(),
        6
    );
}
