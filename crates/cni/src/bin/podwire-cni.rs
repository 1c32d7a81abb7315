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
//! - CHECK: the address is still held and the device is where it should be.
//! - VERSION, STATUS, GC.

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
        CniError::again(
            format!(
                "the datastore at {} did not answer",
                self.conf.etcd_endpoints.join(",")
            ),
            e.to_string(),
        )
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
            let node = self.conf.node();
            let secondary = json!({"namespace": self.namespace(), "pod": self.pod(), "node": node});
            let a =
                ipam_client::assign_blocking(&self.settings, &node, &self.call.handle(), secondary)
                    .map_err(|e| self.datastore_error(e))?;
            return Ok(a.address.to_string());
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
        Ok(json!({
            "cniVersion": self.conf.cni_version,
            "interfaces": [{ "name": self.call.ifname, "sandbox": self.call.netns }],
            "ips": [{ "address": format!("{ip}/32"), "interface": 0 }],
            "routes": [{ "dst": "0.0.0.0/0", "gw": "169.254.1.1" }],
        }))
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
        if self.ipam_type() == "podwire-ipam"
            && !ipam_client::holds_blocking(&self.settings, &self.call.handle())
                .map_err(|e| self.datastore_error(e))?
        {
            return Err(CniError {
                code: 999,
                msg: format!("{} holds no address", self.call.handle()),
                details: String::new(),
            });
        }
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.call.netns))
            .args(["ip", "-o", "-4", "addr", "show", "dev", &self.call.ifname])
            .output()
            .map_err(|e| CniError::config("cannot run nsenter", e.to_string()))?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(CniError {
                code: 999,
                msg: format!(
                    "no {} with an address in {}",
                    self.call.ifname, self.call.netns
                ),
                details: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
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
        Command::Status | Command::Gc | Command::Version => Ok(None),
    }
}

fn main() {
    podwire_cni::plugin_main(run);
}
