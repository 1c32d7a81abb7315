//! `podwire datastore import` and `export`: the YAML resources podwire's
//! file source reads, to and from Calico's etcdv3 layout.
//!
//! Import writes what `calicoctl apply` would: each v3 resource's JSON
//! (`kind`, `apiVersion`, `metadata` with a `uid` and a
//! `creationTimestamp`, `spec`) under its key, a Kubernetes
//! WorkloadEndpoint under the name Calico gives it; each IPAMBlock's spec
//! as libcalico-go's `model.AllocationBlock` (every ordinal unallocated
//! unless the file says otherwise), the `host` affinity of each live block
//! (`{"state":"confirmed","deleted":false}`) and one handle per
//! `handle_id` its allocations name, with the count of addresses it holds
//! per block (`model.IPAMHandle`). The file is validated as `podwire check`
//! would first: nothing is written from a file that does not load.
//!
//! Export prints the resources a node reads (pools, nodes, Felix
//! configurations, blocks as `IPAMBlock`s, every WorkloadEndpoint) as one
//! multi-document YAML stream the file source reads back.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnetwork::Ipv4Network;
use serde_json::{Map, Value, json};

use crate::client::{self, Error};
use crate::decode::DecodeError;
use crate::layout::{self, Key};
use crate::settings::Settings;

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Invalid(#[from] podwire::config::ConfigError),
    #[error("document {doc}: {message}")]
    Document { doc: usize, message: String },
    #[error("{0}")]
    Etcd(#[from] Error),
}

/// The v3 kinds podwire reads, with their plurals.
const KINDS: [(&str, &str); 4] = [
    ("IPPool", "ippools"),
    ("Node", "nodes"),
    ("FelixConfiguration", "felixconfigurations"),
    ("WorkloadEndpoint", "workloadendpoints"),
];

/// The keys and values (JSON) that hold the resources of `text`, a
/// multi-document YAML stream (a `kind: List` document's items included).
/// `now` is the creation time written into new metadata (RFC 3339).
pub fn to_keys(text: &str, now: &str) -> Result<Vec<(String, String)>, ImportError> {
    podwire::config::parse(text)?;
    to_keys_unchecked(text, now)
}

/// As [`to_keys`], without validating the resources as a whole (for a
/// fragment of a cluster: one endpoint whose node is elsewhere).
pub fn to_keys_unchecked(text: &str, now: &str) -> Result<Vec<(String, String)>, ImportError> {
    let mut docs = Vec::new();
    for (i, d) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let bad = |message: String| ImportError::Document {
            doc: i + 1,
            message,
        };
        let v: serde_yaml_ng::Value =
            serde::Deserialize::deserialize(d).map_err(|e| bad(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        let v = serde_json::to_value(&v).map_err(|e| bad(e.to_string()))?;
        match v.get("items").and_then(Value::as_array) {
            Some(items) if v.get("kind").and_then(Value::as_str) == Some("List") => {
                docs.extend(items.iter().cloned().map(|d| (i + 1, d)));
            }
            _ => docs.push((i + 1, v)),
        }
    }
    let mut out = Vec::new();
    let mut handles: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (doc, v) in docs {
        let bad = |message: String| ImportError::Document { doc, message };
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "IPAMBlock" {
            block(&v, &mut out, &mut handles).map_err(bad)?;
            continue;
        }
        let Some((_, plural)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            continue; // a kind podwire does not read (the parser said so)
        };
        let (key, value) = resource(&v, plural, doc, now).map_err(bad)?;
        out.push((key, value.to_string()));
    }
    for (id, blocks) in handles {
        let value = json!({"handleID": id, "block": blocks, "deleted": false});
        out.push((layout::handle_key(&id), value.to_string()));
    }
    Ok(out)
}

fn resource(v: &Value, plural: &str, doc: usize, now: &str) -> Result<(String, Value), String> {
    let mut v = v.clone();
    let spec = v.get("spec").cloned().unwrap_or_else(|| json!({}));
    let meta = v
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("metadata: missing")?;
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .ok_or("metadata.name: missing")?
        .to_string();
    let mut namespace = None;
    if plural == "workloadendpoints" {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        meta.insert("namespace".into(), json!(ns));
        namespace = Some(ns);
        let node = spec.get("node").and_then(Value::as_str).unwrap_or_default();
        if !layout::endpoint_is_on(&name, node) {
            // Calico names a pod's endpoint after its node, pod and
            // interface; a node finds its own endpoints by that name.
            let pod = spec.get("pod").and_then(Value::as_str).ok_or_else(|| {
                format!(
                    "WorkloadEndpoint {name}: the name does not begin with its node's ({}-…) and there is no spec.pod to give it Calico's name",
                    layout::escape(node)
                )
            })?;
            let endpoint = spec
                .get("endpoint")
                .and_then(Value::as_str)
                .unwrap_or("eth0");
            name = layout::workload_endpoint_name(node, pod, endpoint);
            meta.insert("name".into(), json!(name));
        }
    }
    meta.remove("resourceVersion");
    meta.entry("uid")
        .or_insert_with(|| json!(uid(plural, &name, doc)));
    meta.entry("creationTimestamp")
        .or_insert_with(|| json!(now));
    v["apiVersion"] = json!("projectcalico.org/v3");
    v["spec"] = spec;
    Ok((layout::resource_key(plural, namespace.as_deref(), &name), v))
}

/// A stable UID of the form Kubernetes uses, from what names the resource.
pub(crate) fn uid(plural: &str, name: &str, doc: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i, plural, name, doc).hash(&mut h);
        *w = h.finish();
    }
    let hex = format!("{:016x}{:016x}", words[0], words[1]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn block(
    v: &Value,
    out: &mut Vec<(String, String)>,
    handles: &mut BTreeMap<String, BTreeMap<String, u64>>,
) -> Result<(), String> {
    let mut spec = v
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .ok_or("spec: missing")?;
    let cidr: Ipv4Network = spec
        .get("cidr")
        .and_then(Value::as_str)
        .and_then(|c| c.parse().ok())
        .ok_or("spec.cidr: expected an IPv4 CIDR")?;
    let size = 1usize << (32 - u32::from(cidr.prefix()));
    let allocations = match spec.get("allocations").and_then(Value::as_array) {
        Some(a) if a.len() == size => a.clone(),
        Some(a) => {
            return Err(format!(
                "spec.allocations: {} entries, a /{} block has {size}",
                a.len(),
                cidr.prefix()
            ));
        }
        None => vec![Value::Null; size],
    };
    if !spec.contains_key("unallocated") {
        let free: Vec<usize> = (0..size).filter(|&i| allocations[i].is_null()).collect();
        spec.insert("unallocated".into(), json!(free));
    }
    let attributes = spec
        .get("attributes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in allocations.iter().filter_map(Value::as_u64) {
        let id = usize::try_from(a)
            .ok()
            .and_then(|i| attributes.get(i))
            .and_then(|at| at.get("handle_id"))
            .and_then(Value::as_str);
        if let Some(id) = id {
            *handles
                .entry(id.to_string())
                .or_default()
                .entry(cidr.to_string())
                .or_default() += 1;
        }
    }
    spec.insert("cidr".into(), json!(cidr.to_string()));
    spec.insert("allocations".into(), Value::Array(allocations));
    spec.insert("attributes".into(), Value::Array(attributes));
    spec.entry("strictAffinity").or_insert(json!(false));
    spec.entry("deleted").or_insert(json!(false));
    let deleted = spec.get("deleted").and_then(Value::as_bool) == Some(true);
    let host = spec
        .get("affinity")
        .and_then(Value::as_str)
        .and_then(|a| a.strip_prefix("host:"))
        .map(str::to_string);
    out.push((layout::block_key(cidr), Value::Object(spec).to_string()));
    if let (Some(host), false) = (host, deleted) {
        out.push((
            layout::affinity_key(&host, cidr),
            json!({"state": "confirmed", "deleted": false}).to_string(),
        ));
    }
    Ok(())
}

/// The YAML of the resources `kvs` hold, and the values that could not be
/// read (left out, with their keys).
pub fn to_yaml(kvs: &[(String, Vec<u8>)]) -> (String, Vec<(String, DecodeError)>) {
    let mut groups: [Vec<Value>; 5] = Default::default();
    let mut bad = Vec::new();
    for (key, value) in kvs {
        let group = match layout::parse_key(key) {
            Key::Resource { plural, .. } => KINDS.iter().position(|(_, p)| *p == plural),
            Key::Block(_) => Some(4),
            _ => None,
        };
        let Some(group) = group else { continue };
        let v = match std::str::from_utf8(value) {
            Err(_) => Err(DecodeError::NotUtf8),
            Ok(t) => match serde_json::from_str::<Value>(t) {
                Err(e) => Err(DecodeError::NotJson(e.to_string())),
                Ok(v) if !v.is_object() => Err(DecodeError::NotAnObject),
                Ok(v) => Ok(v),
            },
        };
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                bad.push((key.clone(), e));
                continue;
            }
        };
        let doc = match layout::parse_key(key) {
            Key::Block(cidr) => {
                let mut meta = Map::new();
                meta.insert(
                    "name".into(),
                    json!(format!("{}-{}", cidr.network(), cidr.prefix()).replace('.', "-")),
                );
                json!({
                    "apiVersion": "crd.projectcalico.org/v1",
                    "kind": "IPAMBlock",
                    "metadata": meta,
                    "spec": v,
                })
            }
            _ => v,
        };
        groups[group].push(doc);
    }
    // Pools, nodes and Felix's configuration, then the blocks, then the
    // endpoints: the order a reader expects.
    let order = [0, 1, 2, 4, 3];
    let mut text = String::new();
    for g in order {
        for doc in &groups[g] {
            text.push_str("---\n");
            text.push_str(&serde_yaml_ng::to_string(doc).unwrap_or_default());
        }
    }
    (text, bad)
}

