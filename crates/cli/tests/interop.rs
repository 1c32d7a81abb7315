//! Interoperability with the Linux kernel and with independent tools.
//!
//! - A podwire node and a node whose kernel runs `vxlan.calico` exactly as
//!   Felix programs it talk both ways; tshark's VXLAN dissector checks every
//!   field of what podwire sends.
//! - This kernel has no IPIP module, so podwire's IPIP packets are checked
//!   with tshark's dissector, and packets built by scapy are sent to it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{
    Lab, NODES, capture, ok, ping, root_or_skip, stop_capture, testbed, transfer, tshark,
};
use podwire::table::vtep_mac_for;
use podwire_lab::kernel;
use podwire_lab::netns::VethPod;

/// Two hosts on one underlay bridge: `a` is k8s-node1, `b` k8s-node2, in a
/// cluster of one pool in `mode` and a workload on each (cali1a, cali2a).
struct Hosts {
    lab: Lab,
    config: PathBuf,
    sw: String,
    a: String,
    b: String,
}

fn two_hosts(mode: &str) -> Hosts {
    let t = testbed(mode, &["cali1a", "cali2a"], &["na", "nb"]);
    let [a, b] = [t.nodes[0].clone(), t.nodes[1].clone()];
    Hosts {
        lab: t.lab,
        config: t.config,
        sw: t.sw,
        a,
        b,
    }
}

/// Node B as Felix programs a kernel node in VXLAN mode, with a pod attached
/// by a veth as Calico attaches pods.
fn kernel_node(lab: &mut Lab, node: &str) -> String {
    ok(kernel::vxlan_node(lab, node, NODES[1], NODES[0]));
    let pod = kernel_pod(lab, node, "1450");
    // On one host, the pod's TCP checksums would stay CHECKSUM_PARTIAL all
    // the way through veth, the kernel's VXLAN and the bridge: no NIC ever
    // completes them, and a UDP socket hands podwire the inner segment with
    // only the pseudo-header sum in its checksum field. Between machines, the
    // sending NIC completes them. Here the pod computes them itself.
    lab.must_exec(&pod, &["ethtool", "-K", "eth0", "tx", "off"]);
    pod
}

/// A pod on kernel node `node`, attached as Calico attaches pods: a veth
/// whose host side is cali2a with MAC ee:ee:ee:ee:ee:ee, proxy ARP, a /32
/// route; in the pod, 10.2.169.138/32 and a default route via 169.254.1.1.
fn kernel_pod(lab: &mut Lab, node: &str, mtu: &str) -> String {
    let pod = VethPod {
        host: "cali2a",
        ip: "10.2.169.138",
        mtu: Some(mtu),
        prompt_arp: true,
    };
    ok(lab.veth_pod(node, "pb", pod))
}

/// Pod `pa` on the podwire node and `pb` on the kernel node `b`: pings
/// both ways while `b`'s underlay is captured into `pcap` (returned), then
/// 20 MB each way checked by SHA-256 (ports `port` and `port + 1`).
fn both_ways(lab: &mut Lab, b: &str, pa: &str, pb: &str, pcap: &str, port: u16) -> PathBuf {
    let pcap = lab.dir.join(pcap);
    capture(lab, b, "eth0", &pcap, "tcpdump");
    ping(lab, pa, "10.2.169.138", 5);
    ping(lab, pb, "10.2.36.68", 5);
    stop_capture(lab, "tcpdump");
    transfer(lab, pa, pb, "10.2.169.138", 20, port);
    transfer(lab, pb, pa, "10.2.36.68", 20, port + 1);
    pcap
}

#[test]
fn vxlan_with_a_kernel_node() {
    if root_or_skip("vxlan_with_a_kernel_node") {
        kernel_interop(&[]);
    }
}

/// The same with every offload off: VXLAN through the raw socket with the
/// UDP checksum computed by podwire, one TUN read per packet.
#[test]
fn vxlan_with_a_kernel_node_without_offloads() {
    if root_or_skip("vxlan_with_a_kernel_node_without_offloads") {
        kernel_interop(&["--no-udp-segment", "--no-tun-offload"]);
    }
}

