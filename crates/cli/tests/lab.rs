//! `podwire lab` in a short form: every ping answered, every pcap decoding
//! to the expected encapsulation with tshark, nothing left behind — also
//! after `--keep` and `--down`, and after Ctrl-C.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PODWIRE, must, root_or_skip, tshark};

fn lab_namespaces() -> Vec<String> {
    must("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("pwlab"))
        .map(str::to_string)
        .collect()
}

/// Where test `tag`'s lab writes.
fn out_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("podwire-lab-{tag}-{}", std::process::id()))
}

/// Runs `podwire lab` with `args`, one-second transfers and output in
/// `out_dir(tag)`, which must succeed; returns the lab that holds the
/// test lock, the output directory and what it printed.
fn lab_succeeds(tag: &str, args: &[&str]) -> (common::Lab, PathBuf, String) {
    let serial = common::Lab::new();
    let out_dir = out_dir(tag);
    let out = Command::new(PODWIRE)
        .arg("lab")
        .args(args)
        .args(["--seconds", "1", "--out", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (serial, out_dir, text)
}

#[test]
fn lab_runs_all_modes_and_cleans_up() {
    if !root_or_skip("lab_runs_all_modes_and_cleans_up") {
        return;
    }
    let (_serial, out_dir, text) = lab_succeeds("test", &[]);
    for mode in ["ipip", "vxlan", "direct"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(mode) && l.contains("/12"))
            .unwrap_or_else(|| panic!("no summary line for {mode}:\n{text}"));
        assert!(line.contains("12/12"), "{line}");
        // The host path's five checks: the node probing a local and a
        // remote pod, natOutgoing, a ClusterIP from a pod and the node.
        assert!(line.contains(" 5/5 "), "{line}");
    }
    for line in [
        "ok   ping k8s-node1 -> 10.2.36.68 (the node probes its own pod",
        "ok   tcp k8s-node1 -> 10.2.169.139:8080 (a pod on another node): \"hello from 10.2.169.139\"",
        "ok   ping 10.2.36.68 -> 203.0.113.10 (the internet, beyond the router): 3/3 answered, 3 echo request(s) seen there, from 192.168.33.55 (",
        "ok   tcp 10.2.36.68 -> ClusterIP 10.96.0.10:80 (kube-proxy's nftables rules on k8s-node1, backend 10.2.169.139:8080 on k8s-node2): \"hello from 10.2.169.139\"",
        "ok   tcp k8s-node1 -> ClusterIP 10.96.0.10:80 (",
    ] {
        assert_eq!(
            text.matches(line).count(),
            3,
            "{line:?} in each mode:\n{text}"
        );
    }
    assert!(
        text.contains("10.2.169.128/26 via 10.2.169.129 dev vxlan.calico onlink"),
        "{text}"
    );
    assert!(text.contains("66:90:43:3d:b3:e7 dev vxlan.calico dst 192.168.33.57 self permanent"));

    let pcap = |mode: &str| out_dir.join(format!("lab-{mode}.pcap"));
    // IPIP: protocol 4 between node IPs, around pod-to-pod ICMP.
    let ipip = tshark(
        &pcap("ipip"),
        "ip.proto == 4 && icmp",
        &["ip.src", "ip.dst"],
    );
    assert!(ipip.len() >= 18, "{} IPIP pings", ipip.len());
    assert!(
        ipip.iter()
            .all(|r| r[0].starts_with("192.168.33.") && r[1].starts_with("192.168.33."))
    );
    assert!(
        ipip.iter().any(|r| r[1] == "192.168.33.57,10.2.169.138"),
        "{ipip:?}"
    );
    // VXLAN: UDP 4789, VNI 4096, pod-to-pod ICMP inside.
    let vxlan = tshark(
        &pcap("vxlan"),
        "vxlan && icmp",
        &["udp.dstport", "vxlan.vni", "ip.dst"],
    );
    assert!(vxlan.len() >= 18, "{} VXLAN pings", vxlan.len());
    assert!(
        vxlan.iter().all(|r| r[0] == "4789" && r[1] == "4096"),
        "{vxlan:?}"
    );
    // Direct: pod to pod on the wire with one IPv4 header, nothing encapsulated.
    let direct = tshark(
        &pcap("direct"),
        "icmp && ip.src == 10.2.36.68",
        &["ip.src", "ip.dst"],
    );
    assert!(direct.len() >= 6, "{direct:?}");
    assert!(direct.iter().all(|r| !r[0].contains(',')), "{direct:?}");
    assert!(tshark(&pcap("direct"), "vxlan || ip.proto == 4", &["ip.src"]).is_empty());
    // On the underlay, seen by tshark: the pod's echo requests to the
    // internet leave k8s-node1 masqueraded to its address, in every mode;
    // the ClusterIP's connection crosses to the backend's node DNATed,
    // inside the mode's encapsulation.
    for mode in ["ipip", "vxlan", "direct"] {
        let out = tshark(
            &pcap(mode),
            "icmp.type == 8 && ip.dst == 203.0.113.10",
            &["ip.src"],
        );
        assert!(
            out.len() >= 3 && out.iter().all(|r| r[0] == "192.168.33.55"),
            "{mode}: {out:?}"
        );
        let svc = tshark(
            &pcap(mode),
            "tcp.dstport == 8080 && tcp.flags.syn == 1 && ip.dst == 10.2.169.139",
            &["ip.dst"],
        );
        assert!(svc.len() >= 3, "{mode}: {svc:?}");
    }

    assert_eq!(
        lab_namespaces(),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The lab on etcd: the pods made through podwire-cni (the lab as the
/// container runtime); k8s-node2 joins while the others run; they route to
/// it without a restart, and its pods answer.
#[test]
fn lab_on_etcd_shows_a_node_joining() {
    if !root_or_skip("lab_on_etcd_shows_a_node_joining") {
        return;
    }
    let (_serial, out_dir, text) =
        lab_succeeds("etcd", &["--datastore", "etcd", "--mode", "vxlan"]);
    for line in [
        "k8s-node1: datastore etcdv3 http://192.168.33.250:2379: connected, in sync",
        "k8s-node2 joins: podwire datastore import of its Node and block: wrote ",
        "podwire-cni ADD default/pod-1a on k8s-node1: 10.2.36.68/32 as eth0 in /var/run/netns/",
        "podwire-cni ADD default/pod-2b on k8s-node2: 10.2.169.139/32 as eth0 in /var/run/netns/",
        "k8s-master: 10.2.169.128/26 via 10.2.169.129 dev vxlan.calico onlink  (applied ",
        "k8s-node1: 10.2.169.128/26 via 10.2.169.129 dev vxlan.calico onlink  (applied ",
        "ping 10.2.36.68 -> 10.2.169.138 (k8s-node1 -> k8s-node2): 3/3 answered",
        "ping 10.2.169.138 -> 10.2.36.68 (k8s-node2 -> k8s-node1): 3/3 answered",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    let summary = text
        .lines()
        .find(|l| l.starts_with("vxlan "))
        .unwrap_or_default();
    assert!(summary.contains("12/12"), "{text}");
    // The pcap holds the pods' VXLAN, not the datastore's TCP.
    let pcap = out_dir.join("lab-vxlan.pcap");
    assert!(tshark(&pcap, "vxlan && icmp", &["ip.dst"]).len() >= 18);
    assert!(tshark(&pcap, "tcp.port == 2379", &["ip.src"]).is_empty());
    assert_eq!(
        lab_namespaces(),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn lab_keep_then_down() {
    if !root_or_skip("lab_keep_then_down") {
        return;
    }
    let (_serial, out_dir, text) = lab_succeeds("keep", &["--mode", "vxlan", "--keep"]);
    assert!(text.contains("lab --down"), "{text}");
    // The cluster is still up: the printed command works.
    let cmd = text
        .lines()
        .find(|l| l.trim_start().starts_with("ip netns exec") && l.contains("ping"))
        .unwrap()
        .trim();
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let ping = must(
        words[0],
        &[&words[1..], &["-c", "1", "-W", "2"][..]].concat(),
    );
    assert!(ping.contains("1 received"), "{ping}");
    assert!(!lab_namespaces().is_empty());
    // A second lab refuses while this one is up.
    let again = Command::new(PODWIRE)
        .args(["lab", "--mode", "ipip"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("podwire lab --down"));
    let down = must(PODWIRE, &["lab", "--down"]);
    assert!(down.contains("removed"), "{down}");
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert!(
        must("ps", &["-eo", "args"])
            .lines()
            .all(|l| !l.contains("lab-vxlan.yaml")),
        "daemons left"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn lab_cleans_up_after_ctrl_c() {
    if !root_or_skip("lab_cleans_up_after_ctrl_c") {
        return;
    }
    let _serial = common::Lab::new();
    let out_dir = out_dir("int");
    let mut child = Command::new(PODWIRE)
        .args(["lab", "--seconds", "5", "--out", out_dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first podwire cluster is up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lab_namespaces().iter().any(|n| n.ends_with("-n1"))
        || !out_dir.join("lab-ipip.yaml").exists()
    {
        assert!(Instant::now() < deadline, "the lab never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    must("kill", &["-INT", &child.id().to_string()]);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(
        lab_namespaces(),
        Vec::<String>::new(),
        "namespaces left after Ctrl-C"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn lab_refuses_without_root_or_tools() {
    if !root_or_skip("lab_refuses_without_root_or_tools") {
        return;
    }
    let _serial = common::Lab::new();
    // A missing tool is named, with its package.
    let out = Command::new(PODWIRE)
        .args(["lab"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs `ip`: install it with `apt-get install -y iproute2`"),
        "{err}"
    );
    // Not root: said plainly (run as nobody through setpriv, from a copy
    // of the binary that nobody may execute wherever the build lives).
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("podwire-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("podwire");
    std::fs::copy(PODWIRE, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin.to_str().unwrap(),
            "lab",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("podwire lab needs root"), "{err}");
    assert!(lab_namespaces().is_empty());
}