/// Now, as RFC 3339 in UTC (what metadata.creationTimestamp holds).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Puts per transaction: within etcd's default `--max-txn-ops` (128).
const TXN: usize = 100;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    /// Keys put (new, or with another value).
    pub written: usize,
    /// Keys that already held what the file gives.
    pub unchanged: usize,
    /// Keys deleted (`replace`).
    pub deleted: usize,
}

/// Whether `key` is of a kind an import writes (and so `replace` deletes).
fn imported_kind(key: &str) -> bool {
    match layout::parse_key(key) {
        Key::Resource { plural, .. } => KINDS.iter().any(|(_, p)| *p == plural),
        Key::Block(_) | Key::Affinity { .. } | Key::Handle(_) => true,
        Key::Other => false,
    }
}

/// Keeps the `uid` and `creationTimestamp` a resource already has in the
/// datastore, as `calicoctl apply` does on an update.
fn keep_metadata(new: &str, old: &[u8]) -> Option<String> {
    let old: Value = serde_json::from_slice(old).ok()?;
    let mut new: Value = serde_json::from_str(new).ok()?;
    let meta = new.get_mut("metadata")?.as_object_mut()?;
    for field in ["uid", "creationTimestamp"] {
        if let Some(v) = old.get("metadata").and_then(|m| m.get(field)) {
            meta.insert(field.into(), v.clone());
        }
    }
    Some(new.to_string())
}

