//! What calico-node does on its node at start, with the etcd datastore
//! (SPEC §11), since podwire takes its place: the node's own `Node`
//! resource created or updated — its address (`spec.bgp.ipv4Address`,
//! autodetected by the caller unless given), and a tunnel address for
//! each overlay its pools use, allocated from IPAM with calico-node's
//! handles (`vxlan-tunnel-addr-<node>`: `spec.ipv4VXLANTunnelAddr` and
//! `spec.vxlanTunnelMACAddr`; `ipip-tunnel-addr-<node>`:
//! `spec.bgp.ipv4IPIPTunnelAddr`). So a cluster of podwire nodes needs
//! nothing in the datastore but its pools: every node that starts writes
//! itself, and the others route to it from their watch.
//!
//! The Node is written with a compare-and-swap on its revision (or its
//! absence), retried on conflict; what is already right is left alone.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use ipnetwork::Ipv4Network;
use serde_json::{Value, json};

use crate::client::{Error, TIMEOUT, connect_first, deadline};
use crate::ipam_client;
use crate::layout::{self, RESOURCES};
use crate::settings::Settings;

/// What start-up did, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// The Node was created (else updated or left as it was).
    pub created: bool,
    /// What changed, in words (`ipv4Address 192.168.33.55/24`, …).
    pub changes: Vec<String>,
}

/// Whether any enabled pool uses VXLAN, and any IPIP (`Always` or
/// `CrossSubnet`).
async fn overlays(c: &mut Client) -> Result<(bool, bool), Error> {
    let r = deadline(TIMEOUT, async {
        Ok(c.get(
            format!("{RESOURCES}ippools/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?)
    })
    .await?;
    let (mut vxlan, mut ipip) = (false, false);
    for kv in r.kvs() {
        let Ok(v) = serde_json::from_slice::<Value>(kv.value()) else {
            continue;
        };
        let spec = &v["spec"];
        if spec["disabled"].as_bool() == Some(true) {
            continue;
        }
        let on = |k: &str| matches!(spec[k].as_str(), Some("Always" | "CrossSubnet"));
        vxlan |= on("vxlanMode");
        ipip |= on("ipipMode");
    }
    Ok((vxlan, ipip))
}

/// Creates or updates node `node`'s Node resource: its address `address`
/// when given, else the one it has, else `found` (autodetected); and the
/// tunnel addresses its pools' overlays need, `vtep_mac` as its VXLAN MAC.
pub async fn start(
    c: &mut Client,
    node: &str,
    address: Option<Ipv4Network>,
    found: Option<Ipv4Network>,
    vtep_mac: &str,
    now: &str,
) -> Result<Started, Error> {
    let key = layout::resource_key("nodes", None, node);
    let (vxlan, ipip) = overlays(c).await?;
    // Allocated once, kept across retries of the Node's write.
    let (mut vxlan_addr, mut ipip_addr) = (None, None);
    for _ in 0..50 {
        let r = deadline(TIMEOUT, async { Ok(c.get(key.as_str(), None).await?) }).await?;
        let got = r.kvs().first().map(|kv| {
            (
                serde_json::from_slice::<Value>(kv.value()).unwrap_or(Value::Null),
                kv.mod_revision(),
            )
        });
        let created = got.is_none();
        let (mut v, rev) = got.unwrap_or_else(|| {
            (
                json!({
                    "kind": "Node",
                    "apiVersion": "projectcalico.org/v3",
                    "metadata": {
                        "name": node,
                        "uid": crate::transfer::uid("nodes", node, 0),
                        "creationTimestamp": now,
                    },
                    "spec": {},
                }),
                0,
            )
        });
        if !v["spec"].is_object() {
            v["spec"] = json!({});
        }
        let mut changes = Vec::new();
        if !v["spec"]["bgp"].is_object() {
            v["spec"]["bgp"] = json!({});
        }
        let have = v["spec"]["bgp"]["ipv4Address"].as_str().map(str::to_string);
        match (address, have) {
            (Some(a), have) if have.as_deref() != Some(a.to_string().as_str()) => {
                v["spec"]["bgp"]["ipv4Address"] = json!(a.to_string());
                changes.push(format!("ipv4Address {a}"));
            }
            (None, None) => match found {
                Some(a) => {
                    v["spec"]["bgp"]["ipv4Address"] = json!(a.to_string());
                    changes.push(format!("ipv4Address {a} (autodetected)"));
                }
                None => {
                    return Err(Error::Etcd(format!(
                        "Node {node} has no spec.bgp.ipv4Address, none was given (--node-ip) and none was found on this host"
                    )));
                }
            },
            _ => {}
        }
        if vxlan && v["spec"]["ipv4VXLANTunnelAddr"].as_str().is_none() {
            let a = match vxlan_addr {
                Some(a) => a,
                None => {
                    ipam_client::assign(
                        c,
                        node,
                        &format!("vxlan-tunnel-addr-{node}"),
                        json!({"node": node, "type": "vxlanTunnelAddress"}),
                    )
                    .await?
                    .address
                }
            };
            vxlan_addr = Some(a);
            v["spec"]["ipv4VXLANTunnelAddr"] = json!(a.to_string());
            changes.push(format!("ipv4VXLANTunnelAddr {a}"));
        }
        // The MAC with the address it goes with: a Node that has its tunnel
        // address already keeps what it has (Felix derives the same MAC
        // when the field is absent).
        if vxlan_addr.is_some() && v["spec"]["vxlanTunnelMACAddr"].as_str().is_none() {
            v["spec"]["vxlanTunnelMACAddr"] = json!(vtep_mac);
            changes.push(format!("vxlanTunnelMACAddr {vtep_mac}"));
        }
        if ipip && v["spec"]["bgp"]["ipv4IPIPTunnelAddr"].as_str().is_none() {
            let a = match ipip_addr {
                Some(a) => a,
                None => {
                    ipam_client::assign(
                        c,
                        node,
                        &format!("ipip-tunnel-addr-{node}"),
                        json!({"node": node, "type": "ipipTunnelAddress"}),
                    )
                    .await?
                    .address
                }
            };
            ipip_addr = Some(a);
            v["spec"]["bgp"]["ipv4IPIPTunnelAddr"] = json!(a.to_string());
            changes.push(format!("ipv4IPIPTunnelAddr {a}"));
        }
        if changes.is_empty() {
            return Ok(Started::default());
        }
        let when = if created {
            Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)
        };
        let txn = Txn::new().when(vec![when]).and_then(vec![TxnOp::put(
            key.as_str(),
            v.to_string(),
            None,
        )]);
        let ok = deadline(TIMEOUT, async { Ok(c.txn(txn).await?) })
            .await?
            .succeeded();
        if ok {
            return Ok(Started { created, changes });
        }
    }
    Err(Error::Etcd(format!(
        "Node {node}: changed by someone else 50 times in a row"
    )))
}

/// [`start`] on the first member of `settings` that answers, blocking.
pub fn start_blocking(
    settings: &Settings,
    node: &str,
    address: Option<Ipv4Network>,
    found: Option<Ipv4Network>,
    vtep_mac: &str,
) -> Result<Started, Error> {
    let now = crate::transfer::now_rfc3339();
    crate::source::block_on(async {
        let mut c = connect_first(settings).await?;
        start(&mut c, node, address, found, vtep_mac, &now).await
    })?
}