/// The same with the pod's TCP super-packets whole through the tunnel TAP
/// (`--tunnel-gso`): the node's kernel cuts them into VXLAN segments, which
/// the kernel node takes; tshark checks every data segment podwire's node
/// sent during a transfer, field by field, as the kernel's VXLAN sends them.
#[test]
fn vxlan_super_packets_whole_with_a_kernel_node() {
    if root_or_skip("vxlan_super_packets_whole_with_a_kernel_node") {
        kernel_interop(&["--tunnel-gso"]);
    }
}

fn kernel_interop(podwire_flags: &[&str]) {
    let Hosts {
        mut lab,
        config,
        a,
        b,
        ..
    } = two_hosts("vxlan");
    // By default podwire leaves the outer UDP checksum to the kernel and
    // the NIC (UDP_SEGMENT with checksum offload); a veth never completes
    // it, so on this underlay the kernel computes it in software, as it
    // does for a NIC without offload, and the capture shows it complete.
    // The same for the tunnel TAP's segments: the kernel cuts them up with
    // their inner TCP checksums partial, for the NIC.
    let tunnel = podwire_flags.contains(&"--tunnel-gso");
    if podwire_flags.is_empty() || tunnel {
        lab.must_exec(&a, &["ethtool", "-K", "eth0", "tx", "off"]);
    }
    let ctl = lab.podwire(&a, &config, "k8s-node1", podwire_flags);
    let pa = lab.pod("pa", &a, "cali1a", "10.2.36.68");
    let pb = kernel_node(&mut lab, &b);

    let pcap = both_ways(&mut lab, &b, &pa, &pb, "vxlan.pcap", 6001);

    // Every field of what podwire sent, as tshark's dissectors read it.
    let rows = tshark(
        &pcap,
        "vxlan && ip.src == 192.168.33.55",
        &[
            "ip.dst",
            "ip.ttl",
            "ip.dsfield.dscp",
            "ip.flags.df",
            "ip.checksum.status",
            "udp.srcport",
            "udp.dstport",
            "udp.checksum.status",
            "vxlan.flags",
            "vxlan.vni",
            "eth.dst",
            "eth.src",
            "eth.type",
            "icmp.type",
        ],
    );
    assert!(
        rows.len() >= 10,
        "podwire's VXLAN packets captured: {rows:?}"
    );
    let mac1 = vtep_mac_for("k8s-node1").to_string();
    let mac2 = vtep_mac_for("k8s-node2").to_string();
    let mut ports = std::collections::BTreeSet::new();
    for r in &rows {
        // Fields of the outer headers come first where a layer repeats.
        let outer = |i: usize| r[i].split(',').next().unwrap_or("").to_string();
        let inner = |i: usize| r[i].split(',').next_back().unwrap_or("").to_string();
        assert_eq!(outer(0), "192.168.33.57", "outer destination: {r:?}");
        assert_eq!(outer(1), "64", "outer TTL: {r:?}");
        assert_eq!(outer(2), "0", "outer DSCP: {r:?}");
        assert_eq!(outer(3), "0", "outer DF clear: {r:?}");
        assert_eq!(
            outer(4),
            "1",
            "outer IPv4 checksum good (tshark status 1): {r:?}"
        );
        let sport: u16 = r[5].parse().unwrap();
        assert!((32768..=60999).contains(&sport), "source port: {r:?}");
        ports.insert(sport);
        assert_eq!(r[6], "4789");
        assert_eq!(r[7], "1", "UDP checksum present and good: {r:?}");
        assert_eq!(r[8], "0x0800", "VXLAN flags: only I set: {r:?}");
        assert_eq!(r[9], "4096", "VNI: {r:?}");
        // The inner frame: remote VTEP MAC from the neighbour table, local
        // VTEP MAC, IPv4.
        assert_eq!(inner(10), mac2, "inner destination MAC: {r:?}");
        assert_eq!(inner(11), mac1, "inner source MAC: {r:?}");
        assert_eq!(inner(12), "0x0800", "inner EtherType: {r:?}");
        assert_eq!(inner(1), "63", "inner TTL decremented once: {r:?}");
    }
    // Two flows (echo requests out, echo replies back) use two ports, each its own.
    assert!(ports.len() <= 2, "one source port per flow: {ports:?}");
    let stats = lab.stats(&ctl);
    assert_eq!(lab.drops(&ctl, "bad-checksum"), 0, "{stats}");
    if tunnel {
        tunnel_segments(&mut lab, &ctl, &b, &pa, &pb);
    }
}

