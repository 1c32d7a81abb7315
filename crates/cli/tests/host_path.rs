//! The host path (SPEC §10), end to end: two VXLAN nodes running podwire
//! with `--host-interface podwire0`, a router on the underlay and an
//! "internet" namespace beyond it that knows the nodes' subnet but no pod
//! address, so only a masqueraded packet can be answered.
//!
//! Pool 10.2.0.0/16 has natOutgoing, pool 10.3.0.0/16 not. Checked: the
//! node reaches its own pods and the other node's (ping, TCP); pods reach
//! the nodes' addresses; a natOutgoing pod reaches the internet from the
//! node's address (tcpdump beyond the router), a pod of the other pool
//! leaves with its own; a ClusterIP in kube-proxy's nftables shape with a
//! backend on the other node and one on the same node, from a pod and from
//! the node; and a clean stop leaves the node as it was.

mod common;

use common::{Lab, capture, ping, root_or_skip, stop_capture, tshark};
use podwire::config::EncapMode;
use podwire::config::cluster::{Block, ClusterBuilder, Endpoint, Node, Pool};

const INTERNET: &str = "203.0.113.10";

/// name, node IP/prefix, VXLAN tunnel address, block of pool a, block of pool b.
const NODES: [common::TwoPoolNode; 2] = [
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
];

/// node index, interface, address.
const PODS: [(usize, &str, &str); 4] = [
    (0, "calia1", "10.2.36.68"),
    (0, "calib1", "10.2.36.69"),
    (0, "calic1", "10.3.1.5"),
    (1, "calia2", "10.2.169.138"),
];

fn cluster() -> String {
    common::two_pool_cluster(
        [
            Pool::new("nat", "10.2.0.0/16")
                .vxlan(EncapMode::Always)
                .nat_outgoing(true),
            Pool::new("plain", "10.3.0.0/16").vxlan(EncapMode::Always),
        ],
        &NODES,
        &PODS,
    )
}

/// kube-proxy's nftables mode, reduced to one Service: DNAT of
/// `10.96.0.10:80` to `backend:8080` in prerouting and output.
fn kube_proxy(backend: &str) -> String {
    format!(
        "table ip kube-proxy {{\n\
         chain services {{ ip daddr 10.96.0.10 tcp dport 80 dnat to {backend}:8080; }}\n\
         chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}\n\
         chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
         }}\n"
    )
}

