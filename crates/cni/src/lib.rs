//! What podwire's CNI plugins share (SPEC §11; the CNI specification
//! 1.0.0 and 1.1.0): the command and its `CNI_*` environment, the network
//! configuration read from stdin, the result and error objects written to
//! stdout.

#![forbid(unsafe_code)]

use serde_json::{Value, json};

/// The CNI versions the plugins speak.
pub const SUPPORTED: [&str; 4] = ["0.4.0", "1.0.0", "1.1.0", "0.3.1"];

/// A CNI error: the object printed on stdout, with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// Code 4: invalid network configuration.
    pub fn config(msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code: 4,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Code 7: invalid environment variables.
    pub fn env(msg: impl Into<String>) -> CniError {
        CniError {
            code: 7,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Code 11: try again later (the datastore is unreachable, or busy).
    pub fn again(msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code: 11,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error object.
    pub fn to_json(&self, version: &str) -> Value {
        json!({ "cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details })
    }
}

/// The command, `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// What the runtime passed: the command, the container, its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`, split at `;` and `=`.
    pub args: Vec<(String, String)>,
}

impl Call {
    /// Reads the call from `var` (the environment).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Call, CniError> {
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => return Err(CniError::env(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(CniError::env("CNI_COMMAND is not set")),
        };
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = var("CNI_CONTAINERID").unwrap_or_default();
        if needs_container && container_id.is_empty() {
            return Err(CniError::env("CNI_CONTAINERID is not set"));
        }
        let args = var("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Call {
            command,
            container_id,
            netns: var("CNI_NETNS").unwrap_or_default(),
            ifname: var("CNI_IFNAME").unwrap_or_default(),
            args,
        })
    }

    /// A `CNI_ARGS` value.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The IPAM handle calico-ipam uses for this container.
    pub fn handle(&self) -> String {
        format!("k8s-pod-network.{}", self.container_id)
    }
}

/// The network configuration's fields the plugins read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub nodename: Option<String>,
    pub datastore_type: String,
    pub etcd_endpoints: Vec<String>,
    pub raw: Value,
}

impl NetConf {
    /// Parses stdin's network configuration.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::config(
                "the network configuration on stdin is not JSON",
                e.to_string(),
            )
        })?;
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let cni_version = s("cniVersion").unwrap_or_else(|| "1.0.0".into());
        if !SUPPORTED.contains(&cni_version.as_str()) {
            return Err(CniError {
                code: 1,
                msg: format!("CNI version {cni_version} is not supported"),
                details: format!("supported: {}", SUPPORTED.join(", ")),
            });
        }
        let datastore_type = s("datastore_type").unwrap_or_else(|| "etcdv3".into());
        if datastore_type != "etcdv3" {
            return Err(CniError::config(
                format!("datastore_type {datastore_type:?} is not supported"),
                "podwire's plugins read Calico's etcdv3 datastore (datastore_type: etcdv3)",
            ));
        }
        let etcd_endpoints: Vec<String> = s("etcd_endpoints")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if etcd_endpoints.is_empty() {
            return Err(CniError::config(
                "etcd_endpoints is not set",
                "the network configuration names the datastore: \"etcd_endpoints\": \"http://10.0.0.2:2379\"",
            ));
        }
        Ok(NetConf {
            cni_version,
            name: s("name").unwrap_or_default(),
            nodename: s("nodename"),
            datastore_type,
            etcd_endpoints,
            raw,
        })
    }

    /// The node: `nodename`, else this host's name (as calico's plugins
    /// fall back to it).
    /// Code 11 for a datastore call that failed: the datastore at the
    /// configuration's endpoints did not answer.
    pub fn unreachable(&self, e: impl std::fmt::Display) -> CniError {
        CniError::again(
            format!(
                "the datastore at {} did not answer",
                self.etcd_endpoints.join(",")
            ),
            e.to_string(),
        )
    }

    pub fn node(&self) -> String {
        self.nodename.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        })
    }
}

/// The host-side name Calico gives a pod's interface, which is the
/// WorkloadEndpoint's `interfaceName`: `cali` and the first 11 hex digits
/// of the SHA-1 of `<namespace>.<pod>` (libcalico-go's
/// `VethNameForWorkload`).
pub fn interface_name(namespace: &str, pod: &str) -> String {
    use sha1::{Digest, Sha1};
    let d = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("cali{}", &hex[..11])
}

