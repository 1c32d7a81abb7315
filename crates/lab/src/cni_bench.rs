//! `podwire bench --cni`: how long a pod's network takes to set up — the
//! latency of CNI ADD — with `podwire-cni` (and `podwire-ipam`, on etcd)
//! beside the kernel-veth plugin `ptp` with `host-local` from Debian's
//! containernetworking-plugins, on the same machine in the same run.
//!
//! One node (namespace `n1`) runs podwire on an etcd holding one pool;
//! each round makes two fresh pod namespaces and runs one ADD of each
//! plugin, in turn, as a runtime runs them (`CNI_*` in the environment,
//! the configuration on stdin, inside the node's namespace); the report is
//! the median and the worst of `adds` rounds. The pods are deleted (DEL)
//! at the end, and everything removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lab::{self, Datastore, LabError};
use crate::netns::{Daemon, Harness, err};

/// Debian's containernetworking-plugins.
pub const CNI_BIN: &str = "/usr/lib/cni";

/// What `podwire bench --cni` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub adds: usize,
    pub out: PathBuf,
    pub json: bool,
}

/// One plugin's latencies, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub plugin: String,
    pub median_ms: f64,
    pub worst_ms: f64,
    pub samples_ms: Vec<f64>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub adds: usize,
    pub results: Vec<Latency>,
}

fn summary(plugin: &str, mut v: Vec<f64>) -> Latency {
    let samples = v.clone();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    Latency {
        plugin: plugin.to_string(),
        median_ms: median,
        worst_ms: v.last().copied().unwrap_or(0.0),
        samples_ms: samples,
    }
}

/// A plugin as a runtime calls it: its binary, `CNI_PATH`, its
/// configuration.
struct Plugin {
    exe: PathBuf,
    path: String,
    conf: PathBuf,
}

impl Plugin {
    /// Runs the plugin with `command` for container `id` in `netns`,
    /// inside node namespace `node`; returns how long it took.
    fn call(
        &self,
        w: &Harness,
        node: &str,
        command: &str,
        id: &str,
        netns: &str,
    ) -> Result<Duration, LabError> {
        let script = format!(
            "CNI_COMMAND={command} CNI_CONTAINERID={id} CNI_NETNS={netns} CNI_IFNAME=eth0 \
             CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={id}' CNI_PATH={} \
             exec {} < {}",
            self.path,
            self.exe.display(),
            self.conf.display()
        );
        let t = Instant::now();
        let out = w.exec(node, &["sh", "-c", &script])?;
        let took = t.elapsed();
        if !out.status.success() {
            return Err(err(format!(
                "{} {command} {id}: {}",
                self.exe.display(),
                String::from_utf8_lossy(&out.stdout).trim()
            )));
        }
        Ok(took)
    }
}