/// The underlay's switch, a router on it (192.168.33.1) and the
/// "internet" beyond the router, which knows the nodes' subnet but no pod
/// address: (switch, router, internet).
fn underlay_and_internet(lab: &mut Lab) -> (String, String, String) {
    let sw = lab.netns("sw");
    lab.bridge(&sw, "br0");
    let rt = lab.netns("rt");
    lab.attach(&sw, "br0", &rt, "eth0", "192.168.33.1/24");
    let inet = lab.netns("inet");
    veth(lab, &rt, "ethi", "203.0.113.1/24", &inet, "203.0.113.10/24");
    lab.ip(
        &inet,
        &["route", "add", "192.168.33.0/24", "via", "203.0.113.1"],
    );
    lab.must_exec(&rt, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    (sw, rt, inet)
}

/// A veth pair from `a` (device `a_dev`, address `a_ip`) to `b` (its
/// `eth0`, address `b_ip`), both up.
fn veth(lab: &Lab, a: &str, a_dev: &str, a_ip: &str, b: &str, b_ip: &str) {
    lab.ip(
        a,
        &[
            "link", "add", a_dev, "type", "veth", "peer", "name", "eth0", "netns", b,
        ],
    );
    lab.ip(a, &["addr", "add", a_ip, "dev", a_dev]);
    lab.ip(a, &["link", "set", a_dev, "up"]);
    lab.ip(b, &["addr", "add", b_ip, "dev", "eth0"]);
    lab.ip(b, &["link", "set", "eth0", "up"]);
}

/// `nc` from `ns` to `ip:port`; returns what the server answered.
fn tcp_ask(lab: &Lab, ns: &str, ip: &str, port: &str) -> String {
    let out = lab.exec(ns, &["nc", "-w", "3", ip, port]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn host_path_natoutgoing_services_and_a_clean_stop() {
    if !root_or_skip("host_path_natoutgoing_services_and_a_clean_stop") {
        return;
    }
    let mut lab = Lab::new();
    let config = lab.file("cluster.yaml", &cluster());
    let (sw, _rt, inet) = underlay_and_internet(&mut lab);

    let mut nodes = Vec::new();
    let mut ctl = Vec::new();
    for (i, (name, ip, ..)) in NODES.iter().enumerate() {
        let ns = lab.netns(&format!("n{}", i + 1));
        lab.attach(&sw, "br0", &ns, "eth0", ip);
        lab.ip(&ns, &["route", "add", "default", "via", "192.168.33.1"]);
        ctl.push(lab.podwire(&ns, &config, name, &["--host-interface", "podwire0"]));
        nodes.push(ns);
    }
    let n1 = nodes[0].clone();
    let pods: Vec<String> = PODS
        .iter()
        .enumerate()
        .map(|(i, (node, iface, ip))| {
            let node_ns = nodes[*node].clone();
            lab.pod(&format!("p{i}"), &node_ns, iface, ip)
        })
        .collect();

    // What podwire put into the node's kernel.
    let routes = lab.ip(&n1, &["-4", "route", "show", "dev", "podwire0"]);
    for want in [
        "10.2.0.0/16 proto 252 scope link src 10.2.36.65",
        "10.3.0.0/16 proto 252 scope link src 10.2.36.65",
    ] {
        assert!(routes.contains(want), "{want} missing from:\n{routes}");
    }
    let addrs = lab.ip(&n1, &["-4", "-o", "addr", "show", "dev", "podwire0"]);
    assert!(addrs.contains("inet 10.2.36.65/32"), "{addrs}");
    let table = lab.must_exec(&n1, &["nft", "list", "table", "ip", "podwire"]);
    assert!(table.contains("masquerade"), "{table}");

    // The node reaches its pods and the other node's; pods reach the nodes.
    ping(&lab, &n1, "10.2.36.68", 2);
    ping(&lab, &n1, "10.3.1.5", 2);
    ping(&lab, &n1, "10.2.169.138", 2);
    ping(&lab, &pods[0], "192.168.33.55", 2);
    ping(&lab, &pods[0], "192.168.33.57", 2);
    ping(&lab, &pods[0], "10.2.36.65", 2);
    ping(&lab, &pods[3], "10.2.36.65", 2);
    // TCP, node to a local and to a remote pod (kubelet's probes).
    lab.spawn(
        &pods[0],
        "srv-local",
        &["sh", "-c", "echo local | nc -l -N 8081"],
    );
    lab.spawn(
        &pods[3],
        "srv-remote",
        &["sh", "-c", "echo remote | nc -l -N 8082"],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(tcp_ask(&lab, &n1, "10.2.36.68", "8081"), "local");
    assert_eq!(tcp_ask(&lab, &n1, "10.2.169.138", "8082"), "remote");

    // natOutgoing: from the node's address beyond the router; the other
    // pool's pod keeps its own (and gets no answer: the internet has no
    // route to pods).
    let pcap = lab.dir.join("internet.pcap");
    capture(&mut lab, &inet, "eth0", &pcap, "tcpdump");
    ping(&lab, &pods[0], INTERNET, 3);
    ping(&lab, &pods[3], INTERNET, 2);
    let lost = lab.exec(&pods[2], &["ping", "-c", "2", "-W", "1", INTERNET]);
    assert!(
        !lost.status.success(),
        "no route back to 10.3.1.5 beyond the router"
    );
    lab.spawn(
        &inet,
        "srv-inet",
        &["sh", "-c", "echo internet | nc -l -N 8083"],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(tcp_ask(&lab, &pods[0], INTERNET, "8083"), "internet");
    // The node's conntrack holds the masqueraded flow: the pod's address
    // on the way out, the node's on the way back.
    let flows = lab.must_exec(
        &n1,
        &["conntrack", "-L", "-p", "tcp", "--orig-dst", INTERNET],
    );
    assert!(
        flows
            .lines()
            .any(|l| l.contains("src=10.2.36.68 dst=203.0.113.10")
                && l.contains("src=203.0.113.10 dst=192.168.33.55")),
        "{flows}"
    );
    stop_capture(&mut lab, "tcpdump");
    let sources = |filter: &str| -> Vec<String> {
        tshark(&pcap, filter, &["ip.src"])
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    let echo = format!("icmp.type == 8 && ip.dst == {INTERNET}");
    let seen = sources(&echo);
    assert_eq!(
        seen.iter().filter(|s| *s == "192.168.33.55").count(),
        3,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "192.168.33.57").count(),
        2,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "10.3.1.5").count(),
        2,
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| !s.starts_with("10.2.")),
        "a natOutgoing pod's address reached the internet: {seen:?}"
    );
    let syn = sources(&format!(
        "tcp.flags.syn == 1 && tcp.flags.ack == 0 && ip.dst == {INTERNET}"
    ));
    assert_eq!(syn, vec!["192.168.33.55".to_string()]);

    // A ClusterIP (kube-proxy's nftables mode) whose backend is on the
    // other node, from a pod and from the node; then on the same node.
    lab.must_exec(
        &n1,
        &[
            "sh",
            "-c",
            &format!("echo '{}' | nft -f -", kube_proxy("10.2.169.138")),
        ],
    );
    lab.spawn(
        &pods[3],
        "svc-remote",
        &[
            "sh",
            "-c",
            "while :; do echo backend-remote | nc -l -N 8080; done",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        tcp_ask(&lab, &pods[0], "10.96.0.10", "80"),
        "backend-remote"
    );
    assert_eq!(tcp_ask(&lab, &n1, "10.96.0.10", "80"), "backend-remote");
    lab.must_exec(&n1, &["nft", "delete", "table", "ip", "kube-proxy"]);
    lab.must_exec(
        &n1,
        &[
            "sh",
            "-c",
            &format!("echo '{}' | nft -f -", kube_proxy("10.2.36.69")),
        ],
    );
    lab.spawn(
        &pods[1],
        "svc-local",
        &[
            "sh",
            "-c",
            "while :; do echo backend-local | nc -l -N 8080; done",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(tcp_ask(&lab, &pods[0], "10.96.0.10", "80"), "backend-local");
    assert_eq!(tcp_ask(&lab, &n1, "10.96.0.10", "80"), "backend-local");
    lab.must_exec(&n1, &["nft", "delete", "table", "ip", "kube-proxy"]);
    // A NodePort from outside the cluster, as kube-proxy's nftables mode
    // has it (externalTrafficPolicy Cluster): DNAT to the pod on the other
    // node, marked for masquerade, masqueraded on the way out (from the
    // host interface's address).
    let nodeport = "table ip kube-proxy {\n\
         chain nodeports { ip daddr 192.168.33.55 tcp dport 30080 meta mark set mark | 0x4000 dnat to 10.2.169.138:8080; }\n\
         chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump nodeports; }\n\
         chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; meta mark & 0x4000 == 0x4000 masquerade fully-random; }\n\
         }\n";
    lab.must_exec(&n1, &["sh", "-c", &format!("echo '{nodeport}' | nft -f -")]);
    assert_eq!(
        tcp_ask(&lab, &inet, "192.168.33.55", "30080"),
        "backend-remote"
    );
    lab.must_exec(&n1, &["nft", "delete", "table", "ip", "kube-proxy"]);
    // kube-proxy's iptables mode: the same DNAT in the nat table's
    // PREROUTING and OUTPUT, to the backend on the other node.
    for chain in ["PREROUTING", "OUTPUT"] {
        lab.must_exec(
            &n1,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                chain,
                "-d",
                "10.96.0.11",
                "-p",
                "tcp",
                "--dport",
                "80",
                "-j",
                "DNAT",
                "--to-destination",
                "10.2.169.138:8080",
            ],
        );
    }
    assert_eq!(
        tcp_ask(&lab, &pods[0], "10.96.0.11", "80"),
        "backend-remote"
    );
    assert_eq!(tcp_ask(&lab, &n1, "10.96.0.11", "80"), "backend-remote");
    for chain in ["PREROUTING", "OUTPUT"] {
        lab.must_exec(&n1, &["iptables", "-t", "nat", "-F", chain]);
    }
    // Hostile traffic into the host interface, counted and dropped: the
    // kernel routed there what is not a pod's, and encapsulation.
    let before = lab.drops(&ctl[0], "no-route");
    lab.ip(&n1, &["route", "add", "198.51.100.0/24", "dev", "podwire0"]);
    let out = lab.exec(
        &n1,
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", "198.51.100.7"],
    );
    assert!(!out.status.success());
    lab.ip(&n1, &["route", "del", "198.51.100.0/24", "dev", "podwire0"]);
    assert!(lab.drops(&ctl[0], "no-route") >= before + 3);
    let before = lab.drops(&ctl[0], "encap-from-workload");
    lab.exec(&n1, &["sh", "-c", "echo x | nc -u -w 1 10.2.36.68 4789"]);
    assert!(lab.drops(&ctl[0], "encap-from-workload") > before);
    // `podwire show host`: what the kernel was given, and the flows the
    // Services' replies took back through it.
    let shown = lab.show(&ctl[0], "host", false);
    assert!(
        shown.contains("10.2.0.0/16 dev podwire0 proto 252 scope link src 10.2.36.65")
            && shown.contains("inet 10.2.36.65/32 dev podwire0")
            && shown.contains("pool 10.2.0.0/16: masqueraded")
            && shown.contains("pool 10.3.0.0/16: not masqueraded"),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&lab.show(&ctl[0], "host", true)).unwrap();
    assert_eq!(json["interface"], "podwire0", "{json}");
    assert!(
        json["flows"]["recorded"].as_u64().unwrap_or(0) >= 2,
        "a flow per Service connection from the pod: {json}"
    );

    // SIGKILL and a restart: the device is adopted, and the kernel's side
    // reconciled to one copy of everything (and ip_forward's original value
    // still the one to restore: the clean stop below checks it).
    lab.signal("k8s-node1", "KILL");
    assert!(!lab.stop("k8s-node1").success());
    let left = lab.ip(&n1, &["-4", "route", "show", "dev", "podwire0"]);
    assert!(
        left.contains("proto 252"),
        "a killed daemon leaves its routes: {left}"
    );
    ctl[0] = lab.podwire(&n1, &config, "k8s-node1", &["--host-interface", "podwire0"]);
    let log = lab.log("k8s-node1");
    assert!(
        log.contains("endpoint re-attached to the device a previous daemon left")
            && log.contains("podwire0"),
        "{log}"
    );
    let routes = lab.ip(&n1, &["-4", "route", "show", "proto", "252"]);
    let mut lines: Vec<&str> = routes.lines().map(str::trim).collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "10.2.0.0/16 dev podwire0 scope link src 10.2.36.65",
            "10.2.36.68 dev podwire0 scope link src 10.2.36.65",
            "10.2.36.69 dev podwire0 scope link src 10.2.36.65",
            "10.3.0.0/16 dev podwire0 scope link src 10.2.36.65",
            "10.3.1.5 dev podwire0 scope link src 10.2.36.65",
            "blackhole 10.2.36.64/26",
            "blackhole 10.3.1.0/26",
        ],
        "one copy of each route"
    );
    let addrs = lab.ip(&n1, &["-4", "-o", "addr", "show", "dev", "podwire0"]);
    assert_eq!(addrs.lines().count(), 1, "{addrs}");
    let tables = lab.must_exec(&n1, &["nft", "list", "tables"]);
    assert_eq!(tables.matches("table ip podwire").count(), 1, "{tables}");
    ping(&lab, &n1, "10.2.169.138", 2);
    ping(&lab, &pods[0], INTERNET, 2);

    // A clean stop leaves the node as it was: no device, no route, no
    // table, forwarding back off.
    assert!(lab.stop("k8s-node1").success());
    let links = lab.ip(&n1, &["-o", "link", "show"]);
    assert!(!links.contains("podwire0"), "{links}");
    let routes = lab.ip(&n1, &["-4", "route", "show"]);
    assert!(!routes.contains("proto 252"), "{routes}");
    let tables = lab.must_exec(&n1, &["nft", "list", "tables"]);
    assert!(!tables.contains("podwire"), "{tables}");
    let fwd = lab.must_exec(&n1, &["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(fwd.trim(), "0");
}

/// Direct mode ("BGP mode") with the host path, on nodes that forward as a
/// Kubernetes node does (`ip_forward=1`): the kernel is kept from
/// forwarding pod traffic by blackhole routes for the local blocks (and
/// podwire's table for the endpoints' /32s), not by forwarding off on the
/// underlay — so the node still forwards everything else (here, from the
/// internet to a LAN behind k8s-node1), pod traffic is never duplicated,
/// the node reaches local and remote pods, and a natOutgoing pod the
/// internet. A clean stop removes the blackholes too.
#[test]
fn direct_mode_host_path_forwards_other_traffic_and_never_duplicates_pods() {
    if !root_or_skip("direct_mode_host_path_forwards_other_traffic_and_never_duplicates_pods") {
        return;
    }
    let mut c = ClusterBuilder::new().with(
        Pool::new("nat", "10.2.0.0/16")
            .overlay("direct")
            .nat_outgoing(true),
    );
    for (name, ip, _, block, _) in &NODES {
        c = c
            .with(Node::new(name, ip))
            .with(Block::new(block).host(name));
    }
    for (node, iface, ip) in [
        (0, "calia1", "10.2.36.68"),
        (0, "calib1", "10.2.36.69"),
        (1, "calia2", "10.2.169.138"),
    ] {
        c = c.with(Endpoint::new(NODES[node].0, iface, ip));
    }
    let mut lab = Lab::new();
    let config = lab.file("cluster.yaml", &c.yaml());
    let (sw, rt, inet) = underlay_and_internet(&mut lab);
    let mut nodes = Vec::new();
    let mut ctl = Vec::new();
    for (i, (name, ip, ..)) in NODES.iter().enumerate() {
        let ns = lab.netns(&format!("n{}", i + 1));
        lab.attach(&sw, "br0", &ns, "eth0", ip);
        lab.ip(&ns, &["route", "add", "default", "via", "192.168.33.1"]);
        lab.must_exec(&ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        ctl.push(lab.podwire(&ns, &config, name, &["--host-interface", "podwire0"]));
        nodes.push(ns);
    }
    let n1 = nodes[0].clone();
    // A LAN behind k8s-node1, which the router reaches through it.
    let lan = lab.netns("lan");
    veth(
        &lab,
        &n1,
        "ethl",
        "198.51.100.1/24",
        &lan,
        "198.51.100.10/24",
    );
    lab.ip(&lan, &["route", "add", "default", "via", "198.51.100.1"]);
    lab.ip(
        &rt,
        &["route", "add", "198.51.100.0/24", "via", "192.168.33.55"],
    );
    lab.ip(
        &inet,
        &["route", "add", "198.51.100.0/24", "via", "203.0.113.1"],
    );
    let p1a = lab.pod("p1a", &n1, "calia1", "10.2.36.68");
    let _p1b = lab.pod("p1b", &n1, "calib1", "10.2.36.69");
    let p2a = lab.pod("p2a", &nodes[1], "calia2", "10.2.169.138");

    // Blackholes for the local block, the endpoints through podwire0, and
    // forwarding left on.
    let blackholes = lab.ip(&n1, &["-4", "route", "show", "type", "blackhole"]);
    assert_eq!(blackholes.trim(), "blackhole 10.2.36.64/26 proto 252");
    let fwd = lab.must_exec(&n1, &["sysctl", "-n", "net.ipv4.conf.eth0.forwarding"]);
    assert_eq!(fwd.trim(), "1", "forwarding stays on on the underlay");
    // The node forwards other traffic as before.
    ping(&lab, &inet, "198.51.100.10", 3);
    // Pods across nodes, and node to pods (`ping` fails on a duplicate).
    ping(&lab, &p1a, "10.2.169.138", 3);
    ping(&lab, &p2a, "10.2.36.68", 3);
    ping(&lab, &p1a, "10.2.36.69", 2);
    ping(&lab, &n1, "10.2.36.68", 2);
    ping(&lab, &n1, "10.2.169.138", 2);
    ping(&lab, &nodes[1], "10.2.36.69", 2);
    lab.spawn(&p2a, "srv", &["sh", "-c", "echo remote | nc -l -N 8082"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(tcp_ask(&lab, &n1, "10.2.169.138", "8082"), "remote");
    // Masqueraded to the internet.
    ping(&lab, &p1a, INTERNET, 2);
    // The pod packets to k8s-node2 left through podwire's packet socket.
    let stats = lab.stats(&ctl[0]);
    let direct = stats["modes"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m[0] == "direct"))
        .map_or(0, |m| m[1]["tx"]["packets"].as_u64().unwrap_or(0));
    assert!(direct >= 8, "direct-mode packets sent: {stats}");

    // A clean stop removes the blackholes and the rest.
    assert!(lab.stop("k8s-node1").success());
    let routes = lab.ip(&n1, &["-4", "route", "show"]);
    assert!(!routes.contains("proto 252"), "{routes}");
    assert!(!routes.contains("blackhole"), "{routes}");
    let fwd = lab.must_exec(&n1, &["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(fwd.trim(), "1", "ip_forward as the node had it");
    ping(&lab, &inet, "198.51.100.10", 1);
}
