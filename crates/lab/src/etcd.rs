//! Real etcd servers for the lab and the datastore tests: Debian's etcd
//! 3.4 (`etcd-server`, `etcd-client`), each member in a namespace of the
//! harness's, its data in the harness's directory, ended by PID with it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::netns::{Error, Harness, Io, err};

/// One etcd member.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Its namespace.
    pub ns: String,
    pub ip: String,
    /// `http://ip:2379` (it also listens on `http://127.0.0.1:2379` in its
    /// namespace, which a partition of its link leaves reachable).
    pub url: String,
    tag: String,
    cluster: String,
    token: String,
    data: PathBuf,
    tls: Option<Tls>,
}

/// TLS for a member's clients: etcd's certificate and key, and the CA
/// that signed them and the clients' certificates (which it requires).
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client's certificate and key, for etcdctl.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Tls {
    /// A CA, a certificate for etcd at `ip` (and 127.0.0.1) and one for a
    /// client, made with openssl in `dir`.
    pub fn make(dir: &std::path::Path, ip: &str) -> Result<Tls, Error> {
        let f = |name: &str| dir.join(name);
        let s = |p: PathBuf| p.display().to_string();
        let run = |args: &[&str]| crate::netns::must("openssl", args).map(drop);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (s(f("ca-key.pem")), s(f("ca.pem")));
        ca.extend([
            "-days",
            "2",
            "-subj",
            "/CN=podwire-test-ca",
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
        ]);
        run(&ca)?;
        let ext = f("san.ext");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=IP:{ip},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .map_err(|e| err(e.to_string()))?;
        let ext = s(ext);
        for (name, cn) in [("etcd", "etcd"), ("client", "podwire")] {
            let (key, csr, pem) = (
                s(f(&format!("{name}-key.pem"))),
                s(f(&format!("{name}.csr"))),
                s(f(&format!("{name}.pem"))),
            );
            let subj = format!("/CN={cn}");
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-subj", &subj, "-keyout", &key, "-out", &csr]);
            run(&req)?;
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ])?;
        }
        Ok(Tls {
            ca: f("ca.pem"),
            cert: f("etcd.pem"),
            key: f("etcd-key.pem"),
            client_cert: f("client.pem"),
            client_key: f("client-key.pem"),
        })
    }

    /// etcdctl's flags for these files.
    fn ctl_flags(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.client_cert.display()),
            format!("--key={}", self.client_key.display()),
        ]
    }
}

/// `etcdctl` in `ns` against `endpoints`; returns stdout.
pub fn ctl(w: &Harness, ns: &str, endpoints: &str, args: &[&str]) -> Result<String, Error> {
    let mut cmd = vec!["etcdctl", "--endpoints", endpoints];
    cmd.extend_from_slice(args);
    w.exec_ok(ns, &cmd)
}

impl Member {
    /// `etcdctl` against this member, with its TLS flags; the output.
    fn etcdctl(&self, w: &Harness, args: &[&str]) -> Result<std::process::Output, Error> {
        let flags = self.tls.as_ref().map(Tls::ctl_flags).unwrap_or_default();
        let mut cmd = vec!["etcdctl", "--endpoints", &self.url];
        cmd.extend(flags.iter().map(String::as_str));
        cmd.extend_from_slice(args);
        w.exec(&self.ns, &cmd)
    }
}

impl Member {
    fn log(&self, w: &Harness) -> PathBuf {
        w.dir.join(format!("{}.log", self.tag))
    }

    fn start(&self, w: &mut Harness, state: &str) -> Result<(), Error> {
        let peer = format!("http://{}:2380", self.ip);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let clients = format!("{},{scheme}://127.0.0.1:2379", self.url);
        let data = self.data.display().to_string();
        let mut cmd = vec![
            "etcd",
            "--name",
            &self.name,
            "--data-dir",
            &data,
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
            // A test's change of a whole cluster is one transaction.
            "--max-txn-ops",
            "4096",
        ];
        let files: Vec<String> = match &self.tls {
            Some(t) => vec![
                format!("--cert-file={}", t.cert.display()),
                format!("--key-file={}", t.key.display()),
                format!("--trusted-ca-file={}", t.ca.display()),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        cmd.extend(files.iter().map(String::as_str));
        let log = self.log(w);
        w.spawn(&self.tag, &self.ns, &cmd, Io::Log(log)).map(drop)
    }

    /// Waits until the member answers (as part of a cluster with a leader).
    pub fn wait_healthy(&self, w: &Harness) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.etcdctl(w, &["--command-timeout=2s", "endpoint", "health"])?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "etcd {} did not come up; its log: {}",
                    self.name,
                    self.log(w).display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, by PID.
    pub fn kill(&self, w: &mut Harness) -> Result<(), Error> {
        w.stop(&self.tag, "KILL", Duration::from_secs(10)).map(drop)
    }

    /// Starts it again on the same data.
    pub fn restart(&self, w: &mut Harness) -> Result<(), Error> {
        self.start(w, "existing")
    }

    /// Whether it is its cluster's leader now.
    pub fn is_leader(&self, w: &Harness) -> Result<bool, Error> {
        let out = self.etcdctl(w, &["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let s = &v[0]["Status"];
        Ok(s["header"]["member_id"].as_u64().is_some() && s["header"]["member_id"] == s["leader"])
    }
}

/// Starts a cluster of one member per `(namespace, ip)` and waits until it
/// answers; the members' namespaces must reach each other.
pub fn cluster(w: &mut Harness, members: &[(&str, &str)]) -> Result<Vec<Member>, Error> {
    cluster_with(w, members, None)
}

/// As [`cluster`], its clients served over TLS (`https://`) when `tls` is
/// given, with client certificates required.
pub fn cluster_with(
    w: &mut Harness,
    members: &[(&str, &str)],
    tls: Option<&Tls>,
) -> Result<Vec<Member>, Error> {
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
            url: format!(
                "{}://{ip}:2379",
                if tls.is_some() { "https" } else { "http" }
            ),
            tag: format!("etcd-e{i}"),
            cluster: cluster.clone(),
            token: format!("podwire-{}", std::process::id()),
            data: w.dir.join(format!("etcd-e{i}")),
            tls: tls.cloned(),
        })
        .collect();
    for m in &list {
        // A new cluster: nothing of an earlier run's data.
        if m.data.exists() {
            std::fs::remove_dir_all(&m.data)
                .map_err(|e| err(format!("{}: {e}", m.data.display())))?;
        }
        m.start(w, "new")?;
    }
    for m in &list {
        m.wait_healthy(w)?;
    }
    Ok(list)
}

/// The endpoints of `members`, comma-separated.
pub fn endpoints<'a>(members: impl IntoIterator<Item = &'a Member>) -> String {
    members
        .into_iter()
        .map(|m| m.url.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