/// Runs the benchmark; prints the report.
pub fn run(opts: &Options, out: &mut dyn std::io::Write) -> Result<Report, LabError> {
    let lab::Start {
        dir,
        interrupted,
        exe,
    } = lab::start(&opts.out, Datastore::Etcd)?;
    let ptp = Path::new(CNI_BIN).join("ptp");
    if !ptp.is_file() {
        return Err(err(format!(
            "podwire bench --cni needs {}: install it with `apt-get install -y containernetworking-plugins`",
            ptp.display()
        )));
    }
    let podwire_cni = Path::new(&exe).with_file_name("podwire-cni");
    if !podwire_cni.is_file() {
        return Err(err(format!(
            "{} is missing: build it with `cargo build --release` (the workspace's binaries)",
            podwire_cni.display()
        )));
    }
    let prefix = format!("pwcni{:x}", std::process::id() & 0xffff);
    let mut w = Harness::new(prefix, dir.clone()).interruptible(interrupted);
    let sw = w.netns("sw")?;
    w.bridge(&sw, "br0")?;
    let node = w.netns("n1")?;
    w.attach(&sw, "br0", &node, "eth0", "192.168.33.55/24")?;
    let ens = w.netns("etcd")?;
    w.attach(&sw, "br0", &ens, "eth0", "192.168.33.250/24")?;
    let m = crate::etcd::cluster(&mut w, &[(&ens, "192.168.33.250")])?.remove(0);
    crate::etcd::ctl(
        &w,
        &ens,
        &m.url,
        &[
            "put",
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
            r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool"},"spec":{"cidr":"10.2.0.0/16","blockSize":26,"vxlanMode":"Always","natOutgoing":true}}"#,
        ],
    )?;
    let control = dir.join("cni-bench.sock");
    let log = dir.join("cni-bench-k8s-node1.log");
    let extra = ["--datastore", "etcdv3", "--etcd-endpoints", m.url.as_str()];
    let d = Daemon {
        exe: &exe,
        config: None,
        node: "k8s-node1",
        control: &control,
        log: &log,
        wrapper: &[],
        extra: &extra,
        env: &[("RUST_LOG", "info")],
    };
    w.start_podwire("podwire", &node, &d)?;
    w.wait_podwire("podwire", &control, Duration::from_secs(20))?;
    let podwire_conf = w.file(
        "cni-podwire.conf",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"podwire-cni","nodename":"k8s-node1","datastore_type":"etcdv3","etcd_endpoints":"{}","podwire_control":"{}","ipam":{{"type":"podwire-ipam"}}}}"#,
            m.url,
            control.display()
        ),
    )?;
    let ptp_conf = w.file(
        "cni-ptp.conf",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"ptp-net","type":"ptp","ipMasq":false,"mtu":1500,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.9.0.0/16"}}]],"dataDir":"{}"}}}}"#,
            dir.join("cni-host-local").display()
        ),
    )?;
    let plugins = [
        Plugin {
            path: podwire_cni
                .parent()
                .map_or(String::new(), |p| p.display().to_string()),
            exe: podwire_cni,
            conf: podwire_conf,
        },
        Plugin {
            exe: ptp,
            path: CNI_BIN.to_string(),
            conf: ptp_conf,
        },
    ];
    let mut took: [Vec<f64>; 2] = Default::default();
    let mut made = Vec::new();
    for i in 0..opts.adds.max(1) {
        w.check()?;
        for (k, plugin) in plugins.iter().enumerate() {
            let pod = w.netns(&format!("p{i}{}", ["w", "k"][k]))?;
            let id = format!("bench{i}{}", ["w", "k"][k]);
            let netns = format!("/var/run/netns/{pod}");
            let t = plugin.call(&w, &node, "ADD", &id, &netns)?;
            took[k].push(t.as_secs_f64() * 1e3);
            made.push((k, id, netns));
        }
    }
    for (k, id, netns) in &made {
        plugins[*k].call(&w, &node, "DEL", id, netns)?;
    }
    let [ours, theirs] = took;
    let report = Report {
        adds: opts.adds.max(1),
        results: vec![
            summary("podwire-cni + podwire-ipam (etcd)", ours),
            summary("ptp + host-local (kernel veth)", theirs),
        ],
    };
    if opts.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "CNI ADD latency, {} ADDs of each, in turn",
            report.adds
        );
        for r in &report.results {
            let _ = writeln!(
                out,
                "{:<36} median {:>7.2} ms  worst {:>7.2} ms",
                r.plugin, r.median_ms, r.worst_ms
            );
        }
        let (a, b) = (&report.results[0], &report.results[1]);
        if b.median_ms > 0.0 {
            let _ = writeln!(
                out,
                "podwire-cni / ptp: median {:.2}x, worst {:.2}x",
                a.median_ms / b.median_ms,
                a.worst_ms / b.worst_ms.max(1e-9)
            );
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_worst() {
        let s = summary("x", vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(s.median_ms, 2.5);
        assert_eq!(s.worst_ms, 10.0);
        assert_eq!(s.samples_ms, [3.0, 1.0, 2.0, 10.0]);
    }
}
