//! `podwire-cni`: the CNI plugin of a podwire node (SPEC §11).
//!
//! - ADD: an address from the IPAM plugin named in `ipam` (`podwire-ipam`
//!   in-process; any other by the CNI convention: run from `CNI_PATH` with
//!   the same environment and stdin), the endpoint's device made by the
//!   local daemon inside `CNI_NETNS` as `CNI_IFNAME` (control socket
//!   `podwire_control`: `attach`), the WorkloadEndpoint written to the
//!   datastore in Calico's layout; the result lists the interface (with its
//!   sandbox), the address and the default route. A failure after the
//!   address was taken gives it back.
//! - DEL (idempotent; `CNI_NETNS` may be empty): the WorkloadEndpoint
//!   deleted (the daemon then deletes the device), a device still held let
//!   go, the address released.
//! - CHECK: the address is still held, the WorkloadEndpoint is there, and
//!   the device in `CNI_NETNS` has `prevResult`'s addresses and routes.
//! - GC (1.1): this node's WorkloadEndpoints and allocations whose
//!   container is not in `cni.dev/valid-attachments` go.
//! - VERSION, STATUS.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use podwire_cni::{Call, CniError, Command, NetConf, ask_daemon, interface_name};
use podwire_etcd::ipam_client;
use podwire_etcd::layout;
use podwire_etcd::settings::Settings;
use serde_json::{Value, json};

const DEFAULT_CONTROL: &str = "/run/podwire/podwire.sock";

struct Ctx<'a> {
    call: &'a Call,
    conf: NetConf,
    settings: Settings,
    stdin: &'a [u8],
}

