//! `podwire check` end to end: the binary on the shipped examples, compared
//! with tables written by hand from SPEC §2 and §6 (tests/golden/).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root, where `examples/` is.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn podwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podwire"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run podwire")
}

fn check_matches_golden(example: &str, node: &str) {
    let config = format!("examples/{example}.yaml");
    let out = podwire(&[
        "check",
        "--config",
        &config,
        "--node",
        node,
        "--underlay",
        "eth0",
        "--underlay-mtu",
        "1500",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{config} {node}: {stderr}");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{example}-{node}.txt"));
    let want = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        want,
        "{config} {node}"
    );
}

#[test]
fn ipip_example() {
    check_matches_golden("ipip", "k8s-node1");
}

#[test]
fn vxlan_example() {
    check_matches_golden("vxlan", "k8s-node1");
    check_matches_golden("vxlan", "k8s-master");
}

#[test]
fn direct_example() {
    check_matches_golden("direct", "k8s-node1");
}

#[test]
fn crosssubnet_example() {
    check_matches_golden("crosssubnet", "k8s-node1");
}

#[test]
fn bad_config_exits_1_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("podwire-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    let text = std::fs::read_to_string(root().join("examples/vxlan.yaml"))
        .unwrap()
        .replace("cidr: 10.2.169.128/26", "cidr: 10.2.169.128/25");
    std::fs::write(&file, text).unwrap();
    let out = podwire(&[
        "check",
        "--config",
        file.to_str().unwrap(),
        "--node",
        "k8s-node1",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing printed on a bad config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(IPAMBlock \"10-2-169-128-26\"): spec.cidr: 10.2.169.128/25 is a /25 block, but pool \"default-ipv4-ippool\" has blockSize 26"),
        "{stderr}"
    );
}

#[test]
fn unknown_node_and_missing_file_exit_1() {
    let out = podwire(&[
        "check",
        "--config",
        "examples/ipip.yaml",
        "--node",
        "nope",
        "--underlay-mtu",
        "1500",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "node \"nope\" is not in the configuration (nodes: k8s-master, k8s-node1, k8s-node2)"
        ),
        "{stderr}"
    );
    let out = podwire(&[
        "check",
        "--config",
        "examples/none.yaml",
        "--node",
        "k8s-node1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read examples/none.yaml"));
}