/// A transfer from `pa` to the kernel node's pod `pb` while `b`'s underlay
/// is captured: podwire sent the pod's super-packets whole, and each data
/// segment on the wire is a VXLAN packet of at most the underlay's 1500
/// bytes with the kernel VXLAN device's fields and good checksums, outer
/// and inner.
fn tunnel_segments(lab: &mut Lab, ctl: &std::path::Path, b: &str, pa: &str, pb: &str) {
    let pcap = lab.dir.join("tunnel.pcap");
    capture(lab, b, "eth0", &pcap, "tcpdump-tunnel");
    transfer(lab, pa, pb, "10.2.169.138", 10, 6101);
    stop_capture(lab, "tcpdump-tunnel");
    let stats = lab.stats(ctl);
    assert_eq!(stats["offloads"]["tunnel_gso"], true, "{stats}");
    let whole = stats["super_packets"]["sent_whole"].as_u64().unwrap();
    assert!(whole > 20, "super-packets sent whole: {stats}");
    assert_eq!(stats["super_packets"]["split"], 0, "{stats}");
    let rows = tshark(
        &pcap,
        "vxlan && ip.src == 192.168.33.55 && tcp.len > 0",
        &[
            "ip.len",
            "ip.ttl",
            "ip.flags.df",
            "ip.checksum.status",
            "udp.dstport",
            "udp.checksum.status",
            "vxlan.vni",
            "tcp.checksum.status",
            "tcp.len",
            "udp.srcport",
        ],
    );
    assert!(rows.len() > 1000, "data segments captured: {}", rows.len());
    let (mut full, mut ports) = (0, std::collections::BTreeSet::new());
    for r in &rows {
        let outer = |i: usize| r[i].split(',').next().unwrap_or("").to_string();
        let inner = |i: usize| r[i].split(',').next_back().unwrap_or("").to_string();
        let len: usize = outer(0).parse().unwrap();
        assert!(len <= 1500, "outer length within the underlay's MTU: {r:?}");
        full += usize::from(len == 1500);
        assert_eq!(outer(1), "64", "outer TTL: {r:?}");
        assert_eq!(inner(1), "63", "inner TTL: {r:?}");
        assert_eq!(outer(2), "0", "outer DF clear: {r:?}");
        assert_eq!(r[3], "1,1", "outer and inner IPv4 checksums good: {r:?}");
        assert_eq!(r[4], "4789");
        assert_eq!(r[5], "1", "UDP checksum good: {r:?}");
        assert_eq!(r[6], "4096", "VNI: {r:?}");
        assert_eq!(r[7], "1", "inner TCP checksum good: {r:?}");
        ports.insert(r[9].clone());
    }
    // Full-size segments (1450 bytes inside) carry most of the transfer,
    // all from the flow's one source port.
    assert!(full * 2 > rows.len(), "{full} of {} full", rows.len());
    assert_eq!(ports.len(), 1, "one source port for the flow: {ports:?}");
}