impl Ctx<'_> {
    fn control(&self) -> PathBuf {
        PathBuf::from(
            self.conf.raw["podwire_control"]
                .as_str()
                .unwrap_or(DEFAULT_CONTROL),
        )
    }

    fn ipam_type(&self) -> String {
        self.conf.raw["ipam"]["type"]
            .as_str()
            .unwrap_or("podwire-ipam")
            .to_string()
    }

    fn namespace(&self) -> &str {
        self.call.arg("K8S_POD_NAMESPACE").unwrap_or("default")
    }

    fn pod(&self) -> &str {
        self.call
            .arg("K8S_POD_NAME")
            .unwrap_or(self.call.container_id.as_str())
    }

    fn interface(&self) -> String {
        interface_name(self.namespace(), self.pod())
    }

    fn endpoint_key(&self) -> (String, String) {
        let name = layout::workload_endpoint_name(&self.conf.node(), self.pod(), "eth0");
        (
            layout::resource_key("workloadendpoints", Some(self.namespace()), &name),
            name,
        )
    }

    fn datastore_error(&self, e: podwire_etcd::client::Error) -> CniError {
        self.conf.unreachable(e)
    }

    /// Runs the delegated IPAM plugin with `command`; its stdout.
    fn delegate(&self, command: &str) -> Result<String, CniError> {
        let ty = self.ipam_type();
        let path = std::env::var("CNI_PATH").unwrap_or_default();
        let exe = path
            .split(':')
            .map(|d| Path::new(d).join(&ty))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CniError::config(
                    format!("IPAM plugin {ty:?} not found in CNI_PATH"),
                    path.clone(),
                )
            })?;
        let mut child = std::process::Command::new(&exe)
            .env("CNI_COMMAND", command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                CniError::config(format!("cannot run {}", exe.display()), e.to_string())
            })?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(self.stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| CniError::config(format!("{ty} failed"), e.to_string()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(CniError {
                code: 999,
                msg: format!("IPAM plugin {ty} failed"),
                details: text,
            });
        }
        Ok(text)
    }

    fn ipam_add(&self) -> Result<String, CniError> {
        if self.ipam_type() == "podwire-ipam" {
            return podwire_cni::ipam_assign(&self.settings, &self.conf, self.call)
                .map(|a| a.to_string());
        }
        let out = self.delegate("ADD")?;
        let v: Value = serde_json::from_str(&out)
            .map_err(|e| CniError::config("the IPAM plugin's result is not JSON", e.to_string()))?;
        v["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .map(str::to_string)
            .ok_or_else(|| CniError::config("the IPAM plugin gave no address", out))
    }

    fn ipam_del(&self) -> Result<(), CniError> {
        if self.ipam_type() == "podwire-ipam" {
            ipam_client::release_blocking(&self.settings, &self.call.handle())
                .map(drop)
                .map_err(|e| self.datastore_error(e))
        } else {
            self.delegate("DEL").map(drop)
        }
    }

    fn add(&self) -> Result<Value, CniError> {
        if self.call.netns.is_empty() || self.call.ifname.is_empty() {
            return Err(CniError::env("ADD needs CNI_NETNS and CNI_IFNAME"));
        }
        let ip = self.ipam_add()?;
        let interface = self.interface();
        let undo = |e: CniError| {
            let _ = self.ipam_del();
            e
        };
        let answer = ask_daemon(
            &self.control(),
            &format!(
                "attach {interface} {} {} {ip}",
                self.call.netns, self.call.ifname
            ),
        )
        .map_err(|e| {
            undo(CniError::again(
                format!(
                    "the podwire daemon at {} did not answer",
                    self.control().display()
                ),
                e.to_string(),
            ))
        })?;
        if !answer.starts_with("ok ") {
            return Err(undo(CniError {
                code: 999,
                msg: format!("the podwire daemon could not make {}", self.call.ifname),
                details: answer.trim().to_string(),
            }));
        }
        let (key, name) = self.endpoint_key();
        let wep = json!({
            "kind": "WorkloadEndpoint",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {
                "name": name,
                "namespace": self.namespace(),
                "labels": {
                    "projectcalico.org/namespace": self.namespace(),
                    "projectcalico.org/orchestrator": "k8s",
                },
            },
            "spec": {
                "orchestrator": "k8s",
                "node": self.conf.node(),
                "containerID": self.call.container_id,
                "pod": self.pod(),
                "endpoint": "eth0",
                "interfaceName": interface,
                "ipNetworks": [format!("{ip}/32")],
                "profiles": [format!("kns.{}", self.namespace())],
            },
        });
        if let Err(e) = ipam_client::put_blocking(&self.settings, &key, &wep.to_string()) {
            let _ = ask_daemon(&self.control(), &format!("detach {interface}"));
            return Err(undo(self.datastore_error(e)));
        }
        self.await_endpoint(&interface);
        Ok(json!({
            "cniVersion": self.conf.cni_version,
            "interfaces": [{ "name": self.call.ifname, "sandbox": self.call.netns }],
            "ips": [{ "address": format!("{ip}/32"), "interface": 0 }],
            "routes": [{ "dst": "0.0.0.0/0", "gw": "169.254.1.1" }],
        }))
    }

    /// Waits until the daemon serves `interface` (its snapshot took the
    /// device, on the WorkloadEndpoint's arrival from the watch), so that
    /// the pod's network works when ADD returns; before, the device is
    /// held but not read. Asks `show endpoints` every 5 ms — never a request that
    /// blocks the daemon's control socket — for at most `AWAIT`; after that
    /// ADD still succeeds (the endpoint is written; the daemon will take the
    /// device), with a note on stderr.
    fn await_endpoint(&self, interface: &str) {
        const AWAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let start = std::time::Instant::now();
        while start.elapsed() < AWAIT {
            if let Ok(text) = ask_daemon(&self.control(), "show endpoints") {
                if text.split_whitespace().any(|w| w == interface) {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        note(&format!(
            "the daemon did not serve {interface} within {AWAIT:?}; it will once its WorkloadEndpoint arrives"
        ));
    }

    fn del(&self) -> Result<(), CniError> {
        let (key, _) = self.endpoint_key();
        ipam_client::delete_blocking(&self.settings, &key).map_err(|e| self.datastore_error(e))?;
        // A device never taken by its endpoint; a daemon that is down has
        // none (its devices go with their endpoints).
        let _ = ask_daemon(&self.control(), &format!("detach {}", self.interface()));
        self.ipam_del()
    }

    fn check(&self) -> Result<(), CniError> {
        if self.call.netns.is_empty() || self.call.ifname.is_empty() {
            return Err(CniError::env("CHECK needs CNI_NETNS and CNI_IFNAME"));
        }
        let fail = |msg: String, details: String| CniError {
            code: 999,
            msg,
            details,
        };
        if self.ipam_type() == "podwire-ipam"
            && !ipam_client::holds_blocking(&self.settings, &self.call.handle())
                .map_err(|e| self.datastore_error(e))?
        {
            return Err(fail(
                format!("{} holds no address", self.call.handle()),
                String::new(),
            ));
        }
        let (key, _) = self.endpoint_key();
        if ipam_client::list_blocking(&self.settings, &key)
            .map_err(|e| self.datastore_error(e))?
            .iter()
            .all(|(k, _)| *k != key)
        {
            return Err(fail(format!("no WorkloadEndpoint {key}"), String::new()));
        }
        // What the pod's namespace has, as `ip -j` reports it.
        let ip_json = |args: &[&str]| -> Result<Value, CniError> {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net={}", self.call.netns))
                .args(["ip", "-j", "-4"])
                .args(args)
                .output()
                .map_err(|e| CniError::config("cannot run nsenter", e.to_string()))?;
            if !out.status.success() {
                return Err(fail(
                    format!("no {} in {}", self.call.ifname, self.call.netns),
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            serde_json::from_slice(&out.stdout)
                .map_err(|e| fail("ip -j gave no JSON".into(), e.to_string()))
        };
        let ifname = self.call.ifname.as_str();
        let addrs = ip_json(&["addr", "show", "dev", ifname])?;
        let routes = ip_json(&["route", "show", "dev", ifname])?;
        for want in prev_addresses(&self.conf.raw) {
            if !has_address(&addrs, &want) {
                return Err(fail(
                    format!("{ifname} in {} lacks {want}", self.call.netns),
                    addrs.to_string(),
                ));
            }
        }
        for (dst, gw) in prev_routes(&self.conf.raw) {
            if !has_route(&routes, &dst, gw.as_deref()) {
                let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
                return Err(fail(
                    format!(
                        "{} lacks the route {dst}{via} dev {ifname}",
                        self.call.netns
                    ),
                    routes.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// GC (CNI 1.1): attachments of this node not in
    /// `cni.dev/valid-attachments` go — their WorkloadEndpoints (the daemon
    /// then deletes the devices) and their allocations.
    fn gc(&self) -> Result<(), CniError> {
        let valid: std::collections::BTreeSet<String> = self.conf.raw["cni.dev/valid-attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["containerID"].as_str().map(str::to_string))
            .collect();
        let node = self.conf.node();
        let prefix = format!("{}workloadendpoints/", layout::RESOURCES);
        let weps = ipam_client::list_blocking(&self.settings, &prefix)
            .map_err(|e| self.datastore_error(e))?;
        let mut stale = std::collections::BTreeSet::new();
        for (key, value) in weps {
            let Ok(v) = serde_json::from_slice::<Value>(&value) else {
                continue;
            };
            let spec = &v["spec"];
            let (Some(id), Some(iface)) =
                (spec["containerID"].as_str(), spec["interfaceName"].as_str())
            else {
                continue;
            };
            if spec["node"] != node.as_str() || spec["orchestrator"] != "k8s" || valid.contains(id)
            {
                continue;
            }
            note(&format!(
                "GC: {key} (container {id}) is not a valid attachment"
            ));
            ipam_client::delete_blocking(&self.settings, &key)
                .map_err(|e| self.datastore_error(e))?;
            let _ = ask_daemon(&self.control(), &format!("detach {iface}"));
            stale.insert(id.to_string());
        }
        if self.ipam_type() == "podwire-ipam" {
            // Allocations of this node's pods whose container is not valid,
            // endpoint or not (an ADD that died between the two).
            let handles =
                ipam_client::list_blocking(&self.settings, &format!("{}handle/", layout::IPAM))
                    .map_err(|e| self.datastore_error(e))?;
            let blocks =
                ipam_client::list_blocking(&self.settings, &format!("{}assignment/", layout::IPAM))
                    .map_err(|e| self.datastore_error(e))?;
            let mine = handles_of_node(&blocks, &node);
            for (key, _) in handles {
                let Some(handle) = key.rsplit('/').next() else {
                    continue;
                };
                let Some(id) = handle.strip_prefix("k8s-pod-network.") else {
                    continue;
                };
                if valid.contains(id) || !(mine.contains(handle) || stale.contains(id)) {
                    continue;
                }
                ipam_client::release_blocking(&self.settings, handle)
                    .map_err(|e| self.datastore_error(e))?;
            }
        }
        Ok(())
    }
}

/// A note on stderr (a runtime logs it; stdout is the
/// result).
fn note(line: &str) {
    eprintln!("podwire-cni: {line}");
}

/// The handles whose allocations in `blocks` (values of the IPAM blocks)
/// say they are `node`'s pods.
fn handles_of_node(blocks: &[(String, Vec<u8>)], node: &str) -> std::collections::BTreeSet<String> {
    blocks
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Value>(v).ok())
        .flat_map(|b| b["attributes"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["secondary"]["node"] == node)
        .filter_map(|a| a["handle_id"].as_str().map(str::to_string))
        .collect()
}

/// The addresses of `prevResult` (`10.2.36.66/32`).
fn prev_addresses(conf: &Value) -> Vec<String> {
    conf["prevResult"]["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str().map(str::to_string))
        .collect()
}

/// The routes of `prevResult`: destination and gateway.
fn prev_routes(conf: &Value) -> Vec<(String, Option<String>)> {
    conf["prevResult"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["dst"].as_str()?.to_string(),
                r["gw"].as_str().map(str::to_string),
            ))
        })
        .collect()
}

/// Whether `ip -j addr show` output has `cidr`.
fn has_address(addrs: &Value, cidr: &str) -> bool {
    addrs.as_array().into_iter().flatten().any(|l| {
        l["addr_info"].as_array().into_iter().flatten().any(|a| {
            format!(
                "{}/{}",
                a["local"].as_str().unwrap_or(""),
                a["prefixlen"].as_u64().unwrap_or(0)
            ) == cidr
        })
    })
}

/// Whether `ip -j route show dev X` output has `dst` (through `gw`).
fn has_route(routes: &Value, dst: &str, gw: Option<&str>) -> bool {
    let dst = match dst {
        "0.0.0.0/0" => "default",
        d => d.strip_suffix("/32").unwrap_or(d),
    };
    routes
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["dst"].as_str() == Some(dst) && r["gateway"].as_str() == gw)
}

fn run(call: &Call, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let conf = NetConf::parse(stdin)?;
    let endpoints: Vec<&str> = conf.etcd_endpoints.iter().map(String::as_str).collect();
    let ctx = Ctx {
        call,
        settings: Settings::plain(&endpoints),
        conf,
        stdin,
    };
    match call.command {
        Command::Add => ctx.add().map(Some),
        Command::Del => ctx.del().map(|()| None),
        Command::Check => ctx.check().map(|()| None),
        Command::Gc => ctx.gc().map(|()| None),
        Command::Status | Command::Version => Ok(None),
    }
}

fn main() {
    podwire_cni::plugin_main(run);
}