/// Writes the resources of `text` into the datastore, keys that already
/// hold the same value left alone. With `replace`, keys of the kinds an
/// import writes that the file does not name are deleted, and everything
/// is one transaction (one revision: watchers see the whole change at
/// once; etcd's `--max-txn-ops` must allow it); otherwise puts go in
/// transactions of 100.
pub fn import(settings: &Settings, text: &str, replace: bool) -> Result<Imported, ImportError> {
    let kvs = to_keys(text, &now_rfc3339())?;
    crate::source::block_on(async {
        let mut c = client::connect_first(settings).await?;
        let mut existing: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let prefixes = [layout::RESOURCES.to_string(), layout::IPAM.to_string()];
        client::list(&mut c, &prefixes, None, |k, v| {
            if imported_kind(k) {
                existing.insert(k.to_string(), v.to_vec());
            }
        })
        .await?;
        let mut done = Imported::default();
        let mut ops = Vec::new();
        let named: std::collections::BTreeSet<&str> = kvs.iter().map(|(k, _)| k.as_str()).collect();
        for (k, v) in &kvs {
            let v = match (existing.get(k), layout::parse_key(k)) {
                (Some(old), Key::Resource { .. }) => {
                    keep_metadata(v, old).unwrap_or_else(|| v.clone())
                }
                _ => v.clone(),
            };
            if existing.get(k).is_some_and(|old| old[..] == *v.as_bytes()) {
                done.unchanged += 1;
                continue;
            }
            done.written += 1;
            ops.push(etcd_client::TxnOp::put(k.as_str(), v, None));
        }
        if replace {
            for k in existing.keys().filter(|k| !named.contains(k.as_str())) {
                done.deleted += 1;
                ops.push(etcd_client::TxnOp::delete(k.as_str(), None));
            }
        }
        let size = if replace { ops.len().max(1) } else { TXN };
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<etcd_client::TxnOp> = ops.by_ref().take(size).collect();
            client::deadline(client::TIMEOUT, async {
                Ok(c.txn(etcd_client::Txn::new().and_then(chunk)).await?)
            })
            .await?;
        }
        Ok::<_, Error>(done)
    })?
    .map_err(ImportError::from)
}