/// Direct mode (Calico's BGP mode) against a node whose kernel routes pod
/// traffic as BIRD and Felix set it up: the remote block via the podwire
/// node's IP on the underlay, the pod on a veth with proxy ARP. Nothing is
/// turned off in the kernel pod: its TCP leaves with partial checksums and
/// in super-packets, and podwire's packet socket (`PACKET_VNET_HDR`) says
/// so, so podwire completes single segments and hands super-packets whole
/// to its pod. tshark checks the frames podwire sends.
#[test]
fn direct_with_a_kernel_node() {
    if !root_or_skip("direct_with_a_kernel_node") {
        return;
    }
    let Hosts {
        mut lab,
        config,
        a,
        b,
        ..
    } = two_hosts("direct");
    lab.must_exec(&a, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    let ctl = lab.podwire(&a, &config, "k8s-node1", &[]);
    let pa = lab.pod("pa", &a, "cali1a", "10.2.36.68");
    ok(kernel::direct_node(&lab, &b, NODES[0]));
    let pb = kernel_pod(&mut lab, &b, "1500");

    let pcap = both_ways(&mut lab, &b, &pa, &pb, "direct.pcap", 6003);

    let mac_a = lab.must_exec(&a, &["cat", "/sys/class/net/eth0/address"]);
    let mac_b = lab.must_exec(&b, &["cat", "/sys/class/net/eth0/address"]);
    let rows = tshark(
        &pcap,
        "icmp && ip.src == 10.2.36.68",
        &[
            "eth.src",
            "eth.dst",
            "ip.dst",
            "ip.ttl",
            "ip.checksum.status",
            "icmp.checksum.status",
        ],
    );
    assert!(rows.len() >= 10, "podwire's frames captured: {rows:?}");
    for r in &rows {
        assert_eq!(r[0], mac_a.trim(), "from the podwire node's MAC: {r:?}");
        assert_eq!(r[1], mac_b.trim(), "to the kernel node's MAC: {r:?}");
        assert_eq!(r[2], "10.2.169.138");
        assert_eq!(r[3], "63", "TTL decremented once: {r:?}");
        assert_eq!(r[4], "1", "IPv4 checksum good: {r:?}");
        assert_eq!(r[5], "1", "ICMP checksum good: {r:?}");
    }
    let stats = lab.stats(&ctl);
    for d in stats["drops"].as_array().unwrap() {
        let (reason, n) = (d[0].as_str().unwrap(), d[1].as_u64().unwrap());
        assert!(
            n == 0 || reason == "not-ipv4",
            "{n} drops for {reason}: {stats}"
        );
    }
    let sp = &stats["super_packets"];
    assert!(sp["sent_whole"].as_u64() > Some(10), "{sp}");
    assert!(sp["received_whole"].as_u64() > Some(10), "{sp}");
}

/// Runs scapy in `ns` with `script` (which may use `mac1`, the VTEP MAC of k8s-node1).
fn scapy(lab: &Lab, ns: &str, script: &str) {
    let full = format!("from scapy.all import *\nconf.verb = 0\n{script}\n");
    let out = lab.exec(ns, &["/usr/bin/python3", "-c", &full]);
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ipip_checked_by_tshark_and_scapy() {
    if !root_or_skip("ipip_checked_by_tshark_and_scapy") {
        return;
    }
    let Hosts {
        mut lab,
        config,
        sw,
        a,
        b,
    } = two_hosts("ipip");
    let ctl_a = lab.podwire(&a, &config, "k8s-node1", &[]);
    let _ctl_b = lab.podwire(&b, &config, "k8s-node2", &[]);
    let pa = lab.pod("pa", &a, "cali1a", "10.2.36.68");
    let _pb = lab.pod("pb", &b, "cali2a", "10.2.169.138");

    // podwire's IPIP, through tshark's dissector.
    let pcap = lab.dir.join("ipip.pcap");
    capture(&mut lab, &b, "eth0", &pcap, "tcpdump");
    ping(&lab, &pa, "10.2.169.138", 3);
    let out = lab.exec(
        &pa,
        &[
            "ping",
            "-c",
            "1",
            "-Q",
            "0xb9",
            "-t",
            "40",
            "-W",
            "2",
            "10.2.169.138",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stop_capture(&mut lab, "tcpdump");
    let rows = tshark(
        &pcap,
        "ip.proto == 4 && ip.src == 192.168.33.55",
        &[
            "ip.proto",
            "ip.dst",
            "ip.ttl",
            "ip.dsfield.dscp",
            "ip.dsfield.ecn",
            "ip.flags.df",
            "ip.checksum.status",
            "icmp.type",
        ],
    );
    assert!(rows.len() >= 4, "{rows:?}");
    for r in &rows {
        // Two IPv4 layers: outer, then inner.
        let proto: Vec<&str> = r[0].split(',').collect();
        let dst: Vec<&str> = r[1].split(',').collect();
        let ttl: Vec<&str> = r[2].split(',').collect();
        let dscp: Vec<&str> = r[3].split(',').collect();
        let ecn: Vec<&str> = r[4].split(',').collect();
        let df: Vec<&str> = r[5].split(',').collect();
        let csum: Vec<&str> = r[6].split(',').collect();
        assert_eq!(proto[0], "4", "{r:?}");
        assert_eq!(dst, ["192.168.33.57", "10.2.169.138"], "{r:?}");
        assert_eq!(ttl[0], ttl[1], "outer TTL copied from the inner: {r:?}");
        assert_eq!(dscp[0], "0", "outer DSCP 0: {r:?}");
        assert_eq!(df[0], df[1], "DF copied: {r:?}");
        assert_eq!(csum[0], "1", "outer checksum good: {r:?}");
        // Inner ECN CE (0xb9 & 3 = 1, ECT(1)) is copied; check the marked ping.
        if ttl[1] == "39" {
            assert_eq!(dscp[1], "46", "{r:?}");
            assert_eq!(ecn, ["1", "1"], "ECN ECT(1) copied outward: {r:?}");
        }
    }
    assert!(
        rows.iter().any(|r| r[2] == "39,39"),
        "the TTL-40 ping, decremented once: {rows:?}"
    );

    // IPIP built by scapy, from the peer node's address, is decapsulated
    // and delivered; malformed variants are dropped under their reasons.
    let delivered = |lab: &Lab| -> u64 {
        let s = lab.stats(&ctl_a);
        s["modes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m[0] == "ipip")
            .unwrap()[1]["rx"]["packets"]
            .as_u64()
            .unwrap()
    };
    let before = delivered(&lab);
    let listen = lab.dir.join("pod.pcap");
    capture(&mut lab, &pa, "eth0", &listen, "podcap");
    scapy(
        &lab,
        &b,
        "send(IP(src='192.168.33.57', dst='192.168.33.55')/IP(src='10.2.169.138', dst='10.2.36.68', ttl=20, id=4242)/ICMP(id=77, seq=1)/b'scapy')",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while delivered(&lab) < before + 1 {
        assert!(
            Instant::now() < deadline,
            "scapy's IPIP packet was not delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_capture(&mut lab, "podcap");
    let seen = tshark(
        &listen,
        "ip.id == 4242",
        &["ip.ttl", "icmp.type", "data.data"],
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0][0], "19", "the pod sees the TTL one lower");

    let drops = |lab: &Lab, r: &str| lab.drops(&ctl_a, r);
    let base = [
        "bad-checksum",
        "malformed",
        "not-local",
        "unknown-peer",
        "fragmented-outer",
        "ttl-exceeded",
    ]
    .map(|r| drops(&lab, r));
    scapy(
        &lab,
        &b,
        "inner = IP(src='10.2.169.138', dst='10.2.36.68')/ICMP()\n\
         raw_inner = bytes(inner)\n\
         bad = bytearray(raw_inner); bad[10] ^= 0xff\n\
         send(IP(src='192.168.33.57', dst='192.168.33.55', proto=4)/Raw(bytes(bad)))\n\
         send(IP(src='192.168.33.57', dst='192.168.33.55', proto=4)/Raw(raw_inner[:15]))\n\
         send(IP(src='192.168.33.57', dst='192.168.33.55')/IP(src='10.2.169.138', dst='10.2.169.139')/ICMP())\n\
         send(IP(src='192.168.33.57', dst='192.168.33.55')/IP(src='10.2.169.138', dst='10.2.36.68', ttl=1)/ICMP())",
    );
    let stranger = lab.netns("st");
    lab.attach(&sw, "br0", &stranger, "eth0", "192.168.33.99/24");
    scapy(
        &lab,
        &stranger,
        "send(IP(src='192.168.33.99', dst='192.168.33.55')/IP(src='10.2.169.138', dst='10.2.36.68')/ICMP())",
    );
    let want = [1, 1, 1, 1, 0, 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = [
            "bad-checksum",
            "malformed",
            "not-local",
            "unknown-peer",
            "fragmented-outer",
            "ttl-exceeded",
        ]
        .map(|r| drops(&lab, r));
        let diff: Vec<u64> = now.iter().zip(base).map(|(n, b)| n - b).collect();
        if diff == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drops by reason {diff:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
