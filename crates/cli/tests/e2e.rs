//! `podwire run` end to end, as root, in network namespaces: two (or three)
//! nodes on one underlay bridge, each running its own daemon, with pods in
//! their own namespaces whose `eth0` is the daemon's TUN endpoint, shaped as
//! Calico shapes a pod (`default via 169.254.1.1`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Lab, NODES, PODWIRE, Testbed, must, ping, root_or_skip, testbed, transfer};
use podwire::config::cluster::{ClusterBuilder, Endpoint, Pool};

/// The pods' interfaces: p1a, p1b on k8s-node1, p2a on k8s-node2, p3a on k8s-node3.
const PODS: [&str; 4] = ["cali1a", "cali1b", "cali2a", "cali3a"];

/// The cluster of the first `nodes` nodes and their pods, one pool in `mode`.
fn cluster(mode: &str, nodes: usize) -> ClusterBuilder {
    common::cluster(mode, nodes, &PODS)
}

/// Two nodes and three pods: p1a and p1b on k8s-node1, p2a on k8s-node2.
struct Cluster {
    lab: Lab,
    sw: String,
    n: Vec<String>,
    ctl: Vec<std::path::PathBuf>,
    config: std::path::PathBuf,
    p1a: String,
    p1b: String,
    p2a: String,
}

/// Two nodes; VXLAN clusters run two workers per daemon (multi-queue TUN
/// devices, one `SO_REUSEPORT` socket per worker), and k8s-node1 serves
/// metrics on 127.0.0.1:9091 in its namespace.
fn two_nodes(mode: &str) -> Cluster {
    two_nodes_via(mode, &[])
}

/// As [`two_nodes`], with k8s-node1's daemon started through `wrapper`.
fn two_nodes_via(mode: &str, wrapper: &[&str]) -> Cluster {
    two_nodes_with(mode, wrapper, &[])
}