/// The datastore's resources as YAML, with the values left out.
pub fn export(settings: &Settings) -> Result<(String, Vec<(String, DecodeError)>), Error> {
    crate::source::block_on(async {
        let mut c = client::connect_first(settings).await?;
        let mut kvs = Vec::new();
        client::list(&mut c, &client::prefixes(), None, |k, v| {
            kvs.push((k.to_string(), v.to_vec()));
        })
        .await?;
        Ok(to_yaml(&kvs))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-02T10:00:00Z";

    fn value(kvs: &[(String, String)], key: &str) -> Value {
        let v = &kvs
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key} in {kvs:#?}"))
            .1;
        serde_json::from_str(v).unwrap()
    }

    #[test]
    fn the_example_becomes_calicos_keys_and_values() {
        let kvs = to_keys(include_str!("../../../examples/vxlan.yaml"), NOW).unwrap();
        let pool = value(
            &kvs,
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
        );
        assert_eq!(pool["kind"], "IPPool");
        assert_eq!(pool["apiVersion"], "projectcalico.org/v3");
        assert_eq!(pool["metadata"]["name"], "default-ipv4-ippool");
        assert_eq!(pool["metadata"]["creationTimestamp"], NOW);
        assert_eq!(pool["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert_eq!(pool["spec"]["cidr"], "10.2.0.0/16");
        // A block: every one of its 64 ordinals, unallocated.
        let b = value(&kvs, "/calico/ipam/v2/assignment/ipv4/block/10.2.36.64-26");
        assert_eq!(b["cidr"], "10.2.36.64/26");
        assert_eq!(b["affinity"], "host:k8s-node1");
        assert_eq!(b["allocations"].as_array().unwrap().len(), 64);
        assert!(
            b["allocations"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_null)
        );
        assert_eq!(b["unallocated"].as_array().unwrap().len(), 64);
        assert_eq!(b["deleted"], false);
        // Its affinity, confirmed; a deleted block has none.
        assert_eq!(
            value(
                &kvs,
                "/calico/ipam/v2/host/k8s-node1/ipv4/block/10.2.36.64-26"
            ),
            json!({"state": "confirmed", "deleted": false})
        );
        assert!(
            !kvs.iter()
                .any(|(k, _)| k == "/calico/ipam/v2/host/k8s-old-node/ipv4/block/10.2.7.0-26")
        );
        // An endpoint under its namespace and Calico's name.
        let w = value(
            &kvs,
            "/calico/resources/v3/projectcalico.org/workloadendpoints/kube-system/k8s--master-k8s-coredns--5d78c9869d--x2x4k-eth0",
        );
        assert_eq!(w["spec"]["interfaceName"], "calia1b2c3d4e5f");
        // And every key is one a node recognises.
        for (k, _) in &kvs {
            assert_ne!(layout::parse_key(k), Key::Other, "{k}");
        }
    }

    #[test]
    fn allocations_give_handles_and_a_pod_named_otherwise_is_renamed() {
        let text = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p}
spec: {cidr: 10.5.0.0/16, vxlanMode: Always, blockSize: 30}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-a}
spec: {bgp: {ipv4Address: 192.168.9.1/24}, ipv4VXLANTunnelAddr: 10.5.0.1}
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata: {name: 10-5-0-0-30}
spec:
  cidr: 10.5.0.0/30
  affinity: host:node-a
  allocations: [null, 0, 1, 1]
  attributes:
  - {handle_id: vxlan-tunnel-addr-node-a, secondary: {node: node-a, type: vxlanTunnelAddress}}
  - {handle_id: k8s-pod-network.abc, secondary: {node: node-a, pod: web-1, namespace: default}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod}
spec: {node: node-a, pod: web-1, interfaceName: cali1, ipNetworks: [10.5.0.2/32]}
";
        let kvs = to_keys(text, NOW).unwrap();
        let b = value(&kvs, "/calico/ipam/v2/assignment/ipv4/block/10.5.0.0-30");
        assert_eq!(b["unallocated"], json!([0]));
        assert_eq!(
            value(&kvs, "/calico/ipam/v2/handle/k8s-pod-network.abc"),
            json!({"handleID": "k8s-pod-network.abc", "block": {"10.5.0.0/30": 2}, "deleted": false})
        );
        assert_eq!(
            value(&kvs, "/calico/ipam/v2/handle/vxlan-tunnel-addr-node-a")["block"],
            json!({"10.5.0.0/30": 1})
        );
        let w = value(
            &kvs,
            "/calico/resources/v3/projectcalico.org/workloadendpoints/prod/node--a-k8s-web--1-eth0",
        );
        assert_eq!(w["metadata"]["name"], "node--a-k8s-web--1-eth0");
        // Nothing from a file that does not load.
        let e = to_keys(&text.replace("10.5.0.0/16", "10.5.0.0/33"), NOW).unwrap_err();
        assert!(matches!(e, ImportError::Invalid(_)), "{e}");
    }

    #[test]
    fn export_reads_back_as_the_file_it_came_from() {
        use podwire::table::{Underlay, compile};
        let file = include_str!("../../../examples/vxlan.yaml");
        let kvs: Vec<(String, Vec<u8>)> = to_keys(file, NOW)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .chain([(
                "/calico/resources/v3/projectcalico.org/ippools/bad".to_string(),
                b"{".to_vec(),
            )])
            .collect();
        let (yaml, bad) = to_yaml(&kvs);
        assert_eq!(bad.len(), 1);
        let u = Underlay {
            name: "eth0".into(),
            mtu: 1500,
        };
        let a = podwire::config::parse(&yaml).unwrap();
        let b = podwire::config::parse(file).unwrap();
        for node in ["k8s-master", "k8s-node1", "k8s-node2"] {
            assert_eq!(
                compile(&a, node, &u).unwrap().report(),
                compile(&b, node, &u).unwrap().report()
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