/// One request to the daemon's control socket at `path`; its answer.
pub fn ask_daemon(path: &std::path::Path, request: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The `cniVersion` of the configuration on stdin, else `default`.
pub fn requested_version(stdin: &[u8], default: &str) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .unwrap_or_else(|| default.to_string())
}

/// A plugin's `main`: reads stdin and the `CNI_*` environment, answers
/// VERSION itself, runs `run` for the rest, and prints the result (or the
/// error object, exiting 1) on stdout.
pub fn plugin_main(run: fn(&Call, &[u8]) -> Result<Option<Value>, CniError>) {
    use std::io::{Read, Write};
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let result = Call::from_env(|k| std::env::var(k).ok()).and_then(|call| {
        if call.command == Command::Version {
            Ok(Some(version_result(&requested_version(&stdin, "1.1.0"))))
        } else {
            run(&call, &stdin)
        }
    });
    let mut out = std::io::stdout();
    match result {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&requested_version(&stdin, "1.0.0")));
            std::process::exit(1);
        }
    }
}

/// The address podwire-ipam gives the pod of `call` on `conf`'s node: the
/// one `IP=` in `CNI_ARGS` asks for (calico-ipam's convention), else one of
/// a block affine to the node. The allocation's handle is the call's, its
/// attributes the pod's namespace, name and node.
pub fn ipam_assign(
    settings: &podwire_etcd::settings::Settings,
    conf: &NetConf,
    call: &Call,
) -> Result<std::net::Ipv4Addr, CniError> {
    use podwire_etcd::client::Error;
    use podwire_etcd::ipam_client;
    let node = conf.node();
    let secondary = json!({
        "namespace": call.arg("K8S_POD_NAMESPACE").unwrap_or(""),
        "pod": call.arg("K8S_POD_NAME").unwrap_or(""),
        "node": node,
    });
    let handle = call.handle();
    let assigned = match call.arg("IP") {
        Some(ip) => {
            let ip = ip.trim_end_matches("/32").parse().map_err(|e| {
                CniError::env(format!("CNI_ARGS IP={ip} is not an IPv4 address: {e}"))
            })?;
            ipam_client::assign_ip_blocking(settings, &node, ip, &handle, secondary)
        }
        None => ipam_client::assign_blocking(settings, &node, &handle, secondary),
    };
    assigned.map(|a| a.address).map_err(|e| match e {
        Error::Refused(why) => CniError {
            code: 999,
            msg: why,
            details: String::new(),
        },
        e => conf.unreachable(e),
    })
}

/// `VERSION`'s answer.
pub fn version_result(cni_version: &str) -> Value {
    json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_call_and_the_configuration_are_read_as_the_spec_says() {
        let c = Call::from_env(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
        ]))
        .unwrap();
        assert_eq!(c.command, Command::Add);
        assert_eq!(c.arg("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(c.handle(), "k8s-pod-network.abc123");
        let e = Call::from_env(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(Call::from_env(env(&[("CNI_COMMAND", "VERSION")])).is_ok());

        let n = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"podwire-cni","nodename":"k8s-node1","datastore_type":"etcdv3","etcd_endpoints":"http://10.0.0.2:2379, http://10.0.0.3:2379","ipam":{"type":"podwire-ipam"}}"#,
        )
        .unwrap();
        assert_eq!(n.node(), "k8s-node1");
        assert_eq!(
            n.etcd_endpoints,
            ["http://10.0.0.2:2379", "http://10.0.0.3:2379"]
        );
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, 4);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"9.9.9","etcd_endpoints":"x"}"#)
                .unwrap_err()
                .code,
            1
        );
        // The example conflist's plugin, as a runtime hands it over (the
        // list's name and version injected).
        let list: Value =
            serde_json::from_str(include_str!("../../../examples/cni/10-podwire.conflist"))
                .unwrap();
        let mut plugin = list["plugins"][0].clone();
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        let n = NetConf::parse(plugin.to_string().as_bytes()).unwrap();
        assert_eq!(n.name, "k8s-pod-network");
        assert_eq!(n.raw["ipam"]["type"], "podwire-ipam");
        assert_eq!(n.raw["type"], "podwire-cni");
        // 11 hex digits after `cali`: 15 bytes, a valid device name.
        let n = interface_name("default", "web-0");
        assert!(n.starts_with("cali") && n.len() == 15, "{n}");
        assert_ne!(n, interface_name("default", "web-1"));
        let e = CniError::again("etcd unreachable", "x").to_json("1.0.0");
        assert_eq!(e["code"], 11);
        assert_eq!(e["msg"], "etcd unreachable");
    }
}
