//! Reading YAML documents into resources, with the checks that need only one
//! resource at a time. Checks between resources are in `validate.rs`.

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::{
    ConfigError, DEFAULT_BLOCK_SIZE, EncapMode, FelixConfiguration, IpPool, IpamBlock, Kind, Loc,
    Node, Resources, WorkloadEndpoint,
};
use crate::wire::MacAddr;

/// API versions whose resources podwire reads (the field names are the same).
const API_VERSIONS: [&str; 2] = ["projectcalico.org/v3", "crd.projectcalico.org/v1"];

/// Linux's limit for an interface name, without the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

/// Parses every document of `text` into resources, checking each on its own.
pub fn parse_documents(text: &str) -> Result<Resources, ConfigError> {
    let mut res = Resources::default();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = Loc {
            doc: i + 1,
            item: None,
        };
        let value = Value::deserialize(document).map_err(|e| ConfigError::Yaml {
            at,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document, as between two `---`
        }
        document_or_list(value, at, &mut res)?;
    }
    Ok(res)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn as_mapping(v: Value, at: Loc) -> Result<Mapping, ConfigError> {
    match v {
        Value::Mapping(m) => Ok(m),
        other => Err(ConfigError::Document {
            at,
            message: format!(
                "expected a Calico resource (a mapping with apiVersion and kind), found {}",
                type_name(&other)
            ),
        }),
    }
}

fn kind_of(map: &Mapping, at: Loc) -> Result<String, ConfigError> {
    match map.get("kind") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ConfigError::Document {
            at,
            message: format!("kind: expected a string, found {}", type_name(other)),
        }),
        None => Err(ConfigError::Document {
            at,
            message: "kind: missing (every resource needs apiVersion and kind)".into(),
        }),
    }
}

fn supported_kinds() -> String {
    Kind::ALL.map(Kind::as_str).join(", ")
}

fn document_or_list(value: Value, at: Loc, res: &mut Resources) -> Result<(), ConfigError> {
    let map = as_mapping(value, at)?;
    let kind = kind_of(&map, at)?;
    let is_list = kind == "List"
        || kind
            .strip_suffix("List")
            .is_some_and(|k| Kind::from_name(k).is_some());
    if !is_list {
        return resource(map, kind, at, res);
    }
    let items = match map.get("items") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            return Err(ConfigError::Document {
                at,
                message: format!("items: expected a list, found {}", type_name(other)),
            });
        }
    };
    for (j, item) in items.iter().enumerate() {
        let at = Loc {
            doc: at.doc,
            item: Some(j + 1),
        };
        let map = as_mapping(item.clone(), at)?;
        let kind = kind_of(&map, at)?;
        resource(map, kind, at, res)?;
    }
    Ok(())
}

/// What a resource parser needs to report errors.
struct Ctx {
    at: Loc,
    kind: Kind,
    name: Option<String>,
}

impl Ctx {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::field(self.at, self.kind, self.name.as_deref(), field, reason)
    }

    fn name(&self) -> Result<String, ConfigError> {
        match &self.name {
            Some(n) if !n.is_empty() => Ok(n.clone()),
            _ => Err(self.err("metadata.name", "missing")),
        }
    }

    /// Deserialises the whole resource, naming the field of any type error.
    fn typed<T: DeserializeOwned>(&self, map: Mapping) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(Value::Mapping(map)).map_err(|e| {
            let path = e.path().to_string();
            self.err(path, e.into_inner().to_string())
        })
    }
}