/// As [`two_nodes_via`], every daemon also given `flags`.
fn two_nodes_with(mode: &str, wrapper: &[&str], flags: &[&str]) -> Cluster {
    let Testbed {
        mut lab,
        config,
        sw,
        nodes: n,
    } = testbed(mode, &PODS, &["n1", "n2"]);
    let threads = if mode == "vxlan" { "2" } else { "1" };
    let mut ctl = Vec::new();
    for (i, (node, ns)) in NODES.iter().zip(&n).enumerate() {
        // Like a real node, forwarding on: podwire must keep the kernel
        // from forwarding the direct-mode pod traffic as well.
        lab.must_exec(ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        let mut extra = vec!["--threads", threads];
        extra.extend(flags);
        if i == 0 {
            extra.extend(["--metrics", "127.0.0.1:9091"]);
        }
        let via = if i == 0 { wrapper } else { &[] };
        ctl.push(lab.podwire_via(ns, via, &config, node.name, &extra));
    }
    let p1a = lab.pod("p1a", &n[0], "cali1a", "10.2.36.68");
    let p1b = lab.pod("p1b", &n[0], "cali1b", "10.2.36.69");
    let p2a = lab.pod("p2a", &n[1], "cali2a", "10.2.169.138");
    Cluster {
        lab,
        sw,
        n,
        ctl,
        config,
        p1a,
        p1b,
        p2a,
    }
}

/// Routes as `podwire show routes` must print them on k8s-node1.
fn expected_routes(mode: &str) -> String {
    let via = match mode {
        "ipip" => "192.168.33.57 dev tunl0",
        "direct" => "192.168.33.57 dev eth0",
        _ => "10.2.169.129 dev vxlan.calico",
    };
    format!(
        "blackhole 10.2.36.64/26\n10.2.36.68 dev cali1a scope link\n10.2.36.69 dev cali1b scope link\n10.2.169.128/26 via {via} onlink\n"
    )
}

/// Sends an IPIP and a VXLAN packet to k8s-node1 from a host that is not a node.
fn stranger_sends(c: &mut Cluster) {
    let stranger = c.lab.netns("st");
    c.lab
        .attach(&c.sw, "br0", &stranger, "eth0", "192.168.33.99/24");
    let mac = podwire::table::vtep_mac_for("k8s-node1");
    let script = format!(
        "from scapy.all import *\n\
         conf.verb = 0\n\
         inner = IP(src='10.2.169.138', dst='10.2.36.68')/ICMP()\n\
         send(IP(src='192.168.33.99', dst='192.168.33.55', proto=4)/inner)\n\
         send(IP(src='192.168.33.99', dst='192.168.33.55')/UDP(sport=40000, dport=4789)/VXLAN(vni=4096, flags=8)/Ether(dst='{mac}', src='02:00:00:00:00:99')/inner)\n"
    );
    let out = c.lab.exec(&stranger, &["/usr/bin/python3", "-c", &script]);
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn end_to_end(mode: &str) {
    end_to_end_with(mode, &[])
}

/// The same, the daemons run with `flags`: with `--tunnel-gso` and
/// `--packet-rx`, VXLAN and IPIP super-packets cross whole both ways.
fn end_to_end_with(mode: &str, flags: &[&str]) {
    let whole = flags.contains(&"--packet-rx");
    let mut c = two_nodes_with(mode, &[], flags);
    let lab = &c.lab;
    // Across nodes, both ways, and between two pods of one node.
    ping(lab, &c.p1a, "10.2.169.138", 3);
    ping(lab, &c.p2a, "10.2.36.68", 3);
    ping(lab, &c.p1a, "10.2.36.69", 3);
    ping(lab, &c.p1b, "10.2.36.68", 3);

    // The pod's device queues 4096 packets (not the default 500) while a
    // worker is busy elsewhere. (Its qdisc is the kernel's default again:
    // moving a device to another namespace resets it; the CNI test checks
    // the noqueue of a device podwire makes in the pod.)
    let link = lab.ip(&c.p1a, &["link", "show", "eth0"]);
    assert!(link.contains("qlen 4096"), "{link}");

    // No duplicate replies: only podwire forwards pod traffic.
    let out = lab.exec(
        &c.p1a,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.2.169.138"],
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("DUP!"));
    // Kept from it by a blackhole route for the local block, as BIRD
    // installs it; forwarding stays on for everything else.
    let fwd = lab.must_exec(&c.n[1], &["cat", "/proc/sys/net/ipv4/conf/eth0/forwarding"]);
    assert_eq!(fwd.trim(), "1", "forwarding left on on the underlay device");
    let blackholes = lab.ip(&c.n[0], &["-4", "route", "show", "type", "blackhole"]);
    assert_eq!(blackholes.trim(), "blackhole 10.2.36.64/26 proto 252");

    // The tables, as SPEC §6 prints them.
    assert_eq!(lab.show(&c.ctl[0], "routes", false), expected_routes(mode));
    let (neigh, fdb) = match mode {
        "vxlan" => {
            let mac = podwire::table::vtep_mac_for("k8s-node2");
            (
                format!("10.2.169.129 dev vxlan.calico lladdr {mac} PERMANENT\n"),
                format!("{mac} dev vxlan.calico dst 192.168.33.57 self permanent\n"),
            )
        }
        _ => (String::new(), String::new()),
    };
    assert_eq!(lab.show(&c.ctl[0], "neigh", false), neigh);
    assert_eq!(lab.show(&c.ctl[0], "fdb", false), fdb);
    let routes: serde_json::Value =
        serde_json::from_str(&lab.show(&c.ctl[0], "routes", true)).unwrap();
    assert_eq!(routes[0]["type"], "blackhole");
    assert_eq!(routes[3]["flags"][0], "onlink");
    let eps = lab.show(&c.ctl[0], "endpoints", false);
    assert!(
        eps.contains("cali1a") && eps.contains("10.2.36.68"),
        "{eps}"
    );

    // A DF packet larger than the mode's MTU: ICMP fragmentation needed,
    // from the node IP, with the mode's MTU. The pod's own MTU is raised so
    // that its kernel lets the packet out.
    let (mtu, size) = match mode {
        "ipip" => (1480, "1472"),
        "vxlan" => (1450, "1472"),
        _ => (1500, "1600"),
    };
    let before = lab.drops(&c.ctl[0], "too-big");
    lab.ip(&c.p1a, &["link", "set", "eth0", "mtu", "9000"]);
    let df = [
        "ping",
        "-M",
        "do",
        "-s",
        size,
        "-c",
        "1",
        "-W",
        "2",
        "10.2.169.138",
    ];
    let text = String::from_utf8_lossy(&lab.exec(&c.p1a, &df).stdout).into_owned();
    let want = format!("From 192.168.33.55 icmp_seq=1 Frag needed and DF set (mtu = {mtu})");
    assert!(text.contains(&want), "{text}");
    assert_eq!(lab.drops(&c.ctl[0], "too-big"), before + 1);
    // Without DF the packet is fragmented and gets through.
    let dont = [
        "ping",
        "-M",
        "dont",
        "-s",
        size,
        "-c",
        "1",
        "-W",
        "2",
        "10.2.169.138",
    ];
    let out = lab.exec(&c.p1a, &dont);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    lab.ip(&c.p1a, &["link", "set", "eth0", "mtu", &mtu.to_string()]);

    // Encapsulated traffic from a host that is not a node is dropped and counted.
    let before = lab.drops(&c.ctl[0], "unknown-peer");
    stranger_sends(&mut c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.lab.drops(&c.ctl[0], "unknown-peer") < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "unknown peers not counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // 100 MB across nodes, content verified.
    let (p1a, p2a) = (c.p1a.clone(), c.p2a.clone());
    transfer(&mut c.lab, &p1a, &p2a, "10.2.169.138", 100, 5001);
    // The pod's TCP super-packets: whole in direct mode (packet sockets
    // with PACKET_VNET_HDR, the peer delivering them whole too), cut up in
    // userspace for IPIP and VXLAN.
    let sent = &c.lab.stats(&c.ctl[0])["super_packets"];
    let received = &c.lab.stats(&c.ctl[1])["super_packets"];
    if mode == "direct" || whole {
        assert!(sent["sent_whole"].as_u64() > Some(100), "{sent}");
        assert!(
            received["received_whole"].as_u64() > Some(100),
            "{received}"
        );
    } else {
        assert!(sent["split"].as_u64() > Some(100), "{sent}");
        assert_eq!(sent["sent_whole"], 0, "{sent}");
        assert_eq!(received["received_whole"], 0, "{received}");
    }
    // Nothing was lost on the way: the only drops are the ones provoked
    // above and the IPv6 the pods' kernels send on their own.
    for ctl in &c.ctl {
        let stats = c.lab.stats(ctl);
        for d in stats["drops"].as_array().unwrap() {
            let (reason, n) = (d[0].as_str().unwrap(), d[1].as_u64().unwrap());
            let expected = matches!(reason, "not-ipv4" | "too-big" | "unknown-peer");
            assert!(n == 0 || expected, "{n} drops for {reason}: {stats}");
        }
    }
    let stats = c.lab.stats(&c.ctl[0]);
    assert_eq!(stats["workers"], if mode == "vxlan" { 2 } else { 1 });
    // Offloads are on by default, and reported.
    for offload in ["tun", "udp_segment", "packet_gso"] {
        assert_eq!(stats["offloads"][offload], true, "{offload}: {stats}");
    }
    // UDP_GRO, unless a packet socket takes VXLAN (and the tunnel TAP
    // sends it), which are off unless asked for.
    assert_eq!(stats["offloads"]["udp_gro"], !whole, "{stats}");
    for offload in [
        "tunnel_gso",
        "vxlan_packet_rx",
        "ipip_gso",
        "ipip_packet_rx",
    ] {
        assert_eq!(stats["offloads"][offload], whole, "{offload}: {stats}");
    }
    assert!(
        c.lab
            .show(&c.ctl[0], "stats", false)
            .contains(if whole {
                "offloads: tun on, udp-segment on, udp-gro off, packet-gso on, tunnel-gso on, vxlan-packet-rx on, ipip-gso on, ipip-packet-rx on"
            } else {
                "offloads: tun on, udp-segment on, udp-gro on, packet-gso on, tunnel-gso off, vxlan-packet-rx off, ipip-gso off, ipip-packet-rx off"
            })
    );
    // The same counters in the Prometheus format.
    let metrics = c.lab.must_exec(
        &c.n[0],
        &[
            "sh",
            "-c",
            "printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -N 127.0.0.1 9091",
        ],
    );
    assert!(metrics.starts_with("HTTP/1.0 200 OK"), "{metrics}");
    let unknown = c.lab.drops(&c.ctl[0], "unknown-peer");
    assert!(
        metrics.contains(&format!(
            "podwire_drops_total{{reason=\"unknown-peer\"}} {unknown}\n"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(
        "podwire_endpoint_bytes_total{interface=\"cali1a\",direction=\"from_workload\"}"
    ));
    // Only root may use the control socket.
    use std::os::unix::fs::PermissionsExt;
    let mode_bits = std::fs::metadata(&c.ctl[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_bits, 0o600, "control socket mode");
    let sent = stats["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == mode)
        .unwrap()[1]["tx"]["bytes"]
        .as_u64()
        .unwrap();
    assert!(sent > 100_000_000, "{mode} bytes sent: {sent}");
}

#[test]
fn direct_end_to_end() {
    if root_or_skip("direct_end_to_end") {
        end_to_end("direct");
    }
}

#[test]
fn ipip_end_to_end() {
    if root_or_skip("ipip_end_to_end") {
        end_to_end("ipip");
    }
}

#[test]
fn vxlan_end_to_end() {
    if root_or_skip("vxlan_end_to_end") {
        end_to_end("vxlan");
    }
}

/// VXLAN with the pods' super-packets whole all the way: into the kernel
/// through the tunnel TAP, out of it as one frame across the veth, into the
/// receiving node's packet socket, into the pod. The checksums stay partial
/// the whole way, as between two kernel VXLAN nodes on one host.
#[test]
fn vxlan_whole_end_to_end() {
    if root_or_skip("vxlan_whole_end_to_end") {
        end_to_end_with("vxlan", &["--tunnel-gso", "--packet-rx"]);
    }
}

/// IPIP the same way: into the kernel through the IPIP tunnel TUN (its
/// re-tag program marking each super-packet IPv4-in-IPv4), across the veth
/// as one frame, into the receiving node's packet socket, into the pod.
#[test]
fn ipip_whole_end_to_end() {
    if root_or_skip("ipip_whole_end_to_end") {
        end_to_end_with("ipip", &["--tunnel-gso", "--packet-rx"]);
    }
}

/// A reload that adds a third node while a transfer runs loses nothing;
/// a bad configuration is rejected and the running one kept.
#[test]
fn reload_adds_a_node_during_a_transfer() {
    if !root_or_skip("reload_adds_a_node_during_a_transfer") {
        return;
    }
    let mut c = two_nodes("vxlan");
    // A paced sender: 100 MB over about four seconds.
    let sender = "import socket, sys, time\n\
                  s = socket.create_connection(('10.2.169.138', 5002))\n\
                  block = bytes(range(256)) * 4096\n\
                  for i in range(100):\n\
                  \x20   s.sendall(block)\n\
                  \x20   time.sleep(0.04)\n\
                  s.close()\n";
    let p2a = c.p2a.clone();
    let p1a = c.p1a.clone();
    c.lab
        .spawn(&p2a, "receiver", &["sh", "-c", "nc -l 5002 | sha256sum"]);
    std::thread::sleep(Duration::from_millis(300));
    c.lab
        .spawn(&p1a, "sender", &["/usr/bin/python3", "-c", sender]);
    std::thread::sleep(Duration::from_millis(1000));

    // Add k8s-node3 mid-transfer.
    replace_file(&c.config, cluster("vxlan", 3).yaml()).unwrap();
    c.lab.signal("k8s-node1", "HUP");
    c.lab.signal("k8s-node2", "HUP");
    let n3 = c.lab.netns("n3");
    c.lab.attach(&c.sw, "br0", &n3, "eth0", &NODES[2].cidr());
    let config = c.config.clone();
    let ctl3 = c.lab.podwire(&n3, &config, "k8s-node3", &[]);
    let p3a = c.lab.pod("p3a", &n3, "cali3a", "10.2.235.194");

    let sent = c.lab.wait("sender", Duration::from_secs(60));
    assert!(
        sent.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let got = c.lab.wait("receiver", Duration::from_secs(60));
    let mut want = Vec::with_capacity(100 << 20);
    for _ in 0..100 * 4096 {
        want.extend(0..=255u8);
    }
    let want_hash = {
        let f = c.lab.file("want.bin", "");
        std::fs::write(&f, &want).unwrap();
        must("sha256sum", &[f.to_str().unwrap()])
    };
    assert_eq!(
        String::from_utf8_lossy(&got.stdout)
            .split_whitespace()
            .next(),
        want_hash.split_whitespace().next(),
        "content of the transfer across the reload"
    );
    for ctl in &c.ctl {
        let stats = c.lab.stats(ctl);
        assert_eq!(stats["reloads"], 1, "{stats}");
        for d in stats["drops"].as_array().unwrap() {
            let (reason, n) = (d[0].as_str().unwrap(), d[1].as_u64().unwrap());
            assert!(
                n == 0 || reason == "not-ipv4",
                "{n} drops for {reason} across the reload"
            );
        }
    }
    // The new node is reachable from both old ones.
    ping(&c.lab, &c.p1a, "10.2.235.194", 3);
    ping(&c.lab, &p3a, "10.2.169.138", 3);
    assert!(
        c.lab
            .show(&ctl3, "routes", false)
            .contains("10.2.36.64/26 via 10.2.36.65 dev vxlan.calico onlink")
    );

    // Endpoints follow the configuration live: replace cali1b by cali1c.
    let swapped = cluster("vxlan", 3)
        .without_endpoint("cali1b")
        .with(Endpoint::new("k8s-node1", "cali1c", "10.2.36.70"));
    replace_file(&c.config, swapped.yaml()).unwrap();
    c.lab.signal("k8s-node1", "HUP");
    c.lab.signal("k8s-node2", "HUP");
    let n1 = c.n[0].clone();
    let p1c = c.lab.pod("p1c", &n1, "cali1c", "10.2.36.70");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.lab.ip(&c.p1b, &["link", "show"]).contains("eth0") {
        assert!(
            std::time::Instant::now() < deadline,
            "removed endpoint's device is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ping(&c.lab, &p1c, "10.2.169.138", 3);
    ping(&c.lab, &c.p2a, "10.2.36.70", 3);
    assert_eq!(c.lab.stats(&c.ctl[0])["reloads"], 2);

    // A bad configuration is rejected, and the running one kept.
    let bad = ClusterBuilder::new().with(Pool::new("x", "nonsense"));
    replace_file(&c.config, bad.yaml()).unwrap();
    c.lab.signal("k8s-node1", "HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.lab.stats(&c.ctl[0])["reloads_rejected"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "bad reload not rejected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = c.lab.log("k8s-node1");
    assert!(
        log.contains("reload rejected, keeping the running configuration")
            && log.contains("spec.cidr: \"nonsense\" has no prefix length"),
        "{log}"
    );
    ping(&c.lab, &c.p1a, "10.2.169.138", 3);
}

/// A changed configuration file is enough: both daemons reload it within a
/// few seconds without SIGHUP, once per change; a SIGHUP on the unchanged
/// file then applies nothing more, and a change followed by SIGHUP is one
/// reload, not two.
#[test]
fn a_changed_file_is_reloaded_without_sighup() {
    if !root_or_skip("a_changed_file_is_reloaded_without_sighup") {
        return;
    }
    let c = two_nodes("vxlan");
    let replace = |text: &str| {
        let tmp = c.config.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &c.config).unwrap();
    };
    let reloads = |ctl: &std::path::Path| c.lab.stats(ctl)["reloads"].as_u64().unwrap();
    let wait_for = |want: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while c.ctl.iter().any(|ctl| reloads(ctl) < want) {
            assert!(
                std::time::Instant::now() < deadline,
                "the changed file was not reloaded: {:?}",
                c.ctl.iter().map(|ctl| reloads(ctl)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Add k8s-node3, no signal.
    replace(&cluster("vxlan", 3).yaml());
    wait_for(1);
    assert!(
        c.lab
            .show(&c.ctl[0], "routes", false)
            .contains("10.2.235.192/26 via 10.2.235.193 dev vxlan.calico onlink")
    );
    // SIGHUP, nothing changed: nothing applied, nothing rejected.
    c.lab.signal("k8s-node1", "HUP");
    std::thread::sleep(Duration::from_millis(1500));
    let s = c.lab.stats(&c.ctl[0]);
    assert_eq!(
        (s["reloads"].as_u64(), s["reloads_rejected"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(
        c.lab
            .log("k8s-node1")
            .contains("the configuration has not changed")
    );
    // A change and a SIGHUP at once: one reload.
    replace(&cluster("vxlan", 2).yaml());
    c.lab.signal("k8s-node1", "HUP");
    c.lab.signal("k8s-node2", "HUP");
    wait_for(2);
    std::thread::sleep(Duration::from_millis(2500));
    for ctl in &c.ctl {
        let s = c.lab.stats(ctl);
        assert_eq!(
            (s["reloads"].as_u64(), s["reloads_rejected"].as_u64()),
            (Some(2), Some(0)),
            "{s}"
        );
    }
    assert!(
        !c.lab
            .show(&c.ctl[0], "routes", false)
            .contains("10.2.235.192/26")
    );
}

/// SIGTERM stops the daemon cleanly, and its TUN devices go with it, also
/// the ones moved into pod namespaces.
#[test]
fn stop_removes_the_endpoints() {
    if !root_or_skip("stop_removes_the_endpoints") {
        return;
    }
    let mut c = two_nodes("ipip");
    assert!(c.lab.ip(&c.p1a, &["link", "show"]).contains("eth0"));
    let status = c.lab.stop("k8s-node1");
    assert!(status.success(), "exit status {status}");
    assert!(
        !c.lab.ip(&c.p1a, &["link", "show"]).contains("eth0"),
        "pod's eth0 is gone"
    );
    assert!(!c.lab.ip(&c.p1b, &["link", "show"]).contains("eth0"));
    assert!(!Path::new(&c.ctl[0]).exists(), "control socket removed");
    assert!(c.lab.log("k8s-node1").contains("stopped"));
    // `show` against a stopped daemon says so.
    let out = common::run(
        PODWIRE,
        &["show", "stats", "--control", c.ctl[0].to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"));
    let _ = &c.n;
}

/// Traffic across the nodes: `count` pings from p1a to p2a, pings from p2a
/// back to `back` (an address on k8s-node1, and how many), then 10 MB from
/// p2a to p1a on `port`.
fn traffic(c: &mut Cluster, count: usize, back: (&str, usize), port: u16) {
    ping(&c.lab, &c.p1a, "10.2.169.138", count);
    ping(&c.lab, &c.p2a, back.0, back.1);
    transfer(&mut c.lab, &c.p2a, &c.p1a, "10.2.36.68", 10, port);
}

/// SIGKILL leaves the endpoint devices, persistent, in the pods' namespaces
/// with their addresses and routes; a new daemon re-attaches to them (found
/// through the state file next to the control socket), deletes the device
/// of an endpoint removed from the configuration meanwhile, and traffic
/// flows again. Its clean stop then leaves nothing: no device, no state
/// file, no socket, no blackhole route, and the underlay's forwarding
/// setting never changed.
fn kill_and_restart(mode: &str) {
    let mut c = two_nodes(mode);
    let eth0 = |lab: &Lab, pod: &str| -> Option<String> {
        let out = lab.exec(pod, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "<ifindex>: eth0    inet 10.2.36.68/32 ..." : index and address.
        out.status.success().then(|| {
            let mut w = text.split_whitespace();
            format!("{} {}", w.next().unwrap_or(""), w.nth(2).unwrap_or(""))
        })
    };
    let n1 = c.n[0].clone();
    let forwarding =
        |lab: &Lab| lab.must_exec(&n1, &["sysctl", "-n", "net.ipv4.conf.eth0.forwarding"]);
    let blackholes = |lab: &Lab| lab.ip(&n1, &["-4", "route", "show", "type", "blackhole"]);
    ping(&c.lab, &c.p1a, "10.2.169.138", 2);
    let before = eth0(&c.lab, &c.p1a).expect("pod eth0");
    assert!(before.ends_with(" 10.2.36.68/32"), "{before}");
    let state = std::path::PathBuf::from(format!("{}.state", c.ctl[0].display()));
    // The tracker records where the pods' devices went within a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let names: Vec<&str> = v["endpoints"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        if names == ["eth0", "eth0"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "state file: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.lab.signal("k8s-node1", "KILL");
    let status = c.lab.stop("k8s-node1");
    assert!(!status.success(), "{status}");
    assert_eq!(
        eth0(&c.lab, &c.p1a).as_deref(),
        Some(before.as_str()),
        "the pod keeps its device"
    );
    assert!(eth0(&c.lab, &c.p1b).is_some());
    assert!(c.ctl[0].exists(), "a killed daemon leaves its socket file");
    let out = c
        .lab
        .exec(&c.p1a, &["ping", "-c", "1", "-W", "1", "10.2.169.138"]);
    assert!(!out.status.success(), "ping without a daemon");

    // Meanwhile, cali1b's workload is deleted.
    let text = cluster(mode, 2).without_endpoint("cali1b").yaml();
    replace_file(&c.config, text).unwrap();
    let threads = if mode == "vxlan" { "2" } else { "1" };
    c.ctl[0] = c
        .lab
        .podwire(&c.n[0], &c.config, "k8s-node1", &["--threads", threads]);
    let log = c.lab.log("k8s-node1");
    assert!(
        log.contains("endpoint re-attached to the device a previous daemon left")
            && log.contains("cali1a"),
        "{log}"
    );
    assert!(
        log.contains("deleted the device of an endpoint that is no longer configured"),
        "{log}"
    );
    traffic(&mut c, 3, ("10.2.36.68", 2), 5301);
    assert_eq!(
        eth0(&c.lab, &c.p1a).as_deref(),
        Some(before.as_str()),
        "the same device"
    );
    assert_eq!(
        eth0(&c.lab, &c.p1b),
        None,
        "the removed endpoint's device is deleted"
    );
    assert!(
        !c.lab.ip(&c.n[0], &["link", "show"]).contains("cali"),
        "no new device in the node's namespace"
    );
    // One copy of the blackhole route the killed daemon left.
    assert_eq!(
        blackholes(&c.lab).trim(),
        "blackhole 10.2.36.64/26 proto 252"
    );

    let status = c.lab.stop("k8s-node1");
    assert!(status.success(), "{status}");
    assert_eq!(
        eth0(&c.lab, &c.p1a),
        None,
        "a clean stop deletes the device"
    );
    assert!(!state.exists(), "state file removed");
    assert!(!c.ctl[0].exists(), "control socket removed");
    assert_eq!(blackholes(&c.lab), "", "blackhole routes removed");
    assert_eq!(forwarding(&c.lab).trim(), "1", "forwarding never changed");
}

#[test]
fn kill_and_restart_vxlan() {
    if root_or_skip("kill_and_restart_vxlan") {
        kill_and_restart("vxlan");
    }
}

#[test]
fn kill_and_restart_direct() {
    if root_or_skip("kill_and_restart_direct") {
        kill_and_restart("direct");
    }
}

/// The daemon needs CAP_NET_ADMIN and CAP_NET_RAW, not root's whole set:
/// k8s-node1's runs with only those two (the bounding set of `setpriv`), in
/// every mode, and does everything — devices made persistent, sockets,
/// the blackhole routes — and stops cleanly.
#[test]
fn runs_with_only_net_admin_and_net_raw() {
    if !root_or_skip("runs_with_only_net_admin_and_net_raw") {
        return;
    }
    let caps = [
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-all,+net_admin,+net_raw",
        "--",
    ];
    for mode in ["vxlan", "ipip", "direct"] {
        let mut c = two_nodes_via(mode, &caps);
        let pid = c.lab.pid("k8s-node1");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        // CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
        for set in ["CapPrm", "CapEff"] {
            assert!(
                status.contains(&format!("{set}:\t0000000000003000")),
                "{mode}: {status}"
            );
        }
        traffic(&mut c, 2, ("10.2.36.69", 2), 5302);
        let status = c.lab.stop("k8s-node1");
        assert!(status.success(), "{mode}: {status}");
        let log = c.lab.log("k8s-node1");
        assert!(
            !log.contains("WARN") && !log.contains("ERROR"),
            "{mode}: {log}"
        );
        assert!(!c.lab.ip(&c.p1a, &["link", "show"]).contains("eth0"));
        if mode == "direct" {
            let fwd = c
                .lab
                .must_exec(&c.n[0], &["sysctl", "-n", "net.ipv4.conf.eth0.forwarding"]);
            assert_eq!(fwd.trim(), "1", "forwarding left on");
        }
    }
}

/// Replaces `path` whole (a new file renamed over it), so that the daemon's
/// watcher never reads it half written.
fn replace_file(path: &std::path::Path, text: String) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// No client of the daemon's listeners delays another: with 100 idle
/// connections on the control socket and 100 on the metrics port (and one
/// on each that sent half a request), `podwire show stats` and a scrape
/// are answered at once — well within one client's deadline (2 s for the
/// control socket, 5 s for the metrics), where a daemon serving one client
/// at a time would wait for every idle one — and the pods keep forwarding.
#[test]
fn listeners_answer_beside_idle_clients() {
    if !root_or_skip("listeners_answer_beside_idle_clients") {
        return;
    }
    use std::io::Write as _;
    use std::os::unix::net::UnixStream;
    let c = two_nodes("vxlan");
    let idle: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&c.ctl[0]).unwrap())
        .collect();
    let mut half = UnixStream::connect(&c.ctl[0]).unwrap();
    half.write_all(b"show ro").unwrap();
    let started = std::time::Instant::now();
    let stats = c.lab.show(&c.ctl[0], "stats", false);
    let took = started.elapsed();
    assert!(stats.starts_with("uptime "), "{stats}");
    assert!(
        took < Duration::from_millis(1500),
        "show stats took {took:?} beside idle clients"
    );
    let script = "import socket, time\n\
        idle = [socket.create_connection(('127.0.0.1', 9091)) for _ in range(100)]\n\
        half = socket.create_connection(('127.0.0.1', 9091))\n\
        half.sendall(b'GET /metr')\n\
        t = time.monotonic()\n\
        s = socket.create_connection(('127.0.0.1', 9091))\n\
        s.settimeout(10)\n\
        s.sendall(b'GET /metrics HTTP/1.0\\r\\n\\r\\n')\n\
        data = b''\n\
        while True:\n\
        \x20   b = s.recv(65536)\n\
        \x20   if not b:\n\
        \x20       break\n\
        \x20   data += b\n\
        print(data.split(b'\\r\\n')[0].decode(), round(time.monotonic() - t, 3))\n";
    let out = c
        .lab
        .must_exec(&c.n[0], &["/usr/bin/python3", "-c", script]);
    assert!(out.starts_with("HTTP/1.0 200 OK "), "{out}");
    let secs: f64 = out
        .split_whitespace()
        .last()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(secs < 1.5, "a scrape beside idle clients took {secs} s");
    ping(&c.lab, &c.p1a, "10.2.169.138", 2);
    drop((idle, half));
}
