//! `podwire-ipam`: a CNI IPAM plugin that allocates as calico-ipam does,
//! on Calico's etcdv3 datastore (SPEC §11): ADD hands out one IPv4 address
//! of a block affine to the node (claiming a block when none has room) to
//! the handle `k8s-pod-network.<CNI_CONTAINERID>`, or the address `IP=`
//! in `CNI_ARGS` asks for (calico-ipam's convention); DEL releases what the
//! handle holds (twice is fine); CHECK says whether it holds an address;
//! VERSION, STATUS and GC as the specification has them.

use podwire_cni::{Call, CniError, Command, NetConf};
use podwire_etcd::ipam_client;
use podwire_etcd::settings::Settings;
use serde_json::{Value, json};

fn run(call: &Call, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let conf = NetConf::parse(stdin)?;
    let endpoints: Vec<&str> = conf.etcd_endpoints.iter().map(String::as_str).collect();
    let settings = Settings::plain(&endpoints);
    let unreachable = |e: podwire_etcd::client::Error| conf.unreachable(e);
    let handle = call.handle();
    match call.command {
        Command::Add => {
            let address = podwire_cni::ipam_assign(&settings, &conf, call)?;
            Ok(Some(json!({
                "cniVersion": conf.cni_version,
                "ips": [{ "address": format!("{address}/32") }],
            })))
        }
        Command::Del => {
            ipam_client::release_blocking(&settings, &handle).map_err(unreachable)?;
            Ok(None)
        }
        Command::Check => {
            if ipam_client::holds_blocking(&settings, &handle).map_err(unreachable)? {
                Ok(None)
            } else {
                Err(CniError {
                    code: 999,
                    msg: format!("{handle} holds no address"),
                    details: String::new(),
                })
            }
        }
        // Nothing to report for STATUS beyond being able to parse the
        // configuration; GC's stale attachments are released by DEL.
        Command::Status | Command::Gc | Command::Version => Ok(None),
    }
}

fn main() {
    podwire_cni::plugin_main(run);
}