fn resource(map: Mapping, kind: String, at: Loc, res: &mut Resources) -> Result<(), ConfigError> {
    let Some(kind) = Kind::from_name(&kind) else {
        return Err(ConfigError::Document {
            at,
            message: format!(
                "unknown kind {kind:?} (podwire reads {})",
                supported_kinds()
            ),
        });
    };
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let cx = Ctx { at, kind, name };
    match map.get("apiVersion") {
        Some(Value::String(v)) if API_VERSIONS.contains(&v.as_str()) => {}
        Some(Value::String(v)) => {
            return Err(cx.err(
                "apiVersion",
                format!(
                    "{v:?} is not supported (expected {})",
                    API_VERSIONS.join(" or ")
                ),
            ));
        }
        Some(other) => {
            return Err(cx.err(
                "apiVersion",
                format!("expected a string, found {}", type_name(other)),
            ));
        }
        None => return Err(cx.err("apiVersion", "missing")),
    }
    match kind {
        Kind::IpPool => res.pools.push(ip_pool(&cx, cx.typed(map)?)?),
        Kind::Node => res.nodes.push(node(&cx, cx.typed(map)?)?),
        Kind::IpamBlock => {
            if let Some(block) = ipam_block(&cx, cx.typed(map)?)? {
                res.blocks.push(block);
            }
        }
        Kind::WorkloadEndpoint => res.endpoints.push(workload_endpoint(&cx, cx.typed(map)?)?),
        Kind::FelixConfiguration => res.felix.push(felix_configuration(&cx, cx.typed(map)?)?),
    }
    Ok(())
}

