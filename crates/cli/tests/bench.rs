//! `podwire bench` in a short form: every path and test measured (pod to
//! pod, masqueraded to the internet, through a ClusterIP; throughput and
//! request/response latency), the JSON shape of the issue, the SVG chart,
//! nothing left behind.

mod common;

use std::process::Command;

use common::{PODWIRE, must, root_or_skip};

#[test]
fn bench_measures_every_path() {
    if !root_or_skip("bench_measures_every_path") {
        return;
    }
    let lab = common::Lab::new();
    let svg = lab.dir.join("bench.svg");
    let plot = ["--plot", svg.to_str().unwrap()];
    let (j, _) = bench_json(
        &lab,
        &[&["--rounds", "1", "--seconds", "1"], &plot[..]].concat(),
    );
    assert_eq!(j["rounds"], 1);
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 55);
    for path in [
        "kernel-vxlan",
        "kernel-direct",
        "podwire-vxlan",
        "podwire-ipip",
        "podwire-direct",
        "kernel-vxlan-nat",
        "podwire-vxlan-nat",
        "kernel-vxlan-svc",
        "podwire-vxlan-svc",
        "podwire-vxlan-tap",
        "podwire-ipip-tun",
    ] {
        for (test, unit) in [
            ("tcp1", "Gbit/s"),
            ("tcp4", "Gbit/s"),
            ("udp64", "kpps"),
            ("rr-udp", "us"),
            ("rr-tcp", "us"),
        ] {
            let r = results
                .iter()
                .find(|r| r["path"] == path && r["test"] == test)
                .unwrap_or_else(|| panic!("no {path} {test}"));
            assert_eq!(r["unit"], unit);
            let median = r["median"].as_f64().unwrap();
            assert!(median > 0.0, "{path} {test}: {median}");
            assert_eq!(r["samples"].as_array().unwrap().len(), 1);
            // The CPUs were busy during the test: some, not more than all.
            let busy = r["cpu_busy"].as_f64().unwrap();
            assert!(busy > 0.0 && busy <= 1.0, "{path} {test}: cpu_busy {busy}");
            assert_eq!(r["cpu_busy_samples"].as_array().unwrap().len(), 1);
            // Request/response: a tail at or above the median, in
            // microseconds that a round trip on one host can take.
            if test.starts_with("rr-") {
                let (p99, p999) = (r["p99"].as_f64().unwrap(), r["p999"].as_f64().unwrap());
                assert!(median < p99 + 1e-9 && p99 <= p999, "{path} {test}: {r}");
                assert!(median > 1.0 && median < 10_000.0, "{path} {test}: {median}");
            } else {
                assert!(r.get("p99").is_none(), "{path} {test}");
            }
            // TCP throughput tests count retransmissions and reordering,
            // one per round.
            let n = usize::from(test.starts_with("tcp"));
            for key in ["retransmits", "reorder_events"] {
                assert_eq!(
                    r[key].as_array().map_or(0, |a| a.len()),
                    n,
                    "{path} {test} {key}"
                );
            }
        }
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("podwire-vxlan tcp1"));
    no_bench_namespaces_left();
}

/// `podwire bench --cni` in a short form: both plugins' ADDs measured
/// (podwire-cni on etcd, ptp with host-local), the JSON shape, nothing
/// left behind.
#[test]
fn bench_cni_measures_both_plugins() {
    if !root_or_skip("bench_cni_measures_both_plugins") {
        return;
    }
    let lab = common::Lab::new();
    let (j, _) = bench_json(&lab, &["--cni", "--adds", "3"]);
    assert_eq!(j["adds"], 3);
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(r["samples_ms"].as_array().unwrap().len(), 3, "{r}");
        let (median, worst) = (
            r["median_ms"].as_f64().unwrap(),
            r["worst_ms"].as_f64().unwrap(),
        );
        assert!(median > 0.0 && worst >= median, "{r}");
    }
    let left: Vec<String> = must("ip", &["netns", "list"])
        .lines()
        .filter(|l| l.starts_with("pwcni"))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `podwire bench --pods 3` on three paths (the kernel's VXLAN, podwire's
/// with super-packets whole, and an ablation path: IPIP received through
/// the packet socket alone), one stream per pair: every pair's iperf3
/// finishes (the extra pods are made and routed on both kinds of node),
/// the throughput is their sum, and `--paths`/`--tests` keep the rest out.
#[test]
fn bench_runs_pod_pairs_at_once() {
    if !root_or_skip("bench_runs_pod_pairs_at_once") {
        return;
    }
    let lab = common::Lab::new();
    #[rustfmt::skip]
    let (j, log) = bench_json(&lab, &[
        "--rounds", "1", "--seconds", "1", "--pods", "3",
        "--paths", "kernel-vxlan,podwire-vxlan-tap,podwire-ipip-rx", "--tests", "tcp1",
    ]);
    assert!(!log.contains("did not finish"), "{log}");
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{j}");
    for r in results {
        assert_eq!(r["test"], "tcp1");
        assert!(r["median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r.get("failed_pairs").is_none(), "{r}");
    }
    no_bench_namespaces_left();
}

/// `podwire bench --json --out <lab dir>` with `args`, which must succeed:
/// its JSON, and what it logged.
fn bench_json(lab: &common::Lab, args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(PODWIRE)
        .args(["bench", "--json", "--out", lab.dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let j = serde_json::from_slice(&out.stdout).unwrap();
    (j, log)
}

/// No namespace of a bench run is left.
fn no_bench_namespaces_left() {
    let left: Vec<String> = must("ip", &["netns", "list"])
        .lines()
        .filter(|l| l.starts_with("pwbench"))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
