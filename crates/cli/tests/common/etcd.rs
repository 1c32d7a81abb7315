//! Real etcd servers for the datastore tests: Debian's etcd 3.4, each
//! member in a namespace of the test's, its data in the test's directory,
//! ended by PID with the lab.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use podwire_lab::netns::{Harness, Io};

use super::{Lab, ok};

/// One etcd member.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Its namespace.
    pub ns: String,
    pub ip: String,
    /// `http://ip:2379`.
    pub url: String,
    tag: String,
    cluster: String,
    token: String,
    data: PathBuf,
}

/// `etcdctl` in `ns` against `endpoints`; panics on failure, returns stdout.
pub fn ctl(lab: &Lab, ns: &str, endpoints: &str, args: &[&str]) -> String {
    let mut cmd = vec!["etcdctl", "--endpoints", endpoints];
    cmd.extend_from_slice(args);
    lab.must_exec(ns, &cmd)
}

impl Member {
    fn start(&self, lab: &mut Lab, state: &str) {
        let peer = format!("http://{}:2380", self.ip);
        let clients = format!("{},http://127.0.0.1:2379", self.url);
        let log = lab.dir.join(format!("{}.log", self.tag));
        let cmd = [
            "etcd",
            "--name",
            &self.name,
            "--data-dir",
            &self.data.display().to_string(),
            "--listen-client-urls",
            &clients,
            "--advertise-client-urls",
            &self.url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &self.cluster,
            "--initial-cluster-state",
            state,
            // One token for the whole cluster (a member with another
            // refuses to join it).
            "--initial-cluster-token",
            &self.token,
        ];
        ok(Harness::spawn(lab, &self.tag, &self.ns, &cmd, Io::Log(log)));
    }

    /// Waits until the member answers (as part of a cluster with a leader).
    pub fn wait_healthy(&self, lab: &Lab) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = lab.exec(
                &self.ns,
                &[
                    "etcdctl",
                    "--endpoints",
                    &self.url,
                    "--command-timeout=2s",
                    "endpoint",
                    "health",
                ],
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} did not come up: {}",
                self.name,
                std::fs::read_to_string(lab.dir.join(format!("{}.log", self.tag)))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, by PID.
    pub fn kill(&self, lab: &mut Lab) {
        let _ = ok(Harness::stop(
            lab,
            &self.tag,
            "KILL",
            Duration::from_secs(10),
        ));
    }

    /// Starts it again on the same data.
    pub fn restart(&self, lab: &mut Lab) {
        self.start(lab, "existing");
    }

    /// Whether it is the cluster's leader now.
    pub fn is_leader(&self, lab: &Lab) -> bool {
        let out = lab.exec(
            &self.ns,
            &[
                "etcdctl",
                "--endpoints",
                &self.url,
                "endpoint",
                "status",
                "-w",
                "json",
            ],
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let s = &v[0]["Status"];
        s["header"]["member_id"].as_u64().is_some() && s["header"]["member_id"] == s["leader"]
    }
}

/// Starts a cluster of one member per `(namespace, ip)` and waits until it
/// answers; the members' namespaces must reach each other.
pub fn cluster(lab: &mut Lab, members: &[(&str, &str)]) -> Vec<Member> {
    let cluster: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, (_, ip))| format!("e{i}=http://{ip}:2380"))
        .collect();
    let cluster = cluster.join(",");
    let list: Vec<Member> = members
        .iter()
        .enumerate()
        .map(|(i, (ns, ip))| Member {
            name: format!("e{i}"),
            ns: ns.to_string(),
            ip: ip.to_string(),
            url: format!("http://{ip}:2379"),
            tag: format!("etcd-e{i}"),
            cluster: cluster.clone(),
            token: format!("podwire-test-{}", std::process::id()),
            data: lab.dir.join(format!("etcd-e{i}")),
        })
        .collect();
    for m in &list {
        m.start(lab, "new");
    }
    for m in &list {
        m.wait_healthy(lab);
    }
    list
}

/// The endpoints of `members`, comma-separated.
pub fn endpoints(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.url.clone())
        .collect::<Vec<_>>()
        .join(",")
}