#[derive(Deserialize, Default)]
struct Meta {
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct Raw<S> {
    #[serde(default)]
    metadata: Option<Meta>,
    spec: Option<S>,
}

impl<S> Raw<S> {
    fn spec(self, cx: &Ctx) -> Result<(S, Meta), ConfigError> {
        match self.spec {
            Some(s) => Ok((s, self.metadata.unwrap_or_default())),
            None => Err(cx.err("spec", "missing")),
        }
    }
}

/// Parses an IPv4 CIDR given with its prefix length, that has no host bits.
fn ipv4_cidr(cx: &Ctx, field: &str, s: &str) -> Result<Ipv4Network, ConfigError> {
    let net = ipv4_prefixed(cx, field, s)?;
    if net.ip() != net.network() {
        return Err(cx.err(
            field,
            format!(
                "{s} has host bits set (the network is {}/{})",
                net.network(),
                net.prefix()
            ),
        ));
    }
    Ok(net)
}

/// Parses `a.b.c.d/n` (host bits allowed), rejecting IPv6 and bare addresses.
fn ipv4_prefixed(cx: &Ctx, field: &str, s: &str) -> Result<Ipv4Network, ConfigError> {
    let s = s.trim();
    if !s.contains('/') {
        return Err(cx.err(
            field,
            format!("{s:?} has no prefix length (expected a CIDR like 10.0.0.0/16)"),
        ));
    }
    match IpNetwork::from_str(s) {
        Ok(IpNetwork::V4(n)) => Ok(n),
        Ok(IpNetwork::V6(_)) => {
            Err(cx.err(field, format!("{s} is IPv6; IPv6 is not supported yet")))
        }
        Err(_) => Err(cx.err(field, format!("{s:?} is not a valid IPv4 CIDR"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpPoolSpec {
    cidr: Option<String>,
    block_size: Option<i64>,
    ipip_mode: Option<String>,
    vxlan_mode: Option<String>,
    nat_outgoing: Option<bool>,
    disabled: Option<bool>,
}

fn encap_mode(cx: &Ctx, field: &str, s: Option<&str>) -> Result<EncapMode, ConfigError> {
    match s.unwrap_or("") {
        "" | "Never" => Ok(EncapMode::Never),
        "Always" => Ok(EncapMode::Always),
        "CrossSubnet" => Ok(EncapMode::CrossSubnet),
        other => Err(cx.err(
            field,
            format!("{other:?} is not a mode (expected Never, Always or CrossSubnet)"),
        )),
    }
}

fn ip_pool(cx: &Ctx, raw: Raw<IpPoolSpec>) -> Result<IpPool, ConfigError> {
    let name = cx.name()?;
    let (spec, _) = raw.spec(cx)?;
    let cidr = match spec.cidr.as_deref() {
        Some(s) => ipv4_cidr(cx, "spec.cidr", s)?,
        None => return Err(cx.err("spec.cidr", "missing")),
    };
    let block_size = match spec.block_size {
        None => DEFAULT_BLOCK_SIZE,
        Some(b @ 20..=32) => b as u8,
        Some(b) => {
            return Err(cx.err(
                "spec.blockSize",
                format!("{b} is out of range (an IPv4 pool's blocks are /20 to /32)"),
            ));
        }
    };
    if cidr.prefix() > block_size {
        return Err(cx.err(
            "spec.blockSize",
            format!(
                "blocks of /{block_size} do not fit in the pool {cidr} (its prefix must be /{block_size} or shorter)"
            ),
        ));
    }
    let ipip_mode = encap_mode(cx, "spec.ipipMode", spec.ipip_mode.as_deref())?;
    let vxlan_mode = encap_mode(cx, "spec.vxlanMode", spec.vxlan_mode.as_deref())?;
    if ipip_mode.enabled() && vxlan_mode.enabled() {
        return Err(cx.err(
            "spec.vxlanMode",
            format!(
                "{vxlan_mode:?} together with ipipMode {ipip_mode:?}: a pool uses IPIP or VXLAN, not both"
            ),
        ));
    }
    Ok(IpPool {
        at: cx.at,
        name,
        cidr,
        block_size,
        ipip_mode,
        vxlan_mode,
        nat_outgoing: spec.nat_outgoing.unwrap_or(false),
        disabled: spec.disabled.unwrap_or(false),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NodeBgp {
    ipv4_address: Option<String>,
    #[serde(rename = "ipv4IPIPTunnelAddr")]
    ipip_tunnel_addr: Option<String>,
}

/// One of `spec.addresses`: an address (with or without a prefix length)
/// and its type (`InternalIP`, `ExternalIP`, `CalicoNodeIP`).
#[derive(Deserialize)]
struct NodeAddress {
    address: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
struct NodeSpec {
    bgp: Option<NodeBgp>,
    #[serde(default)]
    addresses: Vec<NodeAddress>,
    #[serde(rename = "ipv4VXLANTunnelAddr")]
    vxlan_tunnel_addr: Option<String>,
    #[serde(rename = "vxlanTunnelMACAddr")]
    vxlan_tunnel_mac: Option<String>,
}

fn node(cx: &Ctx, raw: Raw<NodeSpec>) -> Result<Node, ConfigError> {
    let name = cx.name()?;
    let spec = raw.spec.unwrap_or_default();
    let field = "spec.bgp.ipv4Address";
    // Without spec.bgp.ipv4Address, the first IPv4 InternalIP of
    // spec.addresses, then the first ExternalIP, as Felix falls back
    // (`FindNodeAddress` in `onNodeUpdate`, felix/calc/l3_route_resolver.go).
    let fallback = || {
        ["InternalIP", "ExternalIP"].iter().find_map(|kind| {
            spec.addresses
                .iter()
                .filter(|a| a.kind.as_deref() == Some(*kind))
                .filter_map(|a| a.address.as_deref())
                .find(|a| {
                    a.split('/')
                        .next()
                        .is_some_and(|ip| Ipv4Addr::from_str(ip).is_ok())
                })
                .map(str::to_string)
        })
    };
    let bgp = spec.bgp.as_ref().and_then(|b| b.ipv4_address.clone());
    let ipv4 = match bgp.filter(|s| !s.is_empty()).or_else(fallback) {
        None => None,
        Some(s) => {
            // Without a prefix length it is a /32, as Calico's validator
            // accepts it (then every other node is in another subnet).
            let s = if s.contains('/') {
                s
            } else {
                format!("{}/32", s.trim())
            };
            Some(ipv4_prefixed(cx, field, &s)?)
        }
    };
    let address = |field: &str, v: Option<&str>| match v {
        None | Some("") => Ok(None),
        Some(s) => Ipv4Addr::from_str(s.trim())
            .map(Some)
            .map_err(|_| cx.err(field, format!("{s:?} is not an IPv4 address"))),
    };
    let vxlan_tunnel_addr = address(
        "spec.ipv4VXLANTunnelAddr",
        spec.vxlan_tunnel_addr.as_deref(),
    )?;
    let ipip_tunnel_addr = address(
        "spec.bgp.ipv4IPIPTunnelAddr",
        spec.bgp
            .as_ref()
            .and_then(|b| b.ipip_tunnel_addr.as_deref()),
    )?;
    let field = "spec.vxlanTunnelMACAddr";
    let vxlan_tunnel_mac = match spec.vxlan_tunnel_mac.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let mac =
                MacAddr::from_str(s.trim()).map_err(|e| cx.err(field, format!("{s:?}: {e}")))?;
            if mac.is_multicast() {
                return Err(cx.err(field, format!("{mac} is a multicast address")));
            }
            Some(mac)
        }
    };
    Ok(Node {
        at: cx.at,
        name,
        ipv4,
        vxlan_tunnel_addr,
        ipip_tunnel_addr,
        vxlan_tunnel_mac,
    })
}

#[derive(Deserialize)]
struct BlockSpec {
    cidr: Option<String>,
    affinity: Option<String>,
    deleted: Option<bool>,
    /// Per address of the block, the index of its attributes, or null
    /// when the address is free.
    #[serde(default)]
    allocations: Vec<Option<usize>>,
    #[serde(default)]
    attributes: Vec<BlockAttribute>,
}

/// `model.AllocationAttribute`: `handle_id` and the active owner's
/// attributes (`secondary`: node, namespace, pod, timestamp).
#[derive(Deserialize)]
struct BlockAttribute {
    #[serde(default)]
    secondary: Option<OwnerAttributes>,
}

/// The owner attributes podwire reads (`node`); the others (namespace,
/// pod, timestamp, type) are ignored.
#[derive(Deserialize)]
struct OwnerAttributes {
    #[serde(default)]
    node: Option<String>,
}

/// The addresses of block `cidr` allocated to another node than `host`,
/// with that node, as `AllocationBlock.NonAffineAllocations` finds them:
/// an allocation whose attributes name no node, or whose index has no
/// attributes, is skipped (Felix warns and routes nothing for it), and so
/// is one past the end of the block.
fn borrowed(
    cidr: ipnetwork::Ipv4Network,
    host: Option<&str>,
    spec: &BlockSpec,
) -> Vec<(Ipv4Addr, String)> {
    let base = u32::from(cidr.network());
    let size = 1u64 << (32 - u32::from(cidr.prefix()));
    let mut out = Vec::new();
    for (ordinal, attr) in spec.allocations.iter().enumerate() {
        let Some(attr) = attr else { continue };
        if ordinal as u64 >= size {
            break;
        }
        let node = spec
            .attributes
            .get(*attr)
            .and_then(|a| a.secondary.as_ref())
            .and_then(|s| s.node.as_ref())
            .filter(|n| !n.is_empty());
        let Some(node) = node else { continue };
        if Some(node.as_str()) == host {
            continue;
        }
        out.push((Ipv4Addr::from(base + ordinal as u32), node.clone()));
    }
    out
}

fn ipam_block(cx: &Ctx, raw: Raw<BlockSpec>) -> Result<Option<IpamBlock>, ConfigError> {
    let (spec, _) = raw.spec(cx)?;
    if spec.deleted == Some(true) {
        return Ok(None);
    }
    let name = cx.name()?;
    let cidr = match spec.cidr.as_deref() {
        Some(s) => ipv4_cidr(cx, "spec.cidr", s)?,
        None => return Err(cx.err("spec.cidr", "missing")),
    };
    let node = match spec.affinity.as_deref() {
        None | Some("") => None,
        Some(a) => match a.strip_prefix("host:") {
            Some("") => return Err(cx.err("spec.affinity", "\"host:\" names no node")),
            Some(n) => Some(n.to_string()),
            // Other affinities (not to a host) route nowhere, as in Felix.
            None => None,
        },
    };
    let borrowed = borrowed(cidr, node.as_deref(), &spec);
    Ok(Some(IpamBlock {
        at: cx.at,
        name,
        cidr,
        node,
        borrowed,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WepSpec {
    node: Option<String>,
    interface_name: Option<String>,
    ip_networks: Option<Vec<String>>,
}

/// Linux's `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white space.
pub fn interface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Some(format!(
            "{name:?} is {} bytes long; Linux interface names have at most {MAX_IFNAME_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || *c == '\0' || c.is_whitespace())
    {
        return Some(format!(
            "{name:?} contains {c:?}, which Linux does not allow in an interface name"
        ));
    }
    None
}

fn workload_endpoint(cx: &Ctx, raw: Raw<WepSpec>) -> Result<WorkloadEndpoint, ConfigError> {
    let name = cx.name()?;
    let (spec, meta) = raw.spec(cx)?;
    let node = match spec.node {
        Some(n) if !n.is_empty() => n,
        _ => return Err(cx.err("spec.node", "missing")),
    };
    let interface_name = match spec.interface_name {
        Some(n) => n,
        None => return Err(cx.err("spec.interfaceName", "missing")),
    };
    if let Some(problem) = interface_name_problem(&interface_name) {
        return Err(cx.err("spec.interfaceName", problem));
    }
    let mut ips = Vec::new();
    for (i, s) in spec.ip_networks.unwrap_or_default().iter().enumerate() {
        let field = format!("spec.ipNetworks[{i}]");
        let net = ipv4_prefixed(cx, &field, s)?;
        if net.prefix() != 32 {
            return Err(cx.err(
                field,
                format!("{s} is not a /32 (a workload has single addresses)"),
            ));
        }
        ips.push(net.ip());
    }
    Ok(WorkloadEndpoint {
        at: cx.at,
        name,
        namespace: meta.namespace,
        node,
        interface_name,
        ips,
    })
}

#[derive(Deserialize)]
struct FelixSpec {
    #[serde(rename = "vxlanVNI")]
    vxlan_vni: Option<i64>,
    #[serde(rename = "vxlanPort")]
    vxlan_port: Option<i64>,
    #[serde(rename = "vxlanMTU")]
    vxlan_mtu: Option<i64>,
    #[serde(rename = "ipipMTU")]
    ipip_mtu: Option<i64>,
}

/// The smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_MTU: i64 = 68;

fn mtu(cx: &Ctx, field: &str, v: Option<i64>) -> Result<Option<u16>, ConfigError> {
    match v {
        None | Some(0) => Ok(None),
        Some(m @ MIN_MTU..=65535) => Ok(Some(m as u16)),
        Some(m) => Err(cx.err(
            field,
            format!("{m} is out of range (0 for automatic, or {MIN_MTU} to 65535)"),
        )),
    }
}

fn felix_configuration(cx: &Ctx, raw: Raw<FelixSpec>) -> Result<FelixConfiguration, ConfigError> {
    let name = cx.name()?;
    let Some(spec) = raw.spec else {
        return Ok(FelixConfiguration {
            at: cx.at,
            name,
            ..Default::default()
        });
    };
    let vxlan_vni = match spec.vxlan_vni {
        None => None,
        Some(v @ 1..=0xff_ffff) => Some(v as u32),
        Some(v) => {
            return Err(cx.err(
                "spec.vxlanVNI",
                format!("{v} is out of range (a VNI has 24 bits: 1 to 16777215)"),
            ));
        }
    };
    let vxlan_port = match spec.vxlan_port {
        None => None,
        Some(p @ 1..=65535) => Some(p as u16),
        Some(p) => {
            return Err(cx.err(
                "spec.vxlanPort",
                format!("{p} is not a UDP port (1 to 65535)"),
            ));
        }
    };
    Ok(FelixConfiguration {
        at: cx.at,
        name,
        vxlan_vni,
        vxlan_port,
        vxlan_mtu: mtu(cx, "spec.vxlanMTU", spec.vxlan_mtu)?,
        ipip_mtu: mtu(cx, "spec.ipipMTU", spec.ipip_mtu)?,
    })
}
